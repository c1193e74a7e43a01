"""The python3-ubus path of mape.shell.ubus with a stand-in module (the real binding is
compiled for OpenWrt only): calls go through it, each with a timeout; a binding that never
worked falls back to the CLI; a connection that went stale (ubusd restarted) reconnects."""
import sys
import types

from mape.shell.system import System
from mape.shell.ubus import Ubus


class FakeBinding(types.ModuleType):
    def __init__(self, fail_connect=False, missing=False):
        types.ModuleType.__init__(self, "ubus")
        self.calls = []
        self.fail_connect = fail_connect
        self.missing = missing
        self.stale = False       # ubusd restarted: this connection finds nothing any more
        self.hang = False        # ubusd does not answer: the call returns after its timeout
        self.timeouts = []

    def connect(self, *args):
        self.calls.append(("connect",) + args)
        if self.fail_connect:
            raise RuntimeError("Failed to connect to ubus")
        self.stale = False

    def disconnect(self, *args):
        self.calls.append(("disconnect",))

    def call(self, obj, method, args, timeout=0):
        # like the real binding: timeout in ms, 0 = wait forever
        self.calls.append(("call", obj, method, args))
        self.timeouts.append(timeout)
        if self.hang:
            assert timeout > 0, "a call without a timeout would block forever"
            raise RuntimeError("Failed to invoke: Request timed out")
        if self.missing or self.stale:
            raise RuntimeError("Object not found")
        return [{"up": True, "interface": obj}]


def make(monkeypatch, binding):
    monkeypatch.setitem(sys.modules, "ubus", binding)
    return Ubus(System("/"), program="/nonexistent/ubus", use_binding=True)


def test_calls_through_the_binding(monkeypatch):
    b = FakeBinding()
    u = make(monkeypatch, b)
    assert u.backend == "python3-ubus"
    assert u.call("network.interface.wan6", "status") == ({"up": True, "interface": "network.interface.wan6"}, None)
    assert u.call("network.interface.wan", "status")[0]["up"] is True
    assert b.calls[0] == ("connect",) and b.calls.count(("connect",)) == 1


def test_missing_object_is_none(monkeypatch):
    u = make(monkeypatch, FakeBinding(missing=True))
    assert u.call("network.interface.wan6", "status") == (None, None)
    assert u.backend == "python3-ubus"


def test_broken_binding_falls_back_to_the_cli(monkeypatch):
    u = make(monkeypatch, FakeBinding(fail_connect=True))
    status, problem = u.call("network.interface.wan6", "status")
    assert status is None and "not found" in problem
    assert u.backend == "ubus-cli"


def test_every_call_has_a_timeout(monkeypatch):
    b = FakeBinding()
    u = make(monkeypatch, b)
    u.call("network.interface.wan6", "status")
    u.call("network.interface.wan", "status", timeout=3)
    assert b.timeouts == [10000, 3000]


def test_reconnects_after_ubusd_restarts(monkeypatch):
    b = FakeBinding()
    u = make(monkeypatch, b)
    assert u.call("network.interface.wan6", "status")[0]["up"] is True
    b.stale = True    # ubusd restarted under the open connection
    assert u.call("network.interface.wan6", "status")[0]["up"] is True
    assert b.calls.count(("connect",)) == 2 and u.backend == "python3-ubus"


def test_a_timed_out_call_uses_the_cli_once_then_the_binding_again(monkeypatch):
    b = FakeBinding()
    u = make(monkeypatch, b)
    assert u.call("network.interface.wan6", "status")[0]["up"] is True
    b.hang = True
    status, problem = u.call("network.interface.wan6", "status", timeout=1)
    assert status is None and "not found" in problem     # the CLI answered (missing here)
    b.hang = False
    assert u.call("network.interface.wan6", "status")[0]["up"] is True
    assert u.backend == "python3-ubus" and b.calls.count(("connect",)) == 2
