"""Parser for UCI config-file syntax (/etc/config/* and `uci export` output). Pure.

A port of libuci's tokenizer and parser (file.c: uci_parse_line, parse_str, the quote and
backslash rules; list.c: what `option`/`list`/`config` do to the tree), strict mode as the
`uci` CLI uses it, so that it accepts and rejects what libuci does and gives the same
sections: values may span lines inside quotes, a backslash before the line end joins lines,
`#` starts a comment anywhere outside quotes, `;` ends a command, `c`/`o`/`l`/`p` abbreviate
the keywords, `option x ''` is a no-op, `list` after `option` turns it into a list, a
section named twice is one section. tests/openwrt/test_ucifile_libuci.py checks it
against the real libuci with generated configs.
"""
from mape.core.errors import InputError


class Section:
    __slots__ = ("type", "name", "options")

    def __init__(self, type_, name):
        self.type = type_
        self.name = name
        self.options = {}  # option -> str, list option -> list of str

    def get(self, key, default=None):
        return self.options.get(key, default)


class _ParseError(Exception):
    pass


_NUL = "\0"
_SPACE = " \t\n\v\f\r"   # C isspace()


def _alnum(c):
    return "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9"


def _valid(text, name, package=False):
    """uci_validate_str: names are [A-Za-z0-9_] (packages also '-'), types printable ASCII."""
    if not text:
        return False
    for c in text:
        if _alnum(c) or c == "_" or (c == "-" and package):
            continue
        if name or not (33 <= ord(c) <= 126):
            return False
    return True


class _Parser:
    """libuci's parse context: one growing line buffer (NUL = end), a read position."""

    def __init__(self, text):
        pieces = text.split("\n")
        self.lines = [p + "\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
        self.next_line = 0
        self.line = 0
        self.buf = []
        self.filled = 0
        self.pos = 0
        self.sections = []
        self.by_name = {}
        self.section = None

    # -- the buffer ------------------------------------------------------------------------
    def ch(self, i):
        return self.buf[i] if i < len(self.buf) else _NUL

    def cur(self):
        return self.ch(self.pos)

    def put(self, i, c):
        if i < len(self.buf):
            self.buf[i] = c
        elif c != _NUL:
            self.buf.extend(_NUL * (i - len(self.buf)))
            self.buf.append(c)

    def cstr(self, i):
        out = []
        while i < len(self.buf) and self.buf[i] != _NUL:
            out.append(self.buf[i])
            i += 1
        return "".join(out)

    def getln(self, offset):
        del self.buf[offset:]
        if self.next_line >= len(self.lines):
            return
        line = self.lines[self.next_line]
        self.next_line += 1
        self.buf.extend(line)
        self.filled = len(self.buf)
        if line.endswith("\n"):
            self.line += 1

    # -- tokenizer (file.c) ----------------------------------------------------------------
    def backslash(self):
        self.pos += 1
        c = self.cur()
        if c == _NUL or c == "\n" or (c == "\r" and self.ch(self.pos + 1) == "\n" and self.ch(self.pos + 2) == _NUL):
            self.getln(self.pos)
            return False
        return True

    def skip_whitespace(self):
        while self.cur() != _NUL and self.cur() in _SPACE:
            self.pos += 1

    def addc(self, target):
        self.put(target, self.cur())
        self.pos += 1
        return target + 1

    def quoted(self, target, quote):
        self.pos += 1
        while True:
            c = self.cur()
            if c == quote:
                self.pos += 1
                return target
            if c == _NUL:
                self.getln(self.pos)
                if self.cur() == _NUL:
                    raise _ParseError("EOF with unterminated %s" % quote)
                continue
            if c == "\\" and quote == '"' and not self.backslash():
                continue
            target = self.addc(target)

    def parse_str(self, target):
        go_on = True
        while True:
            c = self.cur()
            if c in "'\"":
                target = self.quoted(target, c)
            elif c == "#":
                self.put(self.pos, _NUL)
                break
            elif c == _NUL:
                break
            elif c == ";":
                go_on = False
                break
            elif c == "\\" and not self.backslash():
                pass
            else:
                target = self.addc(target)
            if self.cur() == _NUL or self.cur() in _SPACE:
                break
        if self.cur() != _NUL and go_on:
            self.pos += 1
        self.put(target, _NUL)

    def next_arg(self, required, name, package=False):
        self.skip_whitespace()
        val = self.pos
        if self.cur() == ";":
            self.put(self.pos, _NUL)
            self.pos += 1
        else:
            self.parse_str(val)
        text = self.cstr(val)
        if not text:
            if required:
                raise _ParseError("insufficient arguments")
        elif name and not _valid(text, True, package):
            raise _ParseError("invalid character in name field")
        return val

    def assert_eol(self):
        self.skip_whitespace()
        if self.cstr(self.next_arg(False, False)):
            raise _ParseError("too many arguments")

    def skip_word(self, what):
        add = len(self.cstr(self.pos)) + 1
        if self.pos + add > self.filled:
            raise _ParseError("%s without name" % what)
        self.pos += add

    def strtok(self):
        """strtok(cur, " \\t"): the command word (NUL-terminated in place), or None."""
        i = self.pos
        while self.ch(i) in " \t" and self.ch(i) != _NUL:
            i += 1
        if self.ch(i) == _NUL:
            return None
        j = i
        while self.ch(j) != _NUL and self.ch(j) not in " \t":
            j += 1
        word = "".join(self.buf[i:j])
        if j < len(self.buf):
            self.buf[j] = _NUL
        return word

    # -- commands ------------------------------------------------------------------------
    def parse_line(self):
        self.skip_whitespace()
        while True:
            word = self.strtok()
            if word is None or word[0] == "#":
                return
            head, rest = word[0], word[1:]
            if head == "p" and rest in ("", "ackage"):
                self.skip_word("package")
                self.next_arg(True, True, True)
                self.assert_eol()
            elif head == "c" and rest in ("", "onfig"):
                self.config()
            elif head == "o" and rest in ("", "ption"):
                self.option(False)
            elif head == "l" and rest in ("", "ist"):
                self.option(True)
            else:
                raise _ParseError("invalid command")

    def config(self):
        self.skip_word("config")
        t = self.next_arg(True, False)
        if not _valid(self.cstr(t), False):
            raise _ParseError("invalid character in type field")
        n = self.next_arg(False, True)
        self.assert_eol()
        type_, name = self.cstr(t), self.cstr(n)
        if not name:
            self.section = Section(type_, None)
            self.sections.append(self.section)
            return
        s = self.by_name.get(name)
        if s is None:
            s = self.by_name[name] = Section(type_, name)
            self.sections.append(s)
        elif s.type != type_:
            raise _ParseError("section of different type overwrites prior section with same name")
        self.section = s

    def option(self, is_list):
        if self.section is None:
            raise _ParseError("option/list command found before the first section")
        self.skip_word("option")
        n = self.next_arg(True, True)
        v = self.next_arg(False, False)
        self.assert_eol()
        name, value = self.cstr(n), self.cstr(v)
        options = self.section.options
        if is_list:
            have = options.get(name)
            options[name] = (have if isinstance(have, list) else [] if have is None else [have]) + [value]
        elif value:   # uci_set of an empty value on the parser's pointer does nothing
            options[name] = value

    def run(self):
        while self.next_line < len(self.lines):
            self.pos = 0
            self.getln(0)
            if self.buf:
                self.parse_line()
        return self.sections


def parse(text, source="config"):
    """Sections in file order. Raises InputError (one line, with the line number) where
    libuci refuses the file."""
    if _NUL in text:
        raise InputError("%s: NUL byte in the file" % source)
    p = _Parser(text)
    try:
        return p.run()
    except _ParseError as e:
        raise InputError("%s line %d: %s" % (source, max(p.line, 1), e))
