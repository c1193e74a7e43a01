"""Logging: syslog (daemon facility, ident mape-py) when /dev/log exists, stderr otherwise
(procd captures stderr into syslog too)."""
import logging
import logging.handlers
import os
import sys

_configured = False


def setup(verbose=False, use_syslog=None, stream=None):
    global _configured
    logger = logging.getLogger("mape-py")
    if _configured:
        return logger
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    if use_syslog is None:
        use_syslog = os.path.exists("/dev/log") and os.environ.get("MAPE_PY_LOG") != "stderr"
    handler = None
    if use_syslog:
        try:
            handler = logging.handlers.SysLogHandler(address="/dev/log",
                                                     facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            handler.setFormatter(logging.Formatter("mape-py[%d]: %%(message)s" % os.getpid()))
        except OSError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("mape-py: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    _configured = True
    return logger


def get():
    return logging.getLogger("mape-py")
