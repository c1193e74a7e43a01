"""Router checks shared by the daemon's status warnings and `mape-py doctor`: features that
make packets bypass the port-set NAT, and fw3 iptables extensions the NAT rules need.
They read files through a System (mape.shell.system) and take parsed UCI sections."""


def _defaults(firewall):
    for s in firewall:
        if s.type == "defaults":
            return s
    return None


def offload_warnings(firewall, system):
    """Status warnings: acceleration lets packets bypass the port-set NAT (they leak)."""
    out = []
    d = _defaults(firewall)
    if d is not None:
        on = [k for k in ("flow_offloading", "flow_offloading_hw") if str(d.get(k, "0")) == "1"]
        if on:
            out.append({"code": "offload-enabled",
                        "message": "flow offloading is on (%s): offloaded packets can bypass the MAP-E "
                                   "NAT rules and leak un-translated" % ", ".join(on)})
    toggle = system.read("/sys/kernel/debug/hnat/hook_toggle", limit=256)
    if toggle is not None and ("1" == toggle.strip() or "enable" in toggle.lower()):
        out.append({"code": "gl-acceleration",
                    "message": "hardware NAT acceleration (mtkhnat) is on: packets can bypass the MAP-E "
                               "NAT rules and leak un-translated (GL.iNet: turn off Network Acceleration)"})
    return out


# iptables extensions the fw3 ruleset uses beyond base iptables, with the OpenWrt package
# that ships each (libxt_*.so under /usr/lib/iptables; the kernel side comes with it).
IPTABLES_MATCHES = {"rr": [("statistic", "iptables-mod-ipopt")],
                    "hash": [("u32", "iptables-mod-u32")]}
# option nat_host_cap: `-m connlimit` (xt_connlimit comes with it; `map` depends on it today,
# checked all the same: a router without it refuses the whole ruleset)
HOST_CAP_MATCH = ("connlimit", "iptables-mod-conntrack-extra")


def iptables_extensions(system, settings):
    """Missing iptables match extensions for the configured strategy on a fw3 router: an
    `all` package cannot depend on fw3-only packages, so we check instead."""
    nat = settings.nat
    if not isinstance(nat, dict):
        from mape.core.errors import MapeError
        from mape.core.nat import parse_nat_options

        try:
            nat = parse_nat_options(settings.nat_options)
        except MapeError:
            nat = {}  # reported by the config check
    backend = nat.get("backend", "auto")
    if backend in ("off", "nftables") or (backend == "auto" and system.exists("/sbin/fw4")):
        return None
    needed = list(IPTABLES_MATCHES.get(nat.get("strategy", "rr"), []))
    if nat.get("host_cap"):
        needed.append(HOST_CAP_MATCH)
    missing = []
    for match, package in needed:
        if not any(system.exists("%s/libxt_%s.so" % (d, match)) for d in ("/usr/lib/iptables", "/usr/lib/xtables")):
            missing.append((match, package))
    return missing
