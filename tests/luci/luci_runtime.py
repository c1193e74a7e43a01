"""luci-base's client runtime of an OpenWrt profile, straight from the pinned tarball
``../shared/openwrt/<profile>/luci.tar.gz`` (21.02: the openwrt-21.02 branch; 24.10: the
2024-09 master that 24.10 branched from). Stdlib only; nothing of it is copied into the
repository: the tarball is extracted into a temporary directory at test time.

    rt = Runtime("24.10", workdir)       # extracts the tarball
    rt.htdocs                            # luci-base, luci-mod-status, bootstrap theme htdocs
    rt.acl_files, rt.menu_files          # their rpcd ACL and menu.d JSON
    rt.po2lmo(po, lmo)                   # luci-base's own po2lmo (C, built from src/)
    rt.catalog(lang, i18n_dir)           # what admin/translations/<lang> serves, read with
                                         # luci-base's own lmo code (lmo_load_catalog...)
    rt.env_keys()                        # the keys header.htm / header.ut hands `new LuCI()`

21.02 renders pages with Lua templates (luasrc/view/header.htm, view.htm) and 24.10 with
ucode ones (ucode/template/header.ut, view.ut); neither runtime exists on the test host, so
tests/luci/luci_server.py writes the same HTML, and tests compare it with these templates.
"""
import os
import re
import shutil
import subprocess
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(os.path.dirname(TOP), "shared", "openwrt")
PROFILES = ("21.02", "24.10")
LMODUMP = os.path.join(HERE, "lmodump.c")


class LuciRuntimeError(RuntimeError):
    pass


def tarball(profile):
    return os.path.join(SHARED, profile, "luci.tar.gz")


def run(argv, cwd=None):
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if p.returncode != 0:
        raise LuciRuntimeError("%s -> %d:\n%s" % (" ".join(argv), p.returncode, p.stdout[-3000:]))
    return p.stdout


class Runtime:
    def __init__(self, profile, workdir):
        if profile not in PROFILES:
            raise LuciRuntimeError("unknown profile %r" % profile)
        src = tarball(profile)
        if not os.path.exists(src):
            raise LuciRuntimeError("%s does not exist (the pinned LuCI sources, see %s/README.md)"
                                % (src, SHARED))
        self.profile = profile
        self.dir = os.path.join(workdir, "luci-" + profile)
        if not os.path.isdir(os.path.join(self.dir, "luci")):
            os.makedirs(self.dir, exist_ok=True)
            run(["tar", "-xzf", src, "-C", self.dir])
        self.top = os.path.join(self.dir, "luci")
        self.base = os.path.join(self.top, "modules", "luci-base")
        self.status = os.path.join(self.top, "modules", "luci-mod-status")
        self.theme = os.path.join(self.top, "themes", "luci-theme-bootstrap")
        for need in (self.base, self.status, self.theme):
            if not os.path.isdir(need):
                raise LuciRuntimeError("%s has no %s" % (src, os.path.relpath(need, self.dir)))
        self.lua = profile == "21.02"   # 21.02: Lua templates; later: ucode
        self._tools = None
        self._lock = threading.Lock()

    # -- files -----------------------------------------------------------------------------
    @property
    def htdocs(self):
        return [os.path.join(m, "htdocs") for m in (self.base, self.status, self.theme)]

    def _root_files(self, sub):
        out = []
        for m in (self.base, self.status):
            d = os.path.join(m, "root", sub)
            if os.path.isdir(d):
                out.extend(os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".json"))
        return out

    @property
    def acl_files(self):
        return self._root_files(os.path.join("usr", "share", "rpcd", "acl.d"))

    @property
    def menu_files(self):
        return self._root_files(os.path.join("usr", "share", "luci", "menu.d"))

    def base_po(self, lang):
        return os.path.join(self.base, "po", lang, "base.po")

    def template(self, name):
        """luci-base's page template (header, view, footer) or the theme's (themes/header...)."""
        if name.startswith("themes/"):
            sub = ("luasrc/view/themes/bootstrap/%s.htm" if self.lua else
                   "ucode/template/themes/bootstrap/%s.ut") % name.split("/", 1)[1]
            path = os.path.join(self.theme, sub)
        else:
            path = os.path.join(self.base, ("luasrc/view/%s.htm" if self.lua else "ucode/template/%s.ut") % name)
        with open(path, encoding="utf-8") as f:
            return f.read()

    def env_keys(self):
        """The keys of the object the header template hands to ``new LuCI({...})``."""
        text = self.template("header")
        m = re.search(r"new LuCI\((.*?)\)\s*;?\s*</script>", text, re.S)
        if not m:
            raise LuciRuntimeError("no `new LuCI(...)` in %s's header template" % self.profile)
        sep = "=" if self.lua else ":"
        return sorted(set(re.findall(r"^\s*([a-z_]+)\s*%s" % sep, m.group(1), re.M)))

    # -- po2lmo and the lmo reader, built from luci-base's src/ -----------------------------
    def tools(self):
        with self._lock:
            if self._tools is None:
                self._tools = self._build_tools()
            return self._tools

    def _build_tools(self):
        for tool in ("cc",):
            if shutil.which(tool) is None:
                raise LuciRuntimeError("%s is needed to build luci-base's po2lmo (build-essential)" % tool)
        src = os.path.join(self.dir, "build")
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(os.path.join(self.base, "src"), src)
        run(["cc", "-o", "contrib/lemon", "contrib/lemon.c"], cwd=src)
        if self.lua:
            run(["./contrib/lemon", "-q", "plural_formula.y"], cwd=src)
            lmo, header = ["template_lmo.c", "plural_formula.c"], '"template_lmo.h"'
        else:
            run(["./contrib/lemon", "-q", "lib/plural_formula.y"], cwd=src)
            lmo, header = ["lib/lmo.c", "lib/plural_formula.c"], '"lib/lmo.h"'
        po2lmo = os.path.join(src, "po2lmo")
        lmodump = os.path.join(src, "lmodump")
        run(["cc", "-O1", "-o", po2lmo, "po2lmo.c"] + lmo, cwd=src)
        run(["cc", "-O1", "-I.", "-DLMO_HEADER=" + header, "-o", lmodump, LMODUMP] + lmo, cwd=src)
        return {"po2lmo": po2lmo, "lmodump": lmodump}

    def po2lmo(self, po, out):
        run([self.tools()["po2lmo"], po, out])
        return out

    def catalog(self, lang, i18n_dir):
        """{key_id: text} of every `*.<lang>.lmo` in i18n_dir, in luci-base's iteration order
        (later entries win, as in the `window.TR={...}` object LuCI writes)."""
        p = subprocess.run([self.tools()["lmodump"], lang, i18n_dir], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise LuciRuntimeError("lmodump %s %s: %s" % (lang, i18n_dir, p.stderr.decode(errors="replace")))
        data, pos, out = p.stdout, 0, {}
        while pos < len(data):
            nl = data.index(b"\n", pos)
            key, length = data[pos:nl].split()
            start = nl + 1
            end = start + int(length)
            out[int(key, 16)] = data[start:end].decode("utf-8", "replace")
            pos = end + 1
        return out
