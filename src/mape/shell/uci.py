"""The `uci` command line: export, batch (through stdin), commit, revert. Package names
and values travel as argv entries or batch stdin; never through a shell."""
from mape.shell.system import CommandError


class Uci:
    def __init__(self, system, program="uci"):
        self.system = system
        self.program = program

    def export(self, package):
        """Text of `uci -q export PACKAGE` ('' when the package does not exist). A failure
        on an existing file (syntax error, I/O) raises CommandError: an unreadable config
        must never be mistaken for an empty one."""
        argv = [self.program, "-q", "export", package]
        rc, out, err = self.system.run(argv, check=False)
        if rc == 0:
            return out
        if not self.system.exists("/etc/config/%s" % package):
            return ""
        raise CommandError(argv, rc, err or "cannot read /etc/config/%s" % package)

    def batch(self, text):
        self.system.run([self.program, "batch"], input=text)

    def commit(self, package):
        self.system.run([self.program, "commit", package])

    def revert(self, package):
        self.system.run([self.program, "revert", package], check=False)

    def changes(self, package):
        """Pending delta lines for PACKAGE (`uci changes`), [] on failure."""
        rc, out, _ = self.system.run([self.program, "-q", "changes", package], check=False)
        return [line for line in out.splitlines() if line.strip()] if rc == 0 else []


__all__ = ["Uci", "CommandError"]
