"""The LuCI tier: luci-app-mape-py's views in headless Chromium under the real luci-base
runtime of each profile (21.02 and the 2024-09 tree of 24.10, from ../shared/openwrt), on
an OpenWrt test bed whose real rpcd answers with our installed plugin and ACL (see
luci_bed.py and luci_server.py). One bed per profile, shared by every test of the tier.

Nothing here skips: a missing prerequisite (root, Chromium, the tarballs, a C compiler...)
fails (tests/prereq.require), unless MAPE_ALLOW_SKIP=1.
"""
import glob
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.luci.webdriver import Chrome, WebDriverError, find_chromedriver, find_chromium
from tests.prereq import require

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ARTIFACTS = os.path.join(ROOT, "test-artifacts", "luci")
PROFILES = ("21.02", "24.10")
VIEW = "admin/services/mape"
OVERVIEW = "admin/status/overview"
_UNSET = object()
walls = {}
notes = []

# Collected in every page before its own scripts: what a person would see in the console.
ERROR_HOOK = r"""
window.__pageErrors = [];
window.addEventListener('error', function(ev) {
    var t = ev.target;
    if (t && t !== window && (t.src || t.href))
        window.__pageErrors.push('failed to load ' + (t.src || t.href));
    else
        window.__pageErrors.push('error: ' + ev.message);
}, true);
window.addEventListener('unhandledrejection', function(ev) {
    var r = ev.reason;
    window.__pageErrors.push('unhandled rejection: ' + (r && r.message ? r.message : String(r)));
});
(function() {
    var orig = console.error;
    console.error = function() {
        window.__pageErrors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
        return orig.apply(console, arguments);
    };
})();
"""


def pytest_collection_modifyitems(items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.luci)


def pytest_terminal_summary(terminalreporter):
    if walls:
        terminalreporter.write_line("LuCI tier set-up: " + ", ".join("%s %.1fs" % kv for kv in sorted(walls.items())))
    for line in notes:
        terminalreporter.write_line("LuCI tier: " + line)


class Luci:
    """One profile's LuCI router: .router (luci_bed.LuciRouter), .server (luci_server)."""

    def __init__(self, profile, router, server, runtime):
        self.profile, self.router, self.server, self.runtime = profile, router, server, runtime

    @property
    def bed(self):
        return self.router.bed


@pytest.fixture(scope="session")
def luci_workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("luci"))


@pytest.fixture(scope="session")
def luci_ipks(tmp_path_factory):
    """mape-py, luci-app-mape-py and luci-i18n-mape-py-ja, built from this tree."""
    out = str(tmp_path_factory.mktemp("luci-ipk"))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_ipk.py"), "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=ROOT)
    found = sorted(glob.glob(os.path.join(out, "*.ipk")))
    names = sorted(os.path.basename(f).split("_")[0] for f in found)
    if p.returncode != 0 or names != ["luci-app-mape-py", "luci-i18n-mape-py-ja", "mape-py"]:
        pytest.fail("tools/build_ipk.py failed or built %s:\n%s" % (names, p.stdout[-3000:]))
    return found


_runtimes = {}


@pytest.fixture(scope="session")
def runtime_of(luci_workdir):
    """runtime_of(profile) -> luci_runtime.Runtime (the tarball extracted, tools built once)."""
    from tests.luci.luci_runtime import LuciRuntimeError, Runtime

    def get(profile):
        if profile not in _runtimes:
            require(shutil.which("cc") is not None, "a C compiler (build-essential) to build luci-base's po2lmo")
            try:
                _runtimes[profile] = Runtime(profile, luci_workdir)
                _runtimes[profile].tools()
            except LuciRuntimeError as e:
                pytest.fail(str(e))
        return _runtimes[profile]
    return get


@pytest.fixture(scope="session", params=PROFILES)
def luci(request, luci_ipks, luci_workdir, runtime_of):
    profile = request.param
    require(os.geteuid() == 0, "root (the OpenWrt bed: namespaces, overlayfs)")
    missing = [t for t in ("unshare", "nsenter", "ip") if shutil.which(t) is None]
    require(not missing, "%s (the OpenWrt bed)" % ", ".join(missing))
    from tests.luci.luci_bed import LuciRouter
    from tests.luci.luci_server import LuciServer
    rt = runtime_of(profile)
    router = LuciRouter(profile, rt, luci_ipks, luci_workdir)
    t0 = time.time()
    try:
        router.up()
    except Exception as e:
        snap = router.bed.snapshot() if router.bed and router.bed.initpid else ""
        router.down()
        pytest.fail("bringing up the LuCI bed of %s failed: %s\n%s" % (profile, e, snap))
    walls["bed %s" % profile] = time.time() - t0
    server = LuciServer(router, rt).start()
    yield Luci(profile, router, server, rt)
    if router.relogins:
        notes.append("%s: %d login(s) renewed after rpcd reloads (%s)" % (
            profile, len(router.relogins), ", ".join(sorted(set("%s: %s" % r for r in router.relogins)))))
    server.stop()
    router.down()


@pytest.fixture(scope="session")
def chrome():
    require(find_chromium() and find_chromedriver(), "chromium / chromium-driver not installed")
    try:
        browser = Chrome()
    except WebDriverError as e:
        pytest.fail(str(e))
    browser.on_new_document(ERROR_HOOK)
    yield browser
    browser.close()


def login(chrome, luci, user):
    """The browser holds `user`'s LuCI session cookie (sysauth / sysauth_http, per revision)."""
    if not str(chrome.current_url()).startswith(luci.server.url):
        chrome.get(luci.server.url + "/luci-static/resources/icons/loading.gif")
    d = luci.server.dispatcher
    for name in d.cookie_names(d.tree()["children"]["admin"].get("auth")):
        chrome.add_cookie(name, luci.router.sessions[user]["sid"], "/cgi-bin/luci")


def page_errors(c):
    return c.js("return (window.__pageErrors || []).slice();")


def notifications(c):
    """LuCI's notifications (ui.addNotification / L.error): their text."""
    return c.js("return Array.from(document.querySelectorAll('#maincontent > .alert-message')).map("
                "function(e) { return e.innerText; });")


@pytest.fixture
def page(luci, chrome):
    """page(status, lang, user, path, running, plugin) -> the driver, with the page of `path`
    (the MAP-E view unless given) rendered for that daemon state (see LuciRouter.show; _UNSET:
    leave the daemon as it is), user and language (plugin=False: mape-py's rpcd plugin
    removed, rpcd reloaded), without console errors or LuCI error notices."""
    def open_page(status=_UNSET, lang="en", user="root", path=VIEW, running=None, plugin=True,
                  allow_errors=False):
        luci.router.reset()
        if not plugin:
            luci.router.remove_plugin()
        if status is not _UNSET:
            luci.router.show(status, running)
        luci.server.lang = lang
        luci.server.reset_log()
        login(chrome, luci, user)
        chrome.get("%s/cgi-bin/luci/%s" % (luci.server.url, path))
        ready = ("return !!document.getElementById('mape-status')" if path == VIEW else
                 "return !!document.querySelector('#view') && !document.querySelector('#view .spinning')")
        try:
            chrome.wait(ready + " || document.querySelectorAll('#maincontent > .alert-message').length > 0;")
        except AssertionError:
            seen = chrome.js("return document.body ? document.body.innerText.slice(0, 600) : null;")
            pytest.fail("the page %s did not render (%s) as %s.\npage: %r\nconsole: %r\nubus calls: %r"
                        % (path, luci.profile, user, seen, page_errors(chrome), luci.server.calls[-12:]))
        if not allow_errors:
            assert notifications(chrome) == [], "LuCI reported errors: %r" % notifications(chrome)
            assert page_errors(chrome) == [], "console errors: %r" % page_errors(chrome)
        return chrome
    return open_page


@pytest.fixture
def shot(chrome, luci):
    def take(name):
        # the whole page, from the top (a scrolled page would put the theme's fixed header
        # in the middle of a full-page capture)
        chrome.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
        return chrome.screenshot(os.path.join(ARTIFACTS, luci.profile, name + ".png"))
    return take
