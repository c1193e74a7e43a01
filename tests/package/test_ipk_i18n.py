"""luci-i18n-mape-py-ja: the Japanese catalogue luci.mk would build, also from `make ipk`."""
import importlib.util
import os

from pkg_helpers import TOP

_spec = importlib.util.spec_from_file_location("po2lmo", os.path.join(TOP, "luci-app-mape-py", "tools", "po2lmo.py"))
po2lmo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(po2lmo)


def test_japanese_package_ships_the_compiled_catalogue(real_build):
    ipk = real_build["luci-i18n-mape-py-ja"]
    fields = ipk.fields()
    assert fields["Package"] == "luci-i18n-mape-py-ja" and fields["Architecture"] == "all"
    assert fields["Depends"] == "luci-app-mape-py"
    assert fields["Version"] == real_build["luci-app-mape-py"].fields()["Version"]
    files = ipk.files()
    assert files["/usr/lib/lua/luci/i18n/mape.ja.lmo"] == (0o644, False)
    catalogue = po2lmo.read_lmo(ipk.read("/usr/lib/lua/luci/i18n/mape.ja.lmo"))
    key = po2lmo.sfh_hash("Shared IPv4 address".encode())
    assert catalogue[key] == "共有 IPv4 アドレス"
    assert len(catalogue) > 150
