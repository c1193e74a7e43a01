"""Benchmarks (`make bench`). Rows with a target say whether it was met."""


def verdict(met, target):
    """The target cell of a bench row: a miss is flagged so that nobody reads past it."""
    return ("met (target %s)" if met else "**MISSED** (target %s)") % target
