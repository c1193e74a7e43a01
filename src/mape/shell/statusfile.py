"""The status document: written atomically (temp + rename) under /var/run/mape-py."""
import json

STATUS_PATH = "/var/run/mape-py/status.json"
PID_PATH = "/var/run/mape-py/mape-py.pid"


def dumps(doc):
    text = json.dumps(doc, ensure_ascii=False, sort_keys=False, indent=None, separators=(",", ":")) + "\n"
    # a lone surrogate (ubus JSON may carry "\ud800") cannot be UTF-8: keep it as a JSON escape
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write(system, doc, path=STATUS_PATH):
    # /var/run is tmpfs: no fsync needed, rename keeps it atomic for readers.
    system.write_atomic(path, dumps(doc), sync=False)


def read(system, path=STATUS_PATH):
    """(doc or None, problem or None)."""
    text = system.read(path)
    if text is None:
        return None, None
    try:
        doc = json.loads(text)
    except ValueError:
        return None, "%s is not JSON" % path
    if not isinstance(doc, dict):
        return None, "%s is not a JSON object" % path
    return doc, None
