"""Is MAP-E really working? The verdict from what netifd and the firewall report (pure).

The status says "ok" only when netifd has the map interface up, without errors, with the
mapping's IPv4, and the port-set NAT rules are in place: a written config is not a
working line."""


def problems(health, expected_ipv4, nat_wanted=True):
    """Short English reasons why MAP-E is not working ([] when it is). ``health`` is
    Platform.health()'s {"tunnel": {...}, "firewall": {...}}."""
    out = []
    tunnel = health.get("tunnel") if isinstance(health, dict) else None
    if isinstance(tunnel, dict):
        name = tunnel.get("interface") or "wan"
        errors = tunnel.get("errors") or []
        if tunnel.get("up") is not True:
            out.append("%s is not up%s" % (name, " (netifd: %s)" % ", ".join(errors) if errors else ""))
        elif errors:
            out.append("netifd reports %s on %s" % (", ".join(errors), name))
        elif expected_ipv4 and tunnel.get("ipv4") not in (None, expected_ipv4):
            out.append("%s has %s, not %s" % (name, tunnel.get("ipv4"), expected_ipv4))
        elif expected_ipv4 and tunnel.get("ipv4") is None:
            out.append("%s has no IPv4 address" % name)
    firewall = health.get("firewall") if isinstance(health, dict) else None
    if nat_wanted:
        if not isinstance(firewall, dict):
            out.append("port-set NAT rules: state unknown")
        elif firewall.get("backend") == "off":
            pass
        elif firewall.get("health") != "present":
            detail = firewall.get("detail")
            out.append("port-set NAT rules %s%s" % (firewall.get("health") or "unknown",
                                                    ": %s" % detail if detail else ""))
    return out
