"""Install, remove and check mape-py's NAT ruleset on the live system (iptables or nft).

- detect_backend(): "nftables" when /sbin/fw4 exists (OpenWrt 22.03+), else "iptables";
  MAPE_PY_FW_BACKEND overrides. MAPE_PY_IPTABLES names the iptables flavour to run
  (default "iptables"; e.g. "iptables-legacy").
- apply(spec) / apply(backend, text): one atomic transaction, under a lock. iptables:
  one `iptables-restore --noflush` run that declares (= flushes) our chains, deletes every
  jump into them that exists now, inserts exactly one, and removes chains of ours that the
  new text no longer has. nft: the script replaces `table inet mape_py` in one `nft -f`.
  Applying twice, ten times or concurrently leaves exactly one copy. The applied text is
  saved to RUN_DIR/firewall.{iptables,nft} for the firewall include to re-apply.
- remove(): deletes our jumps, chains and table, the saved text, and restores the TIME_WAIT
  timeout if apply() changed it. No trace.
- check(spec): {"backend", "strategy", "health": present|missing|duplicated|stale, "detail"}.
"""
import fcntl
import os
import re
import time

from mape.core import nat as core
from mape.core.errors import MapeError
from mape.shell.system import CommandError, Interrupted, run_command, stopping

RUN_DIR = os.environ.get("MAPE_PY_RUN_DIR", "/var/run/mape-py")
SAVED = {"iptables": "firewall.iptables", "nftables": "firewall.nft"}
TIME_WAIT_SYSCTL = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait"
BUILTINS = {"nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
            "filter": ("INPUT", "FORWARD", "OUTPUT")}
TABLES = ("nat", "filter")
COMMAND_TIMEOUT = 30   # seconds for one iptables-restore / -save / nft run
LOCK_WAIT = 30         # seconds to wait for the firewall lock (another apply or the include)


class NetfilterError(MapeError):
    pass


# -- plumbing ---------------------------------------------------------------------------
def _run(argv, stdin=None):
    """(returncode, stdout, stderr); bounded (COMMAND_TIMEOUT) and interruptible."""
    try:
        return run_command(argv, stdin, timeout=COMMAND_TIMEOUT)
    except CommandError as e:
        raise NetfilterError("cannot run %s: %s" % (argv[0], e.stderr))


def _must(argv, stdin=None):
    rc, out, err = _run(argv, stdin)
    if rc != 0:
        msg = " ".join((err or out or "").split())[:300]
        raise NetfilterError("%s failed (exit %d): %s" % (" ".join(argv[:2]), rc, msg))
    return out


def _restore_argv():
    flavour = os.environ.get("MAPE_PY_IPTABLES", "iptables")
    return [flavour + "-restore", "-w", "--noflush"]


def _save_argv(table):
    flavour = os.environ.get("MAPE_PY_IPTABLES", "iptables")
    return [flavour + "-save", "-t", table]


class _Lock:
    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, "firewall.lock")
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + LOCK_WAIT
        while True:   # bounded: a hung holder must not hang us (nor the firewall reload behind us)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                pass
            if stopping():
                os.close(self.fd)
                raise Interrupted("stopping: not waiting for the firewall lock")
            if time.monotonic() >= deadline:
                os.close(self.fd)
                raise NetfilterError("the firewall lock %s is held by another process for %ds"
                                     % (self.path, LOCK_WAIT))
            time.sleep(0.1)

    def __exit__(self, *exc):
        os.close(self.fd)


def detect_backend(override=None, fw4="/sbin/fw4"):
    choice = override or os.environ.get("MAPE_PY_FW_BACKEND") or "auto"
    if choice in ("iptables", "nftables", "off"):
        return choice
    if choice != "auto":
        raise NetfilterError("unknown firewall backend %r" % choice)
    return "nftables" if os.path.exists(fw4) else "iptables"


def _resolve(spec_or_backend, text=None, backend=None):
    """(backend, spec or None, text)."""
    if isinstance(spec_or_backend, core.NatSpec):
        spec = spec_or_backend
        backend = detect_backend(backend or (spec.backend if spec.backend != "auto" else None))
        if backend == "off":
            return backend, spec, None
        return backend, spec, text if text is not None else core.render(spec, backend)
    backend = detect_backend(spec_or_backend or backend)
    return backend, None, text


# -- iptables ---------------------------------------------------------------------------
def _ipt_state(table):
    """(our chains, [jump rule args in built-in chains as '-A CHAIN ...'])."""
    chains, jumps, rules, _ = _ipt_state_full(table)
    return chains, jumps, rules


def _ipt_state_full(table):
    """As _ipt_state, plus {built-in chain: [its other rules, in order]}."""
    out = _must(_save_argv(table))
    chains, jumps, rules, others = [], [], {}, {}
    for line in out.splitlines():
        if line.startswith(":") and line[1:].split()[0].startswith(core.CHAIN):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            parts = line.split()
            chain = parts[1]
            if chain.startswith(core.CHAIN):
                rules.setdefault(chain, []).append(line)
            elif chain in BUILTINS.get(table, ()) and re.search(r"-j %s(_\w+)?(\s|$)" % core.CHAIN, line):
                jumps.append(line)
            elif chain in BUILTINS.get(table, ()):
                others.setdefault(chain, []).append(line)
    return chains, jumps, rules, others


_ESTABLISHED = re.compile(r"--ctstate RELATED,ESTABLISHED\b.*-j ACCEPT$")


def _guard_position(others, chain):
    """Where the guard jump goes in a filter chain: right after fw3's
    `--ctstate RELATED,ESTABLISHED -j ACCEPT` when there is one (then packets of
    established connections never reach it), else first."""
    for i, line in enumerate(others.get(chain, [])):
        if _ESTABLISHED.search(line):
            return i + 2
    return 1


def _ipt_transaction(text):
    """Turn rendered text (with -I jumps) into one idempotent restore run."""
    wanted = {}          # table -> {"chains": [...], "jumps": [...], "rules": [...]}
    table = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            wanted.setdefault(table, {"chains": [], "jumps": [], "rules": []})
        elif line.startswith(":"):
            wanted[table]["chains"].append(line[1:].split()[0])
        elif line.startswith(("-I ", "-A ")) and line.split()[1] in BUILTINS.get(table, ()):
            wanted[table]["jumps"].append(line)
        elif line.startswith("-A "):
            wanted[table]["rules"].append(line)
        elif line.strip() == "COMMIT":
            continue
        else:
            raise NetfilterError("unexpected line in iptables text: %r" % line[:80])
    out = []
    for table in TABLES:
        chains, jumps, _, others = _ipt_state_full(table)
        want = wanted.get(table, {"chains": [], "jumps": [], "rules": []})
        if table == "filter":
            placed = []
            for j in want["jumps"]:
                parts = j.split()
                if parts[0] == "-I" and len(parts) > 2 and parts[2] == "1":
                    parts[2] = str(_guard_position(others, parts[1]))
                placed.append(" ".join(parts))
            want = dict(want, jumps=placed)
        if not want["chains"] and not chains and not jumps:
            continue
        stale = [c for c in chains if c not in want["chains"]]
        out.append("*%s" % table)
        out += [":%s - [0:0]" % c for c in want["chains"]]
        out += ["-D" + j[2:] for j in jumps]
        out += ["-F %s" % c for c in stale]
        out += ["-X %s" % c for c in stale]
        out += want["jumps"] + want["rules"]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _ipt_remove():
    _must(_restore_argv(), _ipt_transaction(""))


# -- nft --------------------------------------------------------------------------------
def _nft_table():
    rc, out, _ = _run(["nft", "list", "table", "inet", core.NFT_TABLE])
    return out if rc == 0 else None


def _nft_remove():
    script = "table inet %s\ndelete table inet %s\n" % (core.NFT_TABLE, core.NFT_TABLE)
    _must(["nft", "-f", "-"], script)


# -- TIME_WAIT opt-in -------------------------------------------------------------------
def _time_wait(seconds, run_dir):
    saved = os.path.join(run_dir, "time_wait.orig")
    if not os.path.exists(TIME_WAIT_SYSCTL):
        return
    if seconds is None:
        if os.path.exists(saved):
            with open(saved) as f:
                original = f.read().strip()
            with open(TIME_WAIT_SYSCTL, "w") as f:
                f.write(original + "\n")
            os.unlink(saved)
        return
    if not os.path.exists(saved):
        with open(TIME_WAIT_SYSCTL) as f:
            original = f.read().strip()
        with open(saved, "w") as f:
            f.write(original + "\n")
    with open(TIME_WAIT_SYSCTL, "w") as f:
        f.write("%d\n" % int(seconds))


# -- public -----------------------------------------------------------------------------
def _write_atomic(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def apply(spec_or_backend, text=None, run_dir=None, backend=None, save=True):
    """Install the ruleset. ``apply(spec)`` renders for the detected backend (and applies
    the TIME_WAIT opt-in); ``apply("iptables", text)`` installs given text. Returns the
    backend used ("off": nothing installed, ours removed)."""
    run_dir = run_dir or RUN_DIR
    backend, spec, text = _resolve(spec_or_backend, text, backend)
    with _Lock(run_dir):
        if backend == "off":
            _remove_locked(None, run_dir)
            return backend
        if text is None:
            raise NetfilterError("nothing to apply: give a NatSpec or the rendered text")
        try:
            if backend == "iptables":
                _must(_restore_argv(), _ipt_transaction(text))
                other = "nftables"
            else:
                _must(["nft", "-f", "-"], text)
                other = "iptables"
        except NetfilterError as e:
            if spec is not None and spec.host_cap:    # the likeliest cause of an opt-in failing
                raise NetfilterError("%s (option nat_host_cap needs the kernel module %s)"
                                     % (e, "xt_connlimit" if backend == "iptables" else "nft_connlimit"))
            raise
        if save:
            _write_atomic(os.path.join(run_dir, SAVED[backend]), text)
            stale = os.path.join(run_dir, SAVED[other])
            if os.path.exists(stale):
                os.unlink(stale)
        if spec is not None:
            _time_wait(spec.tcp_time_wait, run_dir)
    return backend


def reapply(run_dir=None, backend=None):
    """Re-install the last saved ruleset (firewall include). Returns backend or None."""
    run_dir = run_dir or RUN_DIR
    for name in ([backend] if backend else ["nftables", "iptables"]):
        path = os.path.join(run_dir, SAVED[name])
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            return apply(name, text, run_dir=run_dir, save=False)
    return None


def _remove_locked(backend, run_dir):
    backends = [backend] if backend in ("iptables", "nftables") else ["iptables", "nftables"]
    active = backend if backend in ("iptables", "nftables") else detect_backend()
    for name in backends:
        try:
            if name == "iptables":
                if _has_tool(os.environ.get("MAPE_PY_IPTABLES", "iptables") + "-save"):
                    _ipt_remove()
            elif _has_tool("nft"):
                _nft_remove()
        except NetfilterError:
            if name == active:     # the other backend's tools may be half-installed
                raise
        path = os.path.join(run_dir, SAVED[name])
        if os.path.exists(path):
            os.unlink(path)
    _time_wait(None, run_dir)


def _has_tool(name):
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep):
        if os.access(os.path.join(d, name), os.X_OK):
            return True
    return False


def remove(spec_or_backend=None, run_dir=None):
    """Remove everything of ours (both backends unless one is named)."""
    run_dir = run_dir or RUN_DIR
    if isinstance(spec_or_backend, core.NatSpec):
        backend = None
    else:
        backend = spec_or_backend
    with _Lock(run_dir):
        _remove_locked(backend, run_dir)


def _snat_targets(text):
    return sorted(set(re.findall(r"(?:--to-source|snat ip to) (\d+\.\d+\.\d+\.\d+:[\d-]+)", text)))


def _host_caps(text):
    """The per-host cap numbers a ruleset holds (iptables connlimit / nft ct count; a
    listing repeats it in each element of the nft set)."""
    return sorted(set(re.findall(r"(?:--connlimit-above|ct count over) (\d+)", text)))


def check(spec_or_backend, spec=None):
    """Health of the installed ruleset compared with ``spec``."""
    if isinstance(spec_or_backend, core.NatSpec):
        spec = spec_or_backend
        backend = detect_backend(spec.backend if spec.backend != "auto" else None)
    else:
        backend = detect_backend(spec_or_backend)
    result = {"backend": backend}
    if spec is not None:
        result["strategy"] = spec.strategy
    if backend == "off":
        result.update(health="missing", detail="firewall backend is off")
        return result
    if backend == "iptables":
        result.update(_check_iptables(spec))
    else:
        result.update(_check_nft(spec))
    return result


def _check_iptables(spec):
    chains, jumps, rules = {}, [], {}
    for table in TABLES:
        c, j, r = _ipt_state(table)
        chains[table] = c
        jumps += j
        rules.update(r)
    nat_jumps = [j for j in jumps if " POSTROUTING " in j]
    if not chains["nat"] and not jumps:
        return {"health": "missing", "detail": "no mape-py chains"}
    if not nat_jumps:
        return {"health": "missing", "detail": "chains present but no jump from POSTROUTING"}
    per_chain = {}     # (built-in chain, our chain) -> jumps: FORWARD may jump to guard and cap
    for j in jumps:
        key = "%s->%s" % (j.split()[1], j.split()[-1])
        per_chain[key] = per_chain.get(key, 0) + 1
    if max(per_chain.values()) > 1:
        return {"health": "duplicated", "detail": "%d jumps into mape-py chains (%s)" % (
            len(jumps), ", ".join("%s x%d" % kv for kv in sorted(per_chain.items())))}
    detail = "one jump, %d chains, %d rules" % (len(chains["nat"]) + len(chains["filter"]),
                                                 sum(len(v) for v in rules.values()))
    if spec is not None:
        want = core.render_iptables(spec)
        expected_chains = core.iptables_chains(spec)
        have_rules = "\n".join(l for v in rules.values() for l in v)
        problems = []
        if sorted(chains["nat"]) != sorted(expected_chains.get("nat", [])) or \
                sorted(chains["filter"]) != sorted(expected_chains.get("filter", [])):
            problems.append("chains differ")
        if len(jumps) != len(core.iptables_jumps(spec)):   # guard: FORWARD + OUTPUT; cap: FORWARD
            problems.append("guard differs")
        if _host_caps(have_rules + "\n" + "\n".join(jumps)) != _host_caps(want):
            problems.append("per-host cap differs")
        if "-o %s " % spec.wan_if not in nat_jumps[0]:
            problems.append("jump is not scoped to %s" % spec.wan_if)
        if _snat_targets(have_rules) != _snat_targets(want):
            problems.append("SNAT targets differ (other IPv4 or ports)")
        n_want = sum(1 for l in want.splitlines() if l.startswith("-A "))
        if n_want != sum(len(v) for v in rules.values()):
            problems.append("rule count differs")
        if problems:
            return {"health": "stale", "detail": "; ".join(problems)}
    return {"health": "present", "detail": detail}


def _check_nft(spec):
    listing = _nft_table()
    if listing is None:
        return {"health": "missing", "detail": "no table inet %s" % core.NFT_TABLE}
    jumps = len(re.findall(r"meta l4proto vmap", listing))
    if jumps == 0:
        return {"health": "missing", "detail": "table without its hook rule"}
    if jumps > 1:
        return {"health": "duplicated", "detail": "%d hook rules" % jumps}
    n_chains = len(re.findall(r"^\s*chain ", listing, re.M))
    detail = "table inet %s, %d chains" % (core.NFT_TABLE, n_chains)
    if spec is not None:
        problems = []
        if 'oifname "%s"' % spec.wan_if not in listing:
            problems.append("hook is not scoped to %s" % spec.wan_if)
        want = core.render_nft(spec)
        if _snat_targets(listing) != _snat_targets(want):
            problems.append("SNAT targets differ (other IPv4 or ports)")
        if n_chains != len(re.findall(r"^\s*chain ", want, re.M)):
            problems.append("chain count differs")
        if ("jhash" in listing) != (spec.strategy == "hash" and len(spec.ranges) > 1):
            problems.append("strategy differs")
        if _host_caps(listing) != _host_caps(want):
            problems.append("per-host cap differs")
        if problems:
            return {"health": "stale", "detail": "; ".join(problems)}
    return {"health": "present", "detail": detail}
