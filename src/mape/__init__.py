"""mape-py: MAP-E for OpenWrt on Japan's FLET'S IPoE lines.

Layout: ``mape.core`` is pure (no I/O): rule table, arithmetic, planning, rendering.
``mape.shell`` holds the small modules that touch the system (ubus, uci, netfilter, files).
``mape.cli`` and ``mape.daemon`` wire them together.
"""

__version__ = "0.1.0"
