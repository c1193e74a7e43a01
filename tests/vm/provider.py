"""The provider's side of a simulated FLET'S line: the strict BR and an IPv4 internet host,
attached to the NGN namespace of a line. Stdlib only; runs INSIDE the VM, as root.

Shared by tests/vm/line.py (the router runs mape-py's linux platform) and
tests/vm/openwrt_scenarios.py (the router is the real OpenWrt userland of tests/openwrt):

    NGN  (the line's namespace: routes the customer prefix to the router; owns NGN_BR_ADDR)
     |  veth ngn-br <-> br-ngn
    BR   (2404:9200:225:100::64: one ip4ip6 tunnel to the ONE CE address the provider
          computes, nft counters that accept only valid packets; br_configure())
     |  veth br-inet <-> inet-br
    INET (an IPv4 host 203.0.113.80 serving HTTP on :80, :8080, :8081; it answers with the
          source address and port it saw: serve())

Run as a program inside a namespace (``python3 provider.py serve|probe|many|echo|knock ...``)
it is the HTTP server, the prober, the burst client, and the LAN server behind a port forward
with its one-shot TCP/UDP client.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BR_ADDR = "2404:9200:225:100::64"
NGN_BR_ADDR = "2404:9200:225:100::1"
INET_ADDR = "203.0.113.80"
BR_INET_ADDR = "203.0.113.1"
TUNNEL_BR = "brtun"
# what the BR counts (nft named counters of table inet brcheck), and which of them are drops
COUNTERS = ("outer_ok", "outer_bad_src", "outer_encaplimit", "inner_ok", "inner_bad_src", "inner_bad_port",
            "inner_icmp", "down_ok", "down_bad")
BAD = ("outer_bad_src", "outer_encaplimit", "inner_bad_src", "inner_bad_port", "down_bad")


def sh(*argv, **kw):
    """Run a command; raise with its stderr on failure (unless check=False)."""
    check = kw.pop("check", True)
    inp = kw.pop("input", None)
    timeout = kw.pop("timeout", 60)
    p = subprocess.run(list(argv), input=inp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d: %s" % (" ".join(argv), p.returncode, (p.stderr or p.stdout).strip()[:400]))
    return p.stdout


def nsx(ns, *argv, **kw):
    return sh("ip", "netns", "exec", ns, *argv, **kw)


def wait_for(what, fn, timeout=60.0, interval=0.25):
    """Poll fn() until it returns something truthy; returns it, or raises after timeout."""
    end = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.time() > end:
            raise TimeoutError("gave up waiting for %s after %.0f s" % (what, timeout))
        time.sleep(interval)


class Provider:
    """The BR (namespace ``br``) and the internet host (``inet``) behind the NGN namespace
    ``ngn``. ``start(name, ns, argv)`` starts (and tracks) a long-running process: the
    caller's process table, so that its teardown stops the HTTP server too."""

    def __init__(self, ngn, start, br="br", inet="inet"):
        self.ngn, self.br, self.inet = ngn, br, inet
        self.start = start
        self.expect = None

    def build(self, make_namespaces=True):
        if make_namespaces:
            for ns in (self.br, self.inet):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        for a, an, b, bn in (("ngn-br", self.ngn, "br-ngn", self.br), ("br-inet", self.br, "inet-br", self.inet)):
            sh("ip", "link", "add", a, "netns", an, "type", "veth", "peer", "name", b, "netns", bn)
        nsx(self.br, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        nsx(self.br, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", self.ngn, "addr", "add", NGN_BR_ADDR + "/64", "dev", "ngn-br", "nodad")
        sh("ip", "-n", self.br, "addr", "add", BR_ADDR + "/64", "dev", "br-ngn", "nodad")
        sh("ip", "-n", self.br, "addr", "add", BR_INET_ADDR + "/24", "dev", "br-inet")
        sh("ip", "-n", self.inet, "addr", "add", INET_ADDR + "/24", "dev", "inet-br")
        for ns, dev in ((self.ngn, "ngn-br"), (self.br, "br-ngn"), (self.br, "br-inet"), (self.inet, "inet-br")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.br, "-6", "route", "add", "default", "via", NGN_BR_ADDR, "dev", "br-ngn")
        sh("ip", "-n", self.inet, "route", "add", "default", "via", BR_INET_ADDR)
        self.start("http", self.inet, [sys.executable, os.path.join(HERE, "provider.py"), "serve"])
        wait_for("the HTTP server", lambda: nsx(self.inet, "ss", "-Htln", "sport = :8080", check=False).strip())

    def br_configure(self, exp):
        """Make the BR accept exactly ``exp`` (from expect.expect): one ip4ip6 tunnel to the
        CE the provider computes, and nft rules that count and drop everything else."""
        self.expect = exp
        br = self.br
        sh("ip", "-n", br, "link", "del", TUNNEL_BR, check=False)
        sh("ip", "-n", br, "-6", "tunnel", "add", TUNNEL_BR, "mode", "ip4ip6", "local", BR_ADDR,
           "remote", exp["ce"], "dev", "br-ngn", "encaplimit", "none")
        sh("ip", "-n", br, "link", "set", TUNNEL_BR, "mtu", "1460", "up")
        sh("ip", "-n", br, "route", "replace", exp["ipv4"] + "/32", "dev", TUNNEL_BR)
        ports = ", ".join("%d-%d" % p for p in exp["ports"])
        ruleset = """
table inet brcheck
delete table inet brcheck
table inet brcheck {
  counter outer_ok {}
  counter outer_bad_src {}
  counter outer_encaplimit {}
  counter inner_ok {}
  counter inner_bad_src {}
  counter inner_bad_port {}
  counter inner_icmp {}
  counter down_ok {}
  counter down_bad {}
  set ports { type inet_service; flags interval; elements = { %(ports)s } }
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    meta nfproto ipv6 ip6 daddr %(br)s exthdr dst exists counter name outer_encaplimit drop
    meta nfproto ipv6 ip6 daddr %(br)s meta l4proto 4 ip6 saddr %(ce)s counter name outer_ok accept
    meta nfproto ipv6 ip6 daddr %(br)s meta l4proto 4 counter name outer_bad_src drop
    iifname "%(tun)s" ip saddr != %(v4)s counter name inner_bad_src drop
    iifname "%(tun)s" meta l4proto { tcp, udp } th sport != @ports counter name inner_bad_port drop
    iifname "%(tun)s" meta l4proto icmp counter name inner_icmp accept
    iifname "%(tun)s" counter name inner_ok accept
  }
  chain down {
    type filter hook forward priority 0; policy accept;
    oifname "%(tun)s" meta l4proto { tcp, udp } th dport @ports counter name down_ok accept
    oifname "%(tun)s" meta l4proto icmp accept
    oifname "%(tun)s" counter name down_bad drop
  }
}
""" % {"ports": ports, "br": BR_ADDR, "ce": exp["ce"], "v4": exp["ipv4"], "tun": TUNNEL_BR}
        nsx(br, "nft", "-f", "-", input=ruleset)

    def br_counters(self, reset=False):
        out = json.loads(nsx(self.br, "nft", "-j", "list", "counters", "table", "inet", "brcheck"))
        counts = {}
        for item in out.get("nftables", []):
            c = item.get("counter")
            if c:
                counts[c["name"]] = c["packets"]
        if reset:
            nsx(self.br, "nft", "reset", "counters", "table", "inet", "brcheck")
        return counts


# -- clients, run from the LAN side ------------------------------------------------------
def fetch(ns, url="http://%s/" % INET_ADDR, timeout=3):
    """One HTTP GET (curl) from namespace ``ns``: the server's JSON (what source it saw), or None."""
    p = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", str(timeout), url],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    if p.returncode != 0:
        return None
    try:
        return json.loads(p.stdout)
    except ValueError:
        return None


def probe_argv(ipv4, interval, path):
    """argv of the prober (run it in the LAN namespace): see probe()."""
    return [sys.executable, os.path.join(HERE, "provider.py"), "probe", ipv4, str(interval), path]


def read_probe(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def many_argv(count, port, hold):
    return [sys.executable, os.path.join(HERE, "provider.py"), "many", str(count), str(port), str(hold)]


# -- small programs run inside the namespaces --------------------------------------------
def serve():
    """The internet host: GET /?hold=S answers {"ip", "port", "path"} after S seconds."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            hold = 0.0
            if "hold=" in self.path:
                try:
                    hold = float(self.path.split("hold=")[1].split("&")[0])
                except ValueError:
                    pass
            if hold:
                time.sleep(min(hold, 30))
            body = json.dumps({"ip": self.client_address[0], "port": self.client_address[1],
                               "text": "hello over IPv4 through MAP-E"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    servers = [S((INET_ADDR, port), H) for port in (80, 8080, 8081)]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def http_json(s, port, path):
    """GET ``path`` from the internet host over socket ``s``; the JSON body it answers."""
    s.connect((INET_ADDR, port))
    s.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1].decode())


def many(count, port, hold):
    """Open ``count`` connections at once, each GET /?hold=..; print the results as JSON."""
    import socket
    import threading

    results = [None] * count
    start = threading.Barrier(count)

    def one(i):
        try:
            start.wait(30)
        except threading.BrokenBarrierError:
            pass
        s = socket.socket()
        s.settimeout(20 + hold)
        try:
            results[i] = http_json(s, port, "/?hold=%s" % hold)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            results[i] = {"error": "%s: %s" % (type(e).__name__, e)}
        finally:
            s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))


def echo(port):
    """A LAN server behind a forward: on TCP and UDP ``port`` (all addresses) it answers each
    connection / datagram with {"ip", "port", "proto"}: the source it saw."""
    import socket
    import threading

    def udp():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        u.bind(("0.0.0.0", port))
        while True:
            _, peer = u.recvfrom(2048)
            u.sendto(json.dumps({"ip": peer[0], "port": peer[1], "proto": "udp"}).encode(), peer)

    threading.Thread(target=udp, daemon=True).start()
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", port))
    t.listen(64)
    while True:
        c, peer = t.accept()
        try:
            c.sendall(json.dumps({"ip": peer[0], "port": peer[1], "proto": "tcp"}).encode())
        except OSError:
            pass
        c.close()


def echo_argv(port):
    return [sys.executable, os.path.join(HERE, "provider.py"), "echo", str(port)]


def knock_argv(proto, host, port, timeout, src=None):
    return [sys.executable, os.path.join(HERE, "provider.py"), "knock", proto, host, str(port), str(timeout),
            src or ""]


def knock(proto, host, port, timeout, src):
    """One TCP connection or UDP datagram to host:port (from ``src`` if given); prints
    {"ok", "seen" (what echo() answered) or "error", "seconds"}."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    t0 = time.time()
    try:
        if src:
            s.bind((src, 0))
        if proto == "tcp":
            s.connect((host, port))
            data = b""
            while True:
                chunk = s.recv(2048)
                if not chunk:
                    break
                data += chunk
        else:
            s.sendto(b"knock", (host, port))
            data = s.recv(2048)
        out = {"ok": True, "seen": json.loads(data.decode())}
    except (OSError, ValueError) as e:
        out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    finally:
        s.close()
    out["seconds"] = round(time.time() - t0, 3)
    print(json.dumps(out))


def probe(ipv4, interval, path):
    """Loop: GET / with a 0.5 s timeout; when the server reports ``ipv4`` write
    {"time", "tries", "port"} to ``path`` (atomically) and exit."""
    import socket

    tries = 0
    while True:
        tries += 1
        started = time.time()
        s = socket.socket()
        s.settimeout(0.5)
        try:
            seen = http_json(s, 80, "/")
            if seen.get("ip") == ipv4:
                with open(path + ".tmp", "w") as f:
                    json.dump({"time": time.time(), "tries": tries, "port": seen["port"], "ip": seen["ip"]}, f)
                os.rename(path + ".tmp", path)
                return
        except (OSError, ValueError, IndexError):
            pass
        finally:
            s.close()
        time.sleep(max(0.0, interval - (time.time() - started)))


if __name__ == "__main__":
    if sys.argv[1] == "probe":
        probe(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "serve":
        serve()
    elif sys.argv[1] == "echo":
        echo(int(sys.argv[2]))
    elif sys.argv[1] == "knock":
        knock(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6] if len(sys.argv) > 6 else "")
    elif sys.argv[1] == "many":
        many(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
