"""Running commands and touching files, relative to a root directory (`/` on the router,
a temp dir in the service tests). Commands are argv lists: nothing reaches a shell."""
import os
import subprocess

from mape.core.errors import MapeError


class CommandError(MapeError):
    """A system command failed (one line; exit code 1 for the CLI)."""

    def __init__(self, argv, returncode, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stderr = (stderr or "").strip()
        first = self.stderr.splitlines()[0] if self.stderr else "exit status %s" % returncode
        MapeError.__init__(self, "%s failed: %s" % (" ".join(argv[:3]), first[:200]))


class System:
    def __init__(self, root="/"):
        self.root = root

    def path(self, path):
        """The real location of an absolute router path."""
        if self.root in ("", "/"):
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def run(self, argv, input=None, timeout=60, check=True):
        """(returncode, stdout, stderr). Raises CommandError when check and rc != 0, or
        when the program is missing."""
        try:
            proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout, universal_newlines=True, errors="replace")
        except FileNotFoundError:
            raise CommandError(argv, 127, "%s: not found" % argv[0])
        except subprocess.TimeoutExpired:
            raise CommandError(argv, 124, "timed out after %ss" % timeout)
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)
        return proc.returncode, proc.stdout, proc.stderr

    def exists(self, path):
        return os.path.exists(self.path(path))

    def read(self, path, limit=None):
        """File text, or None when it does not exist / cannot be read."""
        try:
            with open(self.path(path), encoding="utf-8", errors="replace") as f:
                return f.read(limit) if limit else f.read()
        except OSError:
            return None

    def write_atomic(self, path, text, sync=True, mode=None):
        """temp file in the same directory + fsync + rename: readers see old or new, never half.
        ``mode`` None keeps the mode and owner of the file it replaces (0644 for a new one);
        a failure (a full overlay) leaves no temp file behind."""
        real = self.path(path)
        directory = os.path.dirname(real)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, ".%s.tmp%d" % (os.path.basename(real), os.getpid()))
        try:
            old = os.stat(real)
        except OSError:
            old = None
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            if mode is None and old is not None:
                os.chmod(tmp, old.st_mode & 0o7777)
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.chown(tmp, old.st_uid, old.st_gid)
                    except PermissionError:   # not root: the mode is what matters
                        pass
            else:
                os.chmod(tmp, 0o644 if mode is None else mode)
            os.replace(tmp, real)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if sync:
            fsync_dir(directory)

    def free_kib(self, path):
        """KiB free for us on the file system that holds ``path`` (None: cannot tell)."""
        try:
            st = os.statvfs(self.path(path))
        except OSError:
            return None
        return st.f_bavail * st.f_frsize // 1024

    def remove_stale_temp(self, directory):
        """Delete the temp files of write_atomic() under ``directory`` whose writer is gone
        (a run killed between write and rename). Returns how many were removed."""
        removed = 0
        for top, _, files in os.walk(self.path(directory)):
            for name in files:
                pid = _temp_writer(name)
                if pid is None or _alive(pid):
                    continue
                try:
                    os.unlink(os.path.join(top, name))
                    removed += 1
                except OSError:
                    pass
        return removed

    def remove(self, path):
        try:
            os.unlink(self.path(path))
            fsync_dir(os.path.dirname(self.path(path)))
        except FileNotFoundError:
            pass


def _temp_writer(name):
    """The PID in a write_atomic() temp name (".NAME.tmpPID"), else None."""
    head, sep, digits = name.rpartition(".tmp")
    if not (sep and name.startswith(".") and len(head) > 1 and digits.isdigit()):
        return None
    return int(digits)


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
