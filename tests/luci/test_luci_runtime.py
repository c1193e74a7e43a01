"""The LuCI tier's plumbing, checked against the real things: pages bootstrapped as the
revision's templates do, the translations LuCI serves (luci-base's po2lmo and lmo reader),
the menu, logins, and our ACL as the bed's real rpcd applies it."""
import json
import re
import urllib.error
import urllib.request

import pytest

from tests.luci import i18n
from tests.luci.luci_runtime import PROFILES
from tests.luci.luci_server import sfh_hash

VIEW = "admin/services/mape"


def get(luci, path, user=None):
    d = luci.server.dispatcher
    headers = {}
    if user:
        name = d.cookie_names(d.tree()["children"]["admin"].get("auth"))[-1]
        headers["Cookie"] = "%s=%s" % (name, luci.router.sessions[user]["sid"])
    req = urllib.request.Request(luci.server.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")


def test_page_is_bootstrapped_as_the_templates_do(luci):
    status, _, html = get(luci, "/cgi-bin/luci/" + VIEW, "root")
    assert status == 200
    rt = luci.runtime
    header, view, theme = rt.template("header"), rt.template("view"), rt.template("themes/header")
    # the env handed to new LuCI() has exactly the keys of this revision's header template
    env = json.loads(re.search(r"L = new LuCI\((.*)\);\n</script>", html).group(1).replace("\\/", "/"))
    assert sorted(env) == rt.env_keys()
    assert env["nodespec"]["action"] == {"type": "view", "path": "mape/overview"}
    assert env["nodespec"]["readonly"] is False and env["sessionid"] == luci.router.sessions["root"]["sid"]
    assert env["requestpath"] == VIEW.split("/") and env["ubuspath"] == "/ubus/"
    # the scripts, in the templates' order: translations and cbi.js (theme header), then
    # promis.min.js, luci.js and L = new LuCI (luci-base's header), then the view loader
    order = [m.group(0) for m in re.finditer(
        r"admin/translations/|/cbi\.js|/promis\.min\.js|/luci\.js|new LuCI\(|instantiateView\('mape/overview'\)|"
        r"L\.require\('menu-bootstrap'\)", html)]
    assert order == ["admin/translations/", "/cbi.js", "/promis.min.js", "/luci.js", "new LuCI(",
                     "instantiateView('mape/overview')", "L.require('menu-bootstrap')"]
    for needle in ("admin/translations", "cbi.js"):
        assert needle in theme
    for needle in ("promis.min.js", "luci.js", "new LuCI("):
        assert needle in header
    assert "ui.instantiateView(" in view
    assert "menu-bootstrap" in rt.template("themes/footer")


def test_no_session_no_page(luci):
    status, headers, _ = get(luci, "/cgi-bin/luci/" + VIEW)
    assert status == 403 and headers.get("X-LuCI-Login-Required") == "yes"


def test_translations_are_luci_bases(luci):
    """admin/translations/ja: every installed *.ja.lmo (luci-base's, ours from the i18n
    package) as luci-base's lmo code reads them."""
    status, headers, body = get(luci, "/cgi-bin/luci/admin/translations/ja")
    assert status == 200 and headers["Content-Type"].startswith("application/javascript")
    tr = json.loads(re.match(r"window\.TR=(\{.*\});?$", body.strip(), re.S).group(1).replace(",}", "}"))
    assert tr["%08x" % sfh_hash("Recompute now".encode())] == "今すぐ再計算"
    assert tr["%08x" % sfh_hash("Save".encode())] == "保存"
    _, _, body = get(luci, "/cgi-bin/luci/admin/translations/en")
    assert body.strip() in ("window.TR={}", "window.TR={};")


def test_installed_catalog_is_what_luci_bases_po2lmo_makes(luci, tmp_path):
    """The .lmo our i18n package installs (tools/po2lmo.py) is byte for byte what luci-base's
    own po2lmo of this revision makes from po/ja/mape.po."""
    out = luci.runtime.po2lmo(i18n.po_path("ja"), str(tmp_path / "mape.ja.lmo"))
    with open(out, "rb") as f:
        real = f.read()
    with open(luci.bed.path("/usr/lib/lua/luci/i18n/mape.ja.lmo"), "rb") as f:
        assert f.read() == real


def test_menu(luci):
    status, _, body = get(luci, "/cgi-bin/luci/admin/menu", "root")
    node = json.loads(body)["children"]["admin"]["children"]["services"]["children"]["mape"]
    assert node["title"] == "MAP-E" and node["satisfied"] is True and not node.get("readonly")
    _, _, body = get(luci, "/cgi-bin/luci/admin/menu", "viewer")
    assert json.loads(body)["children"]["admin"]["children"]["services"]["children"]["mape"]["readonly"] is True


def declared(path):
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r"rpc\.declare\(\{ object: '([^']+)', method: '([^']+)'", f.read()))


def test_acl_as_rpcd_applies_it(luci):
    """Our installed ACL, as the real rpcd grants it to LuCI logins: a full login may call
    everything the views declare (session access: every session may ask); a read-only one
    (rpcd `list read '*'`) may read the status, the calculator and the config, and may not
    recompute or change the config."""
    import os
    calls = declared(os.path.join(i18n.VIEW_DIR, "view", "mape", "overview.js")) | \
        declared(os.path.join(i18n.VIEW_DIR, "view", "status", "include", "75_mape.js"))
    assert calls == {("mape", "status"), ("mape", "calc"), ("mape", "recompute"), ("mape", "adopt"),
                     ("mape", "give_up"), ("mape", "reapply"), ("mape", "use_free_port"),
                     ("session", "access")}

    def access(user, scope, obj, fn):
        _, res = luci.router.ubus.call("session", "access", {
            "ubus_rpc_session": luci.router.sessions[user]["sid"], "scope": scope, "object": obj, "function": fn})
        return res["access"]
    for obj, fn in calls:
        assert access("root", "ubus", obj, fn), (obj, fn)
    assert access("viewer", "ubus", "mape", "status") and access("viewer", "ubus", "mape", "calc")
    assert not access("viewer", "ubus", "mape", "recompute")
    assert not any(access("viewer", "ubus", "mape", fn) for fn in ("adopt", "give_up", "reapply", "use_free_port"))
    assert access("root", "uci", "mape", "write") and access("viewer", "uci", "mape", "read")
    assert not access("viewer", "uci", "mape", "write")
    _, groups = luci.router.ubus.call("session", "access", {"ubus_rpc_session": luci.router.sessions["viewer"]["sid"]})
    assert groups["access-group"]["luci-app-mape-py"] == ["read"]


@pytest.mark.parametrize("profile", PROFILES)
def test_luci_bases_po2lmo_agrees_with_ours(runtime_of, profile, tmp_path):
    """tools/po2lmo.py (used by build_ipk.py) and luci-base's po2lmo (C) make the same file."""
    import subprocess
    import sys
    ours = tmp_path / "ours.lmo"
    subprocess.run([sys.executable, i18n.APP + "/tools/po2lmo.py", i18n.po_path("ja"), str(ours)], check=True)
    real = runtime_of(profile).po2lmo(i18n.po_path("ja"), str(tmp_path / "real.lmo"))
    with open(real, "rb") as f:
        assert ours.read_bytes() == f.read()
