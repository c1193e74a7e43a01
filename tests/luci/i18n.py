"""Translation helpers for luci-app-mape-py (stdlib only).

- ``extract(js_text)``: the msgids of every ``_('...')`` call, in order, JS escapes decoded
  (what LuCI's i18n-scan does for the .pot).
- ``parse_po(text)``: {msgid: msgstr} of a .po file (the pages get the compiled .lmo of the
  installed i18n package, through luci-base's translations endpoint).
- ``python3 tests/luci/i18n.py pot``: rewrite po/templates/mape.pot from the view sources.
- ``python3 tests/luci/i18n.py sync ja``: add missing msgids to po/ja/mape.po (empty
  msgstr) and drop obsolete ones, keeping existing translations.
"""
import os
import re
import sys

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "luci-app-mape-py")
APP = os.path.normpath(APP)
VIEW_DIR = os.path.join(APP, "htdocs", "luci-static", "resources")

_CALL = re.compile(r"""(?<![\w.$])_\(\s*(?:'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)")\s*[,)]""")
_ESC = re.compile(r"""\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)""")


def _unescape_js(s):
    def one(m):
        e = m.group(1)
        if e[0] == "u" and len(e) == 5:
            return chr(int(e[1:], 16))
        if e[0] == "x" and len(e) == 3:
            return chr(int(e[1:], 16))
        return {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(e, e)
    return _ESC.sub(one, s)


def extract(js_text):
    out = []
    for m in _CALL.finditer(js_text):
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        msgid = _unescape_js(raw)
        if msgid not in out:
            out.append(msgid)
    return out


def view_sources():
    files = []
    for root, _dirs, names in os.walk(VIEW_DIR):
        for n in sorted(names):
            if n.endswith(".js"):
                files.append(os.path.join(root, n))
    return sorted(files)


def all_msgids():
    ids = []
    for path in view_sources():
        with open(path, encoding="utf-8") as f:
            for msgid in extract(f.read()):
                if msgid not in ids:
                    ids.append(msgid)
    return ids


def _po_quote(s):
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"%s"' % s


def _po_unquote(s):
    s = s.strip()
    if not (s.startswith('"') and s.endswith('"')):
        raise ValueError("bad po string: %r" % s)
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s[1:-1])


def parse_po(text):
    """{msgid: msgstr}; the header entry (msgid "") is left out."""
    entries = {}
    key = None
    cur = {}
    for line in text.splitlines() + [""]:
        line = line.strip()
        if not line:
            if "msgid" in cur and cur["msgid"] != "":
                entries[cur["msgid"]] = cur.get("msgstr", "")
            cur, key = {}, None
            continue
        if line.startswith("#"):
            continue
        m = re.match(r"^(msgid|msgstr|msgctxt)\s+(\".*\")$", line)
        if m:
            key = m.group(1)
            cur[key] = _po_unquote(m.group(2))
        elif line.startswith('"') and key:
            cur[key] += _po_unquote(line)
    return entries


def render_po(msgids, translations=None, lang=None):
    header = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"']
    if lang:
        header.append('"Language: %s\\n"' % lang)
        header.append('"Plural-Forms: nplurals=1; plural=0;\\n"')
    out = ["\n".join(header)]
    for msgid in msgids:
        msgstr = (translations or {}).get(msgid, "")
        out.append("msgid %s\nmsgstr %s" % (_po_quote(msgid), _po_quote(msgstr)))
    return "\n\n".join(out) + "\n"


def po_path(lang):
    if lang == "templates":
        return os.path.join(APP, "po", "templates", "mape.pot")
    return os.path.join(APP, "po", lang, "mape.po")


def main(argv):
    if argv[:1] == ["pot"]:
        with open(po_path("templates"), "w", encoding="utf-8") as f:
            f.write(render_po(all_msgids()))
        return 0
    if len(argv) == 2 and argv[0] == "sync":
        path = po_path(argv[1])
        old = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = parse_po(f.read())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_po(all_msgids(), old, argv[1]))
        missing = [m for m in all_msgids() if not old.get(m)]
        for m in missing:
            print("untranslated: %s" % m)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
