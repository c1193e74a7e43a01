"""`mape-py firewall` as a user runs it by hand: it keeps the same ports out of NAT as the
daemon (port forwards and the miniupnpd reserve, core.upnp.kept_out), so its `check` does
not call the daemon's ruleset stale on a router with miniupnpd."""
import os
import pathlib
import subprocess
import sys

from mape.core import upnp
from mape.core.portset import port_sets

TOP = pathlib.Path(__file__).resolve().parents[2]
PARAMS = ["--ipv4", "192.0.2.10", "--psid", "52", "--psid-offset", "4", "--psid-len", "8"]


def render(tmp_path, *extra):
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    return subprocess.run([sys.executable, "-m", "mape", "firewall", "render", "--backend", "nftables",
                           "--config", str(tmp_path / "none"), *PARAMS, *extra],
                          capture_output=True, text=True, env=env, timeout=60)


def test_render_keeps_the_forwards_and_the_upnp_reserve_out_of_nat(tmp_path):
    sets = port_sets(52, 4, 8)
    forwarded = sets[-1][1]                  # on the top port of the last set: the reserve skips it
    config = tmp_path / "firewall"
    config.write_text("config redirect\n\toption src 'wan'\n\toption src_dport '%d'\n"
                      "\toption dest_ip '192.168.1.20'\n" % forwarded)
    got = render(tmp_path, "--forwards", str(config), "--upnp-ports", "2")
    assert got.returncode == 0, got.stderr
    reserved = upnp.reserve(sets, 2, [(forwarded, forwarded)])
    assert (forwarded - 1, forwarded - 2) == (reserved[-1][1], reserved[-1][0]) and len(reserved) == 15
    keep = ["--keep-out", "%d" % forwarded] + sum((["--keep-out", "%d-%d" % r] for r in reserved), [])
    same = render(tmp_path, "--forwards", "none", "--upnp-ports", "0", *keep)
    assert same.returncode == 0 and same.stdout == got.stdout
    without = render(tmp_path, "--forwards", str(config), "--upnp-ports", "0")
    assert without.returncode == 0 and without.stdout != got.stdout


def test_a_bad_upnp_ports_is_one_line(tmp_path):
    got = render(tmp_path, "--upnp-ports", "99")
    assert got.returncode != 0 and got.stdout == ""
    assert got.stderr.count("\n") == 1 and "--upnp-ports must be between 0 and 64" in got.stderr
