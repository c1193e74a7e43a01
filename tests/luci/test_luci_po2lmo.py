"""luci-app-mape-py/tools/po2lmo.py: the .lmo catalog LuCI reads, built without the SDK."""
import os
import struct
import subprocess
import sys

import pytest

from tests.luci import i18n

sys.path.insert(0, os.path.join(i18n.APP, "tools"))
import po2lmo  # noqa: E402

# sfh_hash(data, len, len) of luci-base (C), computed with its source during development
# (and compared there with po2lmo.sfh_hash on 3182 random and real strings).
KNOWN = {
    "a": 291415938, "ab": 1366002500, "abc": 3535673738, "abcd": 3671636187, "Save": 563701447,
    "MAP-E": 1027681011, "Port sets": 318902705, "全 15 ポートセットを使用中": 435209864,
    "é": 3304826196, "Status": 1714641353,
}


@pytest.mark.parametrize("text,value", sorted(KNOWN.items()))
def test_sfh_hash_known_answers(text, value):
    assert po2lmo.sfh_hash(text.encode("utf-8")) == value


def test_compiles_the_japanese_catalog():
    with open(i18n.po_path("ja"), encoding="utf-8") as f:
        po = f.read()
    data = po2lmo.compile_po(po)
    assert len(data) % 4 == 0
    (idx,) = struct.unpack(">I", data[-4:])
    keys = [struct.unpack(">I", data[p:p + 4])[0] for p in range(idx, len(data) - 4, 16)]
    assert keys == sorted(keys)                          # lmo_find_entry does a binary search
    cat = po2lmo.read_lmo(data)
    assert cat[0] == "nplurals=1; plural=0;"
    translations = {k: v for k, v in i18n.parse_po(po).items() if k != v}   # "MAP-E" stays "MAP-E"
    for msgid, text in translations.items():
        assert cat[po2lmo.sfh_hash(msgid.encode("utf-8"))] == text, msgid
    assert len(cat) == len(translations) + 1


def test_msgids_survive_luci_whitespace_normalisation():
    # po2lmo hashes the msgid as written, LuCI looks it up after collapsing whitespace:
    # a msgid with leading/trailing or doubled whitespace would never be found
    for msgid in i18n.all_msgids():
        assert " ".join(msgid.split()) == msgid, repr(msgid)


def test_context_plural_and_untranslated_entries():
    po = ('msgid ""\nmsgstr ""\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
          'msgctxt "menu"\nmsgid "Open"\nmsgstr "開く"\n\n'
          'msgid "%d port"\nmsgid_plural "%d ports"\nmsgstr[0] "%d ポート"\nmsgstr[1] "%d ポート群"\n\n'
          'msgid "Same"\nmsgstr "Same"\n\n'
          'msgid "Empty"\nmsgstr ""\n\n'
          'msgid "Say \\"hi\\""\nmsgstr "「hi」と言う"\n')
    cat = po2lmo.read_lmo(po2lmo.compile_po(po))
    h = lambda s: po2lmo.sfh_hash(s.encode("utf-8"))  # noqa: E731
    assert cat[h("menu\1Open")] == "開く"
    assert cat[h("%d port\2" + "0")] == "%d ポート" and cat[h("%d port\2" + "1")] == "%d ポート群"
    assert cat[h('Say "hi"')] == "「hi」と言う"
    assert h("Same") not in cat and h("Empty") not in cat
    assert cat[0] == "nplurals=2; plural=(n != 1);"


def test_command_line(tmp_path):
    out = tmp_path / "mape.ja.lmo"
    tool = os.path.join(i18n.APP, "tools", "po2lmo.py")
    subprocess.run([sys.executable, tool, i18n.po_path("ja"), str(out)], check=True)
    with open(i18n.po_path("ja"), encoding="utf-8") as f:
        assert out.read_bytes() == po2lmo.compile_po(f.read())
