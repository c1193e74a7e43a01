"""Port forwards that can work (issue 14 point 1), on the fake router: the running daemon
reads the firewall redirects, reports each against the port sets and keeps the allowed ones
out of the SNAT pool, again after a firewall reload (the shipped include kicks it)."""
import json
import os
import subprocess
import sys

from fakerouter import TOP

INCLUDE = os.path.join(TOP, "files/usr/share/mape-py/firewall.include")

GAME = ("\nconfig redirect 'game'\n\toption name 'Game'\n\toption src 'wan'\n\toption src_dport '5190'\n"
        "\toption dest 'lan'\n\toption dest_ip '192.168.1.20'\n")
NAS = ("\nconfig redirect\n\toption name 'NAS'\n\toption src 'wan'\n\toption proto 'tcp'\n"
       "\toption src_dport '8080'\n\toption dest 'lan'\n\toption dest_ip '192.168.1.30'\n")


def rules(router):
    return subprocess.run(["iptables-save", "-t", "nat"], env=router.env(), stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


def firewall_reload(router):
    """What a firewall reload does for mape-py: run its include (re-apply, kick the daemon)."""
    subprocess.run(["sh", INCLUDE], env=router.env(), check=True, timeout=60)


def test_forwards_in_status_and_kept_out_of_snat_after_a_firewall_reload(router):
    router.write("etc/config/firewall", router.read("etc/config/firewall") + GAME)
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="state ok")
    st = router.status()
    game = st["forwards"][0]
    assert (game["section"], game["allowed"], game["ports"], game["kept_out"]) == ("game", "yes", [5190, 5190],
                                                                                  [[5190, 5190]])
    assert st["ports"]["kept_out"] == [[5190, 5190]]
    assert {"ports": [5190, 5190], "by": "forward", "name": "Game"} in st["port_use"][0]["used"]
    nat = rules(router)
    assert "--to-source 106.73.34.51:5184-5189" in nat and "106.73.34.51:5191-5199" in nat
    assert "106.73.34.51:5184-5199" not in nat
    assert "warnings" not in st or not [w for w in st["warnings"] if w["code"].startswith("forward")]

    # LuCI's Save & Apply: the forward moves to 5195, a second one on a port the BR drops
    text = router.read("etc/config/firewall").replace("'5190'", "'5195'") + NAS
    router.write("etc/config/firewall", text)
    firewall_reload(router)
    router.wait_for(lambda: len((router.status() or {}).get("forwards", [])) == 2, what="two forwards")
    router.wait_for(lambda: "106.73.34.51:5184-5194" in rules(router), what="the NAT rules follow")
    router.wait_for(lambda: router.status()["state"] == "ok", what="state ok")
    nat = rules(router)
    assert "106.73.34.51:5196-5199" in nat and "106.73.34.51:5191-" not in nat
    st = router.status()
    assert st["state"] == "ok", st["state_reason"]
    nas = st["forwards"][1]
    assert (nas["section"], nas["allowed"], nas["suggestion"]) == ("@redirect[1]", "no", [9280, 9280])
    assert "kept_out" not in nas
    warning = [w for w in st["warnings"] if w["code"] == "forward-port-not-allowed"]
    assert warning and "NAS" in warning[0]["message"] and "9280" in warning[0]["message"]
    assert p.poll() is None


def test_use_free_moves_the_forward_and_keeps_the_lan_port(router):
    """`mape-py forward use-free` (what LuCI's button calls through rpcd): the external port
    becomes the nearest free allowed one, the LAN server keeps its port, the firewall is
    reloaded, and after the reload the daemon keeps the new port out of SNAT."""
    router.write("etc/config/firewall", router.read("etc/config/firewall") + NAS)
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("forwards"), what="forwards in the status")
    assert router.status()["forwards"][0]["suggestion"] == [9280, 9280]

    def forward(*args):
        return subprocess.run([sys.executable, "-m", "mape", "forward"] + list(args) + ["--root", router.root],
                              env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)

    listing = forward()
    assert listing.returncode == 0 and "DROPPED  NAS" in listing.stdout and "use 9280" in listing.stdout
    router.clear_calls()
    out = forward("use-free", "@redirect[0]", "--json")
    assert json.loads(out.stdout) == {"ok": True, "message": "port forward NAS: external port 8080 -> 9280 "
                                                             "(the LAN side stays 192.168.1.30:8080)"}, out.stderr
    fw = router.read("etc/config/firewall")
    assert "option src_dport '9280'" in fw and "option dest_port '8080'" in fw
    assert "firewall reload" in router.calls()
    again = forward("use-free", "@redirect[0]", "--json")
    assert again.returncode == 1 and "already uses allowed port(s) 9280" in json.loads(again.stdout)["error"]
    firewall_reload(router)
    router.wait_for(lambda: router.status()["forwards"][0]["allowed"] == "yes", what="the status follows")
    router.wait_for(lambda: "106.73.34.51:9281-9295" in rules(router), what="9280 kept out of SNAT")
    assert router.status()["forwards"][0]["kept_out"] == [[9280, 9280]]
    assert p.poll() is None


def test_a_forward_of_every_port_keeps_outgoing_nat_working(router):
    """DMZ-style: one redirect of 1-65535. Keeping its ports out would leave outgoing NAT
    nothing: all 240 ports stay in the pool, the status says so."""
    router.write("etc/config/firewall", router.read("etc/config/firewall") +
                 "\nconfig redirect\n\toption name 'DMZ'\n\toption src 'wan'\n\toption src_dport '1-65535'\n"
                 "\toption dest_ip '192.168.1.40'\n")
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["state"] == "ok", st["state_reason"]
    assert st["forwards"][0]["allowed"] == "partly" and "kept_out" not in st["ports"]
    assert [w["code"] for w in st["warnings"]].count("every-port-forwarded") == 1
    assert "106.73.34.51:5184-5199" in rules(router)
