"""The mape-py daemon: one select() loop around observe -> compute -> plan -> apply -> report.

Wakes up only for: ubus events about wan6/wan, signals (SIGHUP: re-read the settings and
recompute now; SIGUSR2: "wan6 changed" kick from hotplug/procd, debounced like an event;
SIGUSR1: refresh port usage in the status; SIGTERM/SIGINT: clean exit), the
end of a debounce window, and the slow safety re-check (`recheck` seconds). Nothing is
written when the desired state equals the current one.
"""
import errno
import os
import selectors
import signal
import time

from mape.core import observe as observe_mod
from mape.core import ownership
from mape.core.held import Held
from mape.core.errors import MapeError, UnsupportedPrefix
from mape.core.health import problems as health_problems
from mape.core.plan import Target
from mape import status_document, transaction
from mape.shell import statusfile
from mape.shell import system as system_mod

RETRY_FIRST = 30      # seconds before the first retry of a failed change / reload
RETRY_CAP = 600       # back-off doubles up to this (or the re-check period when shorter)

CONFIG_PATH = "/etc/config/mape"
RUN_DIR = "/var/run/mape-py"
HISTORY_CAP = 100      # in memory; the status shows the last `history` (at most 100) of them
PORTS_MAX_AGE = 10     # seconds: SIGUSR1 (each LuCI poll) re-reads conntrack at most this often


class Daemon:
    def __init__(self, platform, system, log, config_path=CONFIG_PATH, status_path=statusfile.STATUS_PATH,
                 pid_path=statusfile.PID_PATH, clock=time.time):
        self.platform = platform
        self.system = system
        self.log = log
        self.config_path = config_path
        self.status_path = status_path
        self.pid_path = pid_path
        self.clock = clock
        self.settings = None
        self.settings_problem = None
        self.table = None
        self.state = "waiting-for-wan6"
        self.state_reason = "starting"
        self.observation = None
        self.target = None
        self.mapping_error = None
        self.retry = None   # {"key", "what": change|activation, "attempts", "at": monotonic, "next_retry": epoch}
        self.history = []
        self.held = []         # core.held entries while state is "held"
        self.last_error = None
        self.nat_error = None   # why the last NAT install failed (None: it worked)
        self.last_prefix = None
        self.health = {}
        self.sys_warnings = []
        self.ports = None
        self.upnp = None        # platform.upnp_status(): miniupnpd as mape-py configured it
        self.ports_at = None   # time.monotonic() of the last conntrack read
        self.input_problems = []
        self.status_writer = status_document.Writer(system, status_path, log)
        self.signals = []
        self.wakeups = 0
        self.cycles = 0
        self._load_previous()

    # -- settings ----------------------------------------------------------------------
    def _load_previous(self):
        """Keep history and last error across restarts (from the last status document)."""
        doc, _ = statusfile.read(self.system, self.status_path)
        if doc:
            if isinstance(doc.get("history"), list):
                self.history = [h for h in doc["history"] if isinstance(h, dict)][-HISTORY_CAP:]
                for h in reversed(self.history):
                    if isinstance(h.get("prefix"), str):
                        self.last_prefix = h["prefix"]
                        break
            if isinstance(doc.get("last_error"), dict):
                self.last_error = doc["last_error"]

    def load_settings(self):
        from mape.core.rules import load_table
        from mape.settings import load_settings

        try:
            settings = load_settings(self.system.path(self.config_path), nat_parser=self.platform.nat.parse_options
                                     if self.platform.nat.available else None)
            table = load_table(user_rules=settings.rules)
        except MapeError as e:
            self.settings_problem = str(e)
            if self.settings is None:
                from mape.core.rules import load_table as lt
                from mape.settings import Settings

                self.settings = Settings()
                self.table = lt()
                self.log.error("invalid settings, using the defaults: %s", e)
            else:
                self.log.error("invalid settings, keeping the last good ones: %s", e)
            return False
        if self.settings_problem:
            self.log.info("settings are valid again")
        self.settings_problem = None
        self.settings = settings
        self.table = table
        return True

    # -- one pass of the pipeline ----------------------------------------------------
    def _supported(self, text):
        from mape.core.mapping import calc

        try:
            calc(text, self.table)
            return True
        except MapeError:
            return False

    def _set_state(self, state, reason):
        if (state, reason) != (self.state, self.state_reason):
            log = self.log.warning if state in ("error", "unsupported-prefix") else self.log.info
            log("state %s: %s", state, reason)
        self.state = state
        self.state_reason = reason

    def _error(self, message):
        self.last_error = {"time": int(self.clock()), "message": message}
        self._set_state("error", message)

    def cycle(self, reason, force=False):
        """Observe, compute, apply when needed, report. Never raises: one bad input or a
        bug must cost one cycle (an error state and a log line), never the daemon."""
        self.cycles += 1
        try:
            self._cycle(reason, force)
        except system_mod.Interrupted as e:
            self.log.info("%s; the next start finishes or undoes the change", e)
        except (MapeError, OSError) as e:
            self.log.error("%s", e)
            self._error(str(e))
        except Exception as e:   # RecursionError, TypeError, ...: a bug or input nobody foresaw
            self.log.error("cycle failed: %s: %s", e.__class__.__name__, _one_line(e))
            self._error("internal error (%s): %s" % (e.__class__.__name__, _one_line(e)))
        if self.retry_in() == 0:
            self.retry = None   # due and not acted on (wan6 went away, settings changed): moot
        self.write_status()

    # -- retry with back-off ---------------------------------------------------------
    def _retry_delay(self, attempts):
        cap = min(RETRY_CAP, self.settings.recheck)
        return min(cap, RETRY_FIRST * 2 ** max(0, min(attempts - 1, 10)))

    def _schedule_retry(self, key, what, attempts):
        delay = self._retry_delay(max(1, attempts))
        self.retry = {"key": key, "what": what, "attempts": attempts, "at": time.monotonic() + delay,
                      "next_retry": int(self.clock() + delay)}

    def retry_in(self):
        """Seconds until a retry is due (None: nothing to retry)."""
        if self.retry is None:
            return None
        return max(0.0, self.retry["at"] - time.monotonic())

    def _retry_due(self, force):
        return force or self.retry is None or time.monotonic() >= self.retry["at"]

    def _retry_note(self):
        r = self.retry
        return "retrying at %s (attempt %d)" % (time.strftime("%H:%M:%S", time.localtime(r["next_retry"])),
                                                r["attempts"] + 1)

    def _cycle(self, reason, force):
        from mape.core.mapping import calc

        settings = self.settings
        self.log.debug("cycle: %s", reason)
        if not settings.enabled:
            self.target = None
            self._set_state("disabled", "disabled in %s (option enabled '0')" % self.config_path)
            return
        ownership.check(ownership.names_of(settings))   # lan/loopback: refused before anything else
        status, problem = self.platform.observe(settings)
        self.input_problems = []
        if problem:
            self.input_problems.append(problem)
            self.log.warning("wan6 status unreadable, keeping the current configuration: %s", problem)
            self._set_state("error", "cannot read %s status: %s" % (settings.wan6_iface, problem))
            return
        obs = observe_mod.observe(status, settings.wan6_iface, supported=self._supported)
        self.observation = obs
        if obs.problems:
            self.input_problems.extend(obs.problems)
            self.log.warning("%s status: ignored malformed entries: %s", settings.wan6_iface, "; ".join(obs.problems[:3]))
        if not obs.exists:
            self._set_state("waiting-for-wan6", "interface %s does not exist" % settings.wan6_iface)
            return
        if not obs.up:
            self._set_state("waiting-for-wan6", "interface %s is down" % settings.wan6_iface)
            return
        if not obs.prefix:
            self._set_state("waiting-for-wan6", "%s has no global IPv6 prefix or address yet" % settings.wan6_iface)
            return
        try:
            mapping = calc(obs.prefix, self.table)
        except UnsupportedPrefix as e:
            self.target = None
            self.mapping_error = str(e)
            self._note_prefix(obs, None)
            self._set_state("unsupported-prefix", str(e))
            return
        except MapeError as e:
            self.target = None
            self.mapping_error = str(e)
            self._set_state("error", str(e))
            return
        self.mapping_error = None
        self._note_prefix(obs, mapping)
        target = Target(mapping, obs, settings)
        self.target = target
        key = target.key()
        if self.retry is not None and self.retry["key"] != key:
            self.retry = None   # a new prefix / mapping: a fresh start, no back-off
        try:
            pending = self.platform.pending(target, settings)
        except Held as e:   # a manual edit of what mape-py owns: never overwritten unasked
            self.held = e.held
            self._set_state("held", str(e))
            return
        self.held = []
        applied = False
        if pending:
            if not self._retry_due(force):
                self._set_state("error", "the change for %s failed: %s; %s" % (
                    obs.prefix, (self.last_error or {}).get("message", "?"), self._retry_note()))
                return
            self._set_state("applying", "%s -> %s: %d change(s)" % (obs.prefix, mapping.ipv4_text, len(pending)))
            self.write_status()
            self.log.info("applying (%s): %s", reason, "; ".join(pending[:12]))
            outcome = transaction.change(self.platform, target, settings, self.log, self._ipv4_in_use())
            if outcome.written:     # what is in the config now is ours (core.held)
                self.platform.record_written(target, settings)
            if not outcome.applied:
                self._schedule_retry(key, "change", (self.retry or {}).get("attempts", 0) + 1)
                self._error(outcome.error)
                self._set_state("error", "%s; %s" % (outcome.error, self._retry_note()))
                if outcome.rolled_back:
                    self._remember({"time": int(self.clock()), "event": "rolled-back", "prefix": obs.prefix,
                                    "ipv4": mapping.ipv4_text})
                self.health = self.platform.health(target, settings)
                return
            if outcome.error:
                self.last_error = {"time": int(self.clock()), "message": outcome.error}
            self.nat_error = outcome.error
            applied = True
            self.retry = None
            self._remember({"time": int(self.clock()), "event": "applied", "prefix": obs.prefix,
                                 "ipv4": mapping.ipv4_text})
        if not applied:     # nothing pending: the config holds our values (e.g. after an adopt)
            self.platform.record_written(target, settings)
        self.health = self.platform.health(target, settings)
        if not applied and not self._tunnel_runs(mapping):
            # UCI has the mapping but netifd does not run it (a reload failed, timed out or
            # never ran): activation is pending, retried with the same back-off
            if self.retry is None:
                self._schedule_retry(key, "activation", 0)
            elif self._retry_due(force):
                attempts = self.retry["attempts"] + 1
                self.log.info("%s is configured but not up with %s: reloading (attempt %d)",
                              settings.wan_iface, mapping.ipv4_text, attempts)
                self._set_state("applying", "%s -> %s: reloading (attempt %d)" % (obs.prefix, mapping.ipv4_text,
                                                                                   attempts))
                self.write_status()
                error = transaction.reactivate(self.platform, target, settings, self.log)
                if error:
                    self.last_error = {"time": int(self.clock()), "message": error}
                    self._schedule_retry(key, "activation", attempts)
                else:
                    self.retry = None
                self.health = self.platform.health(target, settings)
        elif not applied:
            self.retry = None   # it runs (came up late, or someone else fixed it)
        fw = self.health.get("firewall") or {}
        if not applied and fw.get("health") in ("missing", "duplicated", "stale") and fw.get("backend") != "off":
            self.log.warning("firewall rules %s: installing them again", fw.get("health"))
            self._apply_nat(target, settings)
            self.health = self.platform.health(target, settings)
        self._sync_upnp(target, settings)
        self.sys_warnings = self.platform.warnings(target, settings)
        self.refresh_ports()
        # wanted even when the NAT engine is broken: then the rules are "unknown", never ok
        wrong = health_problems(self.health, mapping.ipv4_text, getattr(settings, "manage_firewall", True))
        if wrong and self.nat_error and (self.health.get("firewall") or {}).get("health") != "present":
            wrong.append(self.nat_error)
        if wrong:
            retry = "; reload pending: %s" % self._retry_note() if self.retry is not None else ""
            self._set_state("error", "MAP-E configured for %s but not working: %s%s" % (
                mapping.ipv4_text, "; ".join(wrong), retry))
            return
        d = mapping.as_dict()
        self._set_state("ok", "MAP-E %s: %s, %d ports" % ("applied" if applied else "up to date",
                                                           mapping.ipv4_text, d["port_count"]))

    def _sync_upnp(self, target, settings):
        """miniupnpd's rules follow the mapping; a failure is logged and retried next cycle."""
        try:
            changed = self.platform.sync_upnp(target, settings)
            if changed:
                self.log.info("miniupnpd: %s for %s", changed, target.mapping.ipv4_text)
            self.upnp = self.platform.upnp_status(target, settings)
        except MapeError as e:
            self.log.error("miniupnpd configuration not updated: %s", e)
            self.upnp = {"installed": True, "error": str(e)}

    def _tunnel_runs(self, mapping):
        tunnel = self.health.get("tunnel") if isinstance(self.health, dict) else None
        if not isinstance(tunnel, dict) or not tunnel:
            return True   # the platform does not report it (nothing to re-activate)
        return tunnel.get("up") is True and tunnel.get("ipv4") == mapping.ipv4_text

    def _ipv4_in_use(self):
        """The IPv4 the tunnel had, or the last one applied (the tunnel is often already
        down when the new prefix arrives); None when unknown."""
        up = (self.health.get("tunnel") or {}).get("ipv4")
        if up:
            return up
        for h in reversed(self.history):
            if h.get("event") == "applied":
                return h.get("ipv4")
        return None

    def _apply_nat(self, target, settings):
        error = transaction.install_nat(self.platform, target, settings, self.log)
        self.nat_error = error
        if error:
            self.last_error = {"time": int(self.clock()), "message": error}

    def _note_prefix(self, obs, mapping):
        if obs.prefix == self.last_prefix:
            return
        entry = {"time": int(self.clock()), "event": "prefix-changed", "prefix": obs.prefix, "source": obs.source}
        if mapping is not None:
            entry["ipv4"] = mapping.ipv4_text
        else:
            entry["supported"] = False
        self.log.info("wan6 prefix %s -> %s (%s)", self.last_prefix or "(none)", obs.prefix, obs.source)
        self._remember(entry)
        self.last_prefix = obs.prefix

    def _remember(self, entry):
        self.history.append(entry)
        del self.history[:-HISTORY_CAP]

    def refresh_ports(self, max_age=0):
        """Port usage from conntrack; skipped when the figures are younger than ``max_age``
        seconds (a LuCI poll every 5 s must not re-read a 65k-entry table each time)."""
        from mape.core.conntrack import port_usage
        from mape.core.nat import resolve_host_cap, subtract_ranges

        if self.target is None:
            self.ports = None
            return
        now = time.monotonic()
        if max_age and self.ports is not None and self.ports_at is not None and now - self.ports_at < max_age:
            return
        self.ports_at = now
        m = self.target.mapping
        try:
            nat = self.settings.nat if isinstance(self.settings.nat, dict) else {}
            if self.platform.nat.available:
                nat = self.platform.nat.with_forwards(nat, self.target)
            kept = [[int(a), int(b)] for a, b in (nat.get("kept_out") or [])]
            pool = sum(b - a + 1 for a, b in subtract_ranges(m.port_sets, kept))   # what NAT may use
            self.ports = port_usage(self.platform.conntrack_lines(), m.ipv4_text, m.port_sets, pool=pool,
                                    host_cap=resolve_host_cap(nat.get("host_cap"), pool))
            self.ports["time"] = int(self.clock())
            if kept:  # allowed ports the NAT rules never use (nat_keep_out, port forwards)
                self.ports["kept_out"] = kept
        except Exception as e:
            self.ports = {"error": str(e)}

    # -- status ----------------------------------------------------------------------
    def document(self, running=True):
        return status_document.document(self, running)

    def write_status(self, running=True):
        self.status_writer.write(self.document(running))

    # -- the loop ----------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self.signals.append(signum)

    def _stopping(self):
        return signal.SIGTERM in self.signals or signal.SIGINT in self.signals

    def run(self, once=False):
        if not once:
            # before anything slow: a HUP/TERM during start-up must not kill us by default action
            for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(signum, self._on_signal)
        # every child holds the children lock and dies (or is waited for) before a recovery;
        # a SIGTERM interrupts any wait for a child within system.STEP seconds
        lock = self.system.path(RUN_DIR + "/children.lock")
        system_mod.configure_children(interrupted=None if once else self._stopping, lock_path=lock)
        self.load_settings()
        for line in system_mod.wait_for_orphans(lock):
            self.log.warning("%s", line)
        for line in self.platform.recover(self.settings):
            self.log.warning("%s", line)
        if once:
            self.cycle("once", force=True)
            self.status_writer.forget()
            self.once = True
            self.write_status()
            return self.state
        self.system.write_atomic(self.pid_path, "%d\n" % os.getpid(), sync=False)
        try:
            return self._loop()
        finally:
            self.platform.stop_events()
            try:
                self.write_status(running=False)
            except Exception:
                pass
            pid = self.system.read(self.pid_path)
            if pid and pid.strip() == str(os.getpid()):
                self.system.remove(self.pid_path)

    def _loop(self):
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        old_wakeup = signal.set_wakeup_fd(wfd)
        sel = selectors.DefaultSelector()
        sel.register(rfd, selectors.EVENT_READ, "signal")
        registered = {}   # fd -> the source object registered under it

        def sync_fds():
            # keyed by the source object, not the fd number alone: a restarted event child's
            # pipe often gets the number of the closed one, which epoll dropped on close
            sources = {}
            for src in self.platform.event_fds():
                fd = src if isinstance(src, int) else (src.fileno() if src is not None else None)
                if fd is not None and fd >= 0:
                    sources[fd] = src
            for fd, src in list(registered.items()):
                if sources.get(fd) != src:
                    try:
                        sel.unregister(fd)
                    except (KeyError, ValueError, OSError):
                        pass
                    del registered[fd]
            for fd, src in sources.items():
                if fd not in registered:
                    sel.register(fd, selectors.EVENT_READ, "event")
                    registered[fd] = src

        self.platform.start_events(self.settings)
        sync_fds()
        self.cycle("start", force=True)
        now = time.monotonic()
        next_recheck = now + self.settings.recheck
        debounce_at = None
        debounce_first = None
        pending_reasons = []
        try:
            while True:
                now = time.monotonic()
                deadlines = [next_recheck]
                if debounce_at is not None:
                    deadlines.append(debounce_at)
                restart = self.platform.events_need_restart()
                if restart is not None:
                    deadlines.append(now + restart)
                retry = self.retry_in()
                if retry is not None:
                    deadlines.append(now + retry)
                timeout = max(0.0, min(deadlines) - now)
                if self.signals:  # arrived before the wake-up fd existed, or during a cycle
                    timeout = 0
                try:
                    ready = sel.select(timeout)
                except InterruptedError:
                    ready = []
                self.wakeups += 1
                for key, _ in ready:
                    if key.data == "signal":
                        try:
                            while os.read(rfd, 512):
                                pass
                        except OSError as e:
                            if e.errno != errno.EAGAIN:
                                raise
                    else:
                        try:
                            reasons = self.platform.drain_events(key.fd)
                        except Exception as e:   # one bad event must not stop the daemon
                            self.log.error("reading events failed: %s: %s", e.__class__.__name__, _one_line(e))
                            reasons = ["unreadable event"]
                        if reasons:
                            pending_reasons.extend(reasons)
                            now = time.monotonic()
                            if debounce_first is None:
                                debounce_first = now
                            # each event pushes the window; a flapping line still gets
                            # handled after at most 5 debounce periods
                            debounce_at = min(now + self.settings.debounce,
                                              debounce_first + 5 * max(1, self.settings.debounce))
                        sync_fds()
                signals, self.signals = self.signals, []
                if signal.SIGUSR2 in signals:
                    # a kick from hotplug / the procd interface trigger: debounced like an event
                    pending_reasons.append("kick (SIGUSR2)")
                    now = time.monotonic()
                    if debounce_first is None:
                        debounce_first = now
                    debounce_at = min(now + self.settings.debounce, debounce_first + 5 * max(1, self.settings.debounce))
                if signal.SIGTERM in signals or signal.SIGINT in signals:
                    self.log.info("stopping")
                    return self.state
                if signal.SIGHUP in signals:
                    self.log.info("SIGHUP: re-reading settings and recomputing")
                    old = self.settings
                    self.load_settings()
                    if (old.wan6_iface, old.wan_iface) != (self.settings.wan6_iface, self.settings.wan_iface):
                        self.platform.start_events(self.settings)
                        sync_fds()
                    self.cycle("SIGHUP", force=True)
                    debounce_at = debounce_first = None
                    pending_reasons = []
                    next_recheck = time.monotonic() + self.settings.recheck
                    continue
                if signal.SIGUSR1 in signals:
                    self.refresh_ports(max_age=PORTS_MAX_AGE)
                    self.write_status()
                now = time.monotonic()
                again = self.platform.events_need_restart()
                if again is not None and again <= 0:
                    self.platform.restart_dead_events()
                    sync_fds()
                if debounce_at is not None and now >= debounce_at:
                    reason = "; ".join(dict.fromkeys(pending_reasons))[:300]
                    self.log.info("event: %s", reason)
                    debounce_at = debounce_first = None
                    pending_reasons = []
                    self.cycle(reason)
                    next_recheck = time.monotonic() + self.settings.recheck
                elif now >= next_recheck:
                    self.cycle("re-check")
                    next_recheck = time.monotonic() + self.settings.recheck
                elif self.retry_in() == 0:
                    self.cycle("retry (attempt %d)" % (self.retry["attempts"] + 1))
        finally:
            signal.set_wakeup_fd(old_wakeup)
            sel.close()
            os.close(rfd)
            os.close(wfd)


def _one_line(e):
    try:
        text = str(e)
    except Exception:
        text = ""
    return " ".join(text.split())[:200] or "-"
