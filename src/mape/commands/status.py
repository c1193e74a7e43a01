"""Show the mape-py service status (what `ubus call mape status` returns).

Reads /var/run/mape-py/status.json; says "stopped" when the daemon is not running.
With --json: the status document itself (docs/status.md).
"""
import json
import os
import sys


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print the status document")
    parser.add_argument("--status-file", default="/var/run/mape-py/status.json", metavar="FILE")
    parser.add_argument("--pid-file", default="/var/run/mape-py/mape-py.pid", metavar="FILE")


def running(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def load(status_file, pid_file):
    doc = None
    try:
        with open(status_file, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        doc = {"version": 1}
    if not running(pid_file):
        doc["running"] = False
        doc["state"] = "stopped"
        doc.setdefault("state_reason", "mape-py daemon is not running")
    doc.setdefault("version", 1)
    doc.setdefault("running", False)
    doc.setdefault("state", "stopped")
    return doc


def human(doc):
    out = ["state     %s%s" % (doc.get("state"), " - " + doc["state_reason"] if doc.get("state_reason") else "")]
    w = doc.get("wan6") or {}
    if w:
        out.append("wan6      %s %s%s" % (w.get("interface", "?"), "up" if w.get("up") else "down",
                                          "  %s (from %s)" % (w["prefix"], w.get("source")) if w.get("prefix") else ""))
    m = doc.get("mapping") or {}
    if m:
        out.append("provider  %s / %s" % (m.get("provider_name"), m.get("provider_name_ja")))
        out.append("ipv4      %s  psid %s  %s ports" % (m.get("ipv4"), m.get("psid"), m.get("port_count")))
        out.append("ce        %s" % m.get("ce"))
        out.append("br        %s" % m.get("br"))
    t = doc.get("tunnel") or {}
    if t:
        out.append("tunnel    %s %s %s" % (t.get("device", t.get("interface")), "up" if t.get("up") else "down",
                                           t.get("ipv4", "")))
    f = doc.get("firewall") or {}
    if f:
        out.append("firewall  %s %s %s" % (f.get("backend", ""), f.get("health", ""), f.get("detail", "")))
    p = doc.get("ports") or {}
    if p.get("capacity"):
        out.append("ports     %s of %s in use (%s connections)" % (p.get("used"), p.get("capacity"), p.get("connections")))
    for x in doc.get("warnings") or []:
        out.append("warning   [%s] %s" % (x.get("code"), x.get("message")))
    e = doc.get("last_error")
    if e:
        out.append("error     %s" % e.get("message"))
    for h in (doc.get("history") or [])[-5:]:
        out.append("history   %s %s %s %s" % (h.get("time"), h.get("event"), h.get("prefix", ""), h.get("ipv4", "")))
    return "\n".join(out) + "\n"


def run(args):
    doc = load(args.status_file, args.pid_file)
    if args.json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    else:
        sys.stdout.write(human(doc))
    return 0 if doc.get("state") in ("ok", "disabled") else 1
