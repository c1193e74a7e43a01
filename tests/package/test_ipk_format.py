"""The .ipk container, control data, modes and owners, as opkg-lede reads them."""

import gzip
import hashlib
import os
import re
import tarfile

import pytest

from pkg_helpers import TOP, Ipk, build_ipk

REQUIRED = ["Package", "Version", "Depends", "Architecture", "Installed-Size", "Maintainer",
            "License", "Section", "Description"]


def _version():
    src = open(os.path.join(TOP, "src", "mape", "__init__.py")).read()
    return re.search(r'__version__ = "([^"]+)"', src).group(1)


@pytest.fixture(params=["mape-py", "luci-app-mape-py"])
def ipk(request, real_build):
    return real_build[request.param]


def test_file_names(real_build):
    v = _version()
    assert os.path.basename(real_build["mape-py"].path) == "mape-py_%s-1_all.ipk" % v
    assert os.path.basename(real_build["luci-app-mape-py"].path) == "luci-app-mape-py_%s-1_all.ipk" % v


def test_outer_container_is_gzip_tar_not_ar(ipk):
    assert ipk.raw[:2] == b"\x1f\x8b", "outer file must be gzip (opkg-lede has no ar reader)"
    assert not ipk.raw.startswith(b"!<arch>")
    flags, mtime = ipk.raw[3], int.from_bytes(ipk.raw[4:8], "little")
    assert flags & 0x08 == 0, "gzip header carries a file name (not reproducible)"
    assert mtime == 0, "gzip header carries a time stamp (not reproducible)"
    assert [m.name for m in ipk.outer_members] == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    assert all(m.isfile() and m.uid == 0 and m.gid == 0 for m in ipk.outer_members)
    assert ipk.members["./debian-binary"] == b"2.0\n"
    for inner in ("./data.tar.gz", "./control.tar.gz"):
        assert ipk.members[inner][:2] == b"\x1f\x8b"


def test_tars_are_gnu_format_with_dot_slash_names(ipk):
    for raw in (ipk.outer_tar, ipk.data_tar, ipk.control_tar):
        assert raw[257:265] == b"ustar  \0", "GNU tar magic expected, as ipkg-build --format=gnu"
    names = ipk.data.getnames() + ipk.control.getnames()
    assert all(n == "." or n.startswith("./") for n in names), names


def test_control_fields(ipk):
    f = ipk.fields()
    for key in REQUIRED:
        assert f.get(key), "control lacks %s" % key
    assert f["Package"] == os.path.basename(ipk.path).split("_")[0]
    assert f["Version"] == "%s-1" % _version()
    assert f["Architecture"] == "all"
    assert int(f["Installed-Size"]) == len(ipk.data_tar), "ipkg-build: bytes of the data tar"
    assert re.match(r"^[a-zA-Z0-9_.+-]+$", f["Package"])
    for dep in f["Depends"].split(", "):
        assert re.match(r"^[a-zA-Z0-9_.+-]+$", dep), dep
    text = ipk.control_file("control")
    assert text.endswith("\n") and "\n\n" not in text
    # opkg's parser: continuation lines of Description start with a space
    after = text.split("Description:", 1)[1].split("\n")[1:]
    assert all(line.startswith(" ") for line in after if line)


def test_mape_py_control_from_feed_makefile(real_build):
    f = real_build["mape-py"].fields()
    assert f["Section"] == "net"
    assert f["License"] == "GPL-2.0-only"
    deps = f["Depends"].split(", ")
    assert deps[:3] == ["libc", "map", "python3-light"], deps
    v, _ = build_ipk.parse_makefile(os.path.join(TOP, "package", "mape-py", "Makefile"))
    assert deps == ["libc"] + [d.lstrip("+") for d in v["Package/mape-py:DEPENDS"].split()]


def test_luci_app_depends_on_mape_py_and_luci_base(real_build):
    deps = real_build["luci-app-mape-py"].fields()["Depends"].split(", ")
    assert "mape-py" in deps and "luci-base" in deps


def test_owners_and_no_names(ipk):
    for tar in (ipk.data, ipk.control):
        for m in tar.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""), m.name


def test_all_mtimes_equal_source_date_epoch(ipk):
    epoch = int(ipk.fields()["SourceDateEpoch"])
    for tar in (ipk.outer, ipk.data, ipk.control):
        assert {m.mtime for m in tar.getmembers()} == {epoch}


def test_no_byte_code_shipped(ipk):
    for name in ipk.data.getnames():
        assert "__pycache__" not in name and not name.endswith((".pyc", ".pyo")), name


def test_mape_py_ships_every_source_file(real_build):
    files = real_build["mape-py"].files()
    src = os.path.join(TOP, "src", "mape")
    for root, dirs, names in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for n in names:
            if n.endswith(".pyc") or n.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(root, n), src).replace(os.sep, "/")
            assert "/usr/lib/mape-py/mape/" + rel in files
    assert "/usr/lib/mape-py/mape/data/rules.tsv" in files
    assert "/usr/lib/mape-py/mape/__init__.py" in files
    for root, dirs, names in os.walk(os.path.join(TOP, "files")):
        for n in names:
            if n.startswith(".") or n.endswith("~"):
                continue
            rel = os.path.relpath(os.path.join(root, n), os.path.join(TOP, "files"))
            assert "/" + rel.replace(os.sep, "/") in files


def test_real_modes_follow_the_rules(real_build):
    for path, (mode, is_dir) in real_build["mape-py"].files().items():
        if is_dir:
            assert mode == 0o755, path
        elif path.startswith("/etc/config/"):
            assert mode == 0o600, path
        elif path.startswith(tuple("/" + d + "/" for d in build_ipk.EXEC_DIRS)):
            assert mode == 0o755, path
        else:
            assert mode in (0o644, 0o755), (path, oct(mode))
    for path, (mode, is_dir) in real_build["luci-app-mape-py"].files().items():
        assert mode in (0o644, 0o755), (path, oct(mode))


def test_conffiles_real(real_build):
    ipk = real_build["mape-py"]
    if os.path.exists(os.path.join(TOP, "files", "etc", "config", "mape")):
        assert ipk.control_file("conffiles") == "/etc/config/mape\n"
    assert real_build["luci-app-mape-py"].control_file("conffiles") is None


# --- synthetic trees: every kind of file, with source modes the rules must correct ------

def test_synthetic_modes(synth_build):
    files = synth_build["mape-py"].files()
    expect = {
        "/etc/init.d/mape-py": 0o755, "/etc/config/mape": 0o600, "/usr/libexec/rpcd/mape": 0o755,
        "/usr/bin/mape-py": 0o755, "/etc/hotplug.d/iface/90-mape-py": 0o755,
        "/etc/uci-defaults/90-mape-py-firewall": 0o755,
        "/usr/share/mape-py/firewall.include": 0o755, "/usr/share/mape-py/README.txt": 0o644,
        "/usr/lib/mape-py/mape/cli.py": 0o644, "/usr/lib/mape-py/mape/data/rules.tsv": 0o644,
        "/etc": 0o755, "/etc/init.d": 0o755, "/usr/lib/mape-py/mape": 0o755, "/": 0o755,
    }
    for path, mode in expect.items():
        assert files[path][0] == mode, (path, oct(files[path][0]))
    assert "/usr/share/mape-py/.gitkeep" not in files
    assert "/usr/share/mape-py/notes.txt~" not in files
    assert not any("pycache" in p or p.endswith(".pyc") for p in files)


def test_synthetic_conffiles(synth_build):
    assert synth_build["mape-py"].control_file("conffiles") == "/etc/config/mape\n"


def test_synthetic_luci_layout(synth_build):
    ipk = synth_build["luci-app-mape-py"]
    files = ipk.files()
    assert "/www/luci-static/resources/view/mape/overview.js" in files
    assert "/usr/share/luci/menu.d/luci-app-mape-py.json" in files
    assert "/usr/share/rpcd/acl.d/luci-app-mape-py.json" in files
    assert files["/etc/uci-defaults/40_luci-mape-py"][0] == 0o755
    assert not any(p.startswith("/po") or p.endswith(".po") or p == "/Makefile" for p in files)
    f = ipk.fields()
    assert f["Section"] == "luci"
    assert f["Depends"] == "libc, luci-base, mape-py"
    assert f["Description"] == "LuCI support for MAP-E (mape-py)"
    # luci.mk's (24.10) postinst when the app defines none of its own
    assert ipk.control_file("postinst-pkg") == (
        '[ -n "${IPKG_INSTROOT}" ] || { rm -f /tmp/luci-indexcache.*\n'
        "\trm -rf /tmp/luci-modulecache/\n\tkillall -HUP rpcd 2>/dev/null\n\texit 0\n}\n")


def test_luci_postinst_does_not_source_uci_defaults(real_build):
    """default_postinst runs root/etc/uci-defaults/* itself -- on 24.10 before postinst-pkg,
    and deletes them: a postinst-pkg sourcing them again printed `.: line 2: can't open
    '/etc/uci-defaults/40_luci-mape-py'` on every install and upgrade (issue 12, point 10).
    luci-app-mape-py/Makefile defines its own postinst (luci.mk keeps it: `ifndef`)."""
    ipk = real_build["luci-app-mape-py"]
    body = ipk.control_file("postinst-pkg")
    code = [line for line in (body or "").splitlines() if not line.lstrip().startswith("#")]
    assert body is not None and not [line for line in code if "/etc/uci-defaults" in line], body
    assert "/etc/uci-defaults/40_luci-mape-py" in ipk.files()


def test_keep_d_lists_the_saved_originals(real_build):
    """A sysupgrade keeping settings keeps /etc/config/network (wan proto map): it must keep
    /etc/mape-py/ (the originals saved before mape-py's first change) too. The conffiles line
    /etc/mape-py/ is no file of the package, so it lands in /lib/upgrade/keep.d/mape-py, as
    include/package-ipkg.mk does it; opkg's conffiles stay the files (issue 12, point 14)."""
    ipk = real_build["mape-py"]
    files = ipk.files()
    assert files["/lib/upgrade/keep.d/mape-py"] == (0o644, False)
    assert ipk.read("/lib/upgrade/keep.d/mape-py") == b"/etc/mape-py/\n"
    assert ipk.control_file("conffiles") == "/etc/config/mape\n"


def test_control_members_and_modes(synth_build):
    for name in ("mape-py", "luci-app-mape-py"):
        ipk = synth_build[name]
        modes = {m.name: m.mode for m in ipk.control.getmembers() if m.isfile()}
        assert modes["./control"] == 0o644
        assert modes["./postinst"] == 0o755 and modes["./prerm"] == 0o755
        for n, mode in modes.items():
            if n not in ("./control", "./conffiles"):
                assert mode == 0o755, n
    names = set(synth_build["mape-py"].control.getnames())
    assert {"./control", "./conffiles", "./postinst", "./postinst-pkg", "./prerm",
            "./prerm-pkg", "./postrm"} <= names


# --- reproducibility ---------------------------------------------------------------------

def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_two_builds_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764115200")
    a = build_ipk.build(str(tmp_path / "a"))
    b = build_ipk.build(str(tmp_path / "b"))
    assert [os.path.basename(p) for p in a] == [os.path.basename(p) for p in b]
    for pa, pb in zip(a, b):
        assert _sha(pa) == _sha(pb), os.path.basename(pa)


def test_file_times_and_order_do_not_leak(tmp_path, monkeypatch):
    """Same content, other mtimes and inode order -> same bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764115200")
    from pkg_helpers import SYNTH_FILES, SYNTH_LUCI, make_repo
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    top1 = make_repo(tmp_path / "one", files=SYNTH_FILES, luci=SYNTH_LUCI)
    top2 = make_repo(tmp_path / "two", files=dict(reversed(list(SYNTH_FILES.items()))), luci=SYNTH_LUCI)
    for root, _, names in os.walk(top2):
        for n in names:
            os.utime(os.path.join(root, n), (1000000000, 1000000000))
    a = build_ipk.build(str(tmp_path / "a"), top=top1)
    b = build_ipk.build(str(tmp_path / "b"), top=top2)
    for pa, pb in zip(a, b):
        assert _sha(pa) == _sha(pb), os.path.basename(pa)


def test_epoch_defaults_to_last_commit(tmp_path, monkeypatch):
    """A git checkout: the commit's own date (set here), not whatever the files say."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    import subprocess
    from pkg_helpers import SYNTH_FILES, SYNTH_LUCI, make_repo
    top = make_repo(tmp_path, files=SYNTH_FILES, luci=SYNTH_LUCI)
    env = dict(os.environ, GIT_AUTHOR_DATE="@1700000000 +0900", GIT_COMMITTER_DATE="@1700000000 +0900",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", top] + argv, env=env, check=True, capture_output=True)
    for root, _, names in os.walk(top):
        for n in names:
            os.utime(os.path.join(root, n), (1800000000, 1800000000))
    assert build_ipk.source_date_epoch(top) == 1700000000


def test_epoch_without_git_is_the_newest_packaged_file(tmp_path, monkeypatch):
    """A `git archive` tarball (no .git): every file carries the commit's time; the newest
    packaged file dates the build, so two builds of one tarball are the same bytes."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    from pkg_helpers import SYNTH_FILES, SYNTH_LUCI, make_repo
    top = make_repo(tmp_path, files=SYNTH_FILES, luci=SYNTH_LUCI)
    assert not os.path.exists(os.path.join(top, ".git"))
    for root, _, names in os.walk(top):
        for n in names:
            os.utime(os.path.join(root, n), (1600000000, 1600000000))
    os.utime(os.path.join(top, "src", "mape", "cli.py"), (1650000000, 1650000000))
    assert build_ipk.source_date_epoch(top) == 1650000000
    a = build_ipk.build(str(tmp_path / "a"), top=top)
    assert Ipk(a[0]).fields()["SourceDateEpoch"] == "1650000000"


def test_data_tar_is_sorted_like_gnu_tar(ipk):
    names = [n.rstrip("/") for n in ipk.data.getnames()]
    # depth-first, each directory's entries in byte order: a parent precedes its children,
    # and siblings are ordered
    seen = set()
    for n in names:
        parent = n.rsplit("/", 1)[0] if "/" in n else None
        if parent and parent != ".":
            assert parent in seen, n
        seen.add(n)
    by_parent = {}
    for n in names:
        if "/" in n:
            by_parent.setdefault(n.rsplit("/", 1)[0], []).append(n.rsplit("/", 1)[1])
    for kids in by_parent.values():
        assert kids == sorted(kids, key=lambda s: s.encode())


def test_prerm_uses_shipped_teardown(real_build):
    """prerm-pkg runs the package's own firewall teardown and daemon restore."""
    ipk = real_build["mape-py"]
    prerm = ipk.control_file("prerm-pkg")
    files = ipk.files()
    for path in ("/usr/share/mape-py/firewall.uninstall", "/usr/bin/mape-py", "/etc/init.d/mape-py"):
        assert path in prerm
        assert files.get(path) == (0o755, False), path
    assert "/usr/bin/mape-py daemon --remove" in prerm
