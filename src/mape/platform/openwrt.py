"""OpenWrt: observe wan6 through ubus, apply through UCI (network.wan proto map over wan6,
the firewall zone), let netifd build the tunnel, NAT through the NAT engine.

Transaction (apply): stale CLI deltas of network/firewall are reverted; the configs about to
change are copied to /etc/mape-py/backup/ (and once, before the very first change, to
/etc/mape-py/original/, never overwritten); a journal /etc/mape-py/journal records the
phase; `uci batch` (stdin), `uci commit network`, `uci commit firewall`; journal ->
committed. activate() then reloads what changed and removes the journal; the transaction
installs the new NAT between the two, so the firewall reload that wan's ifup triggers
already finds the new rules. A daemon killed at any instant
is repaired at the next start by recover(): journal "prepared"/"rolling-back" -> the
backups are put back (old configuration), "committed" -> the new configuration stays and
the services are reloaded. Only the files in the plan are ever written.
"""
import json
import time

from mape.core.errors import MapeError
from mape.core.observe import parse_json_status
from mape.core.plan import make_plan, parse_export, wan_status_ipv4
from mape.platform.base import Platform, wait_until
from mape.shell.system import CommandError
from mape.shell.uci import Uci
from mape.shell.ubus import Ubus, classify, event_processes

STATE_DIR = "/etc/mape-py"
DELTA_DIR = "/tmp/.uci"   # the uci CLI's save dir: uncommitted `uci set` changes live here
JOURNAL = STATE_DIR + "/journal"
WRITTEN = STATE_DIR + "/written"   # what mape-py last wrote (core.held): manual edits are noticed
PACKAGES = ("network", "firewall")
HEALTHY = 60   # seconds an event child must have run for its exit to reset the restart back-off


class ApplyError(MapeError):
    pass


class OpenWrt(Platform):
    name = "openwrt"

    def __init__(self, system, ubus_program="ubus", uci_program="uci"):
        Platform.__init__(self, system)
        self.uci = Uci(system, uci_program)
        self.ubus = Ubus(system, ubus_program)
        self.ubus_program = ubus_program
        self.processes = []
        self.interfaces = ()
        self.restart_at = None
        self.last_packages = []
        self.unreloaded = []     # committed by apply(), reloaded by activate()
        self.payload = None      # last interface.update payload for wan6 (full status)
        self._exports = None     # what current() read, reused by the apply() right after

    # -- observe ---------------------------------------------------------------------
    def observe(self, settings):
        """The status netifd just sent with its interface.update notification when there
        is one (same keys as `ubus call ... status`), otherwise a ubus call."""
        payload, self.payload = self.payload, None
        if isinstance(payload, dict) and "up" in payload:
            return payload, None
        return self.ubus.call("network.interface.%s" % settings.wan6_iface, "status")

    def start_events(self, settings):
        self.stop_events()
        self.interfaces = (settings.wan6_iface, settings.wan_iface)
        self.processes = event_processes(self.ubus_program)
        for p in self.processes:
            p.start()
        self.restart_at = None

    def stop_events(self):
        for p in self.processes:
            p.stop()
        self.processes = []

    def event_fds(self):
        # the pipe objects, not their numbers: a restarted child's pipe is a new object
        return [p.proc.stdout for p in self.processes if p.proc is not None]

    def drain_events(self, fd):
        reasons = []
        for p in self.processes:
            if p.proc is None or p.fileno() != fd:
                continue
            values, garbage, eof = p.read()
            reasons += self._consume(p, values, garbage)
            if eof:
                if time.monotonic() - p.started > HEALTHY:
                    p.failures = 0   # it ran fine for a while: this is a new trouble, not a loop
                p.stop()
                p.failures += 1
                delay = min(300, 5 * (2 ** min(p.failures, 6)))
                self.restart_at = time.monotonic() + delay
                reasons.append("ubus %s exited; restarting in %ds" % (p.label, delay))
        return reasons

    def _consume(self, p, values, garbage):
        reasons = []
        for value in values:
            reason = classify(value, self.interfaces)
            if not reason:
                continue
            reasons.append(reason)
            body = value.get("interface.update")
            if isinstance(body, dict) and body.get("interface") == self.interfaces[0]:
                self.payload = body
            elif reason.startswith(self.interfaces[0] + " "):
                self.payload = None
            if reason == "netifd restarted":
                # our subscription died with the old object: subscribe again, after taking
                # what the old pipe still holds
                for q in self.processes:
                    if q.label == "subscribe" and q is not p:
                        if q.proc is not None:
                            reasons += self._consume(q, *q.read_all())
                        q.stop()
                        q.start()
        if garbage:
            reasons.append("ignored %d malformed ubus %s line(s)" % (garbage, p.label))
        return reasons

    def events_need_restart(self):
        if self.restart_at is None:
            return None
        return max(0.0, self.restart_at - time.monotonic())

    def restart_dead_events(self):
        for p in self.processes:
            if p.proc is None:
                p.start()
        self.restart_at = None

    # -- compare ---------------------------------------------------------------------
    def current(self, settings):
        """{package: [Section]} as `uci export` shows them (InputError on garbage)."""
        self._exports = None
        if self._stale_deltas():
            return {pkg: parse_export(self._committed(pkg), pkg) for pkg in PACKAGES}
        self._exports = {pkg: parse_export(self.uci.export(pkg), pkg) for pkg in PACKAGES}
        return self._exports

    def _stale_deltas(self):
        """Packages with uncommitted changes in the CLI's delta directory (libuci leaves an
        empty delta file behind after a commit: that is not a change)."""
        out = []
        for pkg in PACKAGES:
            text = self.system.read("%s/%s" % (DELTA_DIR, pkg))
            if text is not None and text.strip():
                out.append(pkg)
        return out

    def _originals(self):
        """{package: [Section]} saved before mape-py's first change (empty: none saved)."""
        original = {}
        for pkg in PACKAGES:
            text = self.system.read("%s/original/%s" % (STATE_DIR, pkg))
            if text is not None:
                original[pkg] = parse_export(text, pkg)
        return original

    def _committed(self, package):
        """The committed file (what `uci export` would show without the pending deltas)."""
        return self.system.read(self._config(package)) or ""

    def pending(self, target, settings):
        current = self.current(settings)
        changes = make_plan(target.uci, current, self._originals() or None).changes
        if changes:
            self._check_held(target, current)
        return changes

    # -- manual edits (core.held) -------------------------------------------------------
    def _check_held(self, target, current):
        """Raise Held when an owned value was changed by someone else since we wrote it."""
        from mape.core import held as held_mod

        text = self.system.read(WRITTEN)
        try:
            recorded = json.loads(text) if text else None
        except ValueError:
            recorded = None
        found = held_mod.changed_by_others(recorded, held_mod.owned_values(target.uci, current),
                                           held_mod.owned_values(target.uci))
        if found:
            raise held_mod.Held(found)

    def record_written(self, target, settings):
        """Record the owned values (they are in the config now); no write when unchanged."""
        from mape.core.held import owned_values

        text = json.dumps(owned_values(target.uci), sort_keys=True) + "\n"
        if self.system.read(WRITTEN) != text:
            self.system.write_atomic(WRITTEN, text)

    # -- the transaction -------------------------------------------------------------
    def _config(self, package):
        return "/etc/config/%s" % package

    def _write_journal(self, phase, packages, extra=None):
        doc = {"phase": phase, "packages": list(packages), "time": int(time.time())}
        doc.update(extra or {})
        self.system.write_atomic(JOURNAL, json.dumps(doc) + "\n")

    def _read_journal(self):
        text = self.system.read(JOURNAL)
        if text is None:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return {"phase": "prepared", "packages": list(PACKAGES), "corrupt": True}
        if not isinstance(doc, dict):
            return {"phase": "prepared", "packages": list(PACKAGES), "corrupt": True}
        return doc

    def _restore(self, packages):
        for pkg in packages:
            text = self.system.read("%s/backup/%s" % (STATE_DIR, pkg))
            if text is not None:
                self.system.write_atomic(self._config(pkg), text)
            self.uci.revert(pkg)

    def _reload(self, packages):
        # A network-only change needs no firewall reload of ours: wan's ifup runs the
        # firewall's hotplug script (fw3 and fw4: /etc/hotplug.d/iface/20-firewall), which
        # reloads it, and its include re-applies the NAT saved before this reload.
        calls = []
        if "network" in packages:
            calls.append(["/etc/init.d/network", "reload"])
        if "firewall" in packages:
            calls.append(["/etc/init.d/firewall", "reload"])
        for argv in calls:
            argv = [self.system.path(argv[0])] + argv[1:]
            try:
                self.system.run(argv, timeout=120)
            except CommandError as e:
                raise ApplyError(str(e))

    def recover(self, settings):
        lines = []
        removed = self.system.remove_stale_temp(STATE_DIR)
        if removed:
            lines.append("removed %d temporary file(s) a killed run left in %s" % (removed, STATE_DIR))
        journal = self._read_journal()
        if journal is not None:
            packages = [p for p in journal.get("packages", PACKAGES) if p in PACKAGES] or list(PACKAGES)
            phase = journal.get("phase")
            if phase == "committed":
                lines.append("previous run was killed after committing %s: keeping the new configuration"
                             % "+".join(packages))
                self.system.remove(JOURNAL)
                try:
                    self._reload(packages)
                except ApplyError as e:
                    lines.append("reload failed: %s" % e)
            else:
                lines.append("previous run was killed while changing %s (%s): restoring the backup"
                             % ("+".join(packages), phase))
                self._write_journal("rolling-back", packages)
                self._restore(packages)
                self.system.remove(JOURNAL)
                try:
                    self._reload(packages)
                except ApplyError as e:
                    lines.append("reload failed: %s" % e)
        for pkg in self._stale_deltas():
            lines.append("reverting uncommitted uci changes to %s left in the CLI's delta directory" % pkg)
            self.uci.revert(pkg)
        return lines

    def apply(self, target, settings):
        exports, self._exports = self._exports, None
        for pkg in self._stale_deltas():
            self.uci.revert(pkg)
            exports = None
        plan = make_plan(target.uci, exports if exports is not None else self.current(settings),
                         self._originals() or None)
        if plan.empty:
            return plan
        self._transaction(plan)
        return plan

    def _transaction(self, plan):
        packages = list(plan.packages)
        for pkg in packages:
            text = self.system.read(self._config(pkg))
            if text is None:
                text = ""
            original = "%s/original/%s" % (STATE_DIR, pkg)
            if not self.system.exists(original):
                self.system.write_atomic(original, text)
            self.system.write_atomic("%s/backup/%s" % (STATE_DIR, pkg), text)
        self._write_journal("prepared", packages, {"batch": plan.batch_text()})
        try:
            self.uci.batch(plan.batch_text())
            for pkg in packages:
                self.uci.commit(pkg)
        except CommandError as e:
            self._write_journal("rolling-back", packages)
            self._restore(packages)
            self.system.remove(JOURNAL)
            raise ApplyError("%s; configuration left as it was" % e)
        self._write_journal("committed", packages)
        self.last_packages = packages
        self.unreloaded = packages

    def activate(self, settings):
        """Reload what the last commit changed (recover() reloads it if we die first)."""
        packages, self.unreloaded = self.unreloaded, []
        if not packages:
            return
        try:
            self._reload(packages)
        finally:
            self.system.remove(JOURNAL)

    def reactivate(self, settings):
        """netifd runs the tunnel: reload the network (the firewall follows through wan's
        ifup hotplug, and its include re-applies our NAT)."""
        self._reload(["network"])

    def wan_status(self, settings):
        status, _ = self.ubus.call("network.interface.%s" % settings.wan_iface, "status")
        return status

    def verify(self, target, settings, timeout):
        expected = target.mapping.ipv4_text
        return wait_until(lambda: expected in wan_status_ipv4(self.wan_status(settings)), timeout)

    def rollback(self, settings):
        """Put back the configs of the last apply() and take out the NAT rules made for
        the mapping that failed (with the include's saved ruleset, so a firewall reload
        does not bring them back); the next good apply installs them again."""
        packages = self.last_packages or list(PACKAGES)
        self._write_journal("rolling-back", packages)
        self._restore(packages)
        self.system.remove(JOURNAL)
        try:
            self.nat.remove()
        finally:
            self._reload(packages)

    def remove(self, settings):
        """Undo what mape-py owns (wan options, wan6pd, the zone entries), taking the values
        from the originals saved before its first change; the user's other edits stay.
        Same transaction as apply(). Returns the packages changed."""
        from mape.core.plan import undo_plan

        original = self._originals()
        changed = []
        if original:
            for pkg in self._stale_deltas():
                self.uci.revert(pkg)
            plan = undo_plan(settings, original, self.current(settings))
            self._exports = None
            if not plan.empty:
                self._transaction(plan)
                changed = list(plan.packages)
        self.nat.remove()
        self.activate(settings)
        return changed

    # -- report ----------------------------------------------------------------------
    def health(self, target, settings):
        out = {}
        status = self.wan_status(settings)
        tunnel = {"interface": settings.wan_iface, "up": False}
        if isinstance(status, dict):
            tunnel["up"] = status.get("up") is True
            if isinstance(status.get("l3_device"), str):
                tunnel["device"] = status["l3_device"]
            addrs = wan_status_ipv4(status)
            if addrs:
                tunnel["ipv4"] = addrs[0]
            errors = status.get("errors")
            if isinstance(errors, list):
                codes = [e.get("code") for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)]
                if codes:
                    tunnel["errors"] = codes[:5]   # netifd's, e.g. INVALID_MAP_RULE
            if target is not None:
                tunnel["expected_ipv4"] = target.mapping.ipv4_text
        out["tunnel"] = tunnel
        if target is not None and self.nat.available:
            try:
                spec = self.nat.spec(target, settings, tunnel.get("device"))
                out["firewall"] = self.nat.check(spec)
            except Exception as e:
                out["firewall"] = {"health": "unknown", "detail": "check failed: %s" % e}
        elif not self.nat.available:
            out["firewall"] = {"health": "unknown", "detail": self.nat.problem}
        return out

    def warnings(self, target, settings):
        from mape.shell.router_checks import offload_warnings

        try:
            firewall = parse_export(self.uci.export("firewall"), "firewall")
        except MapeError:
            firewall = []
        return offload_warnings(firewall, self.system)


def load_status(text, interface):
    """Helper for tests: the observation dict from ubus text."""
    return parse_json_status(text, interface)
