"""The web side of a LuCI router for the LuCI tier, in front of the bed's real rpcd
(tests/luci/luci_bed.py). On a router, uhttpd serves /www, answers ``/ubus`` with its ubus
plugin and runs LuCI's dispatcher (Lua on 21.02, ucode on 24.10) for /cgi-bin/luci. None of
those runs on the test host, so this server does what they do for the pages under test,
and everything it knows it asks the bed:

* ``/luci-static/...``: files of the bed's /www (luci-base's runtime from the pinned
  tarball and our package's views, where opkg put them).
* ``POST /ubus/``: uhttpd-mod-ubus' JSON-RPC (legacy ``/ubus`` form that luci.js uses):
  ``call`` -> the object must exist, ``session access`` of the caller's session must allow
  object/method, ``ubus_rpc_session`` is added, then the bed's rpcd answers ``[status,
  data]``; errors -32000 Object not found, -32002 Access denied, -32602, -32700; ``list``.
* ``/cgi-bin/luci/...``: the dispatcher: the menu tree from the bed's
  /usr/share/luci/menu.d/*.json with their depends (fs, uci, acl) as build_pagetree,
  check_depends and apply_tree_acls do; authentication by the session cookie of the
  revision (``sysauth`` on 21.02, ``sysauth_http`` later) through ``session get``/``access``;
  page nodes rendered as the revision's templates do (theme header, luci-base's header with
  ``L = new LuCI({...})`` and its env, view.htm/.ut's view loader, footer with a pending
  rollback's confirm); ``admin/menu`` (action_menu), ``admin/translations/<lang>``
  (``window.TR={...}`` of every installed ``*.<lang>.lmo``, read by luci-base's own lmo
  code), ``admin/uci/apply_rollback``, ``apply_unchecked``, ``confirm``, ``revert`` (the
  controllers' uci_apply / uci_confirm: ``uci apply`` with rollback, the rollback token in the
  anonymous session, ``uci confirm``), with their HTTP status codes.

The UI language is LuCI's ``luci.main.lang`` (here ``server.lang``); the poll interval and
the apply timings are the ``luci`` config values the templates read (``server.config``).
Every JSON-RPC call is logged in ``server.calls`` for the tests: (user, object, method,
args, outcome).
"""
import copy
import fnmatch
import html
import json
import os
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.luci.luci_bed import ANON

UBUS_ERRORS = {-32700: "Parse error", -32600: "Invalid request", -32601: "Method not found",
               -32602: "Invalid parameters", -32603: "Internal error", -32000: "Object not found",
               -32001: "Session not found", -32002: "Access denied", -32003: "ubus request timed out"}
# ubus status -> HTTP, as luci-base's uci controller maps them (ubus_state_to_http)
UBUS_HTTP = [(200, "OK"), (400, "Invalid command"), (400, "Invalid argument"), (404, "Method not found"),
             (404, "Not found"), (204, "No data"), (403, "Permission denied"), (504, "Timeout"),
             (500, "Not supported"), (500, "Unknown error"), (503, "Connection failed"),
             (500, "Out of memory"), (400, "Parse error"), (500, "System error")]
STATUS_NO_DATA, STATUS_PERMISSION_DENIED = 5, 6
SIGNATURE_TYPES = {"String": "string", "Integer": "number", "Boolean": "boolean", "Array": "array",
                   "Table": "object", "Double": "double"}
CONTENT_TYPES = {".js": "application/javascript", ".css": "text/css", ".png": "image/png",
                 ".svg": "image/svg+xml", ".gif": "image/gif", ".json": "application/json",
                 ".html": "text/html; charset=utf-8", ".ico": "image/x-icon"}


def sfh_hash(data):
    """SuperFastHash as luci-base's lmo code (and cbi.js) computes it: the catalog key."""
    n = len(data)
    h = n & 0xFFFFFFFF
    rem, n = n & 3, n >> 2
    i = 0
    for _ in range(n):
        h = (h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
        tmp = (((data[i + 2] | data[i + 3] << 8) << 11) ^ h) & 0xFFFFFFFF
        h = ((h << 16) ^ tmp) & 0xFFFFFFFF
        h = (h + (h >> 11)) & 0xFFFFFFFF
        i += 4
    if rem == 3:
        h = (h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
        h ^= (h << 16) & 0xFFFFFFFF
        sb = data[i + 2] - 256 if data[i + 2] > 127 else data[i + 2]
        h ^= (sb << 18) & 0xFFFFFFFF
        h = (h + (h >> 11)) & 0xFFFFFFFF
    elif rem == 2:
        h = (h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
        h ^= (h << 11) & 0xFFFFFFFF
        h = (h + (h >> 17)) & 0xFFFFFFFF
    elif rem == 1:
        sb = data[i] - 256 if data[i] > 127 else data[i]
        h = (h + sb) & 0xFFFFFFFF
        h ^= (h << 10) & 0xFFFFFFFF
        h = (h + (h >> 1)) & 0xFFFFFFFF
    h ^= (h << 3) & 0xFFFFFFFF
    h = (h + (h >> 5)) & 0xFFFFFFFF
    h ^= (h << 4) & 0xFFFFFFFF
    h = (h + (h >> 17)) & 0xFFFFFFFF
    h ^= (h << 25) & 0xFFFFFFFF
    h = (h + (h >> 6)) & 0xFFFFFFFF
    return h


def parse_uci_show(text):
    """`uci -X show <config>` -> {section: {".type": type, option: value or [values]}} (a
    one-item list reads as an option: the depends checks treat both alike)."""
    sections = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if not eq:
            continue
        parts = key.split(".")
        if len(parts) == 2:
            sections.setdefault(parts[1], {})[".type"] = value
        elif len(parts) == 3:
            items = [i.replace("'\\''", "'") for i in re.findall(r"'((?:[^']|'\\'')*)'", value)]
            sections.setdefault(parts[1], {})[parts[2]] = items[0] if len(items) == 1 else items
    return sections


class Dispatcher:
    """LuCI's dispatcher logic for one bed (menu tree, depends, ACLs, sessions)."""

    def __init__(self, router):
        self.router = router
        self.bed = router.bed
        self.ubus = router.ubus
        self.lua = router.profile == "21.02"
        self._tree = None
        self._uci = {}
        self._lock = threading.Lock()

    # -- the page tree (build_pagetree) --------------------------------------------------
    SCHEMA = {"action": dict, "auth": dict, "cors": bool, "depends": dict, "order": int,
              "setgroup": str, "setuser": str, "title": str, "wildcard": bool}

    def tree(self):
        with self._lock:
            if self._tree is None:
                self._tree = self._build()
            return self._tree

    def _build(self):
        tree = {"action": {"type": "firstchild"}}
        schema = dict(self.SCHEMA)
        if not self.lua:
            schema["firstchild_ineligible"] = bool
        for name in self.bed.listdir("/usr/share/luci/menu.d"):
            if not name.endswith(".json"):
                continue
            try:
                data = json.loads(self.bed.read("/usr/share/luci/menu.d/" + name))
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            for path, spec in data.items():
                if not isinstance(spec, dict):
                    continue
                node = tree
                for s in re.findall(r"[^/]+", path):
                    if s[0] == "*":
                        node["wildcard"] = True
                        break
                    node = node.setdefault("children", {}).setdefault(s, {})
                if node is tree:
                    continue
                for k, t in schema.items():
                    v = spec.get(k)
                    if isinstance(v, t) and not (t is int and isinstance(v, bool)):
                        node[k] = v
                node["satisfied"] = self.check_depends(spec)
        return tree

    def uci(self, config):
        if config not in self._uci:
            out = self.bed.run(["uci", "-q", "-X", "show", config], check=False).stdout
            self._uci[config] = parse_uci_show(out)
        return self._uci[config]

    def check_fs(self, spec):
        for path, kind in spec.items():
            if kind == "directory":
                if not self.bed.listdir(path):
                    return False
            elif kind == "executable":
                p = self.bed.path(path)
                if not (os.path.isfile(p) and os.stat(p).st_mode & 0o100):
                    return False
            elif kind == "file":
                if not os.path.isfile(self.bed.path(path)):
                    return False
            elif kind == "absent":
                if self.bed.exists(path):
                    return False
        return True

    @staticmethod
    def _options_match(s, opts):
        if isinstance(opts, str):
            return s.get(".type") == opts
        if opts is True:
            return any(not k.startswith(".") for k in s)
        if isinstance(opts, dict):
            for option, value in opts.items():
                sval = s.get(option)
                if isinstance(sval, list):
                    if value not in sval:
                        return False
                elif value is True:
                    if sval is None:
                        return False
                elif sval != value:
                    return False
        return True

    def check_uci(self, spec):
        for config, values in spec.items():
            data = self.uci(config)
            if values is True:
                if not data:
                    return False
            elif isinstance(values, dict):
                for section, options in values.items():
                    m = re.match(r"^@([A-Za-z0-9_-]+)$", section)
                    if m:
                        if not any(s.get(".type") == m.group(1) and self._options_match(s, options)
                                   for s in data.values()):
                            return False
                    elif section not in data or not self._options_match(data[section], options):
                        return False
        return True

    def check_depends(self, spec):
        dep = spec.get("depends") or {}
        for key, check in (("fs", self.check_fs), ("uci", self.check_uci)):
            alt = dep.get(key)
            if isinstance(alt, (list, dict)):
                alternatives = alt if isinstance(alt, list) else [alt]
                if not any(check(a) for a in alternatives):
                    return False
        return True

    @staticmethod
    def check_acl(required, groups):
        """True: writable, False: read-only, None: not permitted (check_acl_depends)."""
        if required:
            writable = False
            for group in required:
                perms = (groups or {}).get(group) or []
                if "read" not in perms and "write" not in perms:
                    return None
                if "write" in perms:
                    writable = True
            return writable
        return True

    def apply_acls(self, node, acl):
        for child in (node.get("children") or {}).values():
            self.apply_acls(child, acl)
        deps = node.get("depends")
        if isinstance(deps, dict) and deps.get("acl"):
            perm = self.check_acl(deps["acl"], acl.get("access-group"))
            if perm is None:
                node["satisfied"] = False
            elif perm is False:
                node["readonly"] = True

    def menu(self, session):
        tree = copy.deepcopy(self.tree())
        if session:
            self.apply_acls(tree, session["acls"])
        return tree

    def resolve(self, path):
        """(node, ctx) of resolve_page (without firstchild resolution: pages only)."""
        node, ctx = self.tree(), {"path": [], "acls": [], "auth": None, "cors": False}
        for s in path:
            child = (node.get("children") or {}).get(s)
            if not child or not child.get("satisfied"):
                return None, ctx
            node = child
            ctx["path"].append(s)
            ctx["acls"].extend((node.get("depends") or {}).get("acl") or [])
            if "auth" in node:           # an empty auth ({}) is a node's own: no login needed
                ctx["auth"] = node["auth"]
            ctx["cors"] = node.get("cors") or ctx["cors"]
            if node.get("wildcard"):
                ctx["args"] = path[len(ctx["path"]):]
                break
        return node, ctx

    # -- sessions -----------------------------------------------------------------------
    def session(self, sid):
        """session_retrieve: the session's values (a token makes it a LuCI login) and ACLs."""
        if not sid:
            return None
        status, data = self.ubus.call("session", "get", {"ubus_rpc_session": sid})
        values = (data or {}).get("values") or {}
        if status != 0 or not isinstance(values.get("token"), str):
            return None
        _, acls = self.ubus.call("session", "access", {"ubus_rpc_session": sid})
        return {"sid": sid, "data": values, "acls": acls or {}}

    def cookie_names(self, auth):
        return [m.split(":", 1)[1] for m in (auth or {}).get("methods") or [] if m.startswith("cookie:")]

    def rollback_pending(self):
        _, data = self.ubus.call("session", "get", {"ubus_rpc_session": ANON, "keys": ["rollback"]})
        rb = ((data or {}).get("values") or {}).get("rollback") or {}
        now = int(time.time())
        if not (isinstance(rb.get("token"), str) and isinstance(rb.get("session"), str)
                and isinstance(rb.get("timeout"), int) and rb["timeout"] > now):
            return None
        return {"remaining": rb["timeout"] - now, "session": rb["session"], "token": rb["token"]}


class LuciServer:
    def __init__(self, router, runtime):
        self.router = router
        self.runtime = runtime
        self.profile = router.profile
        self.lua = self.profile == "21.02"
        self.bed = router.bed
        self.ubus = router.ubus
        self.dispatcher = Dispatcher(router)
        self.lang = "en"                           # luci.main.lang
        self.config = {"pollinterval": 2,          # luci.main.pollinterval (LuCI's default: 5)
                       "apply": {"rollback": 90, "holdoff": 1, "timeout": 5, "display": 1}}
        self.calls = []
        self.pages = []
        self._catalogs = {}
        self._lock = threading.Lock()
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

    def reset_log(self):
        with self._lock:
            self.calls = []
            self.pages = []

    def calls_to(self, obj, method=None):
        with self._lock:
            return [c for c in self.calls if c[1] == obj and (method is None or c[2] == method)]

    def user_of(self, sid):
        for user, s in self.router.sessions.items():
            if s["sid"] == sid:
                return user
        return "anonymous" if sid == ANON else "?"

    # -- translations --------------------------------------------------------------------
    def catalog(self, lang):
        with self._lock:
            if lang not in self._catalogs:
                self._catalogs[lang] = self.runtime.catalog(lang, self.bed.path("/usr/lib/lua/luci/i18n"))
            return self._catalogs[lang]

    def _(self, msgid):
        text = self.catalog(self.lang).get(sfh_hash(msgid.encode("utf-8")))
        return text if text else msgid

    def translations_js(self, lang):
        entries = ",".join('"%08x":%s' % (k, json.dumps(v, ensure_ascii=False)) for k, v in self.catalog(lang).items())
        if self.lua:
            return "window.TR={%s}" % entries       # http.write_json(i18n.dump()), no ";"
        return "window.TR={%s};" % (entries + "," if entries else "")

    # -- ubus JSON-RPC (uhttpd-mod-ubus, legacy /ubus form) ------------------------------------
    def rpc(self, body):
        try:
            req = json.loads(body.decode("utf-8"))
        except ValueError:
            return self._rpc_error(None, -32700)
        if isinstance(req, list):
            return [self._rpc_one(r) for r in req]
        if isinstance(req, dict):
            return self._rpc_one(req)
        return self._rpc_error(None, -32700)

    @staticmethod
    def _rpc_error(rid, code):
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": UBUS_ERRORS[code]}}

    def _log(self, sid, obj, method, args, outcome):
        with self._lock:
            self.calls.append((self.user_of(sid), obj, method, args, outcome))

    def _rpc_one(self, msg):
        if not isinstance(msg, dict):
            return self._rpc_error(None, -32700)
        rid = msg.get("id")
        if msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
            return self._rpc_error(rid, -32700)
        params = msg.get("params")
        if msg["method"] == "call":
            if not isinstance(params, list) or len(params) < 4 or not all(isinstance(p, str) for p in params[:3]) \
                    or not isinstance(params[3], dict):
                return self._rpc_error(rid, -32700)
            sid, obj, method, args = params[:4]
            if not self.ubus.has(obj):
                self._log(sid, obj, method, args, "no object")
                return self._rpc_error(rid, -32000)
            _, access = self.ubus.call("session", "access", {"ubus_rpc_session": sid, "object": obj,
                                                             "function": method})
            if not (access or {}).get("access"):
                self._log(sid, obj, method, args, "denied")
                return self._rpc_error(rid, -32002)
            if "ubus_rpc_session" in args:
                return self._rpc_error(rid, -32602)
            status, data = self.ubus.call(obj, method, dict(args, ubus_rpc_session=sid))
            self._log(sid, obj, method, args, status)
            result = [status] + ([data] if isinstance(data, dict) and data else [])
            return {"jsonrpc": "2.0", "id": rid, "result": result}
        if msg["method"] == "list":
            if not isinstance(params, list):
                return {"jsonrpc": "2.0", "id": rid, "result": self.ubus.objects()}
            out = {}
            for name in params:
                if not isinstance(name, str):
                    return self._rpc_error(rid, -32602)
                sig = self.ubus.signature(name)
                if sig:
                    out[name] = {m: {a: SIGNATURE_TYPES.get(t, "unknown") for a, t in (args or {}).items()}
                                 for m, args in sig.items()}
            return {"jsonrpc": "2.0", "id": rid, "result": out}
        return self._rpc_error(rid, -32601)

    # -- pages ---------------------------------------------------------------------------
    def env(self, path, node, ctx, session):
        apply = self.config["apply"]
        rb = self.dispatcher.rollback_pending()
        return {
            "token": session["data"].get("token"),
            "media": "/luci-static/bootstrap",
            "resource": "/luci-static/resources",
            "scriptname": "/cgi-bin/luci",
            "pathinfo": "/" + "/".join(path),
            "documentroot": "/www",
            "requestpath": list(path),
            "dispatchpath": list(ctx["path"]),
            "pollinterval": self.config["pollinterval"],
            "ubuspath": "/ubus/",
            "sessionid": session["sid"],
            "nodespec": node,
            "apply_rollback": max(apply["rollback"], 90),
            "apply_holdoff": max(apply["holdoff"], 1),
            "apply_timeout": max(apply["timeout"], 1),
            "apply_display": max(apply["display"], 1),
            "rollback_token": None,
        }, rb

    def render_page(self, path, node, ctx, session, view, status_page=False):
        """The HTML of a page node: theme header + luci-base header (L = new LuCI) + the view
        loader (view.htm / view.ut, or admin_status/index for Status > Overview) + footers."""
        env, rb = self.env(path, node, ctx, session)
        _ = self._
        title = node.get("title")
        lang = self.lang
        esc = html.escape
        out = ['<!DOCTYPE html>\n<html lang="%s">' % esc(lang), "<head>", '<meta charset="utf-8">',
               "<title>%s - LuCI</title>" % esc("OpenWrt" + (" - " + _(title) if title else "")),
               "<script type=\"text/javascript\">var mediaQuery = window.matchMedia('(prefers-color-scheme: dark)'),"
               " rootElement = document.querySelector(':root'), setDarkMode = function(match) {"
               " rootElement.setAttribute('data-darkmode', match.matches) };"
               " mediaQuery.addEventListener('change', setDarkMode); setDarkMode(mediaQuery);</script>",
               '<meta name="viewport" content="initial-scale=1.0">',
               '<link rel="stylesheet" href="%s/cascade.css">' % env["media"],
               '<link rel="stylesheet" media="only screen and (max-device-width: 854px)" href="%s/mobile.css" '
               'type="text/css" />' % env["media"]]
        if self.lua:
            out.append('<link rel="shortcut icon" href="%s/favicon.png">' % env["media"])
        else:
            out.append('<link rel="icon" href="%s/logo_48.png" sizes="48x48">' % env["media"])
            out.append('<link rel="icon" href="%s/logo.svg" sizes="any">' % env["media"])
        out.append('<script src="/cgi-bin/luci/admin/translations/%s"></script>' % esc(lang))
        out.append('<script src="%s/cbi.js"></script>' % env["resource"])
        out.append("</head>")
        out.append('<body class="lang_%s %s" data-page="%s">' % (esc(lang), esc(re.sub(r"<[^>]*>", "", title or "")),
                                                               esc("-".join(path))))
        out.append('<header><a class="brand" href="/">OpenWrt</a>'
                   '<ul class="nav" id="topmenu" style="display:none"></ul>'
                   '<div id="indicators" class="pull-right"></div></header>')
        out.append('<div id="maincontent" class="container">')
        out.append('<noscript><div class="alert-message warning"><h4>%s</h4><p>%s</p></div></noscript>'
                   % (esc(_("JavaScript required!")), esc(_("You must enable JavaScript in your browser or LuCI "
                                                               "will not work properly."))))
        out.append('<div id="tabmenu" style="display:none"></div>')
        # luci-base's header: the runtime and its environment
        env_json = json.dumps(env, separators=(",", ":") if self.lua else (", ", ": "))
        if not self.lua:
            env_json = env_json.replace("/", "\\/")
        out.append('<script type="text/javascript" src="%s/promis.min.js"></script>' % env["resource"])
        out.append('<script type="text/javascript" src="%s/luci.js"></script>' % env["resource"])
        out.append('<script type="text/javascript">\n\tL = new LuCI(%s);\n</script>' % env_json)
        loader = ("<script type=\"text/javascript\">\n\t\tL.require('ui').then(function(ui) {\n"
                  "\t\t\tui.instantiateView('%s');\n\t\t});\n\t</script>" % view)
        if status_page:
            out.append('<h2 name="content">%s</h2>' % esc(_("Status")))
            out.append('<div id="view">\n\t<div class="spinning">%s</div>\n</div>' % esc(_("Loading view…")))
            out.append('<div class="includes" style="display:none"></div>')
            out.append(loader.replace("\t\t", "\t"))
        else:
            out.append('<div id="view">\n\t<div class="spinning">%s</div>\n\t%s\n</div>' % (esc(_("Loading view…")), loader))
        # luci-base's footer: confirm a pending apply of this session
        if rb:
            out.append("<script type=\"text/javascript\">document.addEventListener(\"luci-loaded\", function() {"
                       " L.ui.changes.confirm(true, Date.now() + %d * 1000, %s); });</script>"
                       % (rb["remaining"], json.dumps(rb["token"])))
        out.append("</div>")
        out.append('<footer><span>Powered by LuCI (%s) / OpenWrt %s</span>'
                   '<ul class="breadcrumb pull-right" id="modemenu" style="display:none"></ul></footer>'
                   % (esc(self.runtime.profile), esc(self.profile)))
        out.append("<script type=\"text/javascript\">L.require('menu-bootstrap')</script>")
        out.append("</body>\n</html>\n")
        with self._lock:
            self.pages.append({"path": path, "env": env, "user": self.user_of(session["sid"])})
        return "\n".join(out)

    # -- uci apply / confirm (luci-base's admin/uci controller) ---------------------------------
    def uci_apply(self, session, rollback):
        sid = session["sid"]
        if rollback:
            timeout = self.config["apply"]["rollback"]
            status, _ = self.ubus.call("uci", "apply", {"ubus_rpc_session": sid, "timeout": max(timeout, 90),
                                                        "rollback": True})
            if status != 0:
                return None, status
            token = os.urandom(16).hex()
            self.ubus.call("session", "set", {"ubus_rpc_session": ANON, "values": {"rollback": {
                "token": token, "session": sid, "timeout": int(time.time()) + timeout}}})
            return token, 0
        status, changes = self.ubus.call("uci", "changes", {"ubus_rpc_session": sid})
        for config in ((changes or {}).get("changes") or {}):
            status, _ = self.ubus.call("uci", "commit", {"ubus_rpc_session": sid, "config": config})
            if status != 0:
                return None, status
        status, _ = self.ubus.call("uci", "apply", {"ubus_rpc_session": sid, "rollback": False})
        return None, status

    def uci_confirm(self, token):
        rb = self.dispatcher.rollback_pending()
        if rb is None:
            return STATUS_NO_DATA
        if token != rb["token"]:
            return STATUS_PERMISSION_DENIED
        status, _ = self.ubus.call("uci", "confirm", {"ubus_rpc_session": rb["session"]})
        if status != 0:
            return status
        self.ubus.call("session", "set", {"ubus_rpc_session": ANON, "values": {"rollback": {}}})
        return 0

    # -- HTTP ------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *a):
                pass

            def _send(self, code, body=b"", ctype="text/plain", headers=(), reason=None):
                data = body if isinstance(body, bytes) else body.encode("utf-8")
                self.send_response(code, reason)
                if code != 204:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _form(self, query, body):
                form = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
                ctype = self.headers.get("Content-Type") or ""
                if body and ctype.startswith("application/x-www-form-urlencoded"):
                    form.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                return form

            def _cookies(self):
                out = {}
                for part in (self.headers.get("Cookie") or "").split(";"):
                    k, eq, v = part.strip().partition("=")
                    if eq:
                        out[k] = v
                return out

            def do_GET(self):
                self._dispatch_request(b"")

            def do_HEAD(self):
                self._dispatch_request(b"")

            def do_POST(self):
                self._dispatch_request(self._body())

            def _dispatch_request(self, body):
                try:
                    self._route(body)
                except BrokenPipeError:
                    pass
                except Exception as e:  # noqa: BLE001 - a 500 the test sees, with the reason
                    import traceback
                    traceback.print_exc()
                    self._send(500, "server error: %s: %s" % (type(e).__name__, e))

            def _route(self, body):
                path, _, query = self.path.partition("?")
                path = urllib.parse.unquote(path)
                if path in ("/ubus", "/ubus/"):
                    if self.command != "POST":
                        return self._send(400, "Invalid Request")
                    return self._send(200, json.dumps(server.rpc(body), ensure_ascii=False), "application/json")
                if path.startswith("/luci-static/"):
                    return self._static(path)
                if path == "/cgi-bin/luci" or path.startswith("/cgi-bin/luci/"):
                    return self._luci([p for p in path[len("/cgi-bin/luci"):].split("/") if p], query, body)
                if path == "/favicon.ico":
                    return self._send(404, "not found")
                return self._send(404, "not found")

            def _static(self, path):
                rel = os.path.normpath(path.lstrip("/"))
                if rel.startswith(".."):
                    return self._send(403, "forbidden")
                full = server.bed.path("/www/" + rel)
                if not os.path.isfile(full):
                    return self._send(404, "not found")
                with open(full, "rb") as f:
                    data = f.read()
                ctype = CONTENT_TYPES.get(os.path.splitext(full)[1], "application/octet-stream")
                return self._send(200, data, ctype, [("Cache-Control", "no-cache")])

            def _luci(self, segs, query, body):
                d = server.dispatcher
                node, ctx = d.resolve(segs)
                if node is None:
                    return self._send(404, "No page is registered at '/%s'." % "/".join(segs))
                form = self._form(query, body)
                session = None
                if ctx["auth"] is not None and (ctx["auth"].get("methods") or ctx["auth"].get("login")):
                    cookies = self._cookies()
                    for name in d.cookie_names(ctx["auth"]):
                        session = d.session(cookies.get(name))
                        if session:
                            break
                    if session is None:
                        return self._send(403, "<h2>%s</h2>" % html.escape(server._("Authorization Required")),
                                          "text/html; charset=utf-8", [("X-LuCI-Login-Required", "yes")])
                spec = dict(node)
                spec.pop("children", None)
                if ctx["acls"]:
                    perm = d.check_acl(ctx["acls"], ((session or {}).get("acls") or {}).get("access-group"))
                    if perm is None:
                        return self._send(403, "Forbidden")
                    spec["readonly"] = not perm
                action = node.get("action") or {}
                if action.get("post") and (self.command != "POST" or form.get("token") != (session or {}).get(
                        "data", {}).get("token")):
                    return self._send(403 if self.command == "POST" else 405, "Forbidden")
                fn = action.get("function")
                if action.get("type") == "view":
                    return self._send(200, server.render_page(segs, spec, ctx, session, action["path"]),
                                      "text/html; charset=utf-8")
                if action.get("type") == "template" and action.get("path") == "admin_status/index":
                    return self._send(200, server.render_page(segs, spec, ctx, session, "status/index", True),
                                      "text/html; charset=utf-8")
                if fn == "action_translations":
                    lang = (ctx.get("args") or [server.lang])[0] or server.lang
                    return self._send(200, server.translations_js(lang), "application/javascript; charset=utf-8")
                if fn == "action_menu":
                    cookies = self._cookies()
                    s = None
                    for name in d.cookie_names(d.tree()["children"]["admin"].get("auth")):
                        s = s or d.session(cookies.get(name))
                    return self._send(200, json.dumps(server.dispatcher.menu(s)), "application/json")
                if fn == "action_ubus":
                    return self._send(200, json.dumps(server.rpc(body)), "application/json")
                if fn == "action_apply_rollback":
                    token, status = server.uci_apply(session, True)
                    if token:
                        return self._send(200, json.dumps({"token": token}), "application/json")
                    return self._status(status)
                if fn == "action_apply_unchecked":
                    _, status = server.uci_apply(session, False)
                    return self._status(status)
                if fn == "action_confirm":
                    return self._status(server.uci_confirm(form.get("token")))
                if fn == "action_revert":
                    status = 0
                    _, changes = server.ubus.call("uci", "changes", {"ubus_rpc_session": session["sid"]})
                    for config in ((changes or {}).get("changes") or {}):
                        status, _ = server.ubus.call("uci", "revert", {"ubus_rpc_session": session["sid"],
                                                                      "config": config})
                        if status:
                            break
                    return self._status(status)
                return self._send(404, "not handled by the test server: %s" % json.dumps(action))

            def _status(self, status):
                code, msg = UBUS_HTTP[status] if 0 <= status < len(UBUS_HTTP) else (200, "OK")
                if code == 204:
                    return self._send(204, b"", reason=msg)
                return self._send(code, msg, "text/plain", reason=msg)

        return Handler
