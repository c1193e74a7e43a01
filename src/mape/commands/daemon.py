"""Run the mape-py service: watch wan6, recompute the MAP-E mapping when the prefix changes,
rewrite wan (proto map) through UCI as one transaction, publish the status
(/var/run/mape-py/status.json, `ubus call mape status`).

Normally started by procd (/etc/init.d/mape-py). Signals: HUP = re-read /etc/config/mape
and recompute now, USR1 = refresh port usage, TERM = exit.

wan6 を監視し、プレフィックスが変わったら MAP-E 設定を計算し直して UCI に書き込みます。
"""


def add_arguments(parser):
    parser.add_argument("--platform", choices=("openwrt", "linux", "auto"), default="auto",
                        help="what to drive (default: openwrt when /etc/openwrt_release exists)")
    parser.add_argument("--once", action="store_true", help="one pass (recover, observe, apply, report), then exit")
    parser.add_argument("--remove", action="store_true",
                        help="undo what mape-py set in network/firewall (values from the configs saved "
                             "before its first change; other edits stay), remove its NAT rules, exit")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE", help="settings (default: %(default)s)")
    parser.add_argument("--status-file", default="/var/run/mape-py/status.json", metavar="FILE")
    parser.add_argument("--root", default="/", help=argparse_suppress())
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.add_argument("--stderr", action="store_true", help="log to stderr instead of syslog")


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run(args):
    from mape import platform as platforms
    from mape.daemon import Daemon
    from mape.shell import instance
    from mape.shell import log as logmod
    from mape.shell.system import System

    log = logmod.setup(verbose=args.verbose, use_syslog=False if args.stderr else None)
    system = System(args.root)
    # held until exit; the package's prerm runs --remove right after `stop`, which procd
    # carries out asynchronously (term_timeout 15 s): wait for that daemon to go
    instance.acquire(system, wait=20 if args.remove else 0)
    name = platforms.detect(system) if args.platform == "auto" else args.platform
    platform = platforms.get(name, system)
    daemon = Daemon(platform, system, log, config_path=args.config, status_path=args.status_file)
    if args.remove:
        daemon.load_settings()
        restored = platform.remove(daemon.settings)
        print("restored: %s" % (", ".join(restored) if restored else "nothing (no saved originals or nothing to undo)"))
        return 0
    state = daemon.run(once=args.once)
    if args.once:
        return {"ok": 0, "disabled": 0, "waiting-for-wan6": 0, "unsupported-prefix": 3}.get(state, 1)
    return 0
