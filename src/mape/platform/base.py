"""The platform seam (docs/platform.md) and the one adapter to the NAT engine."""
import time

from mape.shell.system import Interrupted, stopping


class Platform:
    """Base class. Subclasses: mape.platform.openwrt.OpenWrt, mape.platform.linux.Linux.

    ``target`` arguments are mape.core.plan.Target objects (mapping, observation, desired
    UCI state); ``settings`` are mape.settings.Settings."""

    name = "base"

    def __init__(self, system):
        self.system = system
        self.nat = NatAdapter(system)

    # -- observe ---------------------------------------------------------------------
    def observe(self, settings):
        """wan6 status dict in netifd's shape, or None when the interface does not exist.
        Returns (status, problem): problem is a one-line string when the output was garbage."""
        raise NotImplementedError

    def event_fds(self):
        """Objects with fileno() (or fds) to select() on (readable: wan6 may have changed).
        A source started again must be a new object: the daemon re-registers by object."""
        return []

    def drain_events(self, fd):
        """Consume what is readable on ``fd``; short reasons (empty: nothing relevant)."""
        return []

    def start_events(self, settings):
        pass

    def stop_events(self):
        pass

    def events_need_restart(self):
        """Seconds until a dead event source should be restarted (None: all alive)."""
        return None

    # -- compare and apply ------------------------------------------------------------
    def current(self, settings):
        """What is applied now, comparable with Target.summary()."""
        raise NotImplementedError

    def pending(self, target, settings):
        """Short descriptions of what apply() would change ([] when nothing)."""
        return [] if self.current(settings) == target.summary() else ["system differs from the mapping"]

    def apply(self, target, settings):
        """Make the system match ``target``, all or nothing. Returns the list of changes
        made. Raises MapeError (system left as before)."""
        raise NotImplementedError

    def activate(self, settings):
        """Make the services pick up what apply() committed (OpenWrt: reload network and,
        when it changed, the firewall). Raises MapeError."""

    def reactivate(self, settings):
        """Make the services pick up the committed configuration again (the reload after
        the commit failed, timed out or never ran). Raises MapeError."""
        self.activate(settings)

    def record_written(self, target, settings):
        """Remember the owned values, now in the config, to notice manual edits later
        (core.held); called after an apply and whenever nothing was pending."""

    def verify(self, target, settings, timeout):
        """True when the tunnel is up with the expected IPv4 within ``timeout`` seconds."""
        return True

    def rollback(self, settings):
        """Put back what the last apply() replaced."""

    def remove(self, settings):
        """Undo everything mape-py applied."""

    def recover(self, settings):
        """At start: finish or undo a transaction a killed daemon left. Returns log lines."""
        return []

    def health(self, target, settings):
        """{"tunnel": {...}, "firewall": {...}} for the status document."""
        return {}

    def warnings(self, target, settings):
        """[{code, message}] about the system (offload, ...)."""
        return []

    def sync_upnp(self, target, settings):
        """Keep miniupnpd's configuration in step with the mapping (docs/upnp.md). Returns
        a short description of what changed ('' when nothing). Raises MapeError."""
        return ""

    def upnp_status(self, target, settings):
        """The status document's "upnp" entry, or None (miniupnpd not managed here)."""
        return None

    def conntrack_lines(self):
        """Lines of /proc/net/nf_conntrack, streamed (65k entries are 16 MB: never read
        whole), else of `conntrack -L`; nothing when unavailable."""
        try:
            f = open(self.system.path("/proc/net/nf_conntrack"), encoding="utf-8", errors="replace")
        except OSError:
            f = None
        if f is not None:
            with f:
                yield from f
            return
        if self.system.root not in ("", "/"):
            return
        try:
            _, out, _ = self.system.run(["conntrack", "-L"], check=False, timeout=10)
        except Exception:
            return
        yield from out.splitlines()


def wait_until(predicate, timeout, interval=1.0, clock=time.monotonic, sleep=time.sleep):
    """Poll ``predicate`` (bounded; used only while verifying a change). Raises
    Interrupted when the daemon must stop (SIGTERM)."""
    deadline = clock() + timeout
    while True:
        if predicate():
            return True
        if stopping():
            raise Interrupted("stopping: not waiting for the tunnel any longer")
        if clock() >= deadline:
            return False
        sleep(min(interval, max(0.05, deadline - clock())))


class NatAdapter:
    """The one place that calls the port-set NAT engine (mape.core.nat +
    mape.shell.netfilter, written separately). Missing engine: reported, not fatal."""

    def __init__(self, system):
        self.system = system
        self.problem = None
        self.forwards = []   # core.forwards.redirects() of the firewall config the platform read last
        self.upnp_count = 0  # ports per set reserved for miniupnpd (0: not installed or upnp_ports 0)
        try:
            from mape.core import nat as nat_core
            from mape.shell import netfilter
            self.core = nat_core
            self.netfilter = netfilter
        except Exception as e:  # not installed / not written yet
            self.core = None
            self.netfilter = None
            self.problem = "NAT engine unavailable (%s)" % e.__class__.__name__

    @property
    def available(self):
        return self.core is not None

    def parse_options(self, options):
        if self.core is None or not hasattr(self.core, "parse_nat_options"):
            return dict(options)
        return self.core.parse_nat_options(options)

    def spec(self, target, settings, device=None):
        if self.core is None:
            return None
        spec_class = getattr(self.core, "NatSpec", None)
        if spec_class is None:
            return None
        device = device or "map-%s" % settings.wan_iface
        options = settings.nat if settings.nat is not None else self.parse_options(settings.nat_options)
        return spec_class.from_mapping(target.mapping, device=device, options=self.with_forwards(options, target))

    def with_forwards(self, options, target):
        """``options`` with the allowed ports of the port forwards and the ports reserved for
        miniupnpd added to kept_out: an outgoing connection must never take the port a
        forward or a UPnP/NAT-PMP/PCP mapping needs."""
        from mape.core.upnp import kept_out

        options = dict(options or {})
        extra = kept_out(self.forwards, target.mapping.port_sets, self.upnp_count, options.get("kept_out") or ())
        if not extra:
            return options
        options["kept_out"] = self.core.normalize_ranges(list(options.get("kept_out") or []) + extra)
        return options

    def upnp_reserved(self, target):
        """The ports reserved for miniupnpd ([(a, b)]; forwarded ports are not)."""
        from mape.core.forwards import kept_out
        from mape.core.upnp import reserve

        if not self.upnp_count:
            return []
        sets = target.mapping.port_sets
        return reserve(sets, self.upnp_count, kept_out(self.forwards, sets))

    def apply(self, spec):
        if spec is not None and self.netfilter is not None:
            return self.netfilter.apply(spec)

    def remove(self, spec=None):
        if self.netfilter is not None:
            try:
                return self.netfilter.remove(spec)
            except TypeError:
                return self.netfilter.remove()

    def check(self, spec):
        """{"backend", "health", "detail", ...} for the status document."""
        if spec is None or self.netfilter is None:
            return {"health": "unknown", "detail": self.problem or "no NAT spec"}
        result = self.netfilter.check(spec)
        if isinstance(result, dict):
            return result
        return {"health": str(result)}
