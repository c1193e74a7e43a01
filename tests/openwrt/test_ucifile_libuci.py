"""mape.core.ucifile against the real libuci of both profiles (issue 11 point 15): generated
config files (odd names, quotes, escapes, newlines in values, lists, comments, `;`,
abbreviated keywords, backslash-newline), `uci export` by the built uci (run on this host
with LD_LIBRARY_PATH, in a private config dir) vs our parser: the same sections, options and
values; where libuci refuses the file, ours raises a one-line InputError, never anything else."""
import os
import re
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

import owtier as C

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "src"))

from mape.core.errors import InputError  # noqa: E402
from mape.core.ucifile import parse  # noqa: E402

pytestmark = pytest.mark.openwrt

GOOD = st.sampled_from(["a", "wan", "x_1", "A9", "cfg", "r"])
NAMES = st.one_of(GOOD, st.sampled_from(["wan-6", "ä", "", "a.b"]))
RAW = st.text(alphabet="ab '\"\\#;\t\n\r$x-.=é", max_size=12)


def quoted(value, how):
    if how == "single":
        return "'" + value.replace("'", "'\\''") + "'"
    if how == "double":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if how == "bare":
        return value
    return value.replace(" ", "").replace("\n", "") + "\\\nxy"   # backslash-newline joins lines


@st.composite
def lines(draw):
    """Mostly lines libuci accepts (with tricky values); one in ten anything goes."""
    strange = draw(st.integers(0, 9)) == 0
    names = NAMES if strange else GOOD
    kind = draw(st.sampled_from(["config", "option", "option", "list", "list", "comment", "blank"]
                                + (["package", "raw", "abbrev"] if strange else [])))
    how = st.sampled_from(["single", "double", "join"] + (["bare"] if strange else []))
    value = st.one_of(st.text(alphabet="ab \n'\"\\#;$é\t", max_size=10), GOOD)
    indent = draw(st.sampled_from(["", "\t", "  "]))
    if kind == "config":
        name = draw(st.one_of(st.just(""), names))
        return "%sconfig %s%s" % (indent, draw(names) or "t", " " + quoted(name, draw(how)) if name else "")
    if kind in ("option", "list"):
        tail = draw(st.sampled_from(["", " # note", "\t#", ";"] + ([" extra"] if strange else [])))
        return "%s%s %s %s%s" % (indent, kind, draw(names), quoted(draw(value), draw(how)), tail)
    if kind == "abbrev":
        return "%s%s %s %s" % (indent, draw(st.sampled_from(["o", "l", "c", "p"])), draw(names),
                               quoted(draw(value), draw(how)))
    if kind == "comment":
        return "%s# %s" % (indent, draw(RAW).replace("\n", " "))
    if kind == "package":
        return "package %s" % draw(names)
    if kind == "raw":
        return draw(RAW)
    return ""


CONFIGS = st.lists(lines(), max_size=6).map(lambda ls: "config t\n" + "\n".join(ls) + "\n")


class Oracle:
    def __init__(self, profile):
        self.profile = profile
        layer = os.path.join(C.build_dir(profile), "layer")
        self.argv = [os.path.join(layer, "usr/sbin/uci")]
        self.env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(layer, "usr/lib"))
        self.dir = tempfile.mkdtemp(prefix="uci-oracle-")

    def export(self, text):
        """(sections, None) of `uci export` of ``text`` as a package, or (None, error)."""
        with open(os.path.join(self.dir, "p"), "w", encoding="utf-8") as f:
            f.write(text)
        p = subprocess.run(self.argv + ["-c", self.dir, "-t", os.path.join(self.dir, ".delta"), "export", "p"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, timeout=30)
        if p.returncode != 0:
            return None, p.stderr.decode("utf-8", "replace").strip()
        return p.stdout.decode("utf-8"), None


def redeclared_thrice(text):
    declared = re.findall(r"^[ \t]*config[ \t]+\S+[ \t]+'?([A-Za-z0-9_]+)'?", text, re.M)
    return any(declared.count(n) >= 3 for n in set(declared))


def view(sections):
    return [(s.type, s.name, s.options) for s in sections]


@pytest.fixture(scope="module", params=C.PROFILES)
def oracle(request):
    return Oracle(request.param)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=CONFIGS)
@example(text="config rule 'r'\n\toption description 'first line\nsecond line'\n\toption x \"a\\\"b\"\n")
@example(text="config t\n\toption x ab\\\ncd\n\tlist l 1;\tlist l 2\n")
@example(text="config t\n\toption x 'open\n")
@example(text="config t\nconfig a 'a'\nconfig a 'a'\nconfig a 'a'\noption a ''\n")
def test_our_parser_reads_what_libuci_reads(oracle, text):
    exported, refused = oracle.export(text)
    try:
        ours = view(parse(text, source="p"))
    except InputError as e:
        assert "\n" not in str(e)
        assert refused, "libuci reads what we refuse (%s):\n%r\nlibuci:\n%s" % (e, text, exported)
        return
    if refused and oracle.profile == "21.02" and redeclared_thrice(text):
        # libuci 21.02 loses its current section when a named one is declared a third time
        # (every option after it: "option/list command found before the first section");
        # 24.10 reads it. Reading such a file anyway is harmless: the daemon's input is
        # `uci export`, which fails first on the router.
        return
    assert not refused, "libuci refuses (%s) what we read:\n%r\nours: %r" % (refused, text, ours)
    assert ours == view(parse(exported, source="uci export p")), "\n%r\nlibuci exported:\n%s" % (text, exported)
