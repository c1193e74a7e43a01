"""`mape-py calc` and `mape-py rules` as a user runs them: a real process, real exit codes."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]


def mape(*args, stdin=None, config="/nonexistent"):
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    if args and args[0] in ("calc", "rules") and config:
        args = args[:1] + ("--config", config) + args[1:]
    return subprocess.run([sys.executable, "-m", "mape", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)


def test_human_summary_and_network_stanzas():
    r = mape("calc", "2404:7a82:4d02:4100::/56")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "BIGLOBE IPv6 option" in out and "BIGLOBE IPv6オプション" in out
    assert "133.209.13.2" in out and "psid      65" in out
    assert "5136-5151" in out and "62480-62495" in out
    assert "2404:7a82:4d02:4100:85:d10d:200:4100" in out and "2001:260:700:1::1:275" in out
    assert "config interface 'wan'\n\toption proto 'map'\n\toption maptype 'map-e'\n" \
           "\toption rule 'type=map-e,ipv6prefix=2404:7a82:4c00::,prefix6len=38,ipv4prefix=133.209.12.0," \
           "prefix4len=22,ealen=18,psidlen=8,offset=4,br=2001:260:700:1::1:275,pd=2404:7a82:4d02:4100::,pdlen=56'\n" \
           "\toption legacymap '1'\n\toption mtu '1460'\n\toption tunlink 'wan6'\n" in out
    assert "wan6pd" not in out


def test_json_has_the_documented_fields():
    r = mape("calc", "--json", "240b:10:3f6c:d400::/56")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    for key in ("provider", "br", "ipv4", "psid", "port_sets", "ce", "rule", "warnings"):
        assert key in d
    assert set(d["rule"]) >= {"ip6prefix", "ip6prefixlen", "ipaddr", "ip4prefixlen", "ealen", "psidlen", "offset"}
    assert d["port_sets"][0] == [7488, 7503] and len(d["port_sets"]) == 15


def test_several_inputs_in_order_failures_inline():
    r = mape("calc", "--json", "2400:4050:400:5600::/56", "zz::zz", "2001:db8::/56", "240b:10::/40", "240b:10:3f6c:d400::")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 5
    assert lines[0]["ipv4"] == "153.240.16.1"
    assert lines[1]["exit_code"] == 2 and "not an IPv6" in lines[1]["error"]
    assert lines[2]["exit_code"] == 3 and "known providers" in lines[2]["error"]
    assert lines[3]["exit_code"] == 2 and "shorter" in lines[3]["error"]
    assert lines[4]["ipv4"] == "106.72.63.108"
    assert r.returncode == 3
    assert "Traceback" not in r.stderr


def test_stdin_dash():
    r = mape("calc", "--json", "-", stdin="240b:10:3f6c:d400::/56\n\n# comment\n2404:7a82:4d02:4100::/56\n")
    assert [json.loads(x)["psid"] for x in r.stdout.splitlines()] == [212, 65]


@pytest.mark.parametrize("arg, code, words", [
    ("hello", 2, "not an IPv6"),
    ("240b:10::/129", 2, "bad prefix length"),
    ("240b:10::/x", 2, "bad prefix length"),
    ("", 2, "empty input"),
    ("2001:db8::/56", 3, "JPNE v6plus"),
    ("240b:10::/48", 2, "shorter than the rule's /31 + 25 EA bits = /56"),
])
def test_errors_are_one_line_with_exit_codes(arg, code, words):
    r = mape("calc", arg)
    assert r.returncode == code
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("mape-py calc: ")


def test_warnings_for_60_not_subnet_0_and_64_subnet():
    d = json.loads(mape("calc", "--json", "240b:10:3f6c:d410::/60").stdout)
    assert [w["code"] for w in d["warnings"]] == ["pd-not-subnet-0"]
    assert d["ce"].startswith("240b:10:3f6c:d400:")
    d = json.loads(mape("calc", "--json", "240b:10:3f6c:d400::/60").stdout)
    assert [w["code"] for w in d["warnings"]] == ["pd-behind-gateway"]
    d = json.loads(mape("calc", "--json", "240b:10:3f6c:d4ab:1:2:3:4").stdout)
    assert [w["code"] for w in d["warnings"]] == ["subnet-not-0"] and d["input"]["kind"] == "address"


def test_user_rules_from_config_and_bad_config(tmp_path):
    cfg = tmp_path / "mape"
    cfg.write_text("config rule\n\toption ip6prefix '2001:db8::/32'\n\toption ipaddr '192.0.2.0/24'\n"
                   "\toption ealen '16'\n\toption psidlen '8'\n\toption offset '4'\n\toption peeraddr '2001:db8::1'\n")
    r = mape("calc", "--json", "2001:db8:1234::/48", config=str(cfg))
    assert json.loads(r.stdout)["ipv4"] == "192.0.2.18"
    cfg.write_text("config rule\n\toption ip6prefix '2001:db8::/32'\n\toption 'unterminated\n")
    r = mape("calc", "240b:10:3f6c:d400::/56", config=str(cfg))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "line 3" in r.stderr


def test_help_and_unknown_command():
    r = mape("--help")
    assert r.returncode == 0 and "calc" in r.stdout and "rules" in r.stdout and "MAP-E" in r.stdout
    r = mape("calc", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "--json" in r.stdout
    r = mape("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_rules_listing_and_lookup():
    r = mape("rules", "--summary")
    assert "biglobe  high   129 rules  BR 2001:260:700:1::1:276" in r.stdout
    r = mape("rules", "2400:4050:400:5600::/56")
    assert r.stdout.startswith("ocn_vc   high  2400:4050:400::/38 -> 153.240.16.0/20")
    r = mape("rules", "--provider", "v6plus", "--json")
    assert len(r.stdout.splitlines()) == 4
    r = mape("rules", "2001:db8::/56")
    assert r.returncode == 3


def run_bytes(*args, stdin=b""):
    """As mape(), with bytes in and out (stdin that is not UTF-8)."""
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    return subprocess.run([sys.executable, "-m", "mape", *args], input=stdin, capture_output=True, env=env,
                          timeout=60)


def one_line_error(r, prefix):
    lines = r.stderr.decode("utf-8") if isinstance(r.stderr, bytes) else r.stderr
    lines = lines.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_stdin_not_utf8_json_stays_one_valid_json_object_per_line():
    stdin = b"240b:10:3f6c:d400::/56\n\xff\xfe240b::/56\n2404:7a82:4d02:4100::/56\n"
    r = run_bytes("calc", "--config", "/nonexistent", "--json", "-", stdin=stdin)
    text = r.stdout.decode("utf-8")                      # strict: raises if not UTF-8
    docs = [json.loads(line) for line in text.splitlines()]
    assert len(docs) == 3
    assert docs[0]["psid"] == 212 and docs[2]["psid"] == 65
    assert docs[1]["exit_code"] == 2 and "not UTF-8" in docs[1]["error"] and "line 2" in docs[1]["error"]
    assert docs[1]["input"] == "\ufffd\ufffd240b::/56"
    assert r.returncode == 2 and r.stderr == b""


def test_stdin_not_utf8_plain_is_a_one_line_input_error_without_raw_bytes():
    r = run_bytes("calc", "--config", "/nonexistent", "-", stdin=b"\xff\xfe\n")
    assert r.returncode == 2 and r.stdout == b""
    assert "not UTF-8" in one_line_error(r, "mape-py calc: stdin line 1: ")
    assert b"\xff" not in r.stderr
    r = run_bytes("calc", "--config", "/nonexistent", "--json", b"ab\xffcd".decode("utf-8", "surrogateescape"))
    assert r.returncode == 2
    assert json.loads(r.stdout.decode("utf-8"))["input"] == "ab\ufffdcd"


@pytest.mark.parametrize("mtu", ["99999", "-5", "0", "1279", "1501"])
def test_mtu_outside_the_config_range_is_an_input_error(mtu):
    from mape.settings import Settings
    lower, upper = Settings.FIELDS["mtu"][2:]
    r = mape("calc", "--mtu", mtu, "240b:10:3f6c:d400::/56")
    assert r.returncode == 2 and r.stdout == ""
    assert one_line_error(r, "mape-py calc: --mtu must be between %d and %d" % (lower, upper))


@pytest.mark.parametrize("mtu", ["1280", "1500"])
def test_mtu_inside_the_range(mtu):
    r = mape("calc", "--mtu", mtu, "240b:10:3f6c:d400::/56")
    assert r.returncode == 0, r.stderr
    assert "\toption mtu '%s'\n" % mtu in r.stdout


def test_stanzas_quote_like_the_uci_batch():
    from mape.commands.calc import render_stanza
    from mape.core.plan import quote
    text = render_stanza("interface", "wan", [("proto", "map"), ("odd", "a'b")])
    assert text == "config interface 'wan'\n\toption proto 'map'\n\toption odd 'a'\\''b'\n"
    assert text == "config interface 'wan'\n\toption proto 'map'\n\toption odd %s\n" % quote("a'b")
    assert "'a'\\''b'" in text


def test_empty_stdin_is_an_input_error_like_an_empty_argument():
    for stdin in ("", "\n\n# only a comment\n"):
        r = mape("calc", "-", stdin=stdin)
        assert r.returncode == 2 and r.stdout == ""
        assert "empty input" in one_line_error(r, "mape-py calc: ")
    r = mape("calc", "--json", "-", stdin="")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 2 and "empty input" in doc["error"]


def test_json_does_not_echo_a_huge_input_back_whole():
    from mape.commands.calc import ECHO_MAX
    huge = "x" * 10_000_000
    r = mape("calc", "--json", "-", stdin=huge + "\n240b:10:3f6c:d400::/56\n")
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and len(r.stdout) < 4000
    doc = json.loads(lines[0])
    assert doc["exit_code"] == 2 and doc["input"].startswith("x" * ECHO_MAX)
    assert "10000000 characters" in doc["input"] and len(doc["input"]) < ECHO_MAX + 40
    assert json.loads(lines[1])["psid"] == 212


def test_no_arguments_usage_on_stderr_exit_2():
    r = mape()
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: mape-py") and "calc" in r.stderr
    r = mape("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: mape-py") and r.stderr == ""


def test_argparse_errors_are_one_line():
    r = mape("calc", "--mtu", "x", "240b:10:3f6c:d400::/56")
    assert r.returncode == 2
    assert "invalid int value" in one_line_error(r, "mape-py calc: ")
    r = mape("calc")
    assert r.returncode == 2
    one_line_error(r, "mape-py calc: ")


def test_rules_unknown_provider_is_an_error_listing_the_providers():
    r = mape("rules", "--provider", "bogus")
    assert r.returncode == 2 and r.stdout == ""
    line = one_line_error(r, "mape-py rules: unknown provider 'bogus'")
    for name in ("v6plus", "biglobe", "ocn_vc", "nuro"):
        assert name in line
    r = mape("rules", "--provider", "nuro")
    assert r.returncode == 0 and r.stdout and all(l.startswith("nuro ") for l in r.stdout.splitlines())


def test_rules_dash_reads_prefixes_from_stdin():
    r = mape("rules", "-", stdin="2400:4050:400:5600::/56\n# comment\n240b:10:3f6c:d400::/56\n")
    assert r.returncode == 0, r.stderr
    assert [l.split()[0] for l in r.stdout.splitlines()] == ["ocn_vc", "v6plus"]
    r = mape("rules", "-", stdin="2001:db8::/56\n240b:10:3f6c:d400::/56\n")
    assert r.returncode == 3 and r.stdout.startswith("v6plus ")
    assert "no MAP-E rule covers 2001:db8::/56" in one_line_error(r, "mape-py rules: ")
    r = mape("rules", "-", stdin="")
    assert r.returncode == 2 and "empty input" in one_line_error(r, "mape-py rules: ")
    r = mape("rules", "")
    assert r.returncode == 2 and r.stdout == ""
