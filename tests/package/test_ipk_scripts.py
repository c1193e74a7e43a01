"""Maintainer scripts: syntax (dash -n), image builds (IPKG_INSTROOT set: they must touch
nothing), and live installs/removals run by dash inside an overlay of this machine's root
(a private mount namespace + chroot), where /etc/init.d/*, uci and mape-py are stubs that
record their calls. /lib/functions.sh is a stand-in too (FUNCTIONS_SH below)."""

import os
import shutil
import subprocess

import pytest

from pkg_helpers import DASH, TOP, LiveRoot, overlay_ok
from tests.prereq import require

UNINSTALL = "/usr/share/mape-py/firewall.uninstall"


FUNCTIONS_SH = r'''
# Test stand-in for OpenWrt's /lib/functions.sh: default_postinst / default_prerm in the
# order 24.10's base-files do their work (recorded in $MAPE_TEST_LOG; 21.02's runs the
# postinst-pkg before the uci-defaults; tests/openwrt/test_opkg.py runs the real ones):
#   postinst: [live] source each packaged /etc/uci-defaults/* (deleted on success) and
#             `uci commit`; source <pkg>.postinst-pkg; per packaged /etc/init.d/* script:
#             [image] enable via rc.common, [live] enable (not on upgrade) then start.
#   prerm:    source <pkg>.prerm-pkg; per init script: [image] disable,
#             [live] disable (not on upgrade) then stop.
default_postinst() {
	echo "default_postinst $*" >> "$MAPE_TEST_LOG"
	local root="$IPKG_INSTROOT" pkgname="$(basename ${1%.*})" ret=0 i
	local filelist="$root/usr/lib/opkg/info/$pkgname.list"
	if [ -z "$root" ] && grep -q "^/etc/uci-defaults/" "$filelist"; then
		for i in $(grep "^/etc/uci-defaults/" "$filelist"); do
			( [ -f "$i" ] && cd "$(dirname "$i")" && . "$i" ) && rm -f "$i"
		done
		uci commit
	fi
	if [ -f "$root/usr/lib/opkg/info/$pkgname.postinst-pkg" ]; then
		( . "$root/usr/lib/opkg/info/$pkgname.postinst-pkg" )
		ret=$?
	fi
	for i in $(grep "^/etc/init.d/" "$filelist"); do
		if [ -n "$root" ]; then
			echo "rc.common $i enable (image)" >> "$MAPE_TEST_LOG"
		else
			[ "$PKG_UPGRADE" = "1" ] || "$i" enable
			"$i" start
		fi
	done
	return $ret
}
default_prerm() {
	echo "default_prerm $*" >> "$MAPE_TEST_LOG"
	local root="$IPKG_INSTROOT" pkgname="$(basename ${1%.*})" ret=0 i
	local filelist="$root/usr/lib/opkg/info/$pkgname.list"
	if [ -f "$root/usr/lib/opkg/info/$pkgname.prerm-pkg" ]; then
		( . "$root/usr/lib/opkg/info/$pkgname.prerm-pkg" )
		ret=$?
	fi
	for i in $(grep "^/etc/init.d/" "$filelist"); do
		if [ -n "$root" ]; then
			echo "rc.common $i disable (image)" >> "$MAPE_TEST_LOG"
		else
			[ "$PKG_UPGRADE" = "1" ] || "$i" disable
			"$i" stop
		fi
	done
	return $ret
}
'''

STUB = '''#!/bin/sh
echo "%s $*" >> "$MAPE_TEST_LOG"
%s
exit 0
'''
UCI_STUB = '''#!/bin/sh
echo "uci $*" >> "$MAPE_TEST_LOG"
if [ "$*" = "-q get firewall.mape_py" ]; then
	[ -e /tmp/uci-has-mape_py ] && { echo include; exit 0; }
	exit 1
fi
[ "$*" = "-q delete firewall.mape_py" ] && rm -f /tmp/uci-has-mape_py
exit 0
'''
INIT_STUB = '''#!/bin/sh
echo "$0 $*" >> "$MAPE_TEST_LOG"
[ "$1" = enabled ] && { [ -e /tmp/%s-enabled ]; exit $?; }
exit 0
'''


def _control_scripts(ipk):
    return {m.name[2:]: ipk.control.extractfile(m).read().decode()
            for m in ipk.control.getmembers() if m.isfile() and m.name not in ("./control", "./conffiles")}


@pytest.fixture(params=["mape-py", "luci-app-mape-py"])
def pkg(request, synth_build):
    return request.param, synth_build[request.param]


def test_scripts_have_shebang_and_parse(pkg, real_build):
    assert DASH, "dash is needed (Debian: dash)"
    for ipk in (pkg[1], real_build[pkg[0]]):
        for name, text in _control_scripts(ipk).items():
            if not name.endswith("-pkg"):
                assert text.startswith("#!/bin/sh\n"), name
            r = subprocess.run([DASH, "-n"], input=text, capture_output=True, text=True)
            assert r.returncode == 0, (name, r.stderr)


def test_wrappers_are_the_build_systems(pkg):
    scripts = _control_scripts(pkg[1])
    assert scripts["postinst"] == ('#!/bin/sh\n[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
                                   '. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n')
    assert scripts["prerm"] == '#!/bin/sh\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_prerm $0 $@\n'


def _fake_root(tmp_path, name, ipk):
    root = tmp_path / "root"
    info = root / "usr" / "lib" / "opkg" / "info"
    info.mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "lib" / "functions.sh").write_text(FUNCTIONS_SH)
    for script, text in _control_scripts(ipk).items():
        p = info / ("%s.%s" % (name, script))
        p.write_text(text)
        p.chmod(0o755)
    (info / ("%s.list" % name)).write_text("\n".join(sorted(ipk.files())) + "\n")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for cmd in ("uci", "mape-py", "logger", "opkg"):
        p = stubs / cmd
        p.write_text(STUB % ("CALLED " + cmd, ""))
        p.chmod(0o755)
    return root, stubs


@pytest.mark.parametrize("script, args", [("postinst", "configure"), ("prerm", "remove"),
                                          ("postrm", "remove")])
def test_image_build_touches_nothing(tmp_path, pkg, script, args):
    """IPKG_INSTROOT set (image builder): only the default_* call, no command run."""
    name, ipk = pkg
    root, stubs = _fake_root(tmp_path, name, ipk)
    log = tmp_path / "log"
    log.write_text("")
    path = root / "usr" / "lib" / "opkg" / "info" / ("%s.%s" % (name, script))
    if not path.exists():
        assert (name, script) == ("luci-app-mape-py", "postrm")  # luci.mk makes none
        return
    env = {"PATH": "%s:/usr/bin:/bin" % stubs, "IPKG_INSTROOT": str(root),
           "MAPE_TEST_LOG": str(log), "PKG_UPGRADE": "0", "PKG_ROOT": str(root)}
    r = subprocess.run([DASH, str(path)] + args.split(), env=env, capture_output=True, text=True,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    if script in ("postinst", "prerm"):
        assert lines[0] == "default_%s %s %s" % (script, path, args), lines
        # the rest is only default_*'s own rc.common enable/disable in the image
        init = [p for p in ipk.files() if p.startswith("/etc/init.d/")]
        verb = "enable" if script == "postinst" else "disable"
        assert lines[1:] == ["rc.common %s %s (image)" % (p, verb) for p in sorted(init)], lines
    else:
        assert lines == []


def test_ipkg_no_script(tmp_path, synth_build):
    root, stubs = _fake_root(tmp_path, "mape-py", synth_build["mape-py"])
    log = tmp_path / "log"
    log.write_text("")
    path = root / "usr" / "lib" / "opkg" / "info" / "mape-py.postinst"
    r = subprocess.run([DASH, str(path), "configure"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "IPKG_INSTROOT": str(root),
                            "IPKG_NO_SCRIPT": "1", "MAPE_TEST_LOG": str(log)})
    assert r.returncode == 0 and log.read_text() == ""


# --- live system: overlay of / + chroot -----------------------------------------------

@pytest.fixture
def live(tmp_path, real_build, synth_build):
    """The real mape-py package's control files, file list, uci-defaults and firewall
    teardown script; stubs for everything they call."""
    require(overlay_ok(), "the overlay chroot needs root, unshare and dash")
    lr = LiveRoot(tmp_path)
    lr.put("/lib/functions.sh", FUNCTIONS_SH, 0o644)
    for name in ("mape-py", "luci-app-mape-py"):
        ipk = real_build[name]
        for script, text in _control_scripts(ipk).items():
            lr.put("/usr/lib/opkg/info/%s.%s" % (name, script), text)
        lr.put("/usr/lib/opkg/info/%s.list" % name, "\n".join(sorted(ipk.files())) + "\n", 0o644)
        for path in ipk.files():
            if path.startswith("/etc/uci-defaults/") or path == UNINSTALL:
                lr.put(path, ipk.read(path), ipk.files()[path][0])
    for svc in ("mape-py", "rpcd", "firewall", "network"):
        lr.put("/etc/init.d/" + svc, INIT_STUB % svc)
    lr.put("/usr/bin/mape-py", STUB % ("mape-py", '[ "$1 $2" = "daemon --remove" ] && { [ -e /tmp/remove-fails ] && exit 1; '
                                                  'echo "restored: network"; }'))
    lr.put("/usr/sbin/uci", UCI_STUB)
    lr.put("/etc/mape-py/original/network", "config interface 'wan'\n", 0o644)
    lr.put("/var/run/mape-py/status.json", "{}", 0o644)
    probe = lr.run("true", {})
    require(probe.returncode == 0, "overlay mount not possible here: %s" % probe.stderr.strip())
    return lr


def _in_order(log, *events):
    """events appear in log in this order (other lines may come between)."""
    pos = 0
    for e in events:
        assert e in log[pos:], "%r not after position %d in %s" % (e, pos, log)
        pos = log.index(e, pos) + 1


LIVE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAPE_TEST_LOG": "/tmp/mape-test.log"}
INFO = "/usr/lib/opkg/info/mape-py"


def _run(live, command, **env):
    e = dict(LIVE_ENV, **env)
    r = live.run(command, e)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def test_live_install(live):
    r = _run(live, "sh %s.postinst configure; ls /etc/uci-defaults 2>/dev/null" % INFO,
             PKG_UPGRADE="0")
    log = live.log()
    assert log[0] == "default_postinst %s.postinst configure" % INFO
    # uci-defaults (the firewall include) first, then our postinst-pkg, then the service
    _in_order(log, "uci commit", "/etc/init.d/rpcd reload", "/etc/init.d/mape-py enable",
              "/etc/init.d/mape-py start")
    assert "/etc/init.d/mape-py restart" not in log
    assert not [x for x in r.stdout.split() if "mape-py-" in x], "uci-defaults not consumed"


def test_live_upgrade_starts_the_new_code_once(live):
    """Upgrade: opkg-lede ran the old `prerm upgrade` (default_prerm stopped the daemon), so
    the new postinst only has default_postinst's start to do: no restart of ours on top, and
    no enable (a disabled service stays disabled)."""
    _run(live, "touch /tmp/mape-py-enabled; sh %s.postinst configure" % INFO, PKG_UPGRADE="1")
    log = live.log()
    _in_order(log, "default_postinst %s.postinst configure" % INFO, "/etc/init.d/rpcd reload",
              "/etc/init.d/mape-py start")
    assert [line for line in log if line.startswith("/etc/init.d/mape-py")] == ["/etc/init.d/mape-py start"], log


def test_live_remove(live):
    r = _run(live, "touch /tmp/uci-has-mape_py; sh %s.prerm remove && sh %s.postrm remove; "
                   "[ -e /etc/mape-py ] && echo KEPT-STATE; [ -e /var/run/mape-py ] && echo KEPT-RUN; "
                   "[ -e /tmp/uci-has-mape_py ] && echo KEPT-INCLUDE; true" % (INFO, INFO),
             PKG_UPGRADE="0")
    # the NAT rules go once, with `daemon --remove` (no `mape-py firewall remove` after it)
    assert live.log() == [
        "default_prerm %s.prerm remove" % INFO,
        "/etc/init.d/mape-py stop",
        "mape-py daemon --remove",
        "uci -q get firewall.mape_py",
        "uci -q delete firewall.mape_py",
        "uci -q commit firewall",
        "/etc/init.d/mape-py disable",
        "/etc/init.d/mape-py stop",
        "/etc/init.d/rpcd reload",
    ]
    assert r.stdout == "mape-py: restored: network\n"


def test_live_remove_without_include(live):
    _run(live, "sh %s.prerm remove" % INFO, PKG_UPGRADE="0")
    log = live.log()
    assert "uci -q get firewall.mape_py" in log
    assert not [line for line in log if "commit" in line or "delete" in line]
    assert log[-3:] == ["uci -q get firewall.mape_py", "/etc/init.d/mape-py disable",
                        "/etc/init.d/mape-py stop"]
    assert log.count("mape-py daemon --remove") == 1 and "mape-py firewall remove" not in log


def test_live_remove_keeps_originals_when_restore_fails(live):
    r = _run(live, "touch /tmp/remove-fails; sh %s.prerm remove; ls /etc/mape-py/original" % INFO,
             PKG_UPGRADE="0")
    assert r.stdout.split() == ["network"]
    assert "could not restore" in r.stderr
    # the NAT rules then go on their own, once
    assert live.log().count("mape-py firewall remove") == 1


def test_live_upgrade_prerm_keeps_everything(live):
    """opkg-lede runs the old package's `prerm upgrade <new version>` with PKG_UPGRADE=1:
    nothing is undone, only default_prerm's stop (no disable)."""
    r = _run(live, "touch /tmp/uci-has-mape_py; sh %s.prerm upgrade 9.9-1; ls /etc/mape-py" % INFO,
             PKG_UPGRADE="1")
    assert live.log() == ["default_prerm %s.prerm upgrade 9.9-1" % INFO,
                          "/etc/init.d/mape-py stop"]
    assert r.stdout.split() == ["original"]


def test_live_luci_app_install_runs_its_uci_defaults_hook(live):
    """default_postinst runs 40_luci-mape-py (LuCI caches, rpcd reload) and deletes it; the
    app's postinst-pkg, sourced after it, must not try again (".: can't open ...")."""
    r = _run(live, "sh /usr/lib/opkg/info/luci-app-mape-py.postinst configure; ls /etc/uci-defaults",
             PKG_UPGRADE="0")
    assert live.log() == ["default_postinst /usr/lib/opkg/info/luci-app-mape-py.postinst configure",
                          "/etc/init.d/rpcd reload", "uci commit"]
    assert "40_luci-mape-py" not in r.stdout.split()
    assert r.stderr == "", r.stderr


def test_live_luci_app_after_mape_py_in_the_same_opkg_run(live, real_build):
    """Installed together, mape-py's postinst reloads rpcd (after both packages' files were
    unpacked) and marks the opkg run with a hard link to opkg's lock: the app's hook then
    does not reload rpcd a second time. In a later opkg run (another lock file) it does."""
    hook = "/etc/uci-defaults/40_luci-mape-py"
    _run(live, "mkdir -p /var/lock; touch /var/lock/opkg.lock; sh %s.postinst configure; "
               "sh /usr/lib/opkg/info/luci-app-mape-py.postinst configure" % INFO, PKG_UPGRADE="0")
    assert live.log().count("/etc/init.d/rpcd reload") == 1, live.log()
    live.put(hook, real_build["luci-app-mape-py"].read(hook))
    _run(live, "rm /var/lock/opkg.lock; touch /var/lock/opkg.lock; "
               "sh /usr/lib/opkg/info/luci-app-mape-py.postinst configure", PKG_UPGRADE="0")
    assert live.log().count("/etc/init.d/rpcd reload") == 2, live.log()
