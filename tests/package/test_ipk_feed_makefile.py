"""The feed Makefiles and `make ipk` must produce the same packages. GNU make runs the real
package/mape-py/Makefile (and luci-app-mape-py/Makefile) against a stub of the OpenWrt
build system: rules.mk with the buildroot's install commands, a package.mk whose
BuildPackage runs Build/Prepare and Package/<name>/install into a directory with the same
double expansion as include/package-ipkg.mk, and dumps DEPENDS (after PKG_FIXUP_DEPENDS),
version, conffiles, description and maintainer scripts the way the buildroot exports them.
The resulting tree (paths and modes) and metadata are compared with the built ipk."""

import os
import shutil
import stat
import subprocess

import pytest

from pkg_helpers import SYNTH_FILES, SYNTH_LUCI, TOP, Ipk, build_ipk, make_repo

MAKE = shutil.which("make")

RULES_MK = """\
# stub of OpenWrt's rules.mk: the commands packages use in install recipes
INCLUDE_DIR:=$(TOPDIR)/include
BUILD_DIR:=$(STUB_BUILD)
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
CP:=cp -fpR
FIND:=find
"""

PACKAGE_MK = """\
# stub of OpenWrt's package.mk
PKG_BUILD_DIR?=$(BUILD_DIR)/$(PKG_NAME)$(if $(PKG_VERSION),-$(PKG_VERSION))
PKG_FIXUP_DEPENDS=$(if $(filter kmod-%,$(1)),$(2),+libc $(filter-out +libc,$(2)))

define Build/Prepare/Default
	mkdir -p $(PKG_BUILD_DIR)
endef
define Build/Prepare
	$(call Build/Prepare/Default)
endef

define StubPackage
KEEP_$(1):=$(strip $(call Package/$(1)/conffiles))
stub-install:
	rm -rf $$(PKG_BUILD_DIR) $$(DESTDIR)
	mkdir -p $$(PKG_BUILD_DIR) $$(DESTDIR)
	$(Build/Prepare)
	$(call Package/$(1)/install,$$(DESTDIR))
	# package-ipkg.mk: conffiles that are not files of the package -> /lib/upgrade/keep.d/<pkg>
	( \\
		keepfiles=""; \\
		for x in $$(KEEP_$(1)); do \\
			[ -f "$$(DESTDIR)/$$$$x" ] || keepfiles="$$$${keepfiles:+$$$$keepfiles }$$$$x"; \\
		done; \\
		[ -z "$$$$keepfiles" ] || { \\
			mkdir -p $$(DESTDIR)/lib/upgrade/keep.d; \\
			for x in $$$$keepfiles; do echo $$$$x >> $$(DESTDIR)/lib/upgrade/keep.d/$(1); done; \\
		}; \\
	)

stub-meta:
	$$(file >$$(OUT)/Package,$(1))
	$$(file >$$(OUT)/Version,$$(PKG_VERSION)-$$(PKG_RELEASE))
	$$(file >$$(OUT)/Depends,$$(strip $$(call PKG_FIXUP_DEPENDS,$(1),$$(DEPENDS))))
	$$(file >$$(OUT)/Section,$$(SECTION))
	$$(file >$$(OUT)/Architecture,$$(PKGARCH))
	$$(file >$$(OUT)/Title,$$(TITLE))
	$$(file >$$(OUT)/License,$$(PKG_LICENSE))
	$$(file >$$(OUT)/Maintainer,$$(PKG_MAINTAINER))
	$$(file >$$(OUT)/description,$$(Package/$(1)/description))
	$$(file >$$(OUT)/conffiles,$$(Package/$(1)/conffiles))
	$$(if $$(Package/$(1)/preinst),$$(file >$$(OUT)/preinst,$$(Package/$(1)/preinst)))
	$$(if $$(Package/$(1)/postinst),$$(file >$$(OUT)/postinst-pkg,$$(Package/$(1)/postinst)))
	$$(if $$(Package/$(1)/prerm),$$(file >$$(OUT)/prerm-pkg,$$(Package/$(1)/prerm)))
	$$(if $$(Package/$(1)/postrm),$$(file >$$(OUT)/postrm,$$(Package/$(1)/postrm)))
endef

define BuildPackage
$(eval $(Package/$(1)))
$(eval $(call StubPackage,$(1)))
endef
"""

# stub of luci.mk (24.10's): the parts that decide a LuCI app's files, dependencies and postinst
LUCI_MK = """\
LUCI_NAME?=$(notdir ${CURDIR})
LUCI_DEFAULTS:=$(notdir $(wildcard ${CURDIR}/root/etc/uci-defaults/*))
LUCI_PKGARCH?=$(if $(realpath src/Makefile),,all)
PKG_NAME?=$(LUCI_NAME)
PKG_VERSION?=git-stub
PKG_RELEASE?=1
PKG_BUILD_DIR:=$(BUILD_DIR)/$(PKG_NAME)

include $(INCLUDE_DIR)/package.mk

define Package/$(PKG_NAME)
  SECTION:=luci
  CATEGORY:=LuCI
  TITLE:=$(if $(LUCI_TITLE),$(LUCI_TITLE),LuCI $(LUCI_NAME))
  DEPENDS:=$(LUCI_DEPENDS)
  $(if $(LUCI_PKGARCH),PKGARCH:=$(LUCI_PKGARCH))
endef

ifneq ($(LUCI_DESCRIPTION),)
 define Package/$(PKG_NAME)/description
   $(strip $(LUCI_DESCRIPTION))
 endef
endif

define Build/Prepare
	for d in luasrc htdocs root src; do \\
	  if [ -d ./$$$$d ]; then \\
	    mkdir -p $(PKG_BUILD_DIR)/$$$$d; \\
	    $(CP) ./$$$$d/* $(PKG_BUILD_DIR)/$$$$d/; \\
	  fi; \\
	done
endef

define Package/$(PKG_NAME)/install
	if [ -d $(PKG_BUILD_DIR)/htdocs ]; then \\
	  $(INSTALL_DIR) $(1)/www; \\
	  cp -pR $(PKG_BUILD_DIR)/htdocs/* $(1)/www/; \\
	else true; fi
	if [ -d $(PKG_BUILD_DIR)/root ]; then \\
	  $(INSTALL_DIR) $(1)/; \\
	  cp -pR $(PKG_BUILD_DIR)/root/* $(1)/; \\
	else true; fi
endef

ifndef Package/$(PKG_NAME)/postinst
define Package/$(PKG_NAME)/postinst
[ -n "$${IPKG_INSTROOT}" ] || { \\
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
endef
endif

$(eval $(call BuildPackage,$(PKG_NAME)))
"""


def _stub_topdir(tmp):
    topdir = os.path.join(tmp, "openwrt")
    os.makedirs(os.path.join(topdir, "include"), exist_ok=True)
    os.makedirs(os.path.join(topdir, "feeds", "luci"), exist_ok=True)
    open(os.path.join(topdir, "rules.mk"), "w").write(RULES_MK)
    open(os.path.join(topdir, "include", "package.mk"), "w").write(PACKAGE_MK)
    open(os.path.join(topdir, "feeds", "luci", "luci.mk"), "w").write(LUCI_MK)
    return topdir


def _make(pkgdir, topdir, tmp, target, **kw):
    assert MAKE, "GNU make is needed (Debian: make)"
    args = [MAKE, "--no-print-directory", "-C", pkgdir, target, "TOPDIR=" + topdir,
            "STUB_BUILD=" + os.path.join(tmp, "build_dir")]
    args += ["%s=%s" % kv for kv in kw.items()]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _tree(root):
    """{install path: (mode, is_dir)} of a directory, as Ipk.files()."""
    out = {"/": (stat.S_IMODE(os.stat(root).st_mode), True)}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = "/" + os.path.relpath(p, root).replace(os.sep, "/")
            out[rel] = (stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode))
    return out


def _meta(out):
    """$(file >f,text) writes text plus a newline; drop that newline."""
    meta = {}
    for n in os.listdir(out):
        text = open(os.path.join(out, n)).read()
        meta[n] = text[:-1] if text.endswith("\n") else text
    return meta


def _run_feed(top, pkgdir, tmp):
    topdir = _stub_topdir(tmp)
    dest = os.path.join(tmp, "ipkg-all")
    meta = os.path.join(tmp, "meta")
    os.makedirs(meta)  # make expands every $(file ...) of the recipe before running it
    _make(pkgdir, topdir, tmp, "stub-install", DESTDIR=dest)
    _make(pkgdir, topdir, tmp, "stub-meta", OUT=meta)
    return _tree(dest), _meta(meta)


def _compare(ipk, tree, meta):
    files = ipk.files()
    only_make = sorted(set(tree) - set(files))
    only_ipk = sorted(set(files) - set(tree))
    assert not only_make and not only_ipk, "feed Makefile only: %s; make ipk only: %s" % (only_make, only_ipk)
    for path, (mode, is_dir) in tree.items():
        assert files[path] == (mode, is_dir), "%s: feed %s, ipk %s" % (path, oct(mode), oct(files[path][0]))
    f = ipk.fields()
    assert f["Package"] == meta["Package"]
    assert f["Depends"].split(", ") == [d.lstrip("+") for d in meta["Depends"].split()]
    assert f["Section"] == meta["Section"]
    assert f["Architecture"] == meta["Architecture"]
    conffiles = [c.strip() for c in meta["conffiles"].split("\n") if c.strip()]
    conffiles = sorted(c for c in conffiles if c in files and not files[c][1])  # as ipkg-build
    assert (ipk.control_file("conffiles") or "") == "".join(c + "\n" for c in conffiles)
    desc = meta["description"] or meta["Title"]
    want = [" " + line.strip() for line in desc.strip("\n").split("\n")]
    got = ipk.control_file("control").split("Description: ", 1)[1]
    assert got == "\n".join(want) + "\n"
    for script in ("preinst", "postinst-pkg", "prerm-pkg", "postrm"):
        if script in meta:
            assert ipk.control_file(script) == meta[script] + "\n", script
        else:
            assert ipk.control_file(script) is None, script
    return f


def test_mape_py_feed_makefile_matches_make_ipk(tmp_path, real_build):
    tree, meta = _run_feed(TOP, os.path.join(TOP, "package", "mape-py"), str(tmp_path))
    f = _compare(real_build["mape-py"], tree, meta)
    assert f["Version"] == meta["Version"]
    assert f["License"] == meta["License"] and f["Maintainer"] == meta["Maintainer"]


def test_mape_py_feed_makefile_synthetic_tree(tmp_path, synth_build):
    top = synth_build["top"]
    tree, meta = _run_feed(top, os.path.join(top, "package", "mape-py"), str(tmp_path))
    assert tree["/etc/init.d/mape-py"] == (0o755, False)
    assert tree["/etc/config/mape"] == (0o600, False)
    _compare(synth_build["mape-py"], tree, meta)


def _luci_layout(tmp, app_src):
    """feeds/luci/applications/<app> next to the stub luci.mk, as in a LuCI feed; the app
    Makefile may include ../../luci.mk or $(TOPDIR)/feeds/luci/luci.mk."""
    topdir = _stub_topdir(tmp)
    app = os.path.join(topdir, "feeds", "luci", "applications", "luci-app-mape-py")
    shutil.copytree(app_src, app)
    # A feed is a git clone: git keeps only the executable bit, the clone has umask 022
    # modes. Our tree may not be a checkout (a `git archive` tarball unpacked by root keeps
    # its 0775/0664 modes), so give the copy the modes a feed checkout would have.
    for dirpath, dirs, files in os.walk(app):
        os.chmod(dirpath, 0o755)
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.stat(p).st_mode & 0o111 else 0o644)
    return app


def test_luci_feed_makefile_synthetic_tree(tmp_path, synth_build):
    top = synth_build["top"]
    app = _luci_layout(str(tmp_path), os.path.join(top, "luci-app-mape-py"))
    tree, meta = _run_feed(top, app, str(tmp_path))
    assert "/www/luci-static/resources/view/mape/overview.js" in tree
    _compare(synth_build["luci-app-mape-py"], tree, meta)


def test_luci_feed_makefile_real_tree(tmp_path, real_build):
    src = os.path.join(TOP, "luci-app-mape-py")
    assert os.path.exists(os.path.join(src, "Makefile")), "luci-app-mape-py/Makefile is missing"
    app = _luci_layout(str(tmp_path), src)
    tree, meta = _run_feed(TOP, app, str(tmp_path))
    _compare(real_build["luci-app-mape-py"], tree, meta)


def test_feed_makefile_catches_a_divergence(tmp_path):
    """The comparison can fail: a file the feed Makefile would install with another mode."""
    top = make_repo(tmp_path, files=dict(SYNTH_FILES, **{"usr/sbin/helper": ("#!/bin/sh\n", 0o644)}))
    mk = os.path.join(top, "package", "mape-py", "Makefile")
    text = open(mk).read()
    assert " usr/sbin " in text
    open(mk, "w").write(text.replace(" usr/sbin ", " "))
    ipk = Ipk(build_ipk.build(str(tmp_path / "dist"), only="mape-py", top=top)[0])
    tree, meta = _run_feed(top, os.path.join(top, "package", "mape-py"), str(tmp_path / "feed"))
    with pytest.raises(AssertionError, match="usr/sbin/helper"):
        _compare(ipk, tree, meta)
