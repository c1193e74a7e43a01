"""mape.argv.Parser gives the same namespace as argparse for every command line it accepts,
and hands everything else to argparse."""
import argparse

import pytest
from hypothesis import given, settings, strategies as st

from mape.argv import Parser


def declare(p):
    p.add_argument("prefixes", nargs="+", metavar="PREFIX")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", default="/etc/config/mape")
    p.add_argument("--mtu", type=int, default=None)
    p.add_argument("--backend", choices=["iptables", "nftables"], default="iptables")
    return p


TOKENS = ["--json", "--config", "/tmp/x", "--mtu", "1460", "--mtu=1280", "--mtu", "x", "--backend", "nftables",
          "--backend=bogus", "-", "240b:10::/56", "--", "--js", "-h", "2404::", "--config=/y"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_same_result_as_argparse(argv):
    real = declare(argparse.ArgumentParser(prog="t", add_help=True, exit_on_error=False))
    try:
        expected = vars(real.parse_args(argv))
    except (SystemExit, argparse.ArgumentError):
        expected = "error"
    ours = declare(Parser(prog="t"))
    try:
        got = vars(ours.parse_args(argv))
    except SystemExit:
        got = "error"
    assert got == expected


def test_fast_path_does_not_import_argparse():
    import subprocess
    import sys
    code = ("import sys; from mape.argv import Parser; p = Parser('t'); p.add_argument('x', nargs='+');"
            "p.add_argument('--json', action='store_true'); print(vars(p.parse_args(['a', '--json'])));"
            "print('argparse' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": "src"}).stdout
    assert out == "{'json': True, 'x': ['a']}\nFalse\n"


def test_groups_turn_it_into_argparse():
    p = Parser(prog="t")
    p.add_argument("--a")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--x", action="store_true")
    g.add_argument("--y", action="store_true")
    assert vars(p.parse_args(["--x", "--a", "1"])) == {"a": "1", "x": True, "y": False}
    with pytest.raises(SystemExit):
        p.parse_args(["--x", "--y"])
