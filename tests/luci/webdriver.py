"""A minimal W3C WebDriver client (stdlib only) for Debian's chromium + chromedriver.

Just what the LuCI tests need: open a page, run JavaScript, find/click/type, screenshots.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--force-device-scale-factor=1", "--window-size=1280,1000",
]


def find_chromium():
    for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(p):
            return p
    return shutil.which("chromium")


def find_chromedriver():
    for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"):
        if os.path.exists(p):
            return p
    return shutil.which("chromedriver")


class WebDriverError(RuntimeError):
    pass


class Element:
    def __init__(self, driver, eid):
        self.driver, self.id = driver, eid

    def click(self):
        self.driver._cmd("POST", "/element/%s/click" % self.id, {})

    def clear(self):
        self.driver._cmd("POST", "/element/%s/clear" % self.id, {})

    def send_keys(self, text):
        self.driver._cmd("POST", "/element/%s/value" % self.id, {"text": text})

    @property
    def text(self):
        return self.driver._cmd("GET", "/element/%s/text" % self.id)


class Chrome:
    """chromedriver on a free local port plus one browser session."""

    def __init__(self, lang="en-US", timezone="UTC"):
        driver, browser = find_chromedriver(), find_chromium()
        if not driver or not browser:
            raise WebDriverError("chromium and chromium-driver (Debian) are needed")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="mape-luci-chrome-")
        env = dict(os.environ, TZ=timezone)
        self.proc = subprocess.Popen([driver, "--port=%d" % self.port, "--allowed-ips=127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.base = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 30
        while True:
            try:
                self._http("GET", "/status")
                break
            except (OSError, WebDriverError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise WebDriverError("chromedriver did not start")
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": CHROME_FLAGS + ["--user-data-dir=%s" % self.profile, "--lang=%s" % lang],
            },
        }}}
        try:
            value = self._http("POST", "/session", caps)
        except Exception:
            self.close()
            raise
        self.session = value["sessionId"]

    def _http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                payload = json.loads(r.read().decode() or "{}")
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read().decode() or "{}")
            v = payload.get("value", {})
            raise WebDriverError("%s: %s" % (v.get("error"), v.get("message", "")[:500]))
        return payload.get("value")

    def _cmd(self, method, path, body=None):
        return self._http(method, "/session/%s%s" % (self.session, path), body)

    def get(self, url):
        self._cmd("POST", "/url", {"url": url})

    def current_url(self):
        return self._cmd("GET", "/url")

    def add_cookie(self, name, value, path="/"):
        self._cmd("POST", "/cookie", {"cookie": {"name": name, "value": value, "path": path}})

    def on_new_document(self, source):
        """Run ``source`` in every page before its own scripts (CDP)."""
        self.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def js(self, script, *args):
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        v = self._cmd("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, v[ELEMENT])

    def wait(self, script, *args, timeout=30, message=None):
        """Poll a JS expression until it returns something truthy (a bound for failures only)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(message or "timed out waiting for: %s" % script)
            time.sleep(0.1)

    def cdp(self, cmd, params=None):
        """A Chrome DevTools Protocol command through chromedriver."""
        return self._cmd("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params or {}})

    def screenshot(self, path, full_page=True):
        if full_page:
            size = self.js("return [document.documentElement.scrollWidth, "
                           "Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)];")
            shot = self.cdp("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
            png = base64.b64decode(shot["data"])
        else:
            png = base64.b64decode(self._cmd("GET", "/screenshot"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        return path

    def close(self):
        try:
            if getattr(self, "session", None):
                self._http("DELETE", "/session/%s" % self.session)
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
