#!/usr/bin/env python3
"""Build a real OpenWrt userland layer for the test bed (a build/test tool, never shipped).

    python3 tools/openwrt/build.py [--cache DIR] [--sources DIR] [--jobs N] PROFILE

PROFILE is "21.02" (fw3/iptables) or "24.10" (fw4/nftables + ucode). The pinned, unmodified
upstream tarballs (--sources, $MAPE_OPENWRT_SOURCES, else <repo>/../shared/openwrt; see its
README.md and SOURCES.tsv) are compiled on Debian and laid out
the way OpenWrt installs them, as a tree to overlay-mount over the host's / (Debian is
merged-usr, so OpenWrt's /lib, /sbin and /bin files go under usr/). Third-party code only ever
lands in the cache, never in this repository.

Result: <cache>/<PROFILE>-<key>/ with
    layer/          the tree to overlay over /
    manifest.json   profile, key, source commits, the main binaries' paths in the layer
    logs/           one build log per step
    tools/          OpenWrt's scripts/ipkg-build (and ipkg-make-index.sh)
    sdk/            headers, static libs and .pc files of the built libraries (not in layer/)
The absolute path of that directory is printed on stdout (last line); progress goes to stderr.
Cache: --cache, $MAPE_OPENWRT_CACHE, else /var/cache/mape-py/openwrt.

key = first 16 hex of sha256 over the profile's tarballs and this tool's own sources (this file,
the xtables shim, the substitute files). A warm cache returns at once; a build happens in a
temp dir next to the result and is renamed into place only on success.
"""
import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the pinned tarballs: next to the checkout (<repo>/../shared/openwrt), else the bed's path
_NEXT_TO_CHECKOUT = HERE.parent.parent.parent / "shared" / "openwrt"
DEFAULT_SOURCES = str(_NEXT_TO_CHECKOUT if _NEXT_TO_CHECKOUT.is_dir() else "/work/shared/openwrt")
DEFAULT_CACHE = "/var/cache/mape-py/openwrt"
# Our own sources that shape the output (hashed into the key, next to the tarballs).
OWN_SOURCES = ["build.py", "iptext_shim.c", "files"]
PROFILES = ("21.02", "24.10")
NOT_BUILT = {"luci.tar.gz"}  # LuCI's client runtime is served by the luci tier, not built here
# OpenWrt's TARGET_INIT_PATH, what base-files writes into /sbin/hotplug-call.
INIT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# base-files entries that would break the Debian host under the overlay (accounts, name
# services, login profile, boot/flash machinery). Everything else of base-files goes in.
BASE_FILES_SKIP = {
    "etc/passwd", "etc/group", "etc/shadow", "etc/hosts", "etc/services", "etc/protocols",
    "etc/profile", "etc/shells", "etc/shinit", "etc/fstab", "etc/inittab", "etc/ethers",
    "etc/sysctl.conf", "etc/sysctl.d", "etc/iproute2", "etc/os-release", "usr/lib/os-release",
    "etc/preinit", "lib/preinit", "lib/upgrade", "sbin/sysupgrade", "sbin/firstboot", "rom",
    "etc/banner", "etc/banner.failsafe",
}


class StepError(Exception):
    def __init__(self, step, log, msg):
        super().__init__(msg)
        self.step, self.log = step, log


def say(msg):
    print(f"[openwrt] {msg}", file=sys.stderr, flush=True)


def usr_merged(path):
    """OpenWrt path -> path inside the layer (Debian is merged-usr)."""
    p = "/" + str(path).lstrip("/")
    for top in ("/lib", "/sbin", "/bin"):
        if p == top or p.startswith(top + "/"):
            return "/usr" + p
    return p


def own_source_files():
    out = []
    for name in OWN_SOURCES:
        p = HERE / name
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file())
        elif p.exists():
            out.append(p)
    return out


def cache_key(profile, sources):
    h = hashlib.sha256()
    tarballs = sorted((sources / profile).glob("*.tar.gz"))
    if not tarballs:
        raise SystemExit(f"build.py: no tarballs in {sources / profile}")
    for f in tarballs:
        h.update(f"tarball {f.name}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).hexdigest().encode())
    for f in own_source_files():
        h.update(f"own {f.relative_to(HERE)}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).hexdigest().encode())
    return h.hexdigest()[:16]


class Builder:
    def __init__(self, profile, sources, work, jobs):
        self.profile = profile
        self.sources = sources / profile
        self.work = work
        self.src = work / "src"
        self.bld = work / "build"
        self.root = work / "root"  # DESTDIR of every install; becomes layer/ + sdk/
        self.logs = work / "logs"
        self.jobs = jobs
        self.commits = {}
        self.dates = {}
        self.substitutes = []
        self.step = None
        for d in (self.src, self.bld, self.root, self.logs, work / "tools"):
            d.mkdir(parents=True, exist_ok=True)

    # -- plumbing -------------------------------------------------------------------------
    def log_path(self):
        return self.logs / f"{self.step}.log"

    def run(self, cmd, cwd=None, env=None):
        full_env = dict(os.environ, LC_ALL="C")
        if env:
            full_env.update(env)
        with open(self.log_path(), "a") as log:
            log.write(f"\n$ (cd {cwd or self.work}) {' '.join(map(str, cmd))}\n")
            log.flush()
            rc = subprocess.call([str(c) for c in cmd], cwd=cwd or self.work, env=full_env,
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if rc != 0:
            raise StepError(self.step, self.log_path(),
                            f"step {self.step}: `{' '.join(map(str, cmd[:3]))} ...` exited {rc}")

    def note(self, text):
        with open(self.log_path(), "a") as log:
            log.write(text.rstrip("\n") + "\n")

    def L(self, path):
        """Layer path (OpenWrt path, usr-merged) inside the staging root."""
        return self.root / usr_merged(path).lstrip("/")

    def put(self, src, dest, mode=None):
        """Install one file from the sources at OpenWrt path dest."""
        src = Path(src)
        target = self.L(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if src.is_symlink():
            os.symlink(os.readlink(src), target)
        else:
            shutil.copyfile(src, target)
            if mode is None:
                mode = 0o755 if os.stat(src).st_mode & 0o111 else 0o644
            os.chmod(target, mode)
        self.note(f"install {src.relative_to(self.src) if self.src in src.parents else src} -> {dest}")

    def put_tree(self, src, dest="/", skip=()):
        src = Path(src)
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            if p.is_dir() and not p.is_symlink():
                self.L(f"{dest}/{rel}").mkdir(parents=True, exist_ok=True)
            else:
                self.put(p, f"{dest}/{rel}")

    def mkdir(self, *paths):
        for p in paths:
            self.L(p).mkdir(parents=True, exist_ok=True)

    # -- steps ----------------------------------------------------------------------------
    def extract(self):
        for tb in sorted(self.sources.glob("*.tar.gz")):
            if tb.name in NOT_BUILT:
                continue
            with tarfile.open(tb) as tf:
                top = tf.next()  # git archive puts the commit id in the global pax header
                commit = (tf.pax_headers or {}).get("comment", "")
                # ... and the commit time on every member: OpenWrt's PKG_SOURCE_DATE
                self.dates[tb.name[:-len(".tar.gz")]] = time.strftime(
                    "%Y-%m-%d", time.gmtime(top.mtime)) if top else "1970-01-01"
                kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                tf.extractall(self.src, **kw)
            self.commits[tb.name[:-len(".tar.gz")]] = commit
            self.note(f"extracted {tb.name} ({commit or 'no commit id'})")
        # The 2021 trees trip over GCC 12 warnings; a test bed wants binaries, not lint:
        # drop every bare -Werror (keeps the specific -Werror=... ones).
        for cml in self.src.rglob("CMakeLists.txt"):
            text = cml.read_text()
            new = re.sub(r"\s-Werror(?=[\s)])", " ", text)
            if new != text:
                cml.write_text(new)
                self.note(f"dropped -Werror in {cml.relative_to(self.src)}")

    def cmake(self, name, defs=(), cflags="", in_source=False, src=None):
        src = Path(src) if src else self.src / name
        bdir = src if in_source else self.bld / name
        bdir.mkdir(parents=True, exist_ok=True)
        usr = self.root / "usr"
        env = {
            "CFLAGS": f"-O2 -g -I{usr}/include {cflags}".strip(),
            "LDFLAGS": f"-L{usr}/lib -Wl,-rpath-link,{usr}/lib",
            "PKG_CONFIG_PATH": f"{usr}/lib/pkgconfig",
        }
        self.run(["cmake", "-S", src, "-B", bdir, "-Wno-dev",
                  "-DCMAKE_INSTALL_PREFIX=/usr", f"-DCMAKE_PREFIX_PATH={usr}",
                  "-DCMAKE_INSTALL_LIBDIR=lib", "-DCMAKE_INSTALL_BINDIR=bin", *defs], env=env)
        self.run(["make", "-C", bdir, f"-j{self.jobs}"], env=env)
        self.run(["make", "-C", bdir, "install", f"DESTDIR={self.root}"], env=env)

    def build_libubox(self):
        self.cmake("libubox", ["-DBUILD_LUA=OFF", "-DBUILD_EXAMPLES=OFF", "-DUNIT_TESTING=OFF"])

    def build_ubus(self):
        self.cmake("ubus", ["-DBUILD_LUA=OFF", "-DBUILD_EXAMPLES=OFF", "-DUNIT_TESTING=OFF"])

    def build_uci(self):
        self.cmake("uci", ["-DBUILD_LUA=OFF", "-DUNIT_TESTING=OFF"])
        # OpenWrt ships the CLI as /sbin/uci
        os.replace(self.L("/usr/bin/uci"), self.L("/sbin/uci"))

    def build_libnl_tiny(self):
        self.cmake("libnl-tiny")

    def build_jsonfilter(self):
        # generator steps use relative paths: build in the source folder
        self.cmake("jsonfilter", in_source=True)
        link = self.L("/usr/bin/jsonfilter")  # OpenWrt's name for it
        if not link.exists():
            os.symlink("jsonpath", link)

    def build_ucode(self):
        self.cmake("ucode")

    def build_udebug(self):
        self.cmake("udebug", ["-DRUNSTATEDIR=/var/run"], cflags="-D_GNU_SOURCE=")

    def build_rpcd(self):
        defs = ["-DIWINFO_SUPPORT=OFF"]
        if self.profile == "21.02":
            self.cmake("rpcd", defs)
            # this rpcd installs its plugins to lib/ but loads them from /usr/lib/rpcd
            self.mkdir("/usr/lib/rpcd")
            for plug in ("file.so", "rpcsys.so"):
                if self.L(f"/usr/lib/{plug}").exists():
                    os.replace(self.L(f"/usr/lib/{plug}"), self.L(f"/usr/lib/rpcd/{plug}"))
        else:
            self.cmake("rpcd", defs + ["-DUCODE_SUPPORT=ON"], cflags="-D_GNU_SOURCE=")

    def build_netifd(self):
        usr = self.root / "usr"
        cflags = f"-I{usr}/include/libnl-tiny"
        if self.profile == "24.10":
            cflags += " -Wno-error=maybe-uninitialized"
        self.cmake("netifd", [f"-DLIBNL_LIBS={usr}/lib/libnl-tiny.so", "-DDEBUG=1"],
                   cflags=cflags, in_source=True)

    def build_iptext_shim(self):
        """Our stand-in for OpenWrt's libiptext{,4,6}.so (fw3 links them; see the C file)."""
        xtlibdir = subprocess.run(["pkg-config", "--variable=xtlibdir", "xtables"],
                                  capture_output=True, text=True).stdout.strip()
        if not xtlibdir:
            raise StepError(self.step, self.log_path(), "pkg-config finds no xtables (libxtables-dev)")
        src = HERE / "iptext_shim.c"
        for lib, prefix, entry in (("libiptext.so", "libxt_", "init_extensions"),
                                   ("libiptext4.so", "libipt_", "init_extensions4"),
                                   ("libiptext6.so", "libip6t_", "init_extensions6")):
            self.run(["gcc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                      "-fvisibility=hidden", f'-DSHIM_PREFIX="{prefix}"', f"-DSHIM_ENTRY={entry}",
                      f'-DSHIM_XTLIBDIR="{xtlibdir}"', "-o", self.L(f"/usr/lib/{lib}"), src,
                      "-lxtables", "-ldl"])

    def build_firewall3(self):
        self.cmake("firewall3")
        os.replace(self.L("/usr/sbin/firewall3"), self.L("/sbin/fw3"))

    def build_opkg(self):
        ver = (self.commits.get("opkg-lede") or "unknown")[:8]
        self.cmake("opkg-lede", ["-DBUILD_TESTS=OFF", f"-DVERSION={ver}"])
        shutil.copy2(self.L("/usr/bin/opkg-cl"), self.L("/bin/opkg"))

    def build_mapcalc(self):
        self.cmake("mapcalc", src=self.src / "openwrt-tree/package/network/ipv6/map/src")

    def build_odhcp6c(self):
        self.cmake("odhcp6c", ["-DUSE_LIBUBOX=1"])

    def build_odhcpd(self):
        usr = self.root / "usr"
        self.cmake("odhcpd", ["-DUBUS=1"], cflags=f"-I{usr}/include/libnl-tiny")

    # -- OpenWrt package files (where each package's Makefile installs them) ---------------
    def files(self):
        tree = self.src / "openwrt-tree"
        pkg = tree / "package"
        release = "%s-SNAPSHOT" % self.profile
        revision = "r0-" + (self.commits.get("openwrt-tree") or "unknown")[:10]

        # base-files: files/* -> /, minus what would break the host; fill the placeholders
        self.put_tree(pkg / "base-files/files", "/", skip=BASE_FILES_SKIP)
        hp = self.L("/sbin/hotplug-call")
        hp.write_text(hp.read_text().replace("%PATH%", INIT_PATH))
        subst = {"%D": "OpenWrt", "%V": release, "%R": revision, "%S": "x86/64",
                 "%A": "x86_64", "%C": revision, "%t": "", "%M": "OpenWrt",
                 "%m": "https://openwrt.org/", "%P": "Generic", "%h": "v0"}
        for f in ("/etc/openwrt_release", "/etc/openwrt_version", "/etc/device_info"):
            p = self.L(f)
            if p.exists():
                text = p.read_text()
                for k, v in subst.items():
                    text = text.replace(k, v)
                p.write_text(text)
        self.mkdir("/etc/config", "/etc/uci-defaults", "/etc/hotplug.d/iface", "/etc/hotplug.d/net")

        # procd's shell side (no procd itself)
        pd = pkg / "system/procd/files"
        self.put(pd / "procd.sh", "/lib/functions/procd.sh", 0o644)
        self.put(pd / "reload_config", "/sbin/reload_config", 0o755)
        for j in sorted(pd.glob("hotplug*.json")):
            self.put(j, f"/etc/{j.name}", 0o644)
        if (pd / "service").exists():
            self.put(pd / "service", "/sbin/service", 0o755)

        # uci's shell library
        self.put(pkg / "system/uci/files/lib/config/uci.sh", "/lib/config/uci.sh", 0o644)

        # netifd: files/* -> /, scripts/* -> /lib/netifd/
        self.put_tree(pkg / "network/config/netifd/files", "/")
        self.mkdir("/etc/udhcpc.user.d")
        for s in sorted((self.src / "netifd/scripts").iterdir()):
            self.put(s, f"/lib/netifd/{s.name}")

        # map: proto handler (mapcalc itself comes from the build step)
        self.put(pkg / "network/ipv6/map/files/map.sh", "/lib/netifd/proto/map.sh", 0o755)

        # rpcd
        rp = pkg / "system/rpcd/files"
        self.put(rp / "rpcd.init", "/etc/init.d/rpcd", 0o755)
        self.put(rp / "rpcd.config", "/etc/config/rpcd", 0o600)
        self.put(rp / "50-migrate-rpcd-ubus-sock.sh", "/etc/uci-defaults/50-migrate-rpcd-ubus-sock.sh", 0o755)
        self.put(self.src / "rpcd/unauthenticated.json", "/usr/share/rpcd/acl.d/unauthenticated.json", 0o644)
        self.mkdir("/usr/libexec/rpcd", "/usr/share/rpcd/acl.d")
        if self.profile != "21.02":
            self.mkdir("/usr/share/rpcd/ucode")

        # opkg
        op = pkg / "system/opkg/files"
        self.put(op / "opkg.conf", "/etc/opkg.conf", 0o644)
        self.put(op / "customfeeds.conf", "/etc/opkg/customfeeds.conf", 0o644)
        self.put(op / "opkg-key", "/usr/sbin/opkg-key", 0o755)
        self.put(op / "20_migrate-feeds", "/etc/uci-defaults/20_migrate-feeds", 0o755)
        self.L("/etc/opkg/distfeeds.conf").write_text("")  # generated from the feeds by the OpenWrt build
        self.mkdir("/etc/opkg/keys", "/usr/lib/opkg/info", "/usr/share/opkg")
        self.L("/usr/lib/opkg/status").write_text("")
        self.put_tree(self.src / "opkg-lede/intercept", "/usr/share/opkg/intercept")

        # firewall
        if self.profile == "21.02":
            fw = pkg / "network/config/firewall/files"
            self.put(fw / "firewall.init", "/etc/init.d/firewall", 0o755)
            self.put(fw / "firewall.config", "/etc/config/firewall", 0o644)
            self.put(fw / "firewall.hotplug", "/etc/hotplug.d/iface/20-firewall", 0o644)
            self.put(fw / "firewall.user", "/etc/firewall.user", 0o644)
            self.put(self.src / "firewall3/helpers.conf", "/usr/share/fw3/helpers.conf", 0o644)
            # OpenWrt 21.02's iptables is the legacy (x_tables) one, and fw3 drives that backend
            for name in ("iptables", "iptables-save", "iptables-restore",
                         "ip6tables", "ip6tables-save", "ip6tables-restore"):
                link = self.L(f"/usr/sbin/{name}")
                if link.exists() or link.is_symlink():
                    link.unlink()
                os.symlink(f"{name.replace('tables', 'tables-legacy', 1)}", link)
        else:
            # firewall4's Makefile: $(CP) -a root/* $(1)/
            self.put_tree(self.src / "firewall4/root", "/")

        # what OpenWrt's scripts/ build packages with
        for s in ("ipkg-build", "ipkg-make-index.sh"):
            if (tree / "scripts" / s).exists():
                shutil.copy2(tree / "scripts" / s, self.work / "tools" / s)
                os.chmod(self.work / "tools" / s, 0o755)

        # Files OpenWrt keeps in package dirs that these tarballs do not carry (odhcp6c's
        # dhcpv6.sh/dhcpv6.script, odhcpd's init/update script): our own small stand-ins.
        own = HERE / "files"
        if own.is_dir():
            for p in sorted(q for q in own.rglob("*") if q.is_file()):
                rel = "/" + p.relative_to(own).as_posix()
                if self.L(rel).exists():
                    continue  # never shadow a real upstream file
                self.put(p, rel)
                self.substitutes.append(usr_merged(rel))

    def busybox(self):
        """A dynamic busybox (busybox-static's own applets would shadow OpenWrt's scripts)."""
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True).stdout.strip() or "amd64"
        debs = sorted(Path("/var/cache/apt/archives").glob(f"busybox_*_{arch}.deb"))
        dl = self.work / "dl"
        dl.mkdir(exist_ok=True)
        if not debs:
            self.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", "busybox"], cwd=dl)
            debs = sorted(dl.glob(f"busybox_*_{arch}.deb"))
        if not debs:
            raise StepError(self.step, self.log_path(), "no busybox .deb (apt-get download busybox)")
        deb = debs[-1]
        self.run(["dpkg-deb", "-x", deb, dl / "x"])
        bb = next((p for p in (dl / "x/bin/busybox", dl / "x/usr/bin/busybox") if p.exists()), None)
        if bb is None:
            raise StepError(self.step, self.log_path(), f"{deb.name} holds no busybox binary")
        self.put(bb, "/bin/busybox", 0o755)
        interp = subprocess.run(["readelf", "-l", str(bb)], capture_output=True, text=True).stdout
        if "interpreter" not in interp:
            raise StepError(self.step, self.log_path(), f"{deb.name}: busybox is not dynamic")
        self.busybox_deb = deb.name
        applets = subprocess.run([str(bb), "--list"], capture_output=True, text=True).stdout.split()
        # netifd's proto dhcp runs udhcpc; Debian has no other one
        if "udhcpc" in applets and not Path("/usr/sbin/udhcpc").exists():
            os.symlink("../bin/busybox", self.L("/usr/sbin/udhcpc"))

    def split_sdk(self):
        """Headers, static libs and .pc files go to sdk/, the rest becomes layer/."""
        sdk = self.work / "sdk"
        moves = [self.root / "usr/include", self.root / "usr/lib/pkgconfig",
                 self.root / "usr/share/pkgconfig"]
        moves += list((self.root / "usr/lib").glob("*.a"))
        for p in moves:
            if p.exists():
                dest = sdk / p.relative_to(self.root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(p), str(dest))

    def check(self):
        """Every expected binary is there and resolves its libraries from the layer."""
        bins = self.binaries()
        missing = [k for k, v in bins.items() if not os.path.lexists(self.L(v))]
        if missing:
            raise StepError(self.step, self.log_path(), "missing from the layer: " + ", ".join(missing))
        libdirs = f"{self.root}/usr/lib:{self.root}/usr/lib/ucode"
        elfs = [self.L(v) for v in bins.values() if not self.L(v).is_symlink()]
        elfs += sorted((self.root / "usr/lib").rglob("*.so"))
        bad = []
        for f in elfs:
            if f.read_bytes()[:4] != b"\x7fELF":
                continue
            out = subprocess.run(["ldd", str(f)], capture_output=True, text=True,
                                 env=dict(os.environ, LD_LIBRARY_PATH=libdirs)).stdout
            self.note(f"ldd {f.relative_to(self.root)}:\n{out}")
            if "not found" in out:
                bad.append(f"{f.relative_to(self.root)}: " +
                           ", ".join(l.split()[0] for l in out.splitlines() if "not found" in l))
        if bad:
            raise StepError(self.step, self.log_path(), "unresolved libraries: " + "; ".join(bad))

    def binaries(self):
        b = {
            "ubusd": "/sbin/ubusd", "ubus": "/bin/ubus", "uci": "/sbin/uci",
            "rpcd": "/sbin/rpcd", "netifd": "/sbin/netifd", "jshn": "/usr/bin/jshn",
            "jsonfilter": "/usr/bin/jsonfilter", "jsonpath": "/usr/bin/jsonpath",
            "opkg": "/bin/opkg", "opkg-cl": "/usr/bin/opkg-cl", "mapcalc": "/usr/sbin/mapcalc",
            "odhcp6c": "/usr/sbin/odhcp6c", "odhcpd": "/usr/sbin/odhcpd",
            "busybox": "/bin/busybox", "hotplug-call": "/sbin/hotplug-call",
            "ifup": "/sbin/ifup", "ifdown": "/sbin/ifdown", "devstatus": "/sbin/devstatus",
            "ifstatus": "/sbin/ifstatus", "map.sh": "/lib/netifd/proto/map.sh",
            "netifd-proto.sh": "/lib/netifd/netifd-proto.sh", "jshn.sh": "/usr/share/libubox/jshn.sh",
            "functions.sh": "/lib/functions.sh", "procd.sh": "/lib/functions/procd.sh",
            "rc.common": "/etc/rc.common", "network.init": "/etc/init.d/network",
            "firewall.init": "/etc/init.d/firewall", "rpcd.init": "/etc/init.d/rpcd",
            "uci.sh": "/lib/config/uci.sh",
        }
        if self.profile == "21.02":
            b.update({"fw3": "/sbin/fw3", "libiptext": "/usr/lib/libiptext.so",
                      "libiptext4": "/usr/lib/libiptext4.so", "libiptext6": "/usr/lib/libiptext6.so"})
        else:
            b.update({"fw4": "/sbin/fw4", "ucode": "/usr/bin/ucode", "udebugd": "/sbin/udebugd",
                      "fw4.uc": "/usr/share/ucode/fw4.uc",
                      "firewall4-main": "/usr/share/firewall4/main.uc"})
        return {k: usr_merged(v) for k, v in b.items()}

    def packages(self):
        """OpenWrt package name -> version ("<source date>-<commit8>-1", OpenWrt's scheme) of
        what the layer provides, e.g. to register them in opkg's status file."""
        by_source = {
            "libubox": ["libubox", "jshn", "libblobmsg-json", "libjson-script"],
            "ubus": ["ubus", "ubusd", "libubus"],
            "uci": ["uci", "libuci"],
            "libnl-tiny": ["libnl-tiny"],
            "jsonfilter": ["jsonfilter"],
            "rpcd": ["rpcd", "rpcd-mod-file", "rpcd-mod-rpcsys"],
            "netifd": ["netifd"],
            "opkg-lede": ["opkg"],
            "odhcp6c": ["odhcp6c"],
            "odhcpd": ["odhcpd-ipv6only"],
            "openwrt-tree": ["base-files", "map"],
        }
        if self.profile == "21.02":
            by_source["firewall3"] = ["firewall"]
        else:
            by_source["rpcd"].append("rpcd-mod-ucode")
            by_source["firewall4"] = ["firewall4"]
            by_source["udebug"] = ["udebugd", "libudebug", "ucode-mod-udebug"]
            mods = sorted(p.stem for p in (self.root / "usr/lib/ucode").glob("*.so") if p.stem != "udebug")
            by_source["ucode"] = ["ucode", "libucode"] + [f"ucode-mod-{m}" for m in mods]
        out = {}
        for src, names in by_source.items():
            ver = f"{self.dates.get(src, '1970-01-01')}-{(self.commits.get(src) or '0')[:8]}-1"
            for n in names:
                out[n] = ver
        bb = getattr(self, "busybox_deb", "")
        m = re.match(r"busybox_(?:\d+%3a)?([^_]+)_", bb or "")
        out["busybox"] = m.group(1) if m else "1"
        return out

    def manifest(self, key):
        m = {
            "profile": self.profile,
            "key": key,
            "layer": "layer",
            "usr_merged": True,
            "sources": self.commits,
            "binaries": self.binaries(),
            "packages": self.packages(),
            "substitutes": self.substitutes,
            "busybox_deb": getattr(self, "busybox_deb", None),
            "tools": {"ipkg-build": "tools/ipkg-build"},
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (self.work / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")

    def steps(self):
        s = [("extract", self.extract), ("libubox", self.build_libubox), ("ubus", self.build_ubus),
             ("uci", self.build_uci), ("libnl-tiny", self.build_libnl_tiny),
             ("jsonfilter", self.build_jsonfilter)]
        if self.profile == "24.10":
            s += [("ucode", self.build_ucode), ("udebug", self.build_udebug)]
        s += [("rpcd", self.build_rpcd), ("netifd", self.build_netifd)]
        if self.profile == "21.02":
            s += [("iptext-shim", self.build_iptext_shim), ("firewall3", self.build_firewall3)]
        s += [("opkg-lede", self.build_opkg), ("mapcalc", self.build_mapcalc),
              ("odhcp6c", self.build_odhcp6c), ("odhcpd", self.build_odhcpd),
              ("files", self.files), ("busybox", self.busybox), ("sdk", self.split_sdk),
              ("check", self.check)]
        return s

    def build(self, key):
        for name, fn in self.steps():
            self.step = name
            t0 = time.monotonic()
            say(f"{self.profile}: {name} ...")
            fn()
            say(f"{self.profile}: {name} done ({time.monotonic() - t0:.1f}s)")
        self.step = "manifest"
        self.manifest(key)
        os.rename(self.root, self.work / "layer")
        shutil.rmtree(self.src, ignore_errors=True)
        shutil.rmtree(self.bld, ignore_errors=True)
        shutil.rmtree(self.work / "dl", ignore_errors=True)


def tail(path, n=40):
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-n:])
    except OSError:
        return ""


def ensure(profile, cache=None, sources=None, jobs=None):
    """Return the finished build dir for profile, building it if the cache lacks it."""
    if profile not in PROFILES:
        raise SystemExit(f"build.py: unknown profile {profile!r} (want one of {', '.join(PROFILES)})")
    sources = Path(sources or os.environ.get("MAPE_OPENWRT_SOURCES") or DEFAULT_SOURCES)
    cache = Path(cache or os.environ.get("MAPE_OPENWRT_CACHE") or DEFAULT_CACHE).absolute()
    key = cache_key(profile, sources)
    dest = cache / f"{profile}-{key}"
    if (dest / "manifest.json").is_file():
        try:
            os.utime(dest)  # "in use": prune() spares it
        except OSError:
            pass
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{profile}-{key}.lock", "w") as lock:
        try:  # a concurrent caller builds it once; the others wait for it
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another build of {profile}-{key} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "manifest.json").is_file():
            return dest
        # holding the lock, no other builder of this key is alive: drop their leftovers
        for stale in cache.glob(f".{profile}-{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{profile}-{key}.tmp-", dir=cache))
        t0 = time.monotonic()
        say(f"building {profile} (key {key}) in {work}")
        b = Builder(profile, sources, work, jobs or os.cpu_count() or 2)
        try:
            b.build(key)
        except StepError as e:
            failed = cache / f".{profile}-{key}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(work, failed)
            log = failed / "logs" / Path(e.log).name
            sys.stderr.write(f"--- tail of {log} ---\n{tail(log)}--- end ---\n")
            raise SystemExit(f"build.py: {profile}: {e} (log: {log})")
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if dest.exists():  # someone else's finished copy (no lock, e.g. another machine)
            shutil.rmtree(work, ignore_errors=True)
        else:
            os.chmod(work, 0o755)  # mkdtemp made it 0700
            os.rename(work, dest)
        say(f"{profile}: built in {time.monotonic() - t0:.1f}s -> {dest}")
        prune(cache, profile, keep=dest)
    return dest


def prune(cache, profile, keep, age=3600):
    """Drop this profile's builds for other keys (older sources or tool versions) that no
    caller was handed for an hour: one live layer per profile, without pulling one from
    under a test that is using it."""
    for d in cache.glob(f"{profile}-*"):
        if d == keep or not re.fullmatch(re.escape(profile) + r"-[0-9a-f]{16}", d.name):
            continue
        try:
            if time.time() - d.stat().st_mtime > age:
                shutil.rmtree(d)
                say(f"pruned the old build {d}")
        except OSError:
            pass
    # and the lock files and failed builds of other keys
    for f in cache.glob(f".{profile}-*"):
        m = re.fullmatch(re.escape(profile) + r"-([0-9a-f]{16})\.(lock|failed)", f.name[1:])
        if not m or f"{profile}-{m.group(1)}" == keep.name:
            continue
        try:
            if time.time() - f.stat().st_mtime > age:
                shutil.rmtree(f) if f.is_dir() else f.unlink()
        except OSError:
            pass


def _sigterm(signum, _frame):
    raise SystemExit(f"build.py: killed by signal {signum}")


def main(argv=None):
    signal.signal(signal.SIGTERM, _sigterm)  # clean up the temp dir when killed
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", help=f"cache dir (default $MAPE_OPENWRT_CACHE or {DEFAULT_CACHE})")
    ap.add_argument("--sources", help=f"tarball dir (default $MAPE_OPENWRT_SOURCES or {DEFAULT_SOURCES})")
    ap.add_argument("--jobs", type=int, help="make -j (default: CPU count)")
    ap.add_argument("profile", choices=PROFILES)
    a = ap.parse_args(argv)
    print(ensure(a.profile, a.cache, a.sources, a.jobs))


if __name__ == "__main__":
    main()
