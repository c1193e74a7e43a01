"""HTTP server on 127.0.0.1 that hosts luci-app-mape-py's view in the LuCI stand-in.

Serves the app's htdocs as /luci-static/resources/, the stand-in runtime as
/luci-static/resources/luci.js, the po catalog as /i18n/<lang>.json, and answers LuCI's
ubus JSON-RPC endpoint /ubus/ from fixtures: ``mape status|calc|recompute`` (calc runs the
real engine) and the ``uci`` object over an in-memory /etc/config/mape. Every ubus call is
checked against the app's rpcd ACL file as rpcd would, and recorded in ``calls``.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.luci import i18n

sys.path.insert(0, os.path.join(i18n.APP, "tools"))
import po2lmo  # noqa: E402  (luci-app-mape-py/tools/po2lmo.py)

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "standin")
ACL_FILE = os.path.join(i18n.APP, "root", "usr", "share", "rpcd", "acl.d", "luci-app-mape-py.json")

# ubus methods every logged-in LuCI session may call (granted by luci-base's own ACL).
ALWAYS = {"session": {"access", "login"}, "uci": {"changes", "apply", "confirm", "rollback"}}
UCI_READ = {"get", "state"}
UCI_WRITE = {"set", "add", "delete", "rename", "order"}

UBUS_OK, UBUS_NOT_FOUND = 0, 4


def default_config():
    """/etc/config/mape as files/etc/config/mape of mape-py ships it (plus one kept-out port)."""
    return {
        "config": {".type": "mape", ".anonymous": False, "enabled": "1", "wan_iface": "wan",
                   "wan6_iface": "wan6", "wan6pd_iface": "wan6pd", "fw_zone": "wan",
                   "manage_firewall": "1", "mtu": "1460", "recheck": "300", "debounce": "0.5",
                   "verify_timeout": "30", "rollback": "1", "history": "10", "nat_keep_out": ["5190"]},
    }


class Acl:
    def __init__(self, path=ACL_FILE):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.ubus, self.uci_read, self.uci_write = {}, set(), set()
        for group in doc.values():
            for mode in ("read", "write"):
                part = group.get(mode, {})
                for obj, methods in part.get("ubus", {}).items():
                    self.ubus.setdefault(obj, set()).update(methods)
                (self.uci_read if mode == "read" else self.uci_write).update(part.get("uci", []))
        # write access to a uci config implies read access, as in rpcd
        self.uci_read |= self.uci_write

    def allows(self, obj, method, args):
        if method in ALWAYS.get(obj, ()):
            return True
        if obj == "uci":
            config = (args or {}).get("config")
            if method in UCI_READ:
                return config in self.uci_read
            if method in UCI_WRITE:
                return config in self.uci_write
            return False
        methods = self.ubus.get(obj, set())
        return method in methods or "*" in methods


class StandinServer:
    def __init__(self):
        self.status = {"version": 1, "running": False, "state": "stopped"}
        self.mape_object = True          # False: ubus object "mape" absent (rpcd plugin missing)
        self.config = {"mape": default_config()}
        self.calls = []
        self.acl = Acl()
        self._lock = threading.Lock()
        self._next_sid = 1
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self, status=None):
        with self._lock:
            self.config = {"mape": default_config()}
            self.calls = []
            self.mape_object = True
            if status is not None:
                self.status = status

    def calls_to(self, obj, method=None):
        with self._lock:
            return [c for c in self.calls if c[0] == obj and (method is None or c[1] == method)]

    # ---- ubus ----
    def ubus_call(self, obj, method, args):
        with self._lock:
            self.calls.append((obj, method, args))
            if obj == "mape":
                return self._mape(method, args)
            if obj == "uci":
                return self._uci(method, args)
            return [UBUS_NOT_FOUND]

    def _mape(self, method, args):
        if not self.mape_object:
            return [UBUS_NOT_FOUND]
        if method == "status":
            return [UBUS_OK, self.status]
        if method == "calc":
            from tests.luci.fixtures import calc_reply
            return [UBUS_OK, calc_reply(args.get("prefix", ""))]
        if method == "recompute":
            # as files/usr/libexec/rpcd/mape answers (it sends SIGHUP to the daemon)
            if self.status.get("running"):
                return [UBUS_OK, {"ok": True}]
            return [UBUS_OK, {"ok": False, "error": "mape-py daemon is not running"}]
        return [3]

    def _uci(self, method, args):
        cfg = self.config.get(args.get("config"))
        if method in ("changes", "apply", "confirm", "rollback"):
            return [UBUS_OK, {}] if method == "changes" else [UBUS_OK]
        if cfg is None:
            return [UBUS_NOT_FOUND]
        if method == "get":
            values = {}
            for i, (sid, sec) in enumerate(cfg.items()):
                values[sid] = dict(sec, **{".name": sid, ".index": i})
            return [UBUS_OK, {"values": values}]
        if method == "add":
            sid = args.get("name") or "cfg%06x" % self._next_sid
            self._next_sid += 1
            cfg[sid] = {".type": args["type"], ".anonymous": not args.get("name")}
            cfg[sid].update(args.get("values") or {})
            return [UBUS_OK, {"section": sid}]
        sec = cfg.get(args.get("section"))
        if sec is None:
            return [UBUS_NOT_FOUND]
        if method == "set":
            sec.update(args.get("values") or {})
            return [UBUS_OK]
        if method == "delete":
            options = args.get("options")
            if options is None and args.get("option") is None:
                del cfg[args["section"]]
            else:
                for o in (options or [args.get("option")]):
                    sec.pop(o, None)
            return [UBUS_OK]
        return [3]

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *a):
                pass

            def _send(self, code, body, ctype):
                data = body if isinstance(body, bytes) else body.encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def _file(self, path, ctype):
                if not os.path.isfile(path):
                    return self._send(404, "not found", "text/plain")
                with open(path, "rb") as f:
                    self._send(200, f.read(), ctype)

            def do_GET(self):
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                if path == "/":
                    lang = params.get("lang", "en")
                    env = {"lang": lang, "view": "mape/overview", "pollinterval": int(params.get("poll", "1")),
                           "ubuspath": "/ubus/", "include": params.get("include")}
                    with open(os.path.join(STANDIN, "page.html"), encoding="utf-8") as f:
                        page = f.read().replace("{lang}", lang).replace("{env}", json.dumps(env))
                    return self._send(200, page, "text/html; charset=utf-8")
                if path == "/luci-static/resources/luci.js":
                    return self._file(os.path.join(STANDIN, "luci.js"), "application/javascript")
                if path.startswith("/luci-static/standin/"):
                    return self._file(os.path.join(STANDIN, os.path.basename(path)), "text/css")
                if path.startswith("/luci-static/resources/"):
                    rel = os.path.normpath(path[len("/luci-static/resources/"):])
                    if rel.startswith(".."):
                        return self._send(403, "no", "text/plain")
                    return self._file(os.path.join(i18n.VIEW_DIR, rel), "application/javascript")
                if path.startswith("/i18n/") and path.endswith(".json"):
                    # LuCI's admin/translations/<lang>: every entry of the installed
                    # <name>.<lang>.lmo as {"%08x" key_id: text}; the .lmo is compiled here
                    # from po/<lang>/mape.po with the app's po2lmo.py, as the package is.
                    lang = os.path.basename(path)[:-5]
                    po = i18n.po_path(lang)
                    catalog = {}
                    if lang != "en" and os.path.exists(po):
                        with open(po, encoding="utf-8") as f:
                            lmo = po2lmo.compile_po(f.read())
                        catalog = {"%08x" % k: v for k, v in po2lmo.read_lmo(lmo).items()} if lmo else {}
                    return self._send(200, json.dumps(catalog), "application/json")
                if path == "/favicon.ico":
                    return self._send(204, b"", "image/x-icon")
                return self._send(404, "not found", "text/plain")

            def do_POST(self):
                if not self.path.startswith("/ubus"):
                    return self._send(404, "not found", "text/plain")
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    req = json.loads(self.rfile.read(length).decode("utf-8"))
                except ValueError:
                    return self._send(400, json.dumps({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}}),
                                      "application/json")
                batch = isinstance(req, list)
                replies = [self._one(r) for r in (req if batch else [req])]
                return self._send(200, json.dumps(replies if batch else replies[0]), "application/json")

            def _one(self, msg):
                rid = msg.get("id")
                if msg.get("method") != "call" or not isinstance(msg.get("params"), list) or len(msg["params"]) != 4:
                    return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32600, "message": "Invalid request"}}
                _sid, obj, method, args = msg["params"]
                args = args or {}
                if not server.acl.allows(obj, method, args):
                    with server._lock:
                        server.calls.append((obj, method, dict(args, __denied=True)))
                    return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32002, "message": "Access denied"}}
                return {"jsonrpc": "2.0", "id": rid, "result": server.ubus_call(obj, method, args)}

        return Handler
