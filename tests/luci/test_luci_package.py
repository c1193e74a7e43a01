"""luci-app-mape-py without a browser: translations, ACL, menu, Makefile, and that the view
keeps to the LuCI client API shared by 21.02 and 23.05+ (how rpcd applies the ACL:
test_luci_runtime.py)."""
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.luci import i18n

VIEW = os.path.join(i18n.VIEW_DIR, "view", "mape", "overview.js")
CARD = os.path.join(i18n.VIEW_DIR, "view", "status", "include", "75_mape.js")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_pot_is_up_to_date():
    assert read(i18n.po_path("templates")) == i18n.render_po(i18n.all_msgids()), \
        "run: python3 tests/luci/i18n.py pot"


def test_japanese_translation_is_complete():
    ja = i18n.parse_po(read(i18n.po_path("ja")))
    ids = i18n.all_msgids()
    assert [m for m in ids if not ja.get(m)] == [], "run: python3 tests/luci/i18n.py sync ja, then translate"
    assert [m for m in ja if m not in ids] == []
    for msgid in ids:
        # LuCI's String.format has no positional arguments: same specifiers, same order
        assert re.findall(r"%[sdfx%]", msgid) == re.findall(r"%[sdfx%]", ja[msgid]), msgid
        if not msgid.isascii() or not re.search(r"[a-z]{3}", msgid):
            continue
        assert not ja[msgid].isascii() or msgid in ("MAP-E", "PSID"), "not translated: %r" % msgid


def test_extractor_decodes_js_strings():
    src = r"""x = _('a \'b\' \u2192 c'); y = _("d"); z = foo_('no'); w = _('%d of %d', n);"""
    assert i18n.extract(src) == ["a 'b' \u2192 c", "d", "%d of %d"]


@pytest.mark.parametrize("path", [VIEW, CARD], ids=["overview", "status-card"])
def test_view_requires_only_documented_luci_modules(path):
    src = read(path)
    header = re.findall(r"^'(use strict|require [^']+)';$", src, re.M)
    assert header[0] == "use strict"
    required = {h.split()[1] for h in header[1:]}
    assert required <= {"view", "dom", "poll", "rpc", "ui", "form", "uci", "baseclass"}
    # no private runtime details, no own HTTP: everything through rpc/uci/form
    for forbidden in ("XMLHttpRequest", "fetch(", "L.Request", "L.env.sessionid", "ubus/", "=>", "`",
                      "async ", "await ", "L.ui.", "L.dom."):
        assert forbidden not in src, forbidden
    used_l = set(re.findall(r"\bL\.([a-zA-Z_]+)", src))
    assert used_l <= {"env", "isObject", "bind", "resolveDefault", "toArray", "url"}, used_l
    calls = set(re.findall(r"\b(?:ui|dom|poll|form)\.([a-zA-Z]+)", src))
    assert calls <= {"addNotification", "createHandlerFn", "content", "add", "Map", "NamedSection",
                     "TypedSection", "Flag", "Value", "ListValue", "DynamicList"}, calls


def test_views_name_the_real_init_script():
    """The package installs /etc/init.d/mape-py; no text (page, catalogs) may tell the user
    to run anything else (#12 point 1)."""
    assert os.path.exists(os.path.join(i18n.APP, "..", "files", "etc", "init.d", "mape-py"))
    for path in (VIEW, CARD, i18n.po_path("templates"), i18n.po_path("ja")):
        names = set(re.findall(r"/etc/init\.d/([\w.-]+)", read(path)))
        assert names <= {"mape-py"}, (path, names)
    assert "/etc/init.d/mape-py start" in read(i18n.po_path("ja"))


def test_acl_separates_read_and_write():
    doc = json.loads(read(os.path.join(i18n.APP, "root", "usr", "share", "rpcd", "acl.d", "luci-app-mape-py.json")))
    grp = doc["luci-app-mape-py"]
    assert grp["read"]["ubus"] == {"mape": ["status", "calc"]}
    assert grp["write"]["ubus"] == {"mape": ["recompute", "adopt", "give_up", "reapply", "use_free_port"]}
    assert grp["read"]["uci"] == ["mape"] and grp["write"]["uci"] == ["mape"]


def test_menu_entry():
    doc = json.loads(read(os.path.join(i18n.APP, "root", "usr", "share", "luci", "menu.d", "luci-app-mape-py.json")))
    node = doc["admin/services/mape"]
    assert node["action"] == {"type": "view", "path": "mape/overview"}
    assert node["depends"]["acl"] == ["luci-app-mape-py"]
    assert os.path.exists(os.path.join(i18n.VIEW_DIR, "view", node["action"]["path"] + ".js"))


def test_makefile_is_a_luci_mk_app():
    mk = read(os.path.join(i18n.APP, "Makefile"))
    assert re.search(r"^LUCI_DEPENDS:=\+luci-base \+mape-py$", mk, re.M)
    assert re.search(r"^LUCI_PKGARCH:=all$", mk, re.M)
    assert re.search(r"^LUCI_TITLE:=.+", mk, re.M)
    assert re.search(r"^include \.\./\.\./luci\.mk$", mk, re.M)


def test_uci_defaults_script():
    path = os.path.join(i18n.APP, "root", "etc", "uci-defaults", "40_luci-mape-py")
    assert os.stat(path).st_mode & 0o111
    for sh in ("dash", "sh"):
        exe = shutil.which(sh)
        if exe:
            subprocess.run([exe, "-n", path], check=True)
