#!/usr/bin/env python3
"""Build dist/mape-py_<v>_all.ipk and dist/luci-app-mape-py_<v>_all.ipk without the SDK.

The output is what OpenWrt's scripts/ipkg-build makes and opkg-lede reads:

    <pkg>_<version>_all.ipk = gzip -n( tar --format=gnu --numeric-owner --sort=name (
        ./debian-binary ("2.0\\n"), ./data.tar.gz, ./control.tar.gz ))

Every input comes from the repository; nothing is hard-coded here but luci.mk's language
table (LUCI_LANG, LUCI_LC_ALIAS):

* mape-py: metadata (PKG_RELEASE, licence, maintainer, SECTION, TITLE, DEPENDS, the
  description, conffiles, maintainer scripts) from package/mape-py/Makefile, the single
  source of truth; version from src/mape/__init__.py; files from src/mape/ (installed as
  /usr/lib/mape-py/mape/) and files/ (laid out as on the router), with the feed
  Makefile's mode rules; conffiles that are no files of the package (/etc/mape-py/) listed
  in /lib/upgrade/keep.d/mape-py, as include/package-ipkg.mk does.
* luci-app-mape-py: luci.mk's rules applied to luci-app-mape-py/ (htdocs/ -> /www/,
  root/ -> /, modes as in the tree, the app's own postinst or luci.mk's); metadata from
  luci-app-mape-py/Makefile (LUCI_TITLE, LUCI_DEPENDS, ...).
* luci-i18n-mape-py-<lang>: luci.mk's translation packages (po/<lang>/*.po -> .lmo, the
  uci-defaults registering the language).

Reproducible: every mtime is SOURCE_DATE_EPOCH (environment, else the last git commit's
time, else - not a git checkout - the newest packaged source file's), owners are 0/0 with no names, entries are sorted, gzip headers carry no name/time.
Why not nfpm: see docs/packaging.md.

Usage: python3 tools/build_ipk.py [--out dist] [--only mape-py|luci-app-mape-py]
"""

import argparse
import ast
import gzip
import io
import os
import re
import stat
import subprocess
import sys
import tarfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAPE_MAKEFILE = os.path.join("package", "mape-py", "Makefile")
LUCI_DIR = "luci-app-mape-py"
LUCI_MAKEFILE = os.path.join(LUCI_DIR, "Makefile")

# Feed Makefile mode rules (keep in step with MAPE_EXEC_DIRS in package/mape-py/Makefile;
# tests/package/test_feed_makefile.py runs that Makefile and compares).
EXEC_DIRS = ("etc/init.d", "etc/hotplug.d", "etc/uci-defaults", "usr/bin", "usr/sbin",
             "usr/libexec/rpcd")
CONF_DIR = "etc/config"


class BuildError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# Reading the OpenWrt Makefiles (a small subset of make: := / = / += / ?= assignments with
# backslash continuations, and define ... endef blocks).

def _unescape(text, where):
    """Make-expand a script or value that only uses `$$` for a literal `$`."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "$":
            if text[i + 1:i + 2] == "$":
                out.append("$")
                i += 2
                continue
            raise BuildError("%s: make reference %r not supported by build_ipk (use $$ for a"
                             " shell $)" % (where, text[i:i + 12]))
        out.append(c)
        i += 1
    return "".join(out)


def parse_makefile(path):
    """Return (variables, defines) of an OpenWrt package Makefile: both raw (unexpanded).
    Variables assigned inside a define (e.g. DEPENDS in Package/x) are keyed
    'Package/x:DEPENDS'."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    variables, defines = {}, {}
    i = 0
    assign = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(:=|\+=|\?=|=)\s*(.*)$")
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^define\s+(\S+)\s*$", line)
        if m:
            name = m.group(1)
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != "endef":
                body.append(lines[i])
                i += 1
            defines[name] = "\n".join(body)
            for key, op, value in _assignments(body, assign):
                _assign(variables, name + ":" + key, op, value)
            i += 1
            continue
        if line.lstrip().startswith("#"):
            i += 1
            continue
        full = line
        while full.endswith("\\") and i + 1 < len(lines):
            i += 1
            full = full[:-1] + " " + lines[i].strip()
        m = assign.match(full)
        if m and not line.startswith("\t"):
            _assign(variables, m.group(1), m.group(2), m.group(3).strip())
        i += 1
    return variables, defines


def _assignments(body, assign):
    j = 0
    while j < len(body):
        full = body[j]
        while full.endswith("\\") and j + 1 < len(body):
            j += 1
            full = full[:-1] + " " + body[j].strip()
        m = assign.match(full)
        if m:
            yield m.group(1), m.group(2), m.group(3).strip()
        j += 1


def _assign(variables, key, op, value):
    if op == "+=" and key in variables:
        variables[key] = (variables[key] + " " + value).strip()
    elif op == "?=" and key in variables:
        pass
    else:
        variables[key] = value


def parse_depends(raw, where):
    """OpenWrt DEPENDS -> control Depends list: `+foo` -> foo; `@SYMBOL` dropped (build-time
    condition); conditional forms (`COND:foo`) are refused: they have no ipk meaning. As
    include/package-defaults.mk's PKG_FIXUP_DEPENDS, libc comes first (every non-kmod
    package of an SDK build depends on it)."""
    deps = ["libc"]
    for word in raw.split():
        if word.startswith("@"):
            continue
        if ":" in word or "(" in word or "!" in word:
            raise BuildError("%s: conditional dependency %r not supported" % (where, word))
        name = word.lstrip("+")
        if not re.match(r"^[a-zA-Z0-9_.+-]+$", name):
            raise BuildError("%s: bad package name %r" % (where, name))
        if name not in deps:
            deps.append(name)
    return deps


def mape_metadata(top=TOP):
    path = os.path.join(top, MAPE_MAKEFILE)
    v, d = parse_makefile(path)
    pkg = "mape-py"
    where = MAPE_MAKEFILE

    def pkgvar(name, required=True):
        value = v.get("Package/%s:%s" % (pkg, name))
        if value is None and required:
            raise BuildError("%s: Package/%s has no %s" % (where, pkg, name))
        return value

    meta = {
        "Package": pkg,
        "Version": "%s-%s" % (python_version(top), v["PKG_RELEASE"]),
        "Depends": parse_depends(pkgvar("DEPENDS"), where),
        "Source": os.path.dirname(MAPE_MAKEFILE),
        "License": v.get("PKG_LICENSE", ""),
        "Section": pkgvar("SECTION"),
        "Maintainer": v.get("PKG_MAINTAINER", ""),
        "Architecture": pkgvar("PKGARCH"),
        "Description": _unescape(d.get("Package/%s/description" % pkg, pkgvar("TITLE")), where),
        "conffiles": sorted(line.strip() for line in d.get("Package/%s/conffiles" % pkg, "").split("\n")
                            if line.strip()),
        "scripts": {},
    }
    # As include/package-ipkg.mk: Package/<n>/postinst -> postinst-pkg, prerm -> prerm-pkg,
    # preinst and postrm verbatim; postinst/prerm are the default_* wrappers.
    for name, member in (("preinst", "preinst"), ("postinst", "postinst-pkg"),
                         ("prerm", "prerm-pkg"), ("postrm", "postrm")):
        body = d.get("Package/%s/%s" % (pkg, name))
        if body is not None:
            meta["scripts"][member] = _unescape(body, "%s Package/%s/%s" % (where, pkg, name)) + "\n"
    return meta


def luci_metadata(top=TOP):
    """luci.mk: PKG_NAME = directory name, SECTION luci, TITLE = LUCI_TITLE, DEPENDS =
    LUCI_DEPENDS, PKGARCH all (no src/Makefile). luci.mk derives PKG_VERSION from git when the
    app Makefile does not set it; here the app carries mape-py's version unless it sets one."""
    pkg = os.path.basename(LUCI_DIR)
    path = os.path.join(top, LUCI_MAKEFILE)
    v, defines = {}, None
    if os.path.exists(path):
        v, defines = parse_makefile(path)
    where = LUCI_MAKEFILE
    version = v.get("PKG_VERSION")
    if not version or "$" in version:
        version = python_version(top)
    release = v.get("PKG_RELEASE", "1")
    if "$" in release:
        release = "1"
    mape_meta_v, _ = parse_makefile(os.path.join(top, MAPE_MAKEFILE))
    scripts = {}
    # luci.mk: Package/$(PKG_NAME)/postinst unless the app defines its own; shipped as
    # postinst-pkg. The default is 24.10's luci.mk (21.02's also sourced root/etc/uci-defaults/*
    # there, which default_postinst runs anyway -- and on 24.10 has already deleted).
    if defines is not None and "Package/%s/postinst" % pkg in defines:
        body = _unescape(defines["Package/%s/postinst" % pkg], "%s Package/%s/postinst" % (where, pkg))
        scripts["postinst-pkg"] = body + "\n"
    else:
        # (make joins the define's first line, which ends in a backslash, with the next)
        scripts["postinst-pkg"] = ('[ -n "${IPKG_INSTROOT}" ] || { rm -f /tmp/luci-indexcache.*\n'
                                   '\trm -rf /tmp/luci-modulecache/\n\tkillall -HUP rpcd 2>/dev/null\n\texit 0\n}\n')
    title = v.get("LUCI_TITLE", "LuCI support for mape-py")
    return {
        "Package": pkg,
        "Version": "%s-%s" % (version, release),
        "Depends": parse_depends(v.get("LUCI_DEPENDS", "+luci-base +mape-py"), where),
        "Source": LUCI_DIR,
        "License": v.get("PKG_LICENSE", mape_meta_v.get("PKG_LICENSE", "")),
        "Section": "luci",
        "Maintainer": v.get("PKG_MAINTAINER", mape_meta_v.get("PKG_MAINTAINER", "")),
        "Architecture": v.get("LUCI_PKGARCH", "all"),
        "Description": _unescape(v.get("LUCI_DESCRIPTION", title), where),
        "conffiles": [],
        "scripts": scripts,
    }


def python_version(top=TOP):
    with open(os.path.join(top, "src", "mape", "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if not m:
        raise BuildError("src/mape/__init__.py: no __version__")
    return m.group(1)


# ---------------------------------------------------------------------------------------
# The payload trees.

def _excluded(name):
    """Names the feed Makefile's Build/Prepare deletes (byte code, editor droppings, dot
    files); the OpenWrt build also drops CVS/.svn/.#*/*~."""
    return (name == "__pycache__" or name.endswith((".pyc", ".pyo", "~")) or name.startswith(".")
            or name == "CVS")


def _walk(src, dst):
    """Yield (source path or None for a directory, install path) under src -> dst."""
    if not os.path.isdir(src):
        return
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not _excluded(d))
        rel = os.path.relpath(root, src)
        base = dst if rel == "." else dst.rstrip("/") + "/" + rel.replace(os.sep, "/")
        yield None, base
        for name in sorted(files):
            if _excluded(name):
                continue
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                raise BuildError("%s: only regular files can be packaged" % path)
            yield path, base.rstrip("/") + "/" + name


def _tree_mode(path):
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


def mape_entries(top=TOP):
    """{install path: (source, mode)}; directories have source None."""
    entries = {"/": (None, 0o755)}
    for p in ("/usr", "/usr/lib", "/usr/lib/mape-py"):
        entries[p] = (None, 0o755)
    for src, dst in _walk(os.path.join(top, "src", "mape"), "/usr/lib/mape-py/mape"):
        entries[dst] = (src, 0o755 if src is None else _tree_mode(src))
    for src, dst in _walk(os.path.join(top, "files"), "/"):
        if src is None:
            entries[dst] = (None, 0o755)
            continue
        rel = dst.lstrip("/")
        mode = _tree_mode(src)
        if any(rel.startswith(d + "/") for d in EXEC_DIRS):
            mode = 0o755
        if rel.startswith(CONF_DIR + "/"):
            mode = 0o600
        entries[dst] = (src, mode)
    return entries


def luci_entries(top=TOP):
    """luci.mk's Package/install: cp -pR htdocs/* -> /www/, root/* -> / (modes kept)."""
    base = os.path.join(top, LUCI_DIR)
    entries = {"/": (None, 0o755)}
    for sub, dst in (("htdocs", "/www"), ("root", "/")):
        for src, path in _walk(os.path.join(base, sub), dst):
            entries[path] = (src, 0o755 if src is None else _tree_mode(src))
    return entries


# luci.mk's language table (LUCI_LANG.<code>, 24.10; 21.02's has the same names for the
# languages both list) and the package-name aliases (LUCI_LC_ALIAS.<code>).
# tests/openwrt/test_opkg.py compares both with the pinned luci.mk of each profile.
LUCI_LANG = {
    "ar": "العربية (Arabic)", "bg": "български (Bulgarian)", "bn_BD": "বাংলা (Bengali)",
    "ca": "Català (Catalan)", "cs": "Čeština (Czech)", "da": "Dansk (Danish)",
    "de": "Deutsch (German)", "el": "Ελληνικά (Greek)", "es": "Español (Spanish)",
    "fi": "Suomi (Finnish)", "fr": "Français (French)", "he": "עִבְרִית (Hebrew)",
    "hi": "हिंदी (Hindi)", "hu": "Magyar (Hungarian)", "it": "Italiano (Italian)",
    "ja": "日本語 (Japanese)", "ko": "한국어 (Korean)", "lt": "Lietuvių (Lithuanian)",
    "mr": "Marāṭhī (Marathi)", "ms": "Bahasa Melayu (Malay)", "nb_NO": "Norsk (Norwegian)",
    "nl": "Nederlands (Dutch)", "pl": "Polski (Polish)", "pt": "Português (Portuguese)",
    "pt_BR": "Português do Brasil (Brazilian Portuguese)", "ro": "Română (Romanian)",
    "ru": "Русский (Russian)", "sk": "Slovenčina (Slovak)", "sv": "Svenska (Swedish)",
    "tr": "Türkçe (Turkish)", "uk": "Українська (Ukrainian)", "vi": "Tiếng Việt (Vietnamese)",
    "zh_Hans": "简体中文 (Chinese Simplified)", "zh_Hant": "繁體中文 (Chinese Traditional)",
}
LUCI_LC_ALIAS = {"bn_BD": "bn", "nb_NO": "no", "pt_BR": "pt-br", "zh_Hans": "zh-cn", "zh_Hant": "zh-tw"}


def luci_i18n_packages(top=TOP):
    """luci.mk's hidden luci-i18n-<basename>-<lc> packages (LuciTranslation), one per
    po/<lang>/ that luci.mk knows (LUCI_LANG; others it skips): each po/<lang>/*.po compiled
    to /usr/lib/lua/luci/i18n/<name>.<lc>.lmo (with the app's own po2lmo, as luci-base's C tool
    would), plus /etc/uci-defaults/luci-i18n-<basename>-<lc> registering the language with
    LuCI (`uci set luci.languages.<lc>='<name>'`; default_postinst runs it); Depends libc and
    the app; description "Translation for <app> - <name>"."""
    import importlib.util

    po_dir = os.path.join(top, LUCI_DIR, "po")
    tool = os.path.join(top, LUCI_DIR, "tools", "po2lmo.py")
    if not os.path.isdir(po_dir) or not os.path.exists(tool):
        return []
    spec = importlib.util.spec_from_file_location("po2lmo", tool)
    po2lmo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(po2lmo)
    app = luci_metadata(top)
    basename = app["Package"][len("luci-app-"):]
    packages = []
    for lang in sorted(os.listdir(po_dir)):
        if lang == "templates" or not os.path.isdir(os.path.join(po_dir, lang)):
            continue
        if lang not in LUCI_LANG:
            print("build_ipk: warning: po/%s: not a language luci.mk knows (LUCI_LANG): no package" % lang,
                  file=sys.stderr)
            continue
        lc = LUCI_LC_ALIAS.get(lang, lang)
        name = "luci-i18n-%s-%s" % (basename, lc)
        entries = {"/": (None, 0o755)}
        for d in ("/etc", "/etc/uci-defaults", "/usr", "/usr/lib", "/usr/lib/lua", "/usr/lib/lua/luci",
                  "/usr/lib/lua/luci/i18n"):
            entries[d] = (None, 0o755)
        entries["/etc/uci-defaults/" + name] = (
            ("uci set luci.languages.%s='%s'; uci commit luci\n" % (lc.replace("-", "_"), LUCI_LANG[lang]))
            .encode("utf-8"), 0o644)
        for po in sorted(os.listdir(os.path.join(po_dir, lang))):
            if po.endswith(".po"):
                with open(os.path.join(po_dir, lang, po), encoding="utf-8") as f:
                    lmo = po2lmo.compile_po(f.read())
                entries["/usr/lib/lua/luci/i18n/%s.%s.lmo" % (po[:-3], lc)] = (lmo, 0o644)
        meta = dict(app, Package=name, Depends=parse_depends("+" + app["Package"], LUCI_MAKEFILE),
                    Description="Translation for %s - %s" % (app["Package"], LUCI_LANG[lang]),
                    conffiles=[], scripts={})
        packages.append((meta, entries))
    return packages


# ---------------------------------------------------------------------------------------
# Archives.

# What goes into the packages: the newest of these files dates a tree that is not a git
# checkout (a `git archive` tarball gives every file the commit's time).
EPOCH_SOURCES = ("src", "files", "luci-app-mape-py", "package")


def source_date_epoch(top=TOP):
    """SOURCE_DATE_EPOCH from the environment; else, in a git checkout, the last commit's
    time; else the newest mtime of the packaged sources (0 when there are none)."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    if os.path.exists(os.path.join(top, ".git")):
        try:
            out = subprocess.run(["git", "-C", top, "log", "-1", "--format=%ct"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            return int(out)
        except (OSError, subprocess.CalledProcessError, ValueError):
            pass
    newest = 0
    for name in EPOCH_SOURCES:
        for root, dirs, files in os.walk(os.path.join(top, name)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if not f.endswith(".pyc"):
                    newest = max(newest, int(os.lstat(os.path.join(root, f)).st_mtime))
    return newest


def _info(name, mtime, mode, size=0, directory=False):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.mode = mode
    ti.size = size
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _tar(members, mtime):
    """members: list of (name, bytes or None for a directory, mode), in archive order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data, mode in members:
            if data is None:
                tf.addfile(_info(name, mtime, mode, directory=True))
            else:
                tf.addfile(_info(name, mtime, mode, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _gzip(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def _sorted_tree(entries):
    """GNU tar --sort=name order: depth first, each directory's entries sorted by name."""
    children = {}
    for path in entries:
        if path == "/":
            continue
        parent = path.rsplit("/", 1)[0] or "/"
        children.setdefault(parent, []).append(path)
    order = []

    def visit(path):
        order.append(path)
        for child in sorted(children.get(path, []), key=lambda p: p.rsplit("/", 1)[1].encode()):
            visit(child)
    visit("/")
    return order


def data_members(entries):
    members = []
    for path in _sorted_tree(entries):
        src, mode = entries[path]
        name = "./" if path == "/" else "." + path
        if src is None:
            members.append((name, None, mode))
        elif isinstance(src, bytes):
            members.append((name, src, mode))
        else:
            with open(src, "rb") as f:
                members.append((name, f.read(), mode))
    return members


def control_text(meta, installed_size):
    """include/package-ipkg.mk's Package/<n>/CONTROL plus the Description lines."""
    fields = [("Package", meta["Package"]), ("Version", meta["Version"]),
              ("Depends", ", ".join(meta["Depends"])), ("Source", meta["Source"]),
              ("SourceDateEpoch", str(meta.get("SourceDateEpoch", ""))),
              ("License", meta["License"]), ("Section", meta["Section"]),
              ("Maintainer", meta["Maintainer"]), ("Architecture", meta["Architecture"]),
              ("Installed-Size", str(installed_size))]
    lines = ["%s: %s" % (k, v) for k, v in fields if v]
    desc = [" " + line.strip() for line in meta["Description"].strip("\n").split("\n")]
    # package-ipkg.mk: printf "Description: "; echo "$DESCRIPTION" | sed 's,^[[:space:]]*, ,g'
    lines.append("Description: " + desc[0])
    lines.extend(desc[1:])
    return "\n".join(lines) + "\n"


POSTINST = ('#!/bin/sh\n[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
            '. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n')
PRERM = '#!/bin/sh\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_prerm $0 $@\n'


def keep_entries(meta, entries):
    """include/package-ipkg.mk (KEEP_<pkg>): the conffiles that are not files of the payload
    (e.g. a directory the package's programs fill) go to /lib/upgrade/keep.d/<pkg>, one a
    line, so that a sysupgrade keeping settings keeps them. Returns the new entries."""
    keep = [c for c in meta["conffiles"] if not (c in entries and entries[c][0] is not None)]
    if not keep:
        return entries
    entries = dict(entries)
    for d in ("/lib", "/lib/upgrade", "/lib/upgrade/keep.d"):
        entries.setdefault(d, (None, 0o755))
    entries["/lib/upgrade/keep.d/" + meta["Package"]] = ("".join(c + "\n" for c in keep).encode(), 0o644)
    return entries


def build_package(meta, entries, epoch):
    """Return the .ipk bytes."""
    meta = dict(meta, SourceDateEpoch=epoch)
    entries = keep_entries(meta, entries)
    data_tar = _tar(data_members(entries), epoch)
    control = {"control": control_text(meta, len(data_tar)).encode(),
               "postinst": POSTINST.encode(), "prerm": PRERM.encode()}
    # ipkg-build keeps only the conffiles that are files of the payload, sorted.
    conffiles = sorted(c for c in meta["conffiles"] if c in entries and entries[c][0] is not None)
    if conffiles:
        control["conffiles"] = ("\n".join(conffiles) + "\n").encode()
    for name, text in meta["scripts"].items():
        control[name] = text.encode()
    cmembers = [("./", None, 0o755)]
    for name in sorted(control):
        mode = 0o644 if name in ("control", "conffiles") else 0o755
        cmembers.append(("./" + name, control[name], mode))
    control_tar = _tar(cmembers, epoch)
    outer = _tar([("./debian-binary", b"2.0\n", 0o644),
                  ("./data.tar.gz", _gzip(data_tar), 0o644),
                  ("./control.tar.gz", _gzip(control_tar), 0o644)], epoch)
    return _gzip(outer)


def ipk_name(meta):
    return "%s_%s_%s.ipk" % (meta["Package"], meta["Version"], meta["Architecture"])


# ---------------------------------------------------------------------------------------
# Imports of the shipped code -> python3-* split packages (python3-find-stdlib-depends.sh
# and lang/python/python3/files/python3-package-*.mk in openwrt/packages).

SPLIT_PACKAGES = {
    "asyncio": "python3-asyncio", "cgi": "python3-cgi", "cgitb": "python3-cgitb",
    "unicodedata": "python3-codecs", "ctypes": "python3-ctypes", "dbm": "python3-dbm",
    "dbm.gnu": "python3-gdbm", "decimal": "python3-decimal", "_pydecimal": "python3-decimal",
    "distutils": "python3-distutils", "email": "python3-email", "logging": "python3-logging",
    "lzma": "python3-lzma", "multiprocessing": "python3-multiprocessing",
    "curses": "python3-ncurses", "ssl": "python3-openssl", "_hashlib": "python3-openssl",
    "doctest": "python3-pydoc", "pydoc": "python3-pydoc", "readline": "python3-readline",
    "sqlite3": "python3-sqlite3", "unittest": "python3-unittest", "urllib": "python3-urllib",
    "xml": "python3-xml", "xmlrpc": "python3-xml", "uuid": "python3-uuid",
    "lib2to3": "python3-lib2to3", "venv": "python3-venv", "webbrowser": "python3-webbrowser",
}
# Not packaged for OpenWrt at all (python3-light's filespec drops them).
UNAVAILABLE = {"tkinter", "turtle", "turtledemo", "idlelib", "ensurepip", "test"}
# Split packages that pull others in (their own DEPENDS).
IMPLIED = {"python3-urllib": ["python3-email"]}
# Non-stdlib modules the shipped code may import, only inside a try that catches
# ImportError (docs/DESIGN: "use a binding when importable, the CLI otherwise"). They are
# arch-specific packages, so they cannot be in an `all` package's Depends.
OPTIONAL_BINDINGS = {"ubus": "python3-ubus", "uci": "python3-uci"}


def python_files(entries):
    """Shipped Python: *.py plus files whose first line is a python shebang."""
    for path, (src, _) in sorted(entries.items()):
        if src is None:
            continue
        if path.endswith(".py"):
            yield path, src
            continue
        with open(src, "rb") as f:
            first = f.readline(200)
        if first.startswith(b"#!") and b"python" in first:
            yield path, src


def _catches_import_error(handler):
    if handler.type is None:
        return True
    names = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def imports_of(source, filename="<shipped>"):
    """{module: guarded} for every module imported anywhere in the file (module level,
    inside functions, importlib.import_module / __import__ with a constant name). guarded
    is True when every import of it sits in a try block that catches ImportError (an
    optional import). Relative imports are reported as '.'."""
    tree = ast.parse(source, filename)
    found = {}
    guarded_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    guarded_nodes.add(id(sub))

    def add(name, node):
        g = id(node) in guarded_nodes
        found[name] = found.get(name, True) and g

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                add(".", node)
            elif node.module:
                add(node.module, node)
                for alias in node.names:
                    add(node.module + "." + alias.name, node)
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name in ("import_module", "__import__") and node.args and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                add(node.args[0].value, node)
    return found


def _stdlib_names():
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:  # Python < 3.10: fall back to the interpreter's stdlib directory
        import sysconfig
        stdlib = sysconfig.get_paths()["stdlib"]
        names = set(sys.builtin_module_names)
        for n in os.listdir(stdlib):
            names.add(n[:-3] if n.endswith(".py") else n)
        dyn = os.path.join(stdlib, "lib-dynload")
        if os.path.isdir(dyn):
            names.update(n.split(".")[0] for n in os.listdir(dyn))
    return frozenset(names)


STDLIB = _stdlib_names()


def classify_imports(modules, internal=("mape",)):
    """-> (stdlib module names, non-stdlib names). Names under `internal` and relative
    imports are the package's own."""
    std, other = set(), set()
    for mod in modules:
        top = mod.split(".")[0]
        if mod == "." or top in internal or top == "__future__":
            continue
        if top in STDLIB:
            std.add(mod)
        else:
            other.add(mod)
    return std, other


def _module_level_imports(path):
    """Imports a stdlib module performs when it is imported: top-level statements (and
    if/else at top level), excluding try blocks that handle ImportError (optional)."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    found = set()

    def scan(body):
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
            elif isinstance(node, ast.If):
                scan(node.body)
                scan(node.orelse)
            elif isinstance(node, ast.Try):
                handled = any(
                    h.type is None or any(n in ast.dump(h.type) for n in ("ImportError",
                                                                           "ModuleNotFoundError"))
                    for h in node.handlers)
                if not handled:
                    scan(node.body)
    scan(tree.body)
    return found


def _stdlib_source(mod):
    import importlib.util
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin


def split_package_of(mod):
    parts = mod.split(".")
    for i in range(len(parts), 0, -1):
        pkg = SPLIT_PACKAGES.get(".".join(parts[:i]))
        if pkg:
            return pkg
    return None


def required_packages(std_modules):
    """python3-* packages the stdlib modules need, following what each light module imports
    at import time (e.g. pathlib -> urllib.parse -> python3-urllib; http.client -> email).
    The closure is computed on this machine's python3 (the router has 3.9 or 3.11)."""
    need = {}
    seen = set()
    stack = [(m, m) for m in sorted(std_modules)]
    while stack:
        mod, via = stack.pop()
        if mod in seen:
            continue
        seen.add(mod)
        top = mod.split(".")[0]
        if top in UNAVAILABLE:
            raise BuildError("%s (via %s) is not packaged for OpenWrt" % (mod, via))
        pkg = split_package_of(mod)
        if pkg:
            need.setdefault(pkg, set()).add(via)
            for extra in IMPLIED.get(pkg, []):
                need.setdefault(extra, set()).add(via)
            continue  # a split package declares its own dependencies
        # a parent package is imported first
        if "." in mod:
            stack.append((mod.rsplit(".", 1)[0], via))
        src = _stdlib_source(mod)
        if src:
            for sub in _module_level_imports(src):
                if sub.split(".")[0] in STDLIB:
                    stack.append((sub, via))
    return need


def dependency_report(top=TOP):
    """-> dict(declared, needed {pkg: [module...]}, missing, nonstdlib {module: [files]},
    optional {module: [files]})."""
    entries = mape_entries(top)
    by_module, guarded = {}, {}
    for path, src in python_files(entries):
        with open(src, "rb") as f:
            mods = imports_of(f.read(), src)
        for m, g in mods.items():
            by_module.setdefault(m, []).append(path)
            guarded[m] = guarded.get(m, True) and g
    std, other = classify_imports(set(by_module))
    optional = {m for m in other if guarded[m] and m.split(".")[0] in OPTIONAL_BINDINGS}
    needed = required_packages(std)
    declared = set(mape_metadata(top)["Depends"])
    return {
        "declared": sorted(declared),
        "needed": {k: sorted(v) for k, v in sorted(needed.items())},
        "missing": sorted(set(needed) - declared),
        "nonstdlib": {m: by_module[m] for m in sorted(other - optional)},
        "optional": {m: by_module[m] for m in sorted(optional)},
    }


# ---------------------------------------------------------------------------------------

def build(out, only=None, top=TOP, check_depends=True):
    epoch = source_date_epoch(top)
    written = []
    if check_depends and only in (None, "mape-py"):
        rep = dependency_report(top)
        problems = []
        if rep["nonstdlib"]:
            problems.append("non-stdlib imports in shipped code: %s" % rep["nonstdlib"])
        if rep["missing"]:
            problems.append("%s: DEPENDS lacks %s (imported: %s)" % (
                MAPE_MAKEFILE, " ".join("+" + p for p in rep["missing"]),
                {p: rep["needed"][p] for p in rep["missing"]}))
        if problems:
            raise BuildError("; ".join(problems))
    todo = []
    if only in (None, "mape-py"):
        todo.append((mape_metadata(top), mape_entries(top)))
    if only in (None, LUCI_DIR):
        todo.append((luci_metadata(top), luci_entries(top)))
        todo.extend(luci_i18n_packages(top))
    os.makedirs(out, exist_ok=True)
    for meta, entries in todo:
        data = build_package(meta, entries, epoch)
        name = os.path.join(out, ipk_name(meta))
        tmp = name + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, name)
        written.append(name)
    return written


def list_package(path):
    with open(path, "rb") as f:
        outer = tarfile.open(fileobj=io.BytesIO(gzip.decompress(f.read())))
    members = {m.name: outer.extractfile(m).read() for m in outer.getmembers()}
    data = tarfile.open(fileobj=io.BytesIO(gzip.decompress(members["./data.tar.gz"])))
    control = tarfile.open(fileobj=io.BytesIO(gzip.decompress(members["./control.tar.gz"])))
    total = 0
    for m in data.getmembers():
        if m.isfile():
            total += m.size
            print("  %04o %7d  %s" % (m.mode, m.size, m.name[1:]))
    print("  %d files, %d bytes; control: %s" % (
        sum(1 for m in data.getmembers() if m.isfile()), total,
        " ".join(m.name[2:] for m in control.getmembers() if m.isfile())))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(TOP, "dist"))
    ap.add_argument("--only", choices=["mape-py", LUCI_DIR])
    ap.add_argument("--list", action="store_true",
                    help="after building, print each package's files (mode, size, path)")
    ap.add_argument("--depends", action="store_true",
                    help="print the import -> python3-* package report and exit")
    args = ap.parse_args(argv)
    try:
        if args.depends:
            rep = dependency_report()
            for pkg, mods in rep["needed"].items():
                print("%-24s %s%s" % (pkg, " ".join(mods),
                                      "" if pkg in rep["declared"] else "   <- MISSING"))
            for mod, files in rep["optional"].items():
                print("optional %-15s %s (guarded import; %s is arch-specific)" % (
                    mod, " ".join(files), OPTIONAL_BINDINGS[mod.split(".")[0]]))
            for mod, files in rep["nonstdlib"].items():
                print("NON-STDLIB %s in %s" % (mod, " ".join(files)))
            return 1 if rep["missing"] or rep["nonstdlib"] else 0
        for path in build(args.out, args.only):
            print("%s %d bytes" % (os.path.relpath(path), os.path.getsize(path)))
            if args.list:
                list_package(path)
    except BuildError as e:
        print("build_ipk: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
