"""`make demo`'s report, from recorded scenario results (no VM): every time with one
decimal, and the KVM opt-in named."""
import io
import re
import sys
import pathlib
from contextlib import redirect_stdout

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))

from tools import demo, vm  # noqa: E402

STATUS = {"state": "ok", "state_reason": "MAP-E applied: 106.72.18.52, 240 ports", "ipv4": "106.72.18.52",
          "psid": 86, "port_count": 240, "ce": "240b:10:1234:5600:6a:4812:3456:5600", "br": "2404:9200:225:100::64",
          "wan6": {"prefix": "240b:10:1234:5600::/64"}, "tunnel": {"up": True}, "firewall": {"health": "present"}}
BR = {"outer_ok": 120, "down_ok": 118}
A = {"name": "a", "ok": True, "status": STATUS, "fetch": {"ip": "106.72.18.52", "port": 5200},
     "seconds_to_ipv4": 14, "br": BR}
C = {"name": "c", "ok": True, "recovery_seconds": 6.4, "recovery_breakdown": {"noticed_after": 3, "applied_after": 6.53},
     "expect_before": {"ipv4": "106.72.18.52"}, "expect_after": {"ipv4": "106.72.171.239"}, "status": STATUS,
     "fetch_after": {"ip": "106.72.171.239"}, "old_gone": {"old_ce_on_wan": False, "new_ipv4_in_nat": True},
     "br_after": BR}


def report(monkeypatch, env_kvm=None):
    monkeypatch.setattr(vm, "preflight", lambda: (("/boot/vmlinuz-6.1.0-1-amd64", "6.1.0-1-amd64"), "qemu"))
    monkeypatch.setattr(vm, "run_scenarios", lambda *a, **kw: ({"a": A, "c": C}, "", 120.0, 0))
    if env_kvm is None:
        monkeypatch.delenv("MAPE_VM_KVM", raising=False)
    else:
        monkeypatch.setenv("MAPE_VM_KVM", env_kvm)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = demo.main()
    assert rc == 0
    return buf.getvalue()


def test_times_have_one_decimal(monkeypatch):
    text = report(monkeypatch)
    assert "IPv4 back after: 6.4 s" in text
    assert "noticed after 3.0 s, applied and verified after 6.5 s" in text
    assert "14.0 s after the daemon started" in text
    assert "~" not in text
    times = re.findall(r"(\d+(?:\.\d+)?) s\b", text)
    assert times and all(re.fullmatch(r"\d+\.\d", t) for t in times), times


def test_kvm_opt_in_is_named(monkeypatch):
    assert "MAPE_VM_KVM=1" in report(monkeypatch)
