# Fixtures live in pkg_helpers.py (a unique module name: other test directories have their
# own conftest.py, and `from conftest import ...` would be ambiguous).
from pkg_helpers import real_build, synth_build  # noqa: F401
