"""`mape-py` command line. Each subcommand lives in mape.commands.<name> and is imported
only when it runs, so `mape-py calc` starts nearly as fast as a bare python3."""
import sys

from mape import __version__

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> exit code.
COMMANDS = {
    "calc": ("mape.commands.calc", "compute the MAP-E mapping for IPv6 prefixes (line gave it)"),
    "firewall": ("mape.commands.firewall", "render, apply, remove or check the port-set NAT rules"),
    "rules": ("mape.commands.rules", "list the MAP rule table or look up a prefix's rule"),
    "daemon": ("mape.commands.daemon", "run the service: watch wan6, rewrite wan (proto map), publish status"),
    "status": ("mape.commands.status", "show the service status (as `ubus call mape status`)"),
    "doctor": ("mape.commands.doctor", "check for the manual procedure's pitfalls and say how to fix each"),
    "held": ("mape.commands.held", "a manual edit mape-py holds off for: show, adopt, give-up or reapply"),
    "forward": ("mape.commands.forward", "port forwards against the port sets; move one to a free allowed port"),
}

USAGE = """usage: mape-py [--version] COMMAND [ARGS...]

MAP-E (IPv4 over IPv6) for OpenWrt on FLET'S IPoE: JPNE v6plus, BIGLOBE IPv6 option,
OCN Virtual Connect, NURO. FLET'S IPoE で IPv4 を使うための MAP-E ツール。

commands:
%s

`mape-py COMMAND --help` explains each command.
Exit codes: 0 ok, 1 error, 2 bad input, 3 unsupported prefix.
"""


def usage():
    width = max(len(name) for name in COMMANDS)
    return USAGE % "\n".join("  %-*s  %s" % (width, name, help_) for name, (_, help_) in COMMANDS.items())


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(usage())  # a mistake, like any usage error: stderr, exit 2
        return 2
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if argv[0] == "--version":
        print("mape-py %s" % __version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        sys.stderr.write("mape-py: unknown command %r (try: %s)\n" % (name, ", ".join(COMMANDS)))
        return 2
    from mape.argv import Parser

    module = __import__(COMMANDS[name][0], fromlist=["run"])  # importlib itself costs a millisecond
    parser = Parser(prog="mape-py " + name, description=module.__doc__)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from mape.core.errors import MapeError

    try:
        return module.run(args)
    except MapeError as e:
        sys.stderr.write("mape-py %s: %s\n" % (name, e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        sys.stderr.write("mape-py %s: %s\n" % (name, e))
        return 1
