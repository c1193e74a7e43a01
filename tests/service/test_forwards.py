"""Port forwards that can work (issue 14 point 1), on the fake router: the running daemon
reads the firewall redirects, reports each against the port sets and keeps the allowed ones
out of the SNAT pool, again after a firewall reload (the shipped include kicks it)."""
import os
import subprocess

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
