"""Shared helpers for the package tests: build the ipks (from the real tree, or from a
synthetic copy of the repository whose files/ and luci-app trees the test controls) and
open them the way opkg-lede does (gzip -> outer tar -> gzip -> inner tars)."""

import gzip
import importlib.util
import io
import os
import shutil
import subprocess
import tarfile

import pytest

DASH = shutil.which("dash")
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_builder():
    spec = importlib.util.spec_from_file_location("build_ipk", os.path.join(TOP, "tools", "build_ipk.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


build_ipk = load_builder()


class Ipk:
    """An .ipk opened as opkg-lede opens it."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.raw = f.read()
        self.outer_tar = gzip.decompress(self.raw)
        self.outer = tarfile.open(fileobj=io.BytesIO(self.outer_tar))
        self.outer_members = self.outer.getmembers()
        self.members = {m.name: self.outer.extractfile(m).read() for m in self.outer_members}
        self.data_tar = gzip.decompress(self.members["./data.tar.gz"])
        self.control_tar = gzip.decompress(self.members["./control.tar.gz"])
        self.data = tarfile.open(fileobj=io.BytesIO(self.data_tar))
        self.control = tarfile.open(fileobj=io.BytesIO(self.control_tar))

    def control_file(self, name):
        try:
            return self.control.extractfile("./" + name).read().decode()
        except KeyError:
            return None

    def fields(self):
        out, last = {}, None
        for line in self.control_file("control").split("\n"):
            if not line:
                continue
            if line.startswith(" "):
                out[last] += "\n" + line
                continue
            key, _, value = line.partition(":")
            out[key] = value.strip()
            last = key
        return out

    def files(self):
        """{install path: (mode, is_dir)} with paths as on the router ('/usr/...')."""
        out = {}
        for m in self.data.getmembers():
            path = "/" + m.name[2:] if m.name.startswith("./") else "/" + m.name.lstrip("./")
            if m.name in (".", "./"):
                path = "/"
            out[path.rstrip("/") or "/"] = (m.mode, m.isdir())
        return out

    def read(self, path):
        return self.data.extractfile("." + path).read()


def make_repo(tmp_path, files=None, luci=None, extra_src=None, keep_real_trees=False):
    """A copy of the repository (src/mape, package/, tools/) with files/ and
    luci-app-mape-py/ made from the given {relative path: (content, mode)} dicts."""
    top = tmp_path / "repo"
    top.mkdir()
    shutil.copytree(os.path.join(TOP, "src"), top / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(os.path.join(TOP, "package"), top / "package")
    if keep_real_trees:
        for d in ("files", "luci-app-mape-py"):
            if os.path.isdir(os.path.join(TOP, d)):
                shutil.copytree(os.path.join(TOP, d), top / d)
    for base, tree in (("files", files or {}), ("luci-app-mape-py", luci or {}),
                       ("src/mape", extra_src or {})):
        (top / base).mkdir(parents=True, exist_ok=True)
        for rel, (content, mode) in tree.items():
            p = top / base / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
            os.chmod(p, mode)
    return str(top)


def overlay_ok():
    if os.geteuid() != 0 or not shutil.which("unshare") or not DASH:
        return False
    return True


class LiveRoot:
    """An overlay of this machine's / (upper dir in tmp) entered with chroot in a private
    mount namespace; files written inside land in the upper dir."""

    def __init__(self, tmp_path):
        self.base = tmp_path
        self.upper = tmp_path / "upper"
        self.work = tmp_path / "work"
        self.merged = tmp_path / "merged"
        for d in (self.upper, self.work, self.merged):
            d.mkdir()

    def put(self, path, text, mode=0o755):
        # write through symlinked top-level dirs of the lower root (/lib -> usr/lib)
        real = os.path.realpath(os.path.dirname(path))
        p = self.upper / real.lstrip("/") / os.path.basename(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        p.chmod(mode)

    def run(self, command, env):
        envs = " ".join("%s='%s'" % kv for kv in sorted(env.items()))
        inner = "env -i %s %s -c '%s'" % (envs, DASH, command.replace("'", "'\\''"))
        script = ("mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/,upperdir=%s,"
                  "workdir=%s %s && exec chroot %s /bin/sh -c \"$0\"" % (
                      self.upper, self.work, self.merged, self.merged))
        return subprocess.run(["unshare", "-m", "sh", "-c", script, inner],
                              capture_output=True, text=True, timeout=120)

    def log(self):
        p = self.upper / "tmp" / "mape-test.log"
        return p.read_text().splitlines() if p.exists() else []


# A synthetic router tree with one file of each kind, with modes deliberately "wrong" in
# the source tree where the packaging rules must fix them.
SYNTH_FILES = {
    "etc/init.d/mape-py": ("#!/bin/sh /etc/rc.common\nSTART=95\nUSE_PROCD=1\n", 0o644),
    "etc/config/mape": ("config mape 'config'\n\toption enabled '1'\n", 0o644),
    "usr/libexec/rpcd/mape": ("#!/bin/sh\necho '{}'\n", 0o644),
    "usr/bin/mape-py": ("#!/usr/bin/python3\nimport sys\n", 0o755),
    "etc/hotplug.d/iface/90-mape-py": ("[ \"$INTERFACE\" = wan6 ] || exit 0\n", 0o644),
    "etc/uci-defaults/90-mape-py-firewall": ("uci -q get firewall.mape_py || true\nexit 0\n", 0o644),
    "usr/share/mape-py/firewall.include": ("#!/bin/sh\nexit 0\n", 0o755),
    "usr/share/mape-py/README.txt": ("data\n", 0o600),
    "usr/share/mape-py/.gitkeep": ("", 0o644),
    "usr/share/mape-py/notes.txt~": ("editor backup\n", 0o644),
}
SYNTH_LUCI = {
    "htdocs/luci-static/resources/view/mape/overview.js": ("'use strict';\n", 0o644),
    "root/usr/share/luci/menu.d/luci-app-mape-py.json": ("{}\n", 0o644),
    "root/usr/share/rpcd/acl.d/luci-app-mape-py.json": ("{}\n", 0o644),
    "root/etc/uci-defaults/40_luci-mape-py": ("rm -f /tmp/luci-indexcache*\nexit 0\n", 0o755),
    "po/ja/mape.po": ("msgid \"\"\nmsgstr \"\"\n", 0o644),
    "Makefile": ("include $(TOPDIR)/rules.mk\n\nLUCI_TITLE:=LuCI support for MAP-E (mape-py)\n"
                 "LUCI_DEPENDS:=+luci-base +mape-py\n"
                 "PKG_LICENSE:=GPL-2.0-only\n\n"
                 "include ../../luci.mk\n\n# call BuildPackage - OpenWrt buildroot signature\n", 0o644),
}


@pytest.fixture(scope="session")
def real_build(tmp_path_factory):
    """Both ipks built from the working tree, exactly as `make ipk` does."""
    out = tmp_path_factory.mktemp("dist")
    paths = build_ipk.build(str(out))
    return {os.path.basename(p).split("_")[0]: Ipk(p) for p in paths}


@pytest.fixture(scope="session")
def synth_build(tmp_path_factory):
    """Both ipks built from a repository copy with the synthetic trees above (plus byte
    code that must not be shipped)."""
    tmp = tmp_path_factory.mktemp("synth")
    top = make_repo(tmp, files=SYNTH_FILES, luci=SYNTH_LUCI,
                    extra_src={"__pycache__/cli.cpython-311.pyc": (b"\0", 0o644),
                               "core/stale.pyc": (b"\0", 0o644)})
    out = os.path.join(str(tmp), "dist")
    paths = build_ipk.build(out, top=top)
    ipks = {os.path.basename(p).split("_")[0]: Ipk(p) for p in paths}
    ipks["top"] = top
    return ipks
