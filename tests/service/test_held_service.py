"""Manual edits of what mape-py owns are not overwritten (issue 11 point 19), on the fake
router with its uci (real files and deltas): state "held", nothing written, then each way
out through the CLI."""
import json
import subprocess
import sys


def edit(router, line):
    """`uci batch` + `uci commit network`, as the user (or LuCI) would."""
    for argv, stdin in ((["uci", "batch"], line + "\n"), (["uci", "commit", "network"], None)):
        p = subprocess.run(argv, input=stdin, env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        assert p.returncode == 0, p.stderr


def held_cli(router, *args):
    p = subprocess.run([sys.executable, "-m", "mape", "held"] + list(args) +
                       ["--root", router.root, "--status-file", "/var/run/mape-py/status.json", "--json"],
                       env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    return p.returncode, json.loads(p.stdout)


def first_apply(router):
    p = router.once()
    assert p.returncode == 0, p.stderr
    assert json.loads(router.read("etc/mape-py/written"))["network.wan.proto"] == "map"


def test_manual_edits_are_held_then_adopted(router):
    first_apply(router)
    edit(router, "set network.wan.mtu='1454'")
    before = router.read("etc/config/network")
    router.clear_calls()
    router.once()
    st = router.status()
    assert st["state"] == "held", st["state_reason"]
    assert "network.wan.mtu is '1454', mape-py wrote '1460'" in st["state_reason"]
    assert st["held"] == [{"option": "network.wan.mtu", "written": "1460", "now": "1454", "setting": "mtu"}]
    assert router.read("etc/config/network") == before and "uci commit" not in router.calls()
    rc, out = held_cli(router, "adopt")
    assert rc == 0 and out["message"].startswith("adopted: mtu '1454'"), out
    assert "option mtu '1454'" in router.read("etc/config/mape")
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["state"] == "ok" and st["settings"]["mtu"] == 1454
    assert router.read("etc/config/network") == before
    assert json.loads(router.read("etc/mape-py/written"))["network.wan.mtu"] == "1454"


def test_proto_changed_to_pppoe_cannot_be_adopted_then_reapply_or_give_up(router):
    first_apply(router)
    edit(router, "set network.wan.proto='pppoe'")
    router.once()
    st = router.status()
    assert st["state"] == "held" and "network.wan.proto is 'pppoe', mape-py wrote 'map'" in st["state_reason"]
    assert "\toption proto 'pppoe'" in router.read("etc/config/network")
    rc, out = held_cli(router, "adopt")
    assert rc == 1 and "network.wan.proto cannot become a mape setting" in out["error"], out
    rc, out = held_cli(router, "reapply")
    assert rc == 0, out
    router.once()
    assert router.status()["state"] == "ok"
    assert "\toption proto 'map'" in router.read("etc/config/network")
    # and give-up: edit again, held, give up -> disabled, the edit stays
    edit(router, "set network.wan.proto='pppoe'")
    router.once()
    assert router.status()["state"] == "held"
    rc, out = held_cli(router, "give-up")
    assert rc == 0, out
    router.once()
    assert router.status()["state"] == "disabled"
    assert "\toption proto 'pppoe'" in router.read("etc/config/network")
