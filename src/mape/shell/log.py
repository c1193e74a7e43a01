"""Logging for the daemon: syslog datagrams to /dev/log (facility daemon, tag mape-py[pid])
when it exists, stderr otherwise (procd captures stderr into syslog as well).

Deliberately not the `logging` package: it and logging.handlers cost ~1.7 MB of resident
memory on CPython 3.11 for four log levels we can write in a few lines."""
import os
import sys

LEVELS = {"debug": 7, "info": 6, "warning": 4, "error": 3}
FACILITY_DAEMON = 3


class Log:
    def __init__(self, verbose=False, use_syslog=None, stream=None, path="/dev/log"):
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.sock = None
        if use_syslog is None:
            use_syslog = os.path.exists(path) and os.environ.get("MAPE_PY_LOG") != "stderr"
        if use_syslog:
            try:
                import socket

                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sock.connect(path)
            except OSError:
                self.sock = None

    def _emit(self, level, msg, args):
        if level == "debug" and not self.verbose:
            return
        try:
            text = msg % args if args else msg
        except (TypeError, ValueError):
            text = "%s %r" % (msg, args)
        text = " ".join(str(text).split("\n"))
        if self.sock is not None:
            data = "<%d>mape-py[%d]: %s" % (FACILITY_DAEMON * 8 + LEVELS[level], os.getpid(), text)
            try:
                self.sock.send(data.encode("utf-8", "replace")[:4000])
                return
            except OSError:
                pass
        try:
            self.stream.write("mape-py: %s: %s\n" % (level.upper(), text))
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def debug(self, msg, *args):
        self._emit("debug", msg, args)

    def info(self, msg, *args):
        self._emit("info", msg, args)

    def warning(self, msg, *args):
        self._emit("warning", msg, args)

    def error(self, msg, *args):
        self._emit("error", msg, args)


_log = None


def setup(verbose=False, use_syslog=None, stream=None):
    global _log
    if _log is None:
        _log = Log(verbose, use_syslog, stream)
    return _log


def get():
    return setup()
