"""A recorder with argparse's add_argument() API that parses the common case itself.

Commands declare their options once, as for argparse. Plain valid command lines are parsed
here without importing argparse (which, with re, costs more than the rest of a `calc` run);
anything else (--help, an error, an abbreviation, a feature not handled here) is replayed
into a real argparse.ArgumentParser, so help texts and error messages are argparse's own
(errors on one line, without the usage block).
"""


class _Fallback(Exception):
    pass


class Parser:
    def __init__(self, prog, description=None):
        self.prog = prog
        self.description = description
        self.calls = []  # (args, kwargs) of every add_argument, in order
        self.simple = True
        self._real = None

    def __getattr__(self, name):
        # Anything beyond add_argument (groups, subparsers, ...): become a real argparse parser.
        if name.startswith("__") or name == "_real":
            raise AttributeError(name)
        if self._real is None:
            self._real = self.argparse_parser()
            self.simple = False
        return getattr(self._real, name)

    def add_argument(self, *names, **kwargs):
        if self._real is not None:
            return self._real.add_argument(*names, **kwargs)
        self.calls.append((names, kwargs))
        known = {"action", "type", "default", "help", "metavar", "nargs", "choices", "dest", "required"}
        if set(kwargs) - known or kwargs.get("action", "store") not in ("store", "store_true"):
            self.simple = False
        if kwargs.get("nargs") not in (None, "?", "*", "+"):
            self.simple = False

    def argparse_parser(self):
        import argparse

        class OneLineErrors(argparse.ArgumentParser):
            # a usage error is one line on stderr, exit 2, like every other mape-py error
            def error(self, message):
                self.exit(2, "%s: %s (`%s --help` lists the options)\n" % (self.prog, message, self.prog))

        parser = OneLineErrors(prog=self.prog, description=self.description,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        for names, kwargs in self.calls:
            parser.add_argument(*names, **kwargs)
        return parser

    def parse_args(self, argv):
        if self._real is not None:
            return self._real.parse_args(argv)
        if self.simple:
            try:
                return self._parse(list(argv))
            except _Fallback:
                pass
        return self.argparse_parser().parse_args(argv)

    def _parse(self, argv):
        class Namespace:
            pass

        ns = Namespace()
        options, positionals = {}, []
        for names, kwargs in self.calls:
            if names[0].startswith("-"):
                dest = kwargs.get("dest") or next((n for n in names if n.startswith("--")), names[0]).lstrip("-").replace("-", "_")
                for name in names:
                    options[name] = (dest, kwargs)
                setattr(ns, dest, kwargs.get("default", False if kwargs.get("action") == "store_true" else None))
            else:
                positionals.append((kwargs.get("dest") or names[0], kwargs))
        values = []
        interrupted = False  # positionals split by options: argparse's rules get subtle, defer to it
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                raise _Fallback()
            if arg.startswith("-") and arg != "-":
                interrupted = bool(values)
                name, eq, inline = arg.partition("=")
                if name not in options:
                    raise _Fallback()
                dest, kwargs = options[name]
                if kwargs.get("action") == "store_true":
                    if eq:
                        raise _Fallback()
                    setattr(ns, dest, True)
                else:
                    if not eq:
                        i += 1
                        if i == len(argv) or argv[i].startswith("-") and argv[i] != "-":
                            raise _Fallback()
                        inline = argv[i]
                    setattr(ns, dest, self._convert(inline, kwargs))
            else:
                if interrupted:
                    raise _Fallback()
                values.append(arg)
            i += 1
        for dest, kwargs in positionals:
            nargs = kwargs.get("nargs")
            if nargs in ("*", "+"):
                if nargs == "+" and not values:
                    raise _Fallback()
                setattr(ns, dest, [self._convert(v, kwargs) for v in values])
                values = []
            elif values:
                setattr(ns, dest, self._convert(values.pop(0), kwargs))
            elif nargs == "?":
                setattr(ns, dest, kwargs.get("default"))
            else:
                raise _Fallback()
        if values:
            raise _Fallback()
        for names, kwargs in self.calls:
            if kwargs.get("required"):
                raise _Fallback()  # let argparse enforce it
        return ns

    @staticmethod
    def _convert(text, kwargs):
        convert = kwargs.get("type")
        if convert is not None:
            try:
                text = convert(text)
            except (TypeError, ValueError):
                raise _Fallback()
        if "choices" in kwargs and kwargs["choices"] is not None and text not in kwargs["choices"]:
            raise _Fallback()
        return text
