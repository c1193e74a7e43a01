"""Resources the daemon holds (issue 11 point 20): the history stays bounded however often
the prefix changes, and the port-usage figures a LuCI poll asks for (SIGUSR1) re-read the
conntrack table at most every PORTS_MAX_AGE seconds."""
import json

from mape import daemon as daemon_mod
from test_fuzz_cycle import make

PD = {"up": True, "device": "eth1", "ipv6-prefix": [{"address": "240b:11:2233:4400::", "mask": 56}]}


def status_of(d):
    with open(d.system.path("/status.json")) as f:
        return json.load(f)


def test_history_is_bounded_in_memory_and_in_status(tmp_path):
    d, platform = make(tmp_path)
    for i in range(200):   # a flapping line: a new prefix on every event
        platform.status = dict(PD, **{"ipv6-prefix": [{"address": "240b:11:%x:4400::" % (0x2233 + i), "mask": 56}]})
        d.cycle("event")
    assert status_of(d)["state"] == "ok"
    assert len(d.history) == 100   # = HISTORY_CAP, the most option history can show
    assert d.history[-1]["prefix"] == "240b:11:%x:4400::/56" % (0x2233 + 199)
    assert len(status_of(d)["history"]) == d.settings.history == 10


class Counting:
    def __init__(self, lines):
        self.lines = lines
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return iter(self.lines)


def test_port_usage_is_read_at_most_every_max_age_on_sigusr1(tmp_path, monkeypatch):
    d, platform = make(tmp_path)
    platform.status = PD
    ct = ("ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.1.23 dst=1.2.3.4 sport=1 dport=443 "
          "src=1.2.3.4 dst=106.73.34.51 sport=443 dport=5190 [ASSURED] mark=0 use=2\n")
    platform.conntrack_lines = Counting([ct])
    now = [1000.0]
    monkeypatch.setattr(daemon_mod.time, "monotonic", lambda: now[0])
    d.cycle("event")
    assert platform.conntrack_lines.reads == 1 and d.ports["connections"] == 1
    platform.conntrack_lines.lines = [ct, ct.replace("dport=5190 [", "dport=5191 [")]
    for _ in range(3):        # LuCI polls every 5 s: the second one is within the window
        now[0] += 4
        d.refresh_ports(max_age=daemon_mod.PORTS_MAX_AGE)
    assert platform.conntrack_lines.reads == 2       # at t+4 (no: fresh), t+8 (no), t+12 (yes)
    assert d.ports["connections"] == 2 and d.ports["used"] == 2
    d.cycle("event")                                  # a cycle always refreshes
    assert platform.conntrack_lines.reads == 3
