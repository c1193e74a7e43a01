"""Errors the core raises. Each carries the CLI exit code and a one-line message."""


class MapeError(Exception):
    exit_code = 1


class InputError(MapeError):
    """Malformed input: not an IPv6 prefix, bad option value, ..."""

    exit_code = 2


class PrefixTooShort(InputError):
    """The prefix does not contain all EA bits (mapcalc silently computes garbage here)."""


class RuleError(InputError):
    """A MAP rule whose numbers cannot describe a mapping."""


class UnsupportedPrefix(MapeError):
    """No known MAP rule covers the prefix."""

    exit_code = 3
