"""ubus: calls through the python3-ubus binding when importable (and wanted), the `ubus`
CLI otherwise; events from `ubus -S subscribe` / `ubus -S listen` child processes read
through non-blocking pipes (select()able, no polling).

netifd publishes prefix/address updates only as `interface.update` notifications on the
`network.interface` object (`ubus subscribe`), and ifup/ifdown as `network.interface`
broadcast events (`ubus listen`); see docs/service.md.
"""
import json
import os
import subprocess
import time

NOT_FOUND = 4  # UBUS_STATUS_NOT_FOUND: the CLI's exit code for a missing object


class Ubus:
    def __init__(self, system, program="ubus", use_binding=None):
        self.system = system
        self.program = program
        self._binding = None
        if use_binding is None:
            use_binding = system.root in ("", "/") and os.environ.get("MAPE_PY_UBUS", "") != "cli"
        if use_binding:
            try:
                import ubus as binding  # python3-ubus (optional, arch-specific)
                self._binding = binding
            except Exception:
                self._binding = None

    _connected = False
    _worked = False

    def _connect(self, b):
        """python3-ubus: connect() (libubus default socket), else the 21.02 / 23.05 paths."""
        errors = []
        for args in ((), ("/var/run/ubus/ubus.sock",), ("/var/run/ubus.sock",)):
            try:
                b.connect(*args)
                self._connected = True
                return
            except Exception as e:
                errors.append(str(e))
        raise RuntimeError("; ".join(errors))

    def _disconnect(self, b):
        self._connected = False
        try:
            b.disconnect()
        except Exception:
            pass

    @property
    def backend(self):
        return "python3-ubus" if self._binding else "ubus-cli"

    def _binding_call(self, obj, method, args, timeout):
        """(result, None), or (None, None) for a missing object; raises on other failures.
        A connection that went stale (ubusd restarted) makes every object look missing:
        a missing object is asked once more over a fresh connection."""
        b = self._binding
        for fresh in (False, True):
            if fresh:
                self._disconnect(b)
            if not self._connected:
                self._connect(b)
            try:
                # the binding's default timeout (0) waits forever
                return b.call(obj, method, args or {}, timeout=max(1, int(timeout * 1000))), None
            except Exception as e:
                if "not found" not in str(e).lower():
                    self._disconnect(b)
                    raise
                if fresh:
                    return None, None
        return None, None

    def call(self, obj, method, args=None, timeout=10):
        """(result dict or None, problem or None). A missing object is (None, None)."""
        if self._binding is not None:
            try:
                result, _ = self._binding_call(obj, method, args, timeout)
                self._worked = True
                if not result:
                    return None, None
                value = result[0]
                return (value, None) if isinstance(value, dict) else (None, "ubus %s %s: not an object" % (obj, method))
            except Exception:
                # it worked before (ubusd restarted, a call timed out): the CLI answers this
                # call and the binding reconnects on the next; never worked: CLI from now on
                if not self._worked:
                    self._binding = None
        argv = [self.program, "-S", "call", obj, method]
        if args:
            argv.append(json.dumps(args))
        try:
            rc, out, err = self.system.run(argv, timeout=timeout, check=False)
        except Exception as e:  # missing program, timeout
            return None, str(e)
        if rc == NOT_FOUND:
            return None, None
        if rc != 0:
            first = (err or out or "").strip().splitlines()
            return None, "ubus call %s %s failed (exit %d%s)" % (obj, method, rc, ": " + first[0][:120] if first else "")
        if not out.strip():
            return None, None
        try:
            value = json.loads(out)
        except ValueError:
            return None, "ubus call %s %s printed something that is not JSON" % (obj, method)
        if not isinstance(value, dict):
            return None, "ubus call %s %s did not print a JSON object" % (obj, method)
        return value, None


def decode_stream(buffer):
    """Split ``buffer`` (str) into complete JSON values; returns (values, rest, garbage).
    Tolerates single-line (-S) and indented output, blank lines and junk between values."""
    decoder = json.JSONDecoder()
    values = []
    garbage = 0
    pos = 0
    n = len(buffer)
    while True:
        while pos < n and buffer[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return values, "", garbage
        if buffer[pos] != "{":
            end = buffer.find("\n", pos)
            if end < 0:
                return values, buffer[pos:], garbage
            garbage += 1
            pos = end + 1
            continue
        try:
            value, end = decoder.raw_decode(buffer, pos)
        except RecursionError:   # nested too deeply: that line is garbage
            garbage += 1
            end = buffer.find("\n", pos)
            if end < 0:
                return values, "", garbage
            pos = end + 1
            continue
        except ValueError:
            newline = buffer.find("\n", pos)
            # incomplete value: wait for more, unless the buffer is absurdly long
            if len(buffer) - pos > 1 << 20:
                return values, "", garbage + 1
            if newline >= 0 and buffer.find("\n{", newline) >= 0 and buffer.rstrip().endswith("}"):
                # a broken line followed by more values: skip it
                garbage += 1
                pos = buffer.find("\n{", newline) + 1
                continue
            return values, buffer[pos:], garbage
        values.append(value)
        pos = end


def classify(value, interfaces):
    """A short reason when the event concerns one of ``interfaces``, else None.

    Shapes: {"interface.update": {"interface": NAME, ...}}, {"interface.down": {...}},
    {"network.interface": {"action": "ifup", "interface": NAME}},
    {"ubus.object.add": {"id": N, "path": "network.interface"}}."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (kind, payload), = value.items()
    if not isinstance(payload, dict):
        return None
    if kind in ("interface.update", "interface.down", "network.interface"):
        name = payload.get("interface")
        if name in interfaces:
            detail = payload.get("action") or kind
            updated = payload.get("updated")
            if isinstance(updated, list) and updated:
                detail += "(%s)" % ",".join(str(u) for u in updated[:4])
            return "%s %s" % (name, detail)
        return None
    if kind == "ubus.object.add" and payload.get("path") == "network.interface":
        return "netifd restarted"
    return None


class EventProcess:
    """One long-running `ubus -S ...` child whose stdout we select() on."""

    def __init__(self, argv, label):
        self.argv = argv
        self.label = label
        self.proc = None
        self.buffer = ""
        self.failures = 0
        self.started = 0.0

    def start(self):
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         stdin=subprocess.DEVNULL, close_fds=True)
        except OSError:
            self.proc = None
            return False
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = ""
        self.started = time.monotonic()
        return True

    def fileno(self):
        return self.proc.stdout.fileno() if self.proc else None

    def read(self):
        """(values, garbage count, eof)."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return [], 0, False
        except OSError:
            chunk = b""
        if not chunk:
            return [], 0, True
        self.buffer += chunk.decode("utf-8", "replace")
        values, self.buffer, garbage = decode_stream(self.buffer)
        return values, garbage, False

    def read_all(self):
        """(values, garbage) of everything readable now (before stop(): events queued in
        the pipe are not lost)."""
        values, garbage = [], 0
        for _ in range(64):
            more, bad, eof = self.read()
            values += more
            garbage += bad
            if eof:
                break
        return values, garbage

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.terminate()
            self.proc.wait(timeout=2)
        except Exception:
            try:
                self.proc.kill()
                self.proc.wait(timeout=2)
            except Exception:
                pass
        try:
            self.proc.stdout.close()
        except Exception:
            pass
        self.proc = None


def event_processes(program="ubus"):
    return [
        EventProcess([program, "-S", "subscribe", "network.interface"], "subscribe"),
        EventProcess([program, "-S", "listen", "network.interface", "ubus.object.add"], "listen"),
    ]
