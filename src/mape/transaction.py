"""One change of the router to a new mapping, all or nothing: apply (the platform's
journaled write), install the port-set NAT, activate (reload the services), delete the
connections of the replaced IPv4, verify that netifd brought the tunnel up with
the mapping's IPv4, and put everything back when it did not. The daemon decides when to
run it and records what happened; crash recovery of a half-done change is the platform's
recover(), run once at start."""
from mape.core.errors import MapeError
from mape.shell import conntrack_flush
from mape.shell.system import Interrupted


class Outcome:
    """What a change did: ``applied`` (the new config is in place and verified),
    ``error`` (one line, or None), ``rolled_back`` (the previous config was restored),
    ``written`` (the new config is in place, verified or not)."""

    __slots__ = ("applied", "error", "rolled_back", "written")

    def __init__(self, applied, error=None, rolled_back=False, written=None):
        self.applied = applied
        self.error = error
        self.rolled_back = rolled_back
        self.written = applied if written is None else written


def install_nat(platform, target, settings, log):
    """Install the port-set NAT rules for ``target``. Returns an error line or None."""
    nat = platform.nat
    if not getattr(settings, "manage_firewall", True):
        return None
    if not nat.available:   # a broken install: say so (the status is then an error, not "ok")
        log.error("firewall rules not installed: %s", nat.problem)
        return "firewall: %s" % nat.problem
    try:
        nat.apply(nat.spec(target, settings, "map-%s" % settings.wan_iface))
    except Interrupted:
        raise
    except Exception as e:  # the NAT engine's errors must not kill the daemon
        log.error("firewall rules not installed: %s", e)
        return "firewall: %s" % e
    return None


def flush_replaced(replaced_ipv4, target, log):
    """Delete the connections NATed to the IPv4 this change replaced (their packets would
    leave through the new tunnel with the old source, which the BR drops)."""
    if not replaced_ipv4 or replaced_ipv4 == target.mapping.ipv4_text:
        return
    deleted, problem = conntrack_flush.flush(replaced_ipv4)
    if problem:
        log.warning("connections of the old address %s: %s", replaced_ipv4, problem)
    elif deleted:
        log.info("deleted %d connection(s) NATed to the old address %s", deleted, replaced_ipv4)


def change(platform, target, settings, log, replaced_ipv4=None):
    """Apply ``target``; verify within settings.verify_timeout; on failure roll back when
    settings.rollback. ``replaced_ipv4``: the address in use before, whose connections go
    once the new NAT is in. Never raises MapeError.

    The NAT for the new mapping goes in between the commit and the services' reload, so
    that the firewall reload which wan's ifup triggers re-applies the new rules, not the
    old ones, and the first packet through the new tunnel already has an allowed port."""
    # Interrupted (SIGTERM) is no failure: it goes up, the journal tells the next start
    try:
        platform.apply(target, settings)
    except Interrupted:
        raise
    except MapeError as e:
        return Outcome(False, "apply failed: %s" % e)
    nat_error = install_nat(platform, target, settings, log)
    try:
        platform.activate(settings)
    except Interrupted:
        raise
    except MapeError as e:
        return Outcome(False, "reload failed: %s" % e, written=True)   # committed, not yet live
    flush_replaced(replaced_ipv4, target, log)
    if settings.verify_timeout and not platform.verify(target, settings, settings.verify_timeout):
        message = "%s did not come up with %s within %ds" % (settings.wan_iface, target.mapping.ipv4_text,
                                                               settings.verify_timeout)
        if not settings.rollback:
            return Outcome(False, message, written=True)
        log.error("%s: restoring the previous configuration", message)
        try:
            platform.rollback(settings)
        except Interrupted:
            raise
        except MapeError as e:
            return Outcome(False, message + "; rollback failed: %s" % e, rolled_back=True)
        return Outcome(False, message + "; previous configuration restored", rolled_back=True)
    flush_replaced(replaced_ipv4, target, log)   # what slipped through while wan came up
    return Outcome(True, nat_error)


def reactivate(platform, target, settings, log):
    """The configuration is committed but not running (a reload that failed, timed out or
    never ran): reload again and verify. Returns an error line or None. Never raises
    MapeError; no rollback (the configuration is the right one)."""
    try:
        platform.reactivate(settings)
    except Interrupted:
        raise
    except MapeError as e:
        return "reload failed: %s" % e
    if settings.verify_timeout and not platform.verify(target, settings, settings.verify_timeout):
        message = "%s did not come up with %s within %ds after a reload" % (
            settings.wan_iface, target.mapping.ipv4_text, settings.verify_timeout)
        log.error("%s", message)
        return message
    return None
