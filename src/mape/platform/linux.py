"""A plain Linux router (Debian etc.): observe the WAN device with iproute2 + a netlink
socket, build the MAP-E tunnel with iproute2 itself. Used by the VM tests and the demo, and
a real option for Debian-based routers (`mape-py daemon --platform linux`).

Settings on this platform: `wan6_iface` is the Linux WAN *device* (e.g. eth1: the one the
line's RA / DHCPv6 reach); the tunnel is `map-<wan_iface>` (map-wan), as on OpenWrt.

Observe (netifd's wan6 status shape, docs/platform.md):
- `ipv6-address`: the device's global addresses (`ip -json -6 addr show dev DEV`), minus
  tentative / DAD-failed / deprecated ones (a deprecated address is one the line is taking
  back) and minus the CE address mape-py itself put there;
- `ipv6-prefix`: delegated prefixes, read from the unreachable route a DHCPv6-PD client
  installs for the whole delegation (`ip -6 route show table all type unreachable`, protocol
  dhcp: dhcpcd does this, e.g. "unreachable 240b:10:aaaa:bb00::/56 dev lo proto dhcp").
- events: an AF_NETLINK socket on the link, IPv6 address and IPv6 route groups; only
  messages about the WAN device (or about a delegated-prefix route) count.

Apply (idempotent: each piece is compared first, nothing is touched that already matches):
the CE address as /128 on the WAN device (nodad), `ip -6 tunnel add map-wan mode ip4ip6
local CE remote BR dev WAN encaplimit none`, MTU, the IPv4 /32 on the tunnel, `ip route
replace default dev map-wan`. A state file (RUN_DIR/linux-state.json) records what was
applied and the default route it replaced, written before the first change ("applying")
and after the last ("applied"), so a killed daemon's leftovers are known and removed by
the next apply. NAT rules are installed by the daemon through the NAT engine.
"""
import ipaddress
import json
import os
import socket
import struct

from mape.core.errors import MapeError
from mape.platform.base import Platform, wait_until
from mape.shell.system import CommandError

RUN_DIR = "/var/run/mape-py"
STATE = RUN_DIR + "/linux-state.json"

# <linux/rtnetlink.h>
RTMGRP_LINK = 0x1
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTN_UNREACHABLE = 7
RTPROT_RA = 9
RTPROT_DHCP = 16
NLMSG_HDR = struct.Struct("=IHHII")


class ApplyError(MapeError):
    pass


class Linux(Platform):
    name = "linux"

    def __init__(self, system, ip_program="ip"):
        Platform.__init__(self, system)
        self.ip_program = ip_program
        self.sock = None
        self.ifindex = None
        self.device = None
        self.last_state = None
        self.settings = None
        self.last_sig = None

    # -- helpers -------------------------------------------------------------------------
    def ip(self, *args, **kw):
        check = kw.get("check", True)
        rc, out, err = self.system.run([self.ip_program] + list(args), check=check)
        return out

    def ip_json(self, *args):
        try:
            out = self.ip("-json", *args)
        except CommandError as e:
            if "does not exist" in e.stderr or "Cannot find device" in e.stderr:
                return None
            raise
        try:
            value = json.loads(out or "[]")
        except ValueError:
            raise ApplyError("`ip -json %s` printed something that is not JSON" % " ".join(args))
        return value if isinstance(value, list) else []

    def tunnel_name(self, settings):
        return "map-%s" % settings.wan_iface

    def read_state(self):
        text = self.system.read(STATE)
        if not text:
            return {}
        try:
            doc = json.loads(text)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def write_state(self, doc):
        self.system.write_atomic(STATE, json.dumps(doc, sort_keys=True) + "\n", sync=False)

    def _our_ces(self, state=None):
        state = self.read_state() if state is None else state
        out = set()
        for key in ("applied", "applying"):
            part = state.get(key)
            if isinstance(part, dict) and isinstance(part.get("ce"), str):
                out.add(_norm6(part["ce"]))
        return out

    # -- observe ---------------------------------------------------------------------------
    def observe(self, settings):
        dev = settings.wan6_iface
        try:
            addrs = self.ip_json("-6", "addr", "show", "dev", dev)
            if addrs is None or not addrs:
                return None, None
            routes = self.ip_json("-6", "route", "show", "table", "all", "type", "unreachable") or []
        except (CommandError, ApplyError) as e:
            return None, "cannot read %s: %s" % (dev, e)
        link = addrs[0]
        self.device = dev
        self.ifindex = link.get("ifindex")
        flags = link.get("flags") or []
        up = "UP" in flags and "LOWER_UP" in flags
        status = {"interface": dev, "up": up, "device": dev, "l3_device": dev, "proto": "linux",
                  "ipv6-address": [], "ipv6-prefix": []}
        ours = self._our_ces()
        for a in link.get("addr_info") or []:
            if a.get("family") != "inet6" or a.get("scope") != "global":
                continue
            if a.get("tentative") or a.get("dadfailed") or a.get("deprecated"):
                continue
            local = a.get("local")
            if not isinstance(local, str) or _norm6(local) in ours:
                continue
            item = {"address": local, "mask": a.get("prefixlen")}
            for src, dst in (("preferred_life_time", "preferred"), ("valid_life_time", "valid")):
                if isinstance(a.get(src), int) and a[src] < 0xffffffff:
                    item[dst] = a[src]
            status["ipv6-address"].append(item)
        for r in routes:
            if r.get("protocol") not in ("dhcp", RTPROT_DHCP, str(RTPROT_DHCP)):
                continue
            dst = r.get("dst", "")
            if "/" not in dst:
                continue
            addr, mask = dst.split("/", 1)
            if mask.isdigit():
                status["ipv6-prefix"].append({"address": addr, "mask": int(mask), "class": "dhcpcd"})
        self.last_sig = _signature(status)
        return status, None

    # -- events: one netlink socket ---------------------------------------------------------
    def start_events(self, settings):
        self.stop_events()
        self.settings = settings
        self.device = settings.wan6_iface
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            s.bind((0, RTMGRP_LINK | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE))
            s.setblocking(False)
        except OSError:
            self.sock = None  # the re-check still works, only slower
            return
        self.sock = s
        self._refresh_ifindex()

    def _refresh_ifindex(self):
        try:
            links = self.ip_json("link", "show", "dev", self.device)
            self.ifindex = links[0].get("ifindex") if links else None
        except (CommandError, ApplyError):
            self.ifindex = None

    def stop_events(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def event_fds(self):
        return [self.sock] if self.sock is not None else []

    def drain_events(self, fd):
        reasons = []
        while self.sock is not None:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # ENOBUFS: we missed some; look again anyway
                reasons.append("netlink: %s" % e.strerror)
                break
            if not data:
                break
            for reason in classify_netlink(data, self.ifindex):
                if reason == "link" or reason.startswith("link"):
                    self._refresh_ifindex()
                reasons.append("%s %s" % (self.device, reason))
        if reasons and self.settings is not None and not any(r.startswith("netlink") for r in reasons):
            # an RA refreshes the lifetimes (= an address message) every few seconds: only a
            # change of what observe() reports is worth a cycle
            before = self.last_sig
            status, problem = self.observe(self.settings)
            if not problem and before is not None and _signature(status) == before:
                return []
        return list(dict.fromkeys(reasons))

    # -- compare ----------------------------------------------------------------------------
    def look(self, settings):
        """The system in two `ip` runs: {"tunnel": {...} or None, "addrs": {dev: [(addr, len,
        flags)]}, "default": [route]}."""
        name = self.tunnel_name(settings)
        links = self.ip_json("-d", "addr", "show") or []
        routes = self.ip_json("-4", "route", "show", "default") or []
        view = {"tunnel": None, "addrs": {}, "default": [r for r in routes if r.get("dst") == "default"]}
        for link in links:
            ifname = link.get("ifname")
            infos = link.get("addr_info") or []
            view["addrs"][ifname] = [(_norm6(a["local"]) if a.get("family") == "inet6" else a.get("local"),
                                      a.get("prefixlen"), a) for a in infos if a.get("local")]
            if ifname == name:
                info = link.get("linkinfo") or {}
                data = info.get("info_data") or {}
                view["tunnel"] = {
                    "kind": info.get("info_kind"), "local": data.get("local"), "remote": data.get("remote"),
                    "link": link.get("link"), "mtu": link.get("mtu"), "up": "UP" in (link.get("flags") or []),
                    "proto": data.get("proto"), "ign_encap_limit": data.get("ip6_tnl_f_ign_encap_limit"),
                    "ipv4": [a.get("local") for a in infos if a.get("family") == "inet"]}
        return view

    @staticmethod
    def _has_ce(view, ce, dev):
        ce = _norm6(ce)
        return any(addr == ce and plen == 128 and not a.get("dadfailed")
                   for addr, plen, a in view["addrs"].get(dev, []))

    @staticmethod
    def _tunnel_matches(tun, summary):
        return (tun is not None and tun["kind"] == "ip6tnl" and tun["proto"] == "ipip6" and tun["ign_encap_limit"]
                and _norm6(tun["local"]) == _norm6(summary["ce"])
                and _norm6(tun["remote"]) == _norm6(summary["br"]) and tun["link"] == summary["device"])

    def plan(self, summary, settings, view=None, state=None):
        """([short description], [`ip -batch` lines]) that take the system to ``summary``."""
        view = self.look(settings) if view is None else view
        state = self.read_state() if state is None else state
        name = self.tunnel_name(settings)
        dev, ce, br, v4 = summary["device"], summary["ce"], summary["br"], summary["ipv4"]
        changes, batch = [], []
        tun = view["tunnel"]
        if tun is not None and not self._tunnel_matches(tun, summary):
            changes.append("tunnel %s: local %s -> %s, remote %s -> %s, dev %s -> %s" % (
                name, tun["local"], ce, tun["remote"], br, tun["link"], dev))
            batch.append("link del %s" % name)
            tun = None
        if not self._has_ce(view, ce, dev):
            changes.append("CE %s/128 on %s" % (ce, dev))
            batch.append("addr replace %s/128 dev %s nodad" % (ce, dev))
        for old in sorted(self._our_ces(state) - {_norm6(ce)}):
            if self._has_ce(view, old, dev):
                changes.append("remove old CE %s" % old)
                batch.append("addr del %s/128 dev %s" % (old, dev))
        have_v4 = []
        if tun is None:
            if view["tunnel"] is None:
                changes.append("create tunnel %s" % name)
            batch.append("link add name %s type ip6tnl mode ip4ip6 local %s remote %s dev %s encaplimit none"
                         % (name, ce, br, dev))
            batch.append("link set %s mtu %d up" % (name, settings.mtu))
        else:
            have_v4 = tun["ipv4"]
            if tun["mtu"] != settings.mtu or not tun["up"]:
                changes.append("tunnel MTU %s -> %d, up" % (tun["mtu"], settings.mtu))
                batch.append("link set %s mtu %d up" % (name, settings.mtu))
        for old in have_v4:
            if old != v4:
                changes.append("tunnel IPv4 %s removed" % old)
                batch.append("addr del %s/32 dev %s" % (old, name))
        if v4 not in have_v4:
            changes.append("tunnel IPv4 %s/32" % v4)
            batch.append("addr add %s/32 dev %s" % (v4, name))
        if tun is None or [r.get("dev") for r in view["default"]] != [name]:
            if tun is not None:
                changes.append("default route via %s" % name)
            batch.append("route replace 0.0.0.0/0 dev %s" % name)
        applied = state.get("applied") if isinstance(state.get("applied"), dict) else {}
        if applied.get("port_sets") != summary["port_sets"] and not changes:
            changes.append("port sets")
        return changes, batch

    def _run_batch(self, batch):
        if batch:
            self.system.run([self.ip_program, "-batch", "-"], input="".join(l + "\n" for l in batch))

    def current(self, settings):
        state = self.read_state().get("applied")
        return state if isinstance(state, dict) else None

    def pending(self, target, settings):
        return self.plan(target.summary(), settings)[0]

    # -- apply ------------------------------------------------------------------------------
    def apply(self, target, settings):
        summary = target.summary()
        if not summary.get("device"):
            raise ApplyError("no WAN device for the tunnel")
        name = self.tunnel_name(settings)
        state = self.read_state()
        previous = state.get("applied") if isinstance(state.get("applied"), dict) else None
        view = self.look(settings)
        saved_default = state.get("replaced_default")
        if saved_default is None:
            saved_default = [r for r in view["default"] if r.get("dev") != name]
        changes, batch = self.plan(summary, settings, view, state)
        state.update({"applying": summary, "replaced_default": saved_default})
        self.write_state(state)
        if batch and self.nat.available and getattr(settings, "manage_firewall", True):
            # NAT for the new IPv4 first, then the tunnel: no new connection is NATed to the
            # old IPv4 once the new tunnel carries it (the daemon installs the same rules
            # again right after apply(); that is a no-op)
            try:
                self.nat.apply(self.nat.spec(target, settings, name))
            except Exception:
                pass  # the daemon's own NAT step reports it
        try:
            self._run_batch(batch)
        except (CommandError, ApplyError) as e:
            try:
                if previous:
                    self._run_batch(self.plan(previous, settings)[1])
                else:
                    self._teardown(settings, state)
            except (CommandError, ApplyError):
                pass
            state = self.read_state()
            state.pop("applying", None)
            if not previous:
                state.pop("applied", None)
            self.write_state(state)
            raise ApplyError("%s; previous state restored" % e)
        state = self.read_state()
        state.pop("applying", None)
        state["previous"] = previous
        state["applied"] = summary
        self.write_state(state)
        self.last_state = summary
        return changes

    def _teardown(self, settings, state):
        name = self.tunnel_name(settings)
        dev = None
        for key in ("applied", "applying", "previous"):
            part = state.get(key)
            if isinstance(part, dict) and part.get("device"):
                dev = part["device"]
                break
        dev = dev or settings.wan6_iface
        view = self.look(settings)
        batch = []
        if view["tunnel"] is not None:
            batch.append("link del %s" % name)   # its addresses and routes go with it
        for ce in sorted(self._our_ces(state)):
            if self._has_ce(view, ce, dev):
                batch.append("addr del %s/128 dev %s" % (ce, dev))
        self._run_batch(batch)
        for r in state.get("replaced_default") or []:
            argv = ["-4", "route", "replace", "default"]
            if r.get("gateway"):
                argv += ["via", r["gateway"]]
            if r.get("dev"):
                argv += ["dev", r["dev"]]
            if isinstance(r.get("metric"), int):
                argv += ["metric", str(r["metric"])]
            self.ip(*argv, check=False)

    def verify(self, target, settings, timeout):
        summary = target.summary()

        def ok():
            view = self.look(settings)
            tun = view["tunnel"]
            return bool(self._tunnel_matches(tun, summary) and tun["up"] and summary["ipv4"] in tun["ipv4"]
                        and self._has_ce(view, summary["ce"], summary["device"]))
        return wait_until(ok, timeout, interval=0.2)

    def rollback(self, settings):
        state = self.read_state()
        previous = state.get("previous")
        if isinstance(previous, dict):
            self._run_batch(self.plan(previous, settings, state=state)[1])
            state["applied"] = previous
            state["previous"] = None
        else:
            self._teardown(settings, state)
            state = {}
        self.write_state(state)

    def remove(self, settings):
        state = self.read_state()
        removed = []
        if state or self.look(settings)["tunnel"] is not None:
            self._teardown(settings, state)
            removed.append("tunnel %s" % self.tunnel_name(settings))
        self.system.remove(STATE)
        self.nat.remove()
        return removed

    def recover(self, settings):
        state = self.read_state()
        if isinstance(state.get("applying"), dict):
            return ["previous run was killed while applying %s: the next apply finishes or replaces it"
                    % state["applying"].get("ipv4")]
        return []

    # -- report -----------------------------------------------------------------------------
    def health(self, target, settings):
        name = self.tunnel_name(settings)
        out = {}
        try:
            tun = self.look(settings)["tunnel"]
        except (CommandError, ApplyError):
            tun = None
        tunnel = {"interface": settings.wan_iface, "device": name, "up": bool(tun and tun["up"])}
        if tun:
            if tun["ipv4"]:
                tunnel["ipv4"] = tun["ipv4"][0]
            tunnel.update({"local": tun["local"], "remote": tun["remote"], "mtu": tun["mtu"]})
        if target is not None:
            tunnel["expected_ipv4"] = target.mapping.ipv4_text
        out["tunnel"] = tunnel
        if target is not None and self.nat.available:
            try:
                out["firewall"] = self.nat.check(self.nat.spec(target, settings, name))
            except Exception as e:
                out["firewall"] = {"health": "unknown", "detail": "check failed: %s" % e}
        elif not self.nat.available:
            out["firewall"] = {"health": "unknown", "detail": self.nat.problem}
        return out


def _signature(status):
    """observe() input without lifetimes, but with deprecation (preferred 0 changes the
    choice): equal signatures = nothing to recompute."""
    if status is None:
        return None
    return (status.get("up"),
            tuple(sorted((a["address"], a["mask"], a.get("preferred") == 0) for a in status.get("ipv6-address", []))),
            tuple(sorted((p["address"], p["mask"], p.get("preferred") == 0) for p in status.get("ipv6-prefix", []))))


def _norm6(text):
    try:
        return str(ipaddress.IPv6Address(str(text).split("/")[0]))
    except ValueError:
        return str(text)


def classify_netlink(data, ifindex):
    """Short reasons for the rtnetlink messages in ``data`` that concern the WAN device
    (``ifindex``) or a delegated prefix (pure; tested with hand-built messages)."""
    reasons = []
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, mtype, _, _, _ = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size:
            break
        body = data[offset + NLMSG_HDR.size: offset + length]
        offset += (length + 3) & ~3
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= 16:
            _, _, index, flags, _ = struct.unpack_from("=BxHiII", body, 0)
            if ifindex is None or index == ifindex:
                reasons.append("link %s" % ("removed" if mtype == RTM_DELLINK else
                                              "up" if flags & 1 else "down"))
        elif mtype in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= 8:
            family, prefixlen, _, scope, index = struct.unpack_from("=BBBBI", body, 0)
            if family == socket.AF_INET6 and scope == 0 and (ifindex is None or index == ifindex) \
                    and prefixlen != 128:
                reasons.append("address %s" % ("removed" if mtype == RTM_DELADDR else "added/updated"))
        elif mtype in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= 12:
            family, dst_len, _, _, _, proto, _, rtype = struct.unpack_from("=BBBBBBBB", body, 0)
            if family == socket.AF_INET6 and rtype == RTN_UNREACHABLE and proto == RTPROT_DHCP:
                reasons.append("delegated prefix /%d %s" % (dst_len, "removed" if mtype == RTM_DELROUTE
                                                            else "added"))
    return reasons
