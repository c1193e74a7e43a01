"""What the docs tell users and maintainers about opkg must match what opkg-lede does
(tests/openwrt/test_opkg.py shows it with the real opkg; issue 12, points 11, 12, 14, 15)."""
import os
import re

from pkg_helpers import TOP

PACKAGING = os.path.join(TOP, "docs", "packaging.md")
README = os.path.join(TOP, "README.md")
MAKEFILE = os.path.join(TOP, "package", "mape-py", "Makefile")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def paragraphs(text):
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def test_no_claim_that_the_old_prerm_is_not_run():
    """opkg-lede runs the old package's `prerm upgrade <version>` with PKG_UPGRADE=1 (since
    2017): nothing may say otherwise, and the Makefile and docs say what happens."""
    wrong = re.compile(r"(does not|doesn't|never) (run|call)s? the old|prerm_upgrade_old_pkg`?\)? is a no-op|"
                       r"if some opkg did call", re.I)
    for path in [PACKAGING, MAKEFILE] + [os.path.join(TOP, "tests", "package", n)
                                         for n in os.listdir(os.path.join(TOP, "tests", "package"))
                                         if n.endswith(".py") and n != os.path.basename(__file__)]:
        hits = [line for line in read(path).splitlines() if wrong.search(line)]
        assert not hits, "%s: %s" % (os.path.relpath(path, TOP), hits)
    for path in (PACKAGING, MAKEFILE):
        assert "prerm upgrade" in read(path), path


def test_force_reinstall_is_explained_not_suggested():
    """`opkg install --force-reinstall` runs the removal path (prerm remove, PKG_UPGRADE=0):
    wherever the docs mention it (tables of tests aside), the same paragraph says that IPv4
    goes down."""
    for path in (PACKAGING, README):
        mentions = [p for p in paragraphs(read(path)) if "--force-reinstall" in p and not p.startswith("|")]
        assert mentions, "%s does not say what --force-reinstall does" % os.path.relpath(path, TOP)
        for p in mentions:
            assert "IPv4" in p and re.search(r"remov", p), "%s: %s" % (os.path.relpath(path, TOP), p)


def test_readme_says_what_users_see():
    """The conffile message opkg prints on every upgrade after an edit, and what a sysupgrade
    does and how to come back."""
    text = read(README)
    assert "resolve_conffiles" in text and "/etc/config/mape-opkg" in text
    sysupgrade = [p for p in paragraphs(text) if re.search(r"sysupgrade|firmware upgrade", p, re.I)]
    assert sysupgrade and any("/etc/mape-py/" in p and "opkg install" in p for p in sysupgrade), sysupgrade
