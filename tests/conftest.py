"""Suite-wide: a run in which anything was skipped fails, unless skips were asked for
(MAPE_ALLOW_SKIP=1, see tests/prereq.py). `make test` and CI must show 0 skipped."""
import pytest

from tests.prereq import ALLOW_SKIP, skips_allowed

_skipped = []


def pytest_report_header(config):
    return "skips: %s" % ("allowed (%s=1)" % ALLOW_SKIP if skips_allowed()
                          else "not allowed: any skip fails the run (%s=1 allows them)" % ALLOW_SKIP)


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_collectreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and not skips_allowed() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _skipped and not skips_allowed():
        terminalreporter.write_sep("=", "%d skipped: the run FAILS (a missing prerequisite must not pass as "
                                   "green; %s=1 allows skips)" % (len(_skipped), ALLOW_SKIP), red=True, bold=True)
        for nodeid in _skipped[:20]:
            terminalreporter.write_line("skipped: %s" % nodeid)
