"""The python3-ubus path of mape.shell.ubus with a stand-in module (the real binding is
compiled for OpenWrt only): calls go through it; any binding failure falls back to the CLI."""
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

    def connect(self, *args):
        self.calls.append(("connect",) + args)
        if self.fail_connect:
            raise RuntimeError("Failed to connect to ubus")

    def call(self, obj, method, args):
        self.calls.append(("call", obj, method, args))
        if self.missing:
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
