"""Platforms: what the daemon drives (see docs/platform.md)."""


def get(name, system, **kwargs):
    if name == "openwrt":
        from mape.platform.openwrt import OpenWrt
        return OpenWrt(system, **kwargs)
    if name == "linux":
        from mape.platform.linux import Linux
        return Linux(system, **kwargs)
    from mape.core.errors import InputError
    raise InputError("unknown platform %r (openwrt or linux)" % name)


def detect(system):
    """openwrt when /etc/openwrt_release exists, linux otherwise."""
    return "openwrt" if system.exists("/etc/openwrt_release") else "linux"
