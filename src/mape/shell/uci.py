"""The `uci` command line: export, batch (through stdin), commit. Package names and values
travel as argv entries or batch stdin; never through a shell."""
import os

from mape.shell.system import CommandError

# The daemon's own uci view (PrivateUci): /etc/config/<pkg> through a link named
# mape_<pkg> in LINK_DIR (`uci -c`), its deltas in SAVE_DIR (`uci -t`). libuci always also
# reads the CLI's /tmp/.uci/<package name> and commits what it finds there; under the
# link's name that file is never anyone's, so the daemon's commit carries only its own
# changes, and another tool's staged /tmp/.uci/network stays staged (21.02 and 24.10 alike).
LINK_DIR = "/etc/mape-py/uci"     # on the overlay with /etc/config: libuci renames its temp file across
SAVE_DIR = "/tmp/.uci-mape-py"
ALIAS = "mape_"


class Uci:
    def __init__(self, system, program="uci"):
        self.system = system
        self.program = program

    def _argv(self, *args):
        return [self.program] + list(args)

    def _name(self, package):
        return package

    def _run(self, words, package=None, input=None):
        """(rc, out, err) of uci with ``words``; errors name the real package (never the
        private link: one line the user can act on)."""
        argv = self._argv(*words)
        rc, out, err = self.system.run(argv, input=input, check=False)
        shown = [self.program] + [w for w in words if w != "-q"]
        if package:
            shown = shown[:-1] + [package]
        return rc, out, err, shown

    def export(self, package):
        """Text of `uci -q export PACKAGE` ('' when the package does not exist). A failure
        on an existing file (syntax error, I/O) raises CommandError: an unreadable config
        must never be mistaken for an empty one."""
        rc, out, err, shown = self._run(["-q", "export", self._name(package)], package)
        if rc == 0:
            return out
        if not self.system.exists("/etc/config/%s" % package):
            return ""
        raise CommandError(shown, rc, err or "cannot read /etc/config/%s" % package)

    def batch(self, text):
        """`uci batch` of ``text``. uci exits 0 even when a line failed (it prints the error
        and goes on): any complaint on stderr is a failure here."""
        rc, _, err, shown = self._run(["batch"], input=self._rename(text))
        if rc != 0 or err.strip():
            raise CommandError(shown, rc or 1, err)

    def commit(self, package):
        rc, out, err, shown = self._run(["commit", self._name(package)], package)
        if rc != 0:
            raise CommandError(shown, rc, err or out)

    def _rename(self, text):
        return text


class PrivateUci(Uci):
    """uci for the daemon's own changes (see LINK_DIR): batch lines name the real packages
    (`set network.wan.proto=...`) and are rewritten to the links' names."""

    def __init__(self, system, program="uci", packages=("network", "firewall")):
        Uci.__init__(self, system, program)
        self.packages = tuple(packages)

    def _argv(self, *args):
        return [self.program, "-c", self.system.path(LINK_DIR), "-t", self.system.path(SAVE_DIR)] + list(args)

    def _name(self, package):
        self._link(package)
        return ALIAS + package

    def _link(self, package):
        link = self.system.path("%s/%s%s" % (LINK_DIR, ALIAS, package))
        want = self.system.path("/etc/config/%s" % package)
        try:
            if os.readlink(link) == want:
                return
            os.unlink(link)
        except OSError:
            pass
        os.makedirs(os.path.dirname(link), mode=0o700, exist_ok=True)
        os.makedirs(self.system.path(SAVE_DIR), mode=0o700, exist_ok=True)   # libuci makes one level only
        os.symlink(want, link)

    def _rename(self, text):
        out = []
        for line in text.splitlines():
            op, sep, rest = line.partition(" ")
            package = rest.split(".", 1)[0]
            if sep and package in self.packages:
                self._link(package)
                rest = ALIAS + rest
            out.append(op + sep + rest + "\n")
        return "".join(out)

    def discard(self, package):
        """Drop the daemon's own uncommitted changes (a run killed between batch and commit)."""
        self.system.remove("%s/%s%s" % (SAVE_DIR, ALIAS, package))


__all__ = ["Uci", "PrivateUci", "CommandError"]
