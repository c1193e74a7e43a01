"""Status documents (docs/status.md) for the LuCI tests: written into the bed's
/var/run/mape-py/status.json, where the real rpcd plugin serves them (tests/luci/luci_bed.py).
The mapping part is the real engine's Mapping.as_dict(), as the daemon publishes it."""
from mape.core.mapping import calc
from mape.core.rules import load_table

TABLE = load_table()
NOW = 1764130000
PREFIX = "240b:11:2233:4400::/56"
PREFIX_60 = "240b:11:2233:4410::/60"
UNSUPPORTED = "2001:db8:1234:5600::/56"

# Connections per port set (15 sets of 16 ports for v6plus): every set in use, one full.
USED = [3, 5, 2, 4, 16, 1, 3, 2, 6, 1, 2, 1, 4, 2, 3]


def mapping(prefix):
    return calc(prefix, TABLE).as_dict()


def _base(state, reason, prefix=PREFIX):
    return {
        "version": 1, "running": True, "pid": 1234, "state": state, "state_reason": reason,
        "updated": NOW,
        "wan6": {"interface": "wan6", "device": "eth1", "up": True, "source": "ipv6-prefix",
                 "prefix": prefix, "address": "240b:11:2233:4400:a00:27ff:fe12:3456/64"},
    }


def ok():
    m = mapping(PREFIX)
    st = _base("ok", "MAP-E up: %s, %d ports" % (m["ipv4"], m["port_count"]))
    st.update({
        "mapping": m,
        "firewall": {"backend": "iptables", "strategy": "rr", "health": "present", "detail": "one jump, 3 chains"},
        "tunnel": {"interface": "wan", "device": "map-wan", "up": True, "ipv4": m["ipv4"]},
        "warnings": [],
        "history": [
            {"time": NOW - 86400 * 3, "event": "started"},
            {"time": NOW - 86400 * 2, "event": "prefix-changed", "prefix": "240b:11:2233:4300::/56", "ipv4": "106.73.34.50"},
            {"time": NOW - 3600, "event": "prefix-changed", "prefix": PREFIX, "ipv4": m["ipv4"]},
            {"time": NOW - 3590, "event": "applied", "prefix": PREFIX, "ipv4": m["ipv4"]},
        ],
        "ports": {
            "capacity": m["port_count"], "used": sum(USED), "connections": sum(USED) + len(USED),
            "sets": [{"first": a, "last": b, "used": u, "connections": u + 1} for (a, b), u in zip(m["port_sets"], USED)],
            "top_hosts": [{"host": "192.168.1.23", "count": 20}, {"host": "192.168.1.40", "count": 12},
                          {"host": "192.168.1.7", "count": 9}, {"host": "fe80::1c2d:3eff:fe4f:5a6b", "count": 2}],
            "kept_out": [[5190, 5190], [62530, 62533]],
        },
    })
    return st


def leaking():
    """Working, but conntrack shows connections on ports outside the sets (offload on)."""
    st = ok()
    st["ports"]["outside_sets"] = 4
    st["warnings"] = [{"code": "offload-enabled", "message": "flow offloading is on (flow_offloading_hw)"}]
    return st


def crowded():
    """Working with a per-host cap of 60: one host at its cap, 200 of 240 ports in use."""
    st = ok()
    st["ports"].update({"used": 200, "pool": 235, "pool_percent": 85, "nearly_exhausted": True, "host_cap": 60,
                        "top_hosts": [{"host": "192.168.1.23", "count": 60, "at_cap": True},
                                      {"host": "192.168.1.40", "count": 12, "at_cap": False}]})
    st["warnings"] = [{"code": "ports-nearly-exhausted",
                       "message": "200 of the 235 ports NAT may use are taken (85 %): new connections will soon fail"}]
    return st


def daemon_doc(name):
    """A status document recorded from mape-py's daemon and rpcd plugin on the service tier's
    fake router (tests/service/show_status.py), stored in tests/luci/data/."""
    import json
    import os
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", name), encoding="utf-8") as f:
        return json.load(f)


def applying():
    m = mapping("240b:11:2233:4500::/56")
    st = _base("applying", "prefix changed: applying %s PSID %d" % (m["ipv4"], m["psid"]),
               prefix="240b:11:2233:4500::/56")
    st.update({
        "mapping": m,
        "firewall": {"backend": "iptables", "health": "present", "detail": "one jump, 3 chains"},
        "tunnel": {"interface": "wan", "device": "map-wan", "up": False},
        "history": ok()["history"] + [{"time": NOW - 5, "event": "prefix-changed",
                                       "prefix": "240b:11:2233:4500::/56", "ipv4": m["ipv4"]}],
    })
    return st


def unsupported():
    st = _base("unsupported-prefix", "no MAP-E rule covers %s" % UNSUPPORTED, prefix=UNSUPPORTED)
    st.update({
        "firewall": {"backend": "iptables", "health": "missing", "detail": "no mapping, no rules"},
        "warnings": [{"code": "unsupported-prefix", "message": "no MAP-E rule covers %s" % UNSUPPORTED}],
    })
    return st


def error():
    m = mapping(PREFIX_60)
    st = _base("error", "uci commit network failed", prefix=PREFIX_60)
    st.update({
        "mapping": m,
        "firewall": {"backend": "iptables", "health": "missing", "detail": "jump to mape_srcnat not found"},
        "tunnel": {"interface": "wan", "device": "map-wan", "up": False},
        "warnings": [{"code": "offload-enabled",
                      "message": "flow offloading is on (flow_offloading): offloaded packets can bypass the "
                                 "MAP-E NAT rules and leak un-translated"},
                     {"code": "gl-acceleration",
                      "message": "hardware NAT acceleration (mtkhnat) is on: packets can bypass the MAP-E NAT rules"},
                     {"code": "config-invalid",
                      "message": "/etc/config/mape: option 'mtu' must be between 1280 and 1500, not 9000"}],
        "last_error": {"time": NOW - 60, "message": "uci commit network failed: I/O error"},
        "ports": {"error": "conntrack: permission denied"},
        "history": [{"time": NOW - 70, "event": "prefix-changed", "prefix": PREFIX_60, "ipv4": m["ipv4"]},
                    {"time": NOW - 60, "event": "rolled-back", "prefix": PREFIX_60, "ipv4": m["ipv4"]}],
    })
    return st


def held():
    """Someone set network.wan.proto to pppoe and the MTU to 1454 (issue 11 point 19)."""
    st = ok()
    st.update(state="held", state_reason="changed by someone else: network.wan.proto is 'pppoe', mape-py wrote "
                                         "'map'; mape-py holds off")
    st["held"] = [{"option": "network.wan.mtu", "written": "1460", "now": "1454", "setting": "mtu"},
                  {"option": "network.wan.proto", "written": "map", "now": "pppoe"}]
    return st


# Two port forwards from the wan zone: one in the port sets, one the BR drops (issue 14 point 1).
REDIRECTS = ("\nconfig redirect 'game'\n\toption name 'Game'\n\toption src 'wan'\n\toption src_dport '5190'\n"
             "\toption dest 'lan'\n\toption dest_ip '192.168.1.20'\n\toption dest_port '3074'\n"
             "\nconfig redirect 'nas'\n\toption name 'NAS'\n\toption src 'wan'\n\toption proto 'tcp'\n"
             "\toption src_dport '8080'\n\toption dest 'lan'\n\toption dest_ip '192.168.1.30'\n")


def forwards():
    """ok() with the forwards of REDIRECTS as the daemon reports them (the real core.forwards)."""
    from mape.core import forwards as fw
    from mape.core.ucifile import parse

    st = ok()
    sets = [tuple(r) for r in st["mapping"]["port_sets"]]
    kept = [(62530, 62533)]
    entries = fw.assess(fw.redirects(parse(REDIRECTS), "wan"), sets, kept)
    st["forwards"] = entries
    st["port_use"] = fw.port_map(sets, entries, kept)
    st["ports"]["kept_out"] = [[5190, 5190], [62530, 62533]]
    st["warnings"] = [{"code": "forward-port-not-allowed", "message": "port forward NAS (tcp 8080): ..."}]
    return st


def upnp():
    """ok() with miniupnpd installed (issue 14 point 2): the top port of each set reserved, a
    lease in the first set's, as the daemon reports them (the real core.forwards / core.upnp)."""
    from mape.core import forwards as fw
    from mape.core import upnp as up

    st = ok()
    sets = [tuple(r) for r in st["mapping"]["port_sets"]]
    reserved = up.reserve(sets, 1)
    a = reserved[0][0]
    st["port_use"] = fw.port_map(sets, [], (), reserved)
    st["upnp"] = {"installed": True, "set": {"external_iface": "wan", "external_ip": st["mapping"]["ipv4"]},
                  "rules": ["%s %s %s %s" % r[:4] for r in up.rules(reserved)],
                  "reserved": [list(r) for r in reserved],
                  "leases": up.parse_leases("UDP:%d:192.168.1.50:3074:0:Xbox\n" % a, reserved)}
    return st


# name -> (document, running): "stopped" is the last document of a daemon that is gone (the
# real rpcd plugin marks it stopped and keeps the rest, ports included).
STATES = {"ok": (ok, True), "applying": (applying, True), "unsupported-prefix": (unsupported, True),
          "error": (error, True), "stopped": (ok, False), "held": (held, True)}
