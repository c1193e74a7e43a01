"""luci-i18n-mape-py-ja: the Japanese catalogue package luci.mk (LuciTranslation) builds, also
from `make ipk`: the same name, Depends, description and files, including the uci-defaults
that registers the language with LuCI (issue 12, point 13)."""
import importlib.util
import os
import re
import tarfile

from pkg_helpers import TOP, build_ipk
from tests.prereq import require

_spec = importlib.util.spec_from_file_location("po2lmo", os.path.join(TOP, "luci-app-mape-py", "tools", "po2lmo.py"))
po2lmo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(po2lmo)
SHARED = os.path.join(os.path.dirname(TOP), "shared", "openwrt")


def test_japanese_package_ships_the_compiled_catalogue(real_build):
    ipk = real_build["luci-i18n-mape-py-ja"]
    fields = ipk.fields()
    assert fields["Package"] == "luci-i18n-mape-py-ja" and fields["Architecture"] == "all"
    assert fields["Version"] == real_build["luci-app-mape-py"].fields()["Version"]
    files = ipk.files()
    assert files["/usr/lib/lua/luci/i18n/mape.ja.lmo"] == (0o644, False)
    catalogue = po2lmo.read_lmo(ipk.read("/usr/lib/lua/luci/i18n/mape.ja.lmo"))
    key = po2lmo.sfh_hash("Shared IPv4 address".encode())
    assert catalogue[key] == "共有 IPv4 アドレス"
    assert len(catalogue) > 150


def test_japanese_package_is_what_luci_mk_makes(real_build):
    """luci.mk: DEPENDS:=$(PKG_NAME) (+libc from PKG_FIXUP_DEPENDS), description
    "Translation for $(PKG_NAME) - $(LUCI_LANG.ja)", and
    /etc/uci-defaults/luci-i18n-$(LUCI_BASENAME)-ja =
    "uci set luci.languages.ja='日本語 (Japanese)'; uci commit luci" (default_postinst runs it)."""
    ipk = real_build["luci-i18n-mape-py-ja"]
    fields = ipk.fields()
    assert fields["Depends"] == "libc, luci-app-mape-py"
    assert fields["Description"] == "Translation for luci-app-mape-py - 日本語 (Japanese)"
    files = ipk.files()
    assert files["/etc/uci-defaults/luci-i18n-mape-py-ja"] == (0o644, False)
    assert ipk.read("/etc/uci-defaults/luci-i18n-mape-py-ja").decode() == \
        "uci set luci.languages.ja='日本語 (Japanese)'; uci commit luci\n"
    assert ipk.control_file("postinst-pkg") is None  # 24.10's luci.mk has none (21.02's sourced the file)


def _luci_mk(profile):
    path = os.path.join(SHARED, profile, "luci.tar.gz")
    require(os.path.exists(path), "%s (the pinned LuCI sources) is missing" % path)
    with tarfile.open(path) as t:
        return t.extractfile("luci/luci.mk").read().decode("utf-8")


def test_language_table_is_luci_mk_s():
    """build_ipk's LUCI_LANG / LUCI_LC_ALIAS are luci.mk's (24.10: all of it; 21.02: every
    language both list has the same name there)."""
    for profile in ("24.10", "21.02"):
        text = _luci_mk(profile)
        lang = dict(re.findall(r"^LUCI_LANG\.(\w+)=(.*)$", text, re.M))
        alias = dict(re.findall(r"^LUCI_LC_ALIAS\.(\w+)=(.*)$", text, re.M))
        assert lang and alias
        if profile == "24.10":
            assert build_ipk.LUCI_LANG == lang
            assert build_ipk.LUCI_LC_ALIAS == alias
        else:
            assert {k: v for k, v in lang.items() if k in build_ipk.LUCI_LANG} == \
                {k: v for k, v in build_ipk.LUCI_LANG.items() if k in lang}
            assert alias == build_ipk.LUCI_LC_ALIAS
    for lang in os.listdir(os.path.join(TOP, "luci-app-mape-py", "po")):
        assert lang == "templates" or lang in build_ipk.LUCI_LANG, "po/%s: unknown to luci.mk" % lang
