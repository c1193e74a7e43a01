"""Parser for UCI config-file syntax (/etc/config/* and `uci export` output). Pure."""
from mape.core.errors import InputError


class Section:
    __slots__ = ("type", "name", "options")

    def __init__(self, type_, name):
        self.type = type_
        self.name = name
        self.options = {}  # option -> str, list option -> list of str

    def get(self, key, default=None):
        return self.options.get(key, default)


def _words(line):
    """Split one config line like the uci tokenizer: whitespace separates, '...' and "..."
    quote (backslash escapes inside double quotes and outside quotes), '#' outside quotes starts a
    comment. Same words as shlex.split(line, comments=True), without importing re."""
    words = []
    word = None
    quote = None
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < n and line[i + 1] in '"\\':
                i += 1
                word.append(line[i])
            else:
                word.append(c)
        elif c in " \t":
            if word is not None:
                words.append("".join(word))
                word = None
        elif c == "#":
            break
        else:
            if word is None:
                word = []
            if c in "'\"":
                quote = c
            elif c == "\\":
                i += 1
                if i == n:
                    raise ValueError("No escaped character")
                word.append(line[i])
            else:
                word.append(c)
        i += 1
    if quote:
        raise ValueError("No closing quotation")
    if word is not None:
        words.append("".join(word))
    return words


def parse(text, source="config"):
    """Sections in file order. Raises InputError (one line, with the line number) on garbage."""
    sections = []
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = _words(line)
        except ValueError as e:
            raise InputError("%s line %d: %s" % (source, number, e))
        if not words:
            continue
        keyword = words[0]
        if keyword == "package":
            continue
        if keyword == "config":
            if len(words) not in (2, 3):
                raise InputError("%s line %d: expected: config TYPE ['NAME']" % (source, number))
            current = Section(words[1], words[2] if len(words) == 3 else None)
            sections.append(current)
        elif keyword in ("option", "list"):
            if current is None or len(words) not in (2, 3):
                raise InputError("%s line %d: expected: %s NAME 'VALUE' inside a config section"
                                 % (source, number, keyword))
            value = words[2] if len(words) == 3 else ""
            if keyword == "option":
                current.options[words[1]] = value
            else:
                existing = current.options.get(words[1])
                if not isinstance(existing, list):
                    existing = [] if existing is None else [existing]
                existing.append(value)
                current.options[words[1]] = existing
        else:
            raise InputError("%s line %d: unknown keyword %r" % (source, number, keyword))
    return sections
