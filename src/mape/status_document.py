"""The status document (docs/status.md): what the daemon knows, as the JSON that
/var/run/mape-py/status.json, `ubus call mape status`, LuCI and `mape-py status` read.
document() builds it from the daemon's state; Writer writes it only when something other
than the time changed."""
import os

from mape.shell import statusfile


def document(daemon, running=True):
    d = daemon
    s = d.settings
    doc = {"version": 1, "running": running, "pid": os.getpid(), "state": d.state,
           "state_reason": d.state_reason, "updated": int(d.clock())}
    if getattr(d, "once", False):
        doc["running"] = False
        doc.pop("pid")
    elif not running:
        doc["state"] = "stopped"
        doc["state_reason"] = "mape-py daemon stopped"
    if d.state == "held":
        doc["held"] = d.held
    if d.observation is not None:
        doc["wan6"] = d.observation.as_dict()
    if d.target is not None:
        doc["mapping"] = d.target.mapping.as_dict()
        doc["uci"] = d.target.uci.as_status()
    elif d.mapping_error:
        doc["mapping_error"] = d.mapping_error
    if d.health.get("firewall") and d.target is not None:
        doc["firewall"] = d.health["firewall"]
    if d.health.get("tunnel") and d.target is not None:
        doc["tunnel"] = d.health["tunnel"]
    warnings = []
    if d.target is not None:
        warnings.extend(d.target.mapping.as_dict()["warnings"])
        if s.mtu > 1460:
            warnings.append({"code": "mtu-high", "message": "tunnel MTU %d is above 1460: JP MAP-E lines "
                                                          "carry 1460 (1500 - 40 bytes IPv6)" % s.mtu})
    ports = d.ports if isinstance(d.ports, dict) and d.target is not None else {}
    if ports.get("nearly_exhausted"):
        warnings.append({"code": "ports-nearly-exhausted", "message": "%d of the %d ports NAT may use are taken "
                         "(%d %%): new connections will soon fail%s" % (
                             ports["used"], ports["pool"], ports["pool_percent"],
                             "" if ports.get("host_cap") else "; option nat_host_cap limits what one LAN host "
                             "may take")})
    warnings.extend(d.sys_warnings)
    if d.settings_problem:
        warnings.append({"code": "config-invalid", "message": "%s (the last good settings stay in use)"
                         % d.settings_problem})
    for p in d.input_problems:
        warnings.append({"code": "input-malformed", "message": p})
    upnp = dict(d.upnp) if isinstance(d.upnp, dict) and d.target is not None else None
    forwards = forwards_document(d.platform.nat.forwards, d.target.mapping, s,
                                 (upnp or {}).get("reserved", ())) if d.target is not None else None
    if (forwards or {}).pop("every_port_forwarded", False):
        warnings.append({"code": "every-port-forwarded", "message": "the port forwards hold every allowed port: "
                         "none is kept out of outgoing NAT (outgoing connections would have no port left)"})
    for f in (forwards or {}).get("forwards", []):
        if f.get("allowed") in ("no", "partly") and f["enabled"]:
            warnings.append(forward_warning(f))
    if upnp is not None:
        warnings.extend(upnp.pop("warnings", []))
        stale = [x for x in upnp.get("leases", []) if not x["reserved"]]
        if stale:
            warnings.append({"code": "upnp-lease-unreachable", "message": "%d UPnP/NAT-PMP/PCP lease(s) hold ports "
                             "outside the reserved MAP-E ports (e.g. %s %d): they never reach this router" % (
                                 len(stale), stale[0]["proto"], stale[0]["port"])})
    if warnings:
        doc["warnings"] = warnings
    k = s.history if s else 10
    if d.history:
        doc["history"] = d.history[-k:]
    if d.last_error:
        doc["last_error"] = d.last_error
    if d.retry is not None and not getattr(d, "once", False):
        doc["retry"] = {k: d.retry[k] for k in ("what", "attempts", "next_retry")}
    if d.ports is not None and d.target is not None:
        doc["ports"] = d.ports
    if forwards is not None:
        doc.update(forwards)
    if upnp is not None:
        doc["upnp"] = upnp
    doc["settings"] = s.as_dict() if s else {}
    doc["backend"] = {"platform": d.platform.name,
                      "ubus": getattr(getattr(d.platform, "ubus", None), "backend", None)}
    return doc


def forwards_document(forwards, mapping, settings, upnp_reserved=()):
    """{"forwards": [...], "port_use": [...]} (docs/status.md): each port forward against the
    port sets, and the allowed ports per set with what uses them (forwards, nat_keep_out,
    the ports reserved for miniupnpd)."""
    from mape.core import forwards as fw

    nat = settings.nat if settings is not None and isinstance(settings.nat, dict) else {}
    user = [tuple(r) for r in nat.get("kept_out") or []]
    entries = fw.assess(forwards, mapping.port_sets, user)
    out = {"forwards": entries, "port_use": fw.port_map(mapping.port_sets, entries, user, upnp_reserved)}
    if fw.every_port_forwarded(forwards, mapping.port_sets, user):
        out["every_port_forwarded"] = True
    return out


def forward_warning(f):
    from mape.core.forwards import text_ports

    what = "port forward %s (%s %s)" % (f["name"] or f["section"], "/".join(f["proto"]), f["src_dport"])
    if f["allowed"] == "partly":
        message = "%s: only part of its ports lie in the allowed port sets; the others never arrive" % what
    else:
        message = "%s: the port is outside the allowed port sets, the BR drops it: it never arrives" % what
    if f.get("suggestion"):
        message += "; nearest free allowed: %s" % text_ports(f["suggestion"])
    return {"code": "forward-port-not-allowed", "message": message}


class Writer:
    """Writes the document atomically, skipping a write when only `updated` changed."""

    def __init__(self, system, path, log):
        self.system = system
        self.path = path
        self.log = log
        self.last_written = None

    def forget(self):
        """The next write() happens even when nothing changed."""
        self.last_written = None

    def write(self, doc):
        compare = dict(doc)
        compare.pop("updated", None)
        if compare == self.last_written:
            return
        try:
            statusfile.write(self.system, doc, self.path)
            self.last_written = compare
        except (OSError, ValueError) as e:   # ValueError: text JSON cannot carry
            self.log.error("cannot write %s: %s", self.path, e)
