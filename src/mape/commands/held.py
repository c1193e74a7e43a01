"""What to do about a manual edit mape-py holds off for (state "held").

  mape-py held            show the options someone else changed
  mape-py held adopt      make the values mape settings (network.wan.mtu -> option mtu)
  mape-py held give-up    stop managing MAP-E (option enabled '0')
  mape-py held reapply    write mape-py's values again (overwrites the manual edit)

Each action changes /etc/config/mape (or drops mape-py's record of what it wrote) and
tells the daemon to recompute. With --json: one JSON object {"ok", "message"|"error"}.

手動で変更された設定の扱い: adopt (設定として取り込む) / give-up (管理をやめる) / reapply (上書き)。
"""
import json
import os
import signal
import sys

from mape.core.errors import MapeError

STATE_DIR = "/etc/mape-py"


def add_arguments(parser):
    parser.add_argument("action", nargs="?", choices=("show", "adopt", "give-up", "reapply"), default="show")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for rpcd/LuCI)")
    parser.add_argument("--status-file", default="/var/run/mape-py/status.json", metavar="FILE")
    parser.add_argument("--root", default="/", help=suppress())


def suppress():
    import argparse
    return argparse.SUPPRESS


class Refused(MapeError):
    pass


def _held(system, status_file):
    from mape.shell import statusfile

    doc, _ = statusfile.read(system, status_file)
    doc = doc if isinstance(doc, dict) else {}
    if doc.get("state") != "held" or not isinstance(doc.get("held"), list) or not doc["held"]:
        raise Refused("nothing is held (state %s)" % (doc.get("state") or "unknown"))
    return doc["held"]


def _set_mape(system, values):
    """uci set mape.@mape[0].<k>=<v> for each, then commit (the same `uci batch` the daemon uses)."""
    from mape.core.plan import quote

    system.run(["uci", "batch"], input="".join("set mape.@mape[0].%s=%s\n" % (k, quote(v)) for k, v in values),
               timeout=30)
    system.run(["uci", "commit", "mape"], timeout=30)


def _kick(system):
    """SIGHUP to the daemon holding the instance lock (its PID is in the lock file)."""
    import fcntl

    from mape.shell import instance

    path = system.path(instance.LOCK_PATH)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False          # nobody holds it: no daemon
        except OSError:
            pass
        pid = os.read(fd, 32).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), signal.SIGHUP)
        return True
    except OSError:
        return False


def adopt(system, held):
    from mape.settings import Settings, _convert

    settable = [h for h in held if h.get("setting")]
    other = [h["option"] for h in held if not h.get("setting")]
    if other:
        raise Refused("%s cannot become a mape setting: give up managing (mape-py held give-up) or "
                      "overwrite (mape-py held reapply)" % ", ".join(other))
    for h in settable:
        if h.get("now") is None:
            raise Refused("%s is unset: nothing to adopt" % h["option"])
        _, kind, lower, upper = Settings.FIELDS[h["setting"]]
        _convert(h["setting"], h["now"], kind, lower, upper)   # InputError when out of range
    _set_mape(system, [(h["setting"], h["now"]) for h in settable])
    return "adopted: %s" % ", ".join("%s '%s'" % (h["setting"], h["now"]) for h in settable)


def give_up(system, held):
    _set_mape(system, [("enabled", "0")])
    return "mape-py no longer manages MAP-E (option enabled '0'); the manual edits stay"


def reapply(system, held):
    system.remove(STATE_DIR + "/written")
    return "mape-py writes its values again over %s" % ", ".join(h["option"] for h in held)


ACTIONS = {"adopt": adopt, "give-up": give_up, "reapply": reapply}


def run(args):
    from mape.shell.system import System

    system = System(args.root)
    try:
        held = _held(system, args.status_file)
        if args.action == "show":
            message = "\n".join("%s: now %s, mape-py wrote %s%s" % (
                h["option"], json.dumps(h.get("now")), json.dumps(h.get("written")),
                " (adoptable as option %s)" % h["setting"] if h.get("setting") else "") for h in held)
        else:
            message = ACTIONS[args.action](system, held)
            if not _kick(system):
                message += " (the daemon is not running: it applies this when it starts)"
    except MapeError as e:
        if not args.json:
            raise
        sys.stdout.write(json.dumps({"ok": False, "error": str(e)}) + "\n")
        return 1
    if args.json:
        out = {"ok": True, "message": message}
        if args.action == "show":
            out["held"] = held
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        sys.stdout.write(message + "\n")
    return 0
