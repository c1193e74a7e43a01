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
    r = mape("calc", "2404:7a82:4d02:4100::/56", "--device", "eth1")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "BIGLOBE IPv6 option" in out and "BIGLOBE IPv6オプション" in out
    assert "133.209.13.2" in out and "psid      65" in out
    assert "5136-5151" in out and "62480-62495" in out
    assert "2404:7a82:4d02:4100:85:d10d:200:4100" in out and "2001:260:700:1::1:275" in out
    assert "config interface 'wan'\n\toption proto 'map'\n\toption maptype 'map-e'\n" \
           "\toption peeraddr '2001:260:700:1::1:275'\n\toption ipaddr '133.209.12.0'\n" \
           "\toption ip4prefixlen '22'\n\toption ip6prefix '2404:7a82:4c00::'\n\toption ip6prefixlen '38'\n" \
           "\toption ealen '18'\n\toption psidlen '8'\n\toption offset '4'\n\toption legacymap '1'\n" \
           "\toption mtu '1460'\n" in out
    assert "config interface 'wan6pd'\n\toption proto 'static'\n\toption device 'eth1'\n" \
           "\tlist ip6addr '2404:7a82:4d02:4100::1001'\n\toption ip6gw '2404:7a82:4d02:4100::1'\n" \
           "\toption ip6prefix '2404:7a82:4d02:4100::/56'\n\toption defaultroute '0'\n" in out


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
