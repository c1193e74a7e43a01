"""Depends in package/mape-py/Makefile must cover every python3-* split package the shipped
code imports (lazy imports inside functions included), and shipped code must not import
anything outside the standard library (except the guarded optional OpenWrt bindings)."""

import os
import subprocess
import sys

import pytest

from pkg_helpers import TOP, build_ipk, make_repo


def test_real_tree_depends_cover_imports():
    rep = build_ipk.dependency_report()
    assert rep["nonstdlib"] == {}, "shipped code imports non-stdlib modules: %s" % rep["nonstdlib"]
    assert rep["missing"] == [], (
        "package/mape-py/Makefile DEPENDS lacks %s; imports: %s"
        % (rep["missing"], {p: rep["needed"][p] for p in rep["missing"]}))


def test_no_python3_split_package_is_declared_without_an_import_needing_it():
    # every extra split package costs the router flash; python3-light is the base
    rep = build_ipk.dependency_report()
    extra = [p for p in rep["declared"] if p.startswith("python3-") and p != "python3-light"
             and p not in rep["needed"]]
    assert extra == []


def test_depends_subcommand_exit_code():
    r = subprocess.run([sys.executable, os.path.join(TOP, "tools", "build_ipk.py"), "--depends"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _report(tmp_path, src):
    top = make_repo(tmp_path, extra_src=src)
    return build_ipk.dependency_report(top), top


@pytest.mark.parametrize("code, pkg", [
    ("def f():\n    import urllib.parse\n", "python3-urllib"),
    ("def f():\n    from urllib.parse import quote\n", "python3-urllib"),
    ("import asyncio\n", "python3-asyncio"),
    ("from xml.etree import ElementTree\n", "python3-xml"),
    ("import ctypes.util\n", "python3-ctypes"),
    ("import decimal\n", "python3-decimal"),
    ("import uuid\n", "python3-uuid"),
    ("import unittest.mock\n", "python3-unittest"),
    ("import ssl\n", "python3-openssl"),
    ("import unicodedata\n", "python3-codecs"),
    ("import importlib\nm = importlib.import_module('email.utils')\n", "python3-email"),
    # light modules that import split ones when imported
    ("import pathlib\n", "python3-urllib"),
    ("import http.client\n", "python3-email"),
])
def test_added_import_without_dependency_fails(tmp_path, code, pkg):
    rep, top = _report(tmp_path, {"core/added.py": (code, 0o644)})
    assert pkg in rep["needed"]
    assert pkg in rep["missing"]
    with pytest.raises(build_ipk.BuildError, match=pkg):
        build_ipk.build(str(tmp_path / "dist"), top=top)


def test_declaring_the_dependency_fixes_it(tmp_path):
    top = make_repo(tmp_path, extra_src={"core/added.py": ("import asyncio\n", 0o644)})
    mk = os.path.join(top, "package", "mape-py", "Makefile")
    text = open(mk).read()
    assert "+python3-light" in text
    open(mk, "w").write(text.replace("+python3-light", "+python3-light +python3-asyncio", 1))
    rep = build_ipk.dependency_report(top)
    assert rep["missing"] == []
    build_ipk.build(str(tmp_path / "dist"), top=top)


def test_urllib_implies_email(tmp_path):
    rep, _ = _report(tmp_path, {"x.py": ("import urllib.request\n", 0o644)})
    assert {"python3-urllib", "python3-email"} <= set(rep["needed"])


@pytest.mark.parametrize("code", [
    "import requests\n",
    "def f():\n    import yaml\n",
    "from ubus import connect\n",          # binding imported without a fallback
    "import uci\n",
])
def test_non_stdlib_import_fails(tmp_path, code):
    rep, top = _report(tmp_path, {"shell/added.py": (code, 0o644)})
    assert rep["nonstdlib"], rep
    with pytest.raises(build_ipk.BuildError, match="non-stdlib"):
        build_ipk.build(str(tmp_path / "dist"), top=top)


def test_guarded_binding_import_is_optional(tmp_path):
    code = "try:\n    import uci\nexcept ImportError:\n    uci = None\n"
    rep, _ = _report(tmp_path, {"shell/added.py": (code, 0o644)})
    assert rep["nonstdlib"] == {}
    assert "uci" in rep["optional"]


def test_guarded_unknown_import_still_fails(tmp_path):
    code = "try:\n    import requests\nexcept ImportError:\n    requests = None\n"
    rep, _ = _report(tmp_path, {"shell/added.py": (code, 0o644)})
    assert "requests" in rep["nonstdlib"]


def test_unavailable_module_fails(tmp_path):
    rep_top = make_repo(tmp_path, extra_src={"x.py": ("import tkinter\n", 0o644)})
    with pytest.raises(build_ipk.BuildError, match="not packaged for OpenWrt"):
        build_ipk.dependency_report(rep_top)


def test_python_launcher_without_py_suffix_is_scanned(tmp_path):
    top = make_repo(tmp_path, files={"usr/bin/mape-py": ("#!/usr/bin/python3\nimport asyncio\n", 0o755)})
    rep = build_ipk.dependency_report(top)
    assert rep["needed"]["python3-asyncio"] == ["asyncio"]


def test_relative_and_own_imports_are_not_dependencies():
    std, other = build_ipk.classify_imports({".", "mape.core.rules", "json", "os.path"})
    assert std == {"json", "os.path"} and other == set()
