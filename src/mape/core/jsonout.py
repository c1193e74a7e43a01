"""json.dumps(value, ensure_ascii=False) for the plain data mape-py prints (dict, list,
tuple, str, int, float, bool, None), byte for byte, without importing json: the stdlib's
json imports re, which alone costs a third of a bare interpreter start."""

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _string(s):
    if s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = []
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < " ":
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def dumps(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {True: "NaN"}.get(value != value, "Infinity" if value > 0 else "-Infinity")
        return float.__repr__(value)
    if isinstance(value, dict):
        return "{" + ", ".join(_string(str(k)) + ": " + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    raise TypeError("cannot serialise %r" % type(value).__name__)
