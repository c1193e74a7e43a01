"""OpenWrt: observe wan6 through ubus, apply through UCI (network.wan proto map over wan6,
the firewall zone), let netifd build the tunnel, NAT through the NAT engine.

Transaction (apply): the configs about to change are copied to /etc/mape-py/backup/ (and
once, before the very first change, to /etc/mape-py/original/, never overwritten; 0600 in a
0700 directory: they may hold PPPoE passwords or keys); a journal /etc/mape-py/journal
records the phase; `uci batch` (stdin), `uci commit network`, `uci commit firewall`, all
through PrivateUci (shell/uci.py: the daemon's changes are staged where no other tool
stages, so its commit carries only its own and never touches another tool's /tmp/.uci
delta); journal -> committed. activate() then reloads what changed and removes the journal;
the transaction installs the new NAT between the two, so the firewall reload that wan's
ifup triggers already finds the new rules. Nothing starts without room for all of it on the
overlay (ENOSPC would otherwise leave a half-done transaction).

Undoing (a failed commit, rollback, recover() of a "prepared"/"rolling-back" journal) never
writes whole files: a uci batch on the live configs puts back the backup's values of the
options mape-py owns (core.plan.undo_plan), so whatever the user, LuCI or another UI
committed meanwhile stays. "committed" -> the new configuration stays and the services are
reloaded. The firewall zone is addressed by its section name; an anonymous one is named
first (core.plan.name_zone), checked before that is committed.
"""
import errno
import json
import os
import time

from mape.core.errors import MapeError
from mape.core.observe import parse_json_status
from mape.core.plan import make_plan, name_zone, parse_export, undo_plan, wan_status_ipv4
from mape.platform.base import Platform, wait_until
from mape.shell.system import CommandError
from mape.shell.uci import LINK_DIR, PrivateUci
from mape.shell.ubus import Ubus, classify, event_processes

STATE_DIR = "/etc/mape-py"
JOURNAL = STATE_DIR + "/journal"
WRITTEN = STATE_DIR + "/written"   # what mape-py last wrote (core.held): manual edits are noticed
PACKAGES = ("network", "firewall")
UPNP_CONFIG = "/etc/config/upnpd"              # the miniupnpd package's: installed or not
UPNP_UNDO = STATE_DIR + "/upnpd-previous"      # the values of upnpd.config options before mape-py set them
UPNP_INIT = "/etc/init.d/miniupnpd"
HEALTHY = 60   # seconds an event child must have run for its exit to reset the restart back-off
SPACE_MARGIN_KIB = 64   # besides the copies a transaction writes: the overlay must not fill up


class ApplyError(MapeError):
    pass


class OpenWrt(Platform):
    name = "openwrt"

    def __init__(self, system, ubus_program="ubus", uci_program="uci"):
        Platform.__init__(self, system)
        self.uci = PrivateUci(system, uci_program, PACKAGES + ("upnpd",))
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
        """{package: [Section]} as `uci export` shows them, committed (InputError on garbage)."""
        from mape.core.forwards import redirects

        for pkg in PACKAGES:   # staged by a run killed between batch and commit
            self.uci.discard(pkg)
        exports = {pkg: parse_export(self.uci.export(pkg), pkg) for pkg in PACKAGES}
        self.nat.forwards = redirects(exports["firewall"], settings.fw_zone)   # kept out of SNAT
        self.nat.upnp_count = settings.upnp_ports if self.system.exists(UPNP_CONFIG) else 0   # reserved too
        return exports

    def _originals(self):
        """{package: [Section]} saved before mape-py's first change (empty: none saved)."""
        original = {}
        for pkg in PACKAGES:
            text = self.system.read("%s/original/%s" % (STATE_DIR, pkg))
            if text is not None:
                original[pkg] = parse_export(text, pkg)
        return original

    def pending(self, target, settings):
        current = self._exports = self.current(settings)   # for the apply() right after
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
        self.system.write_atomic(JOURNAL, json.dumps(doc) + "\n", mode=0o600)

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

    def _private(self):
        """/etc/mape-py and its copies readable by root only (earlier versions made them 0755/0644)."""
        for d in (STATE_DIR, STATE_DIR + "/original", STATE_DIR + "/backup", LINK_DIR):
            real = self.system.path(d)
            os.makedirs(real, mode=0o700, exist_ok=True)
            os.chmod(real, 0o700)
        for d in ("original", "backup"):
            top = self.system.path("%s/%s" % (STATE_DIR, d))
            for name in os.listdir(top):
                os.chmod(os.path.join(top, name), 0o600)

    def _check_space(self, packages):
        """Fail before writing anything when the overlay lacks room for the copies, the journal
        and libuci's temporary file (a full overlay: ENOSPC halfway)."""
        size = sum(len((self.system.read(self._config(p)) or "").encode("utf-8")) for p in packages)
        need = 3 * size // 1024 + SPACE_MARGIN_KIB
        for d in (STATE_DIR, "/etc/config"):
            free = self.system.free_kib(d)
            if free is not None and free < need:
                raise ApplyError("no space left on the overlay: %d KiB free (%s), %d KiB needed; "
                                 "nothing changed" % (free, d, need))

    def _save_copies(self, packages, backup=True):
        self._private()
        self._check_space(packages)
        try:
            for pkg in packages:
                text = self.system.read(self._config(pkg))
                if text is None:
                    text = ""
                original = "%s/original/%s" % (STATE_DIR, pkg)
                if not self.system.exists(original):
                    self.system.write_atomic(original, text, mode=0o600)
                if backup:
                    self.system.write_atomic("%s/backup/%s" % (STATE_DIR, pkg), text, mode=0o600)
        except OSError as e:
            raise ApplyError("%s; nothing changed" % _no_space(e, self.system.free_kib(STATE_DIR)))

    def _commit(self, batch, packages):
        for pkg in packages:
            self.uci.discard(pkg)
        try:
            self.uci.batch(batch)
            for pkg in packages:
                self.uci.commit(pkg)
        finally:
            for pkg in packages:
                self.uci.discard(pkg)

    def _plan(self, make, settings, exports=None):
        """make({package: [Section]}) -> Plan against the live configs; an anonymous firewall
        zone the plan changes is given a section name first, so that the batch addresses it by
        name, never by an index another tool's edit can shift."""
        exports = exports if exports is not None else self.current(settings)
        plan = make(exports)
        command, name = name_zone(exports.get("firewall", []), settings.fw_zone)
        if command and "firewall" in plan.packages:
            self._name_zone(command, name, settings)
            plan = make(self.current(settings))
            if "@zone[" in plan.batch_text():
                raise ApplyError("firewall zone %r has no section name; nothing changed" % settings.fw_zone)
        return plan

    def _name_zone(self, command, name, settings):
        """Commit ``command`` (rename firewall.@zone[N]=name) only once the staged result shows
        that @zone[N] still is our zone; a zone added or removed meanwhile shifts N."""
        self._save_copies(["firewall"], backup=False)

        def ours():
            sections = parse_export(self.uci.export("firewall"), "firewall")
            s = next((s for s in sections if s.name == name), None)
            return s is not None and s.type == "zone" and s.get("name") == settings.fw_zone

        self.uci.discard("firewall")
        try:
            self.uci.batch(command + "\n")
            if not ours():
                raise ApplyError("the firewall zones changed while mape-py named zone %r; nothing changed, "
                                 "next try at the next change" % settings.fw_zone)
            self.uci.commit("firewall")
        except CommandError as e:
            raise ApplyError("%s (naming firewall zone %r)" % (e, settings.fw_zone))
        finally:
            self.uci.discard("firewall")
        if not ours():   # changed in the instant between the check and the commit
            raise ApplyError("the firewall zones changed while mape-py named zone %r: section %r is another "
                             "zone now; nothing else changed" % (settings.fw_zone, name))

    def _undo(self, packages, settings):
        """Put back the backup's values of what mape-py owns in ``packages``, on the live configs
        (a uci batch: nobody else's edits are lost). Returns the packages changed."""
        saved = {}
        for pkg in packages:
            text = self.system.read("%s/backup/%s" % (STATE_DIR, pkg))
            if text is not None:
                saved[pkg] = parse_export(text, pkg)
        plan = self._plan(lambda live: undo_plan(settings, saved, live, exact=True), settings)
        if not plan.empty:
            self._commit(plan.batch_text(), plan.packages)
        return list(plan.packages)

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

    def _recover_journal(self, settings, lines):
        """Finish (committed) or undo (prepared, rolling-back) the transaction the journal
        records. Raises MapeError/OSError, the journal then stays for the next attempt."""
        journal = self._read_journal()
        if journal is None:
            return
        packages = [p for p in journal.get("packages", PACKAGES) if p in PACKAGES] or list(PACKAGES)
        phase = journal.get("phase")
        if phase == "committed":
            lines.append("previous run was killed after committing %s: keeping the new configuration"
                         % "+".join(packages))
            self.system.remove(JOURNAL)
        else:
            lines.append("previous run was killed while changing %s (%s): putting back the values mape-py "
                         "owns from the backup" % ("+".join(packages), phase))
            self._write_journal("rolling-back", packages)
            self._undo(packages, settings)
            self.system.remove(JOURNAL)
        try:
            self._reload(packages)
        except ApplyError as e:
            lines.append("reload failed: %s" % e)

    def recover(self, settings):
        """Never raises: a recovery that cannot finish (no space, uci failing) says so and is
        tried again before the next change."""
        lines = []
        try:
            self._private()
            removed = self.system.remove_stale_temp(STATE_DIR)
            top = self.system.path(LINK_DIR)
            for name in os.listdir(top):   # libuci's temp file of a commit killed halfway
                if name.startswith(".") and ".uci-" in name:
                    os.unlink(os.path.join(top, name))
                    removed += 1
            if removed:
                lines.append("removed %d temporary file(s) a killed run left in %s" % (removed, STATE_DIR))
            self._recover_journal(settings, lines)
        except (MapeError, OSError) as e:
            lines.append("could not finish the previous run's change: %s (tried again before the next one)" % e)
        return lines

    def apply(self, target, settings):
        exports, self._exports = self._exports, None
        if self.system.exists(JOURNAL):   # a recovery that could not finish
            self._recover_journal(settings, [])
            exports = None
        plan = self._plan(lambda live: make_plan(target.uci, live, self._originals() or None), settings, exports)
        if plan.empty:
            return plan
        self._transaction(plan, settings)
        return plan

    def _transaction(self, plan, settings):
        packages = list(plan.packages)
        self._save_copies(packages)
        try:
            self._write_journal("prepared", packages, {"batch": plan.batch_text()})
        except OSError as e:
            raise ApplyError("%s; nothing changed" % _no_space(e, self.system.free_kib(STATE_DIR)))
        try:
            self._commit(plan.batch_text(), packages)
            self._write_journal("committed", packages)
        except (CommandError, OSError) as e:
            error = _no_space(e, self.system.free_kib(STATE_DIR))
            try:
                self._undo(packages, settings)
                self.system.remove(JOURNAL)
            except (MapeError, OSError) as undo:
                raise ApplyError("%s; putting back the previous values failed too (%s): the next start or "
                                 "change does it" % (error, undo))
            raise ApplyError("%s; configuration left as it was" % error)
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
        """Put back the backup's values of what the last apply() changed (only the options
        mape-py owns: edits made meanwhile stay) and take out the NAT rules made for the
        mapping that failed (with the include's saved ruleset, so a firewall reload does not
        bring them back); the next good apply installs them again."""
        packages = self.last_packages or list(PACKAGES)
        self._write_journal("rolling-back", packages)
        self._undo(packages, settings)
        self.system.remove(JOURNAL)
        try:
            self.nat.remove()
        finally:
            self._reload(packages)

    def remove(self, settings):
        """Undo what mape-py owns (wan options, wan6pd, the zone entries), taking the values
        from the originals saved before its first change; the user's other edits stay.
        Same transaction as apply(). Returns the packages changed."""
        original = self._originals()
        changed = []
        if original:
            plan = self._plan(lambda live: undo_plan(settings, original, live), settings)
            if not plan.empty:
                self._transaction(plan, settings)
                changed = list(plan.packages)
        self.nat.remove()
        self.activate(settings)
        if self._upnp_remove():
            changed.append("upnpd")
        return changed

    # -- miniupnpd (core.upnp, docs/upnp.md) ----------------------------------------------
    def _upnp_sections(self):
        return parse_export(self.uci.export("upnpd"), "upnpd")

    def _upnp_previous(self):
        text = self.system.read(UPNP_UNDO)
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = None
        return doc if isinstance(doc, dict) else None

    def sync_upnp(self, target, settings):
        """Our perm_rule sections first, our upnpd.config options set; miniupnpd restarted
        with an empty lease file when they changed (leases of the old IPv4/PSID are stale).
        The options' previous values are recorded once, for remove()."""
        from mape.core import upnp

        if not self.system.exists(UPNP_CONFIG):
            return ""
        if not self.nat.upnp_count:   # upnp_ports 0: nothing of ours stays
            return "removed" if self._upnp_remove() else ""
        sections = self._upnp_sections()
        want = upnp.desired(target.mapping, self.nat.upnp_reserved(target), settings.wan_iface)
        lines, previous = upnp.plan(sections, want)
        if not lines:
            return ""
        recorded = self._upnp_previous()
        if recorded is None or any(k not in recorded for k in previous):
            previous.update(recorded or {})
            self.system.write_atomic(UPNP_UNDO, json.dumps(previous, sort_keys=True) + "\n", mode=0o600)
        try:
            self._commit("\n".join(lines) + "\n", ["upnpd"])
        except CommandError as e:
            raise ApplyError("miniupnpd configuration: %s" % e)
        self._upnp_restart(self._upnp_sections())
        return "%d upnpd change(s)" % len(lines)

    def _upnp_remove(self):
        """Delete our sections, put back the options we set. True when something changed."""
        from mape.core import upnp

        if not self.system.exists(UPNP_CONFIG):
            self.system.remove(UPNP_UNDO)
            return False
        sections = self._upnp_sections()
        lines = upnp.undo(sections, self._upnp_previous())
        if lines:
            try:
                self._commit("\n".join(lines) + "\n", ["upnpd"])
            except CommandError as e:
                raise ApplyError("miniupnpd configuration: %s" % e)
            self._upnp_restart(self._upnp_sections())
        self.system.remove(UPNP_UNDO)
        return bool(lines)

    def _upnp_lease_file(self, sections):
        from mape.core import upnp

        config = next((s for s in sections if s.name == "config"), None)
        for key in ("lease_file", "upnp_lease_file"):   # 24.10 and earlier: upnp_lease_file
            value = config.get(key) if config is not None else None
            if isinstance(value, str) and value.startswith("/"):
                return value
        return upnp.DEFAULT_LEASE_FILE

    def _upnp_restart(self, sections):
        """Stop miniupnpd (its init script flushes its NAT chains), empty the lease file (it
        reads it back at start), start it again if it ran."""
        init = self.system.path(UPNP_INIT)
        running = False
        if self.system.exists(UPNP_INIT):
            running = self.system.run([init, "running"], check=False, timeout=30)[0] == 0
            if running:
                self.system.run([init, "stop"], check=False, timeout=60)
        lease = self._upnp_lease_file(sections)
        if self.system.exists(lease):
            self.system.write_atomic(lease, "", sync=False)
        if running:
            self.system.run([init, "start"], check=False, timeout=60)

    def upnp_status(self, target, settings):
        from mape.core import upnp

        if not self.system.exists(UPNP_CONFIG):
            return {"installed": False}
        try:
            sections = self._upnp_sections()
        except MapeError as e:
            return {"installed": True, "error": str(e)}
        config = next((s for s in sections if s.name == "config"), None)
        recorded = self._upnp_previous() or {}
        out = {"installed": True,
               "set": {k: config.get(k) for k in sorted(recorded) if config is not None and config.get(k) is not None},
               "rules": ["%s %s %s %s" % tuple(s.get(k) for k in ("action", "ext_ports", "int_addr", "int_ports"))
                         for s in sections if s.type == "perm_rule" and (s.name or "").startswith(upnp.PREFIX)]}
        reserved = self.nat.upnp_reserved(target) if target is not None else []
        out["reserved"] = [list(r) for r in reserved]
        text = self.system.read(self._upnp_lease_file(sections), limit=1 << 20)
        out["leases"] = upnp.parse_leases(text, reserved)
        out["warnings"] = upnp.preset_warnings(sections)
        if target is not None:
            out["warnings"] += upnp.capped_warnings(target.mapping.port_sets, self.nat.upnp_count)
        return out

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


def _no_space(error, free_kib):
    """One line for an OSError of the transaction; ENOSPC says how much room is left."""
    if getattr(error, "errno", None) == errno.ENOSPC:
        return "no space left on the overlay: %s KiB free" % ("?" if free_kib is None else free_kib)
    return str(error)


def load_status(text, interface):
    """Helper for tests: the observation dict from ubus text."""
    return parse_json_status(text, interface)
