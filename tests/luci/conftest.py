import os

import pytest

from tests.luci.standin_server import StandinServer
from tests.luci.webdriver import Chrome, WebDriverError, find_chromedriver, find_chromium
from tests.prereq import require

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ARTIFACTS = os.path.join(ROOT, "test-artifacts", "luci")


def pytest_collection_modifyitems(items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.luci)


@pytest.fixture(scope="session")
def server():
    srv = StandinServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def chrome():
    require(find_chromium() and find_chromedriver(), "chromium / chromium-driver not installed")
    try:
        browser = Chrome()
    except WebDriverError as e:
        pytest.fail(str(e))
    yield browser
    browser.close()


@pytest.fixture
def page(server, chrome):
    """Open the MAP-E view with a given status document; returns the driver."""
    def open_page(status=None, lang="en", mape_object=True, include=None):
        server.reset(status)
        server.mape_object = mape_object
        chrome.get("%s/?lang=%s%s" % (server.url, lang, "&include=" + include if include else ""))
        chrome.wait("return document.body.getAttribute('data-view-ready') == '1' || "
                    "!!document.getElementById('luci-runtime-error')")
        err = chrome.js("var e = document.getElementById('luci-runtime-error'); return e ? e.textContent : null;")
        assert err is None, "view failed to render: %s" % err
        return chrome
    return open_page


@pytest.fixture
def shot(chrome):
    def take(name):
        return chrome.screenshot(os.path.join(ARTIFACTS, name + ".png"))
    return take
