#!/usr/bin/env python3
"""po2lmo in Python (stdlib only): compile a LuCI .po file to the .lmo catalog that
luci-base reads from /usr/lib/lua/luci/i18n/<name>.<lang>.lmo.

LuCI's own po2lmo is a C tool of luci-base, built only inside the OpenWrt SDK; with this
file a build without the SDK (tools/build_ipk.py) can ship luci-i18n-mape-py-ja too.

The .lmo layout (all integers big-endian uint32):
  translated strings, each padded with NUL to a multiple of 4 bytes;
  index of (key_id, val_id, offset, length) records sorted by key_id;
  offset of the index.
key_id is Paul Hsieh's SuperFastHash of the msgid (msgctxt "\\1" msgid with a context,
msgid "\\2" n for plural forms), seeded with its byte length. val_id is the plural form
number + 1. The Plural-Forms header is stored under key_id 0. Entries whose translation
hashes like the msgid (untranslated) are left out, as po2lmo does.

Usage: po2lmo.py input.po output.lmo
"""
import struct
import sys

M32 = 0xFFFFFFFF


def _signed_byte(b):
    return b - 256 if b > 127 else b


def sfh_hash(data, init=None):
    """SuperFastHash over bytes, as luci-base's sfh_hash(data, len, init=len)."""
    if not data:
        return 0
    h = (len(data) if init is None else init) & M32
    rem = len(data) & 3
    n = len(data) >> 2
    i = 0
    for _ in range(n):
        h = (h + (data[i] | data[i + 1] << 8)) & M32
        tmp = ((data[i + 2] | data[i + 3] << 8) << 11 ^ h) & M32
        h = (h << 16 & M32) ^ tmp
        i += 4
        h = (h + (h >> 11)) & M32
    if rem == 3:
        h = (h + (data[i] | data[i + 1] << 8)) & M32
        h ^= h << 16 & M32
        h ^= (_signed_byte(data[i + 2]) << 18) & M32
        h = (h + (h >> 11)) & M32
    elif rem == 2:
        h = (h + (data[i] | data[i + 1] << 8)) & M32
        h ^= h << 11 & M32
        h = (h + (h >> 17)) & M32
    elif rem == 1:
        h = (h + _signed_byte(data[i])) & M32
        h ^= h << 10 & M32
        h = (h + (h >> 1)) & M32
    h ^= h << 3 & M32
    h = (h + (h >> 5)) & M32
    h ^= h << 4 & M32
    h = (h + (h >> 17)) & M32
    h ^= h << 25 & M32
    h = (h + (h >> 6)) & M32
    return h


def _po_string(line):
    """The text between the first pair of quotes, with \\" and \\\\ unescaped; other
    escapes stay as written (what po2lmo's extract_string does)."""
    start = line.find('"')
    if start < 0:
        return None
    out, i = [], start + 1
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            out.append(nxt if nxt in '"\\' else "\\" + nxt)
            i += 2
            continue
        if c == '"':
            break
        out.append(c)
        i += 1
    return "".join(out)


def parse(text):
    """[(ctxt, id, id_plural, {n: str})] in file order, header included (id "")."""
    msgs, cur, field = [], None, None

    def flush():
        if cur is not None and (cur["id"] is not None or cur["val"]):
            msgs.append((cur["ctxt"], cur["id"], cur["plural"], cur["val"]))

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.startswith("msgctxt "):
            flush()
            cur = {"ctxt": "", "id": None, "plural": None, "val": {}}
            field = ("ctxt",)
            cur["ctxt"] = _po_string(line)
            continue
        if line.startswith("msgid "):
            if cur is None or cur["id"] is not None or cur["val"]:
                flush()
                cur = {"ctxt": None, "id": None, "plural": None, "val": {}}
            cur["id"] = _po_string(line)
            field = ("id",)
            continue
        if line.startswith("msgid_plural "):
            cur["plural"] = _po_string(line)
            field = ("plural",)
            continue
        if line.startswith("msgstr"):
            n = 0
            if line.startswith("msgstr["):
                n = int(line[7:line.index("]")])
            cur["val"][n] = _po_string(line)
            field = ("val", n)
            continue
        if line.startswith('"') and cur is not None and field is not None:
            s = _po_string(line) or ""
            if field[0] == "val":
                cur["val"][field[1]] += s
            else:
                cur[field[0]] = (cur[field[0]] or "") + s
    flush()
    return msgs


def compile_po(text):
    """The .lmo bytes for a .po text."""
    strings, index, offset = [], [], 0

    def add(key_id, val_id, value):
        nonlocal offset
        data = value.encode("utf-8")
        pad = (4 - len(data) % 4) % 4
        index.append((key_id, val_id, offset, len(data)))
        strings.append(data + b"\0" * pad)
        offset += len(data) + pad

    for ctxt, msgid, plural, vals in parse(text):
        if msgid:
            if not vals.get(0):
                continue
            for n in sorted(vals):
                val = vals[n]
                if not val:
                    continue
                if ctxt and plural:
                    key = "%s\1%s\2%d" % (ctxt, msgid, n)
                elif ctxt:
                    key = "%s\1%s" % (ctxt, msgid)
                elif plural:
                    key = "%s\2%d" % (msgid, n)
                else:
                    key = msgid
                key_id = sfh_hash(key.encode("utf-8"))
                if key_id != sfh_hash(val.encode("utf-8")):
                    add(key_id, max(vals) + 1, val)
        elif vals.get(0):
            for field in vals[0].split("\\n"):
                if field.lower().startswith("plural-forms: "):
                    add(0, 0, field[14:])
                    break
    if offset == 0:
        return b""
    index.sort(key=lambda e: e[0])
    out = b"".join(strings) + b"".join(struct.pack(">IIII", *e) for e in index)
    return out + struct.pack(">I", offset)


def read_lmo(data):
    """{key_id: str} of .lmo bytes (key 0: the Plural-Forms expression)."""
    (idx,) = struct.unpack(">I", data[-4:])
    out = {}
    for pos in range(idx, len(data) - 4, 16):
        key_id, _val_id, off, length = struct.unpack(">IIII", data[pos:pos + 16])
        out[key_id] = data[off:off + length].decode("utf-8")
    return out


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: po2lmo.py input.po output.lmo\n")
        return 2
    with open(argv[0], encoding="utf-8") as f:
        data = compile_po(f.read())
    if not data:
        sys.stderr.write("po2lmo.py: %s has no translations, no output written\n" % argv[0])
        return 0
    with open(argv[1], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
