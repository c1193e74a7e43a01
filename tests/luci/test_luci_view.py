"""Services -> MAP-E and its Status -> Overview card, in headless Chromium under the real
luci-base runtime of each profile (21.02, 24.10), with the bed's real rpcd and our installed
plugin and ACL answering (see conftest.py).

Asserts what a person sees (texts, colours, bars, translations), what the page asks rpcd for
and what rpcd allowed, and saves screenshots under test-artifacts/luci/<profile>/.
"""
import json
import signal
import time

import pytest

from tests.luci import fixtures

GREEN, AMBER, RED, GREY = "rgb(46, 125, 50)", "rgb(230, 138, 0)", "rgb(198, 40, 40)", "rgb(117, 117, 117)"
OVERVIEW = "admin/status/overview"

HEALTH_JS = """
return Array.from(document.querySelectorAll('#mape-status tr[data-row]')).map(function(tr) {
    var dot = tr.querySelector('.mape-dot');
    return [tr.getAttribute('data-row'), tr.querySelector('.mape-badge').getAttribute('data-health'),
            getComputedStyle(dot).backgroundColor, tr.cells[1].innerText];
});
"""


def health(c):
    return {row: (h, colour, text) for row, h, colour, text in c.js(HEALTH_JS)}


def kv(c, section="#mape-status"):
    return dict(c.js("return Array.from(document.querySelectorAll(arguments[0] + ' tr[data-key]')).map("
                     "function(tr) { return [tr.getAttribute('data-key'), tr.cells[1].innerText]; });", section))


def text(c, css):
    return c.js("var e = document.querySelector(arguments[0]); return e ? e.innerText : null;", css)


def texts(c, css):
    return c.js("return Array.from(document.querySelectorAll(arguments[0])).map(function(e) { return e.innerText; });", css)


def notices(c):
    return texts(c, "#maincontent > .alert-message")


def field(name, sid="config"):
    """The input of a form option (LuCI: id "widget.cbid.<config>.<section>.<option>", or a
    checkbox that names it in data-widget-id)."""
    wid = "widget.cbid.mape.%s.%s" % (sid, name)
    return '[id="%s"], [data-widget-id="%s"]' % (wid, wid)


def wait_for(cond, timeout=30, message="condition not reached"):
    """Wait for a server-side condition (a bound for failures only, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


def denied(luci):
    return [c for c in luci.server.calls if c[4] == "denied"]


def field_state(c, css):
    return c.js("var e = document.querySelector(arguments[0]); var box = e.closest('.cbi-value-field')"
                ".querySelector('.mape-field-error');"
                "return [e.classList.contains('cbi-input-invalid'), e.getAttribute('data-tooltip'),"
                " box ? box.innerText : null];", css)


def retype(c, css, value):
    el = c.find(css)
    el.clear()
    el.send_keys(value)
    return el


def staged(luci, user="root"):
    """/etc/config/mape as the user's rpcd session sees it (its staged changes applied)."""
    sid = luci.router.sessions[user]["sid"]
    status, data = luci.router.ubus.call("uci", "get", {"config": "mape", "ubus_rpc_session": sid})
    assert status == 0, status
    return data["values"]


def uci_text(values):
    """uci get's values -> /etc/config text (for mape-py's own parser)."""
    lines = []
    for name, sec in sorted(values.items(), key=lambda kv: kv[1].get(".index", 0)):
        lines.append("config %s%s" % (sec[".type"], "" if sec.get(".anonymous") else " '%s'" % name))
        for k, v in sec.items():
            if k.startswith("."):
                continue
            for item in (v if isinstance(v, list) else [v]):
                lines.append("\t%s %s '%s'" % ("list" if isinstance(v, list) else "option", k, item))
    return "\n".join(lines) + "\n"


# -- the status states -------------------------------------------------------------------------

def test_ok_state(page, shot):
    c = page(fixtures.ok())
    h = health(c)
    assert h["state"][:2] == ("green", GREEN)
    assert "MAP-E is working" in h["state"][2]
    assert "IPv4 106.73.34.51 with 240 ports" in h["state"][2]
    assert h["wan6"][:2] == ("green", GREEN) and "240b:11:2233:4400::/56 (eth1)" in h["wan6"][2]
    assert h["tunnel"][:2] == ("green", GREEN) and "map-wan, 106.73.34.51" in h["tunnel"][2]
    assert h["firewall"][:2] == ("green", GREEN) and "NAT rules in place" in h["firewall"][2]

    v = kv(c)
    assert v["provider"] == "JPNE v6plus"
    assert v["ipv4"] == "106.73.34.51 (shared by 256 customers)"
    assert v["psid"] == "68 (length 8, offset 4)"
    assert v["ports"] == "240 ports in 15 sets"
    assert v["ce"] == "240b:11:2233:4400:6a:4922:3300:4400"
    assert v["br"] == "2404:9200:225:100::64"
    assert v["updated"] == "2025-11-26 04:06:40"
    assert c.js("return document.querySelectorAll('#mape-status .alert-message').length") == 0

    history = texts(c, "#mape-status .mape-history tr:not(.table-titles)")
    assert len(history) == 4
    assert history[0].split("\t") == ["2025-11-26 03:06:50", "Configuration applied", "240b:11:2233:4400::/56", "106.73.34.51"]
    assert history[1].split("\t") == ["2025-11-26 03:06:40", "Prefix changed", "240b:11:2233:4400::/56", "106.73.34.51"]
    assert "Service started" in history[3]

    # port sets: every allowed range, each with a usage bar; all in use at a glance
    assert "All 15 port sets in use" in text(c, ".mape-ports-summary")
    assert "55 of 240 ports in use (23%)" in text(c, ".mape-ports-summary")
    assert c.js("return document.querySelector('.mape-ports-summary .mape-badge').getAttribute('data-health')") == "green"
    cells = c.js("return Array.from(document.querySelectorAll('.mape-strip-cell')).map(function(e) {"
                 " return getComputedStyle(e).backgroundColor; });")
    assert len(cells) == 15 and "rgb(208, 208, 208)" not in cells
    rows = c.js("return Array.from(document.querySelectorAll('tr.mape-set')).map(function(tr) {"
                " var b = tr.querySelector('.mape-bar > div');"
                " return [tr.cells[0].innerText, tr.cells[1].innerText, b.style.width, getComputedStyle(b).backgroundColor]; });")
    assert len(rows) == 15
    assert rows[0] == ["5184\u20135199", "3 / 16", "19%", GREEN]
    assert rows[4] == ["21568\u201321583", "16 / 16", "100%", RED]
    assert [r[0] for r in rows] == ["%d\u2013%d" % (a, b) for a, b in fixtures.mapping(fixtures.PREFIX)["port_sets"]]

    hosts = texts(c, "tr.mape-host")
    assert [x.split("\t")[:2] for x in hosts] == [["192.168.1.23", "20"], ["192.168.1.40", "12"],
                                                  ["192.168.1.7", "9"], ["fe80::1c2d:3eff:fe4f:5a6b", "2"]]
    assert text(c, ".mape-kept-out").startswith("5190, 62530\u201362533")
    shot("en-ok")


def test_ok_state_in_japanese(page, shot):
    c = page(fixtures.ok(), lang="ja")
    h = health(c)
    assert "MAP-E は正常に動作中" in h["state"][2]
    assert "IPv4 106.73.34.51、ポート 240 個" in h["state"][2]
    assert "接続中" in h["wan6"][2]
    assert "NAT ルール設定済み" in h["firewall"][2]
    v = kv(c)
    assert v["provider"] == "JPNE v6プラス"           # provider_name_ja from the mapping
    assert v["ipv4"] == "106.73.34.51（256 契約で共有）"
    assert "全 15 ポートセットを使用中" in text(c, ".mape-ports-summary")
    assert texts(c, "#mape-status-section h3, #mape-ports-section h3, #mape-calc-section h3") == ["状態", "ポートセット", "計算ツール"]
    assert text(c, "#mape-recompute") == "今すぐ再計算"
    assert text(c, '[id="cbi-mape-config-mtu"] .cbi-value-title') == "トンネル MTU"
    # luci-base's own strings come from its catalog (compiled by its po2lmo): the page footer
    assert c.js("return document.querySelector('.cbi-page-actions .cbi-button-save').innerText") == "保存"
    shot("ja-ok")


def test_applying_state(page, shot):
    c = page(fixtures.applying())
    h = health(c)
    assert h["state"][:2] == ("amber", AMBER)
    assert "Applying the MAP-E configuration" in h["state"][2]
    assert "prefix changed: applying 106.73.34.51 PSID 69" in h["state"][2]
    assert h["tunnel"][:2] == ("red", RED) and "Tunnel interface wan is not up." in h["tunnel"][2]
    assert "usage is not known yet" in text(c, ".mape-ports-summary")
    assert text(c, ".mape-ranges").startswith("5200\u20135215, 9296\u20139311")
    assert texts(c, "#mape-status .mape-history tr:not(.table-titles)")[0].split("\t")[1:] == \
        ["Prefix changed", "240b:11:2233:4500::/56", "106.73.34.51"]
    shot("en-applying")
    c = page(fixtures.applying(), lang="ja")
    assert "MAP-E の設定を反映中" in health(c)["state"][2]
    shot("ja-applying")


def test_unsupported_prefix_state(page, shot):
    c = page(fixtures.unsupported())
    h = health(c)
    assert h["state"][:2] == ("red", RED)
    assert "No MAP-E rule for this IPv6 prefix" in h["state"][2]
    assert "enter its rule under \"Custom MAP rule\"" in h["state"][2]
    assert "no MAP-E rule covers 2001:db8:1234:5600::/56" in h["state"][2]
    assert h["tunnel"][:2] == ("grey", GREY)
    assert h["firewall"][:2] == ("red", RED)
    assert "[object" not in c.js("return document.getElementById('mape-status').innerText")
    # the state already says it: no duplicate warning box
    assert c.js("return document.querySelectorAll('#mape-status .alert-message.warning').length") == 0
    assert text(c, ".mape-noports") == "No port sets yet: MAP-E has not been set up."
    shot("en-unsupported-prefix")


def test_error_state_with_warnings(page, shot):
    c = page(fixtures.error())
    h = health(c)
    assert h["state"][:2] == ("red", RED) and "MAP-E failed" in h["state"][2]
    assert h["tunnel"][:2] == ("red", RED)
    assert h["firewall"][:2] == ("red", RED) and "NAT rules missing" in h["firewall"][2]
    assert "jump to mape_srcnat not found" in h["firewall"][2]
    warnings = c.js("return Array.from(document.querySelectorAll('#mape-status .alert-message.warning')).map("
                    "function(e) { return [e.getAttribute('data-code'), e.innerText]; });")
    codes = [w[0] for w in warnings]
    assert codes == ["offload-enabled", "gl-acceleration", "config-invalid", "pd-not-subnet-0"]
    assert "Flow offloading is on" in warnings[0][1]
    assert "turn off Network Acceleration" in warnings[1][1]
    assert "the last good settings stay in use: /etc/config/mape: option 'mtu' must be" in warnings[2][1]
    assert "not the first /60 of your /56" in warnings[3][1]
    assert "Reading the connection table failed: conntrack: permission denied" in text(c, ".mape-ports-summary")
    assert texts(c, "#mape-status .mape-history tr:not(.table-titles)")[0].split("\t")[1] == "Rolled back"
    assert text(c, ".mape-last-error") == "Last error (2025-11-26 04:05:40): uci commit network failed: I/O error"
    shot("en-error")


def test_error_state_in_japanese(page, shot):
    c = page(fixtures.error(), lang="ja")
    body = c.js("return document.getElementById('mape-status').innerText")
    assert "MAP-E でエラーが発生" in body
    assert "フローオフロードが有効です" in body
    assert "ネットワークアクセラレーション" in body
    assert "ロールバック" in body
    assert "/56 の先頭の /60 ではありません" in body
    assert "最後のエラー" in body
    shot("ja-error")


STRIP_JS = ("return Array.from(document.querySelectorAll('.mape-strip-cell')).map(function(e) {"
            " return getComputedStyle(e).backgroundColor; });")


def is_grey(rgb):
    r, g, b = [int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    return max(r, g, b) - min(r, g, b) <= 12


def test_daemon_down_shows_last_known_values(page, luci, shot):
    """The daemon is gone (stopped through its init script) and its last document is left:
    the real plugin marks it stopped and keeps the rest, port usage included (#12 points 1, 3)."""
    c = page(fixtures.ok(), running=False)
    _, raw = luci.router.ubus.call("mape", "status")
    assert raw["running"] is False and raw["state"] == "stopped" and raw["ports"]["used"] == 55
    banner = text(c, ".mape-down")
    assert banner.startswith("The mape-py service is not running.")
    assert '"/etc/init.d/mape-py start"' in banner          # the init script's real name (point 1)
    assert "last known ones, from 2025-11-26 04:06:40" in banner
    h = health(c)
    assert h["state"][:2] == ("red", RED)
    for row in ("wan6", "tunnel", "firewall"):
        assert h[row][:2] == ("grey", GREY), row
        assert "(last known)" in h[row][2]
    assert "MAP-E up:" not in h["state"][2]
    # port usage of a stopped daemon is history, not live: grey, and says so (point 3)
    summary = text(c, ".mape-ports-summary")
    assert "(last known)" in summary, summary
    assert c.js("return document.querySelector('.mape-ports-summary .mape-badge').getAttribute('data-health')") == "grey"
    cells = c.js(STRIP_JS)
    assert len(cells) == 15 and all(is_grey(x) for x in cells), cells
    bars = c.js("return Array.from(document.querySelectorAll('.mape-bar > div')).map(function(b) {"
                " return getComputedStyle(b).backgroundColor; });")
    assert bars and all(is_grey(x) for x in bars), bars
    shot("en-stopped")

    c = page(fixtures.ok(), lang="ja", running=False)
    banner = text(c, ".mape-down")
    assert "/etc/init.d/mape-py start" in banner and "/etc/init.d/mape start" not in banner
    assert "（最終取得値）" in text(c, ".mape-ports-summary")
    shot("ja-stopped")


def test_daemon_never_started(page, luci):
    """No document at all: the plugin's minimal one. Nothing is "last known" (#12 point 8)."""
    c = page(None)
    _, raw = luci.router.ubus.call("mape", "status")
    assert raw == {"version": 1, "running": False, "state": "stopped", "state_reason": "mape-py daemon is not running"}
    assert text(c, ".mape-down").startswith("The mape-py service is not running.")
    assert "last known" not in text(c, ".mape-down")
    body = text(c, "#mape-status")
    assert "(last known)" not in body and "Unknown" not in body, body
    assert text(c, ".mape-noports") == "No port sets yet: MAP-E has not been set up."


def no_stack(s):
    return " at " not in s and ".js:" not in s and "\n  " not in s


def test_status_service_missing(page, shot):
    """mape-py's rpcd plugin is not there (rpcd reloaded without it): the real error, said
    once, without the JavaScript stack L.raise appends to it (#12 point 4)."""
    c = page(fixtures.ok(), plugin=False)
    banner = text(c, ".mape-down")
    assert banner.startswith("Cannot read the MAP-E status.")
    assert "Object not found" in banner
    assert no_stack(banner), banner
    assert text(c, ".mape-noports") == "No port information without the status service."
    # the settings stay usable
    assert c.js("return !!document.querySelector('[id=\"cbid.mape.config.mtu\"]')")
    shot("en-no-plugin")


def test_recompute_notice_has_no_stack(page, luci):
    """The object vanishes while the page is open: the notice carries the error, no stack."""
    c = page(fixtures.ok())
    luci.router.remove_plugin()
    c.find("#mape-recompute").click()
    c.wait("return document.querySelector('#maincontent > .alert-message') != null;")
    notice = notices(c)[0]
    assert "Recompute failed" in notice and "Object not found" in notice, notice
    assert no_stack(notice), notice


def test_status_follows_the_daemon_without_reload(page, luci):
    c = page(fixtures.applying())
    c.js("window.__sameDocument = 'yes';")
    polls = len(luci.server.calls_to("mape", "status"))
    luci.router.show(fixtures.ok())
    c.wait("var e = document.querySelector('#mape-status tr[data-row=state]');"
           "return e && e.innerText.indexOf('MAP-E is working') >= 0;",
           message="the status did not follow the daemon")
    assert "All 15 port sets in use" in text(c, ".mape-ports-summary")
    luci.router.show(fixtures.ok(), running=False)
    c.wait("return !!document.querySelector('.mape-down');", message="the daemon-down banner did not appear")
    assert c.js("return window.__sameDocument") == "yes"
    assert len(luci.server.calls_to("mape", "status")) > polls + 1


# -- actions ---------------------------------------------------------------------------------

def test_recompute_button(page, luci):
    c = page(fixtures.ok())
    c.find("#mape-recompute").click()
    c.wait("return document.querySelector('#maincontent > .alert-message') != null;")
    assert [x[1:] for x in luci.server.calls_to("mape", "recompute")] == [("mape", "recompute", {}, 0)]
    assert "recomputing the mapping" in notices(c)[0]
    # the real plugin signalled the (frozen) daemon
    assert signal.SIGHUP in luci.router.pending_signals()
    assert denied(luci) == []


def test_held_shows_the_edits_and_the_ways_out(page, luci, shot):
    """State "held" (issue 11 point 19): the edited options with both values, and three
    buttons that go through the real rpcd and plugin to `mape-py held ...`."""
    c = page(fixtures.held())
    h = health(c)
    assert h["state"][:2] == ("amber", AMBER) and "changed by someone else" in h["state"][2]
    rows = texts(c, ".mape-held tr[data-option]")
    assert rows == ["network.wan.mtu\t'1454'\t'1460'", "network.wan.proto\t'pppoe'\t'map'"]
    # proto cannot become a mape setting: "adopt" is not offered
    assert c.js("return document.getElementById('mape-adopt').disabled") is True
    shot("en-held")
    c.find("#mape-give-up").click()
    c.wait("return document.querySelector('#maincontent > .alert-message') != null;")
    assert [x[1:] for x in luci.server.calls_to("mape", "give_up")] == [("mape", "give_up", {}, 0)]
    assert "no longer manages MAP-E" in notices(c)[0]
    assert "mape.config.enabled='0'" in luci.router.uci_show()
    assert signal.SIGHUP in luci.router.pending_signals()
    assert denied(luci) == []
    c = page(fixtures.held(), lang="ja")
    assert "手動で変更" in text(c, ".mape-held")
    shot("ja-held")


def test_recompute_when_the_daemon_is_down(page):
    c = page(fixtures.ok(), lang="ja", running=False)
    c.find("#mape-recompute").click()
    c.wait("return document.querySelector('#maincontent > .alert-message') != null;")
    assert "再計算に失敗しました：mape-py daemon is not running" in notices(c)[0]


def test_read_only_user(page, luci, shot):
    """A LuCI login with read-only access (rpcd `list read '*'`): everything is shown, the
    form is read-only, and "Recompute now" (ubus write ACL) is disabled (#12 point 5)."""
    c = page(fixtures.ok(), user="viewer")
    assert c.js("return document.getElementById('mape-recompute').disabled") is True
    assert c.js("return document.querySelector(arguments[0]).disabled", field("mtu")) is True
    assert c.js("return Array.from(document.querySelectorAll('.cbi-page-actions button')).every("
                "function(b) { return b.disabled; })") is True
    # reading works: status, and the calculator; the page asked for nothing it may not do
    c.find("#mape-calc-prefix").send_keys("240b:11:2233:4400::/56\n")
    c.wait("return !!document.querySelector('#mape-calc-result tr[data-key=ipv4]');")
    assert [x[0] for x in luci.server.calls_to("mape", "calc")] == ["viewer"]
    assert denied(luci) == []
    # rpcd refuses the write for this session: the button would only fail
    reply = luci.server.rpc(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "call", "params": [
        luci.router.sessions["viewer"]["sid"], "mape", "recompute", {}]}).encode())
    assert reply["error"] == {"code": -32002, "message": "Access denied"}
    shot("en-read-only")
    c = page(fixtures.ok(), user="viewer", lang="ja")
    assert c.js("return document.getElementById('mape-recompute').disabled") is True
    shot("ja-read-only")


def test_calculator(page, luci, shot):
    c = page(fixtures.ok())
    box = c.find("#mape-calc-prefix")
    box.send_keys("2400:4050:1234:5600::/56")
    c.find("#mape-calc-button").click()
    c.wait("return !!document.querySelector('#mape-calc-result tr[data-key=ipv4]');")
    assert [x[1:] for x in luci.server.calls_to("mape", "calc")] == [
        ("mape", "calc", {"prefix": "2400:4050:1234:5600::/56"}, 0)]
    v = kv(c, "#mape-calc-result")
    assert v["provider"] == "OCN Virtual Connect"
    assert v["ipv4"] == "153.240.72.209"
    assert v["psid"] == "22 (length 6, offset 6)"
    assert v["ports"] == "1008 ports in 63 sets"
    assert v["port_sets"].startswith("1376\u20131391, 2400\u20132415")
    assert v["br"] == "2001:380:a120::9"
    assert v["rule"] == "2400:4050:1000::/38 \u2192 153.240.64.0/20, EA 18, PSID 6, offset 6"
    c.js("document.getElementById('mape-calc-section').scrollIntoView()")
    shot("en-calculator")

    box.clear()
    box.send_keys("2001:db8::/56\n")     # Enter runs it too
    c.wait("return !!document.querySelector('#mape-calc-result .alert-message.error');")
    assert "no MAP-E rule covers 2001:db8::/56" in text(c, "#mape-calc-result")
    assert denied(luci) == []


# -- settings ----------------------------------------------------------------------------------

def test_settings_validation_explains_itself(page, luci, shot):
    c = page(fixtures.ok())
    retype(c, field("nat_mark_mask"), "0x0000f000")
    invalid, tip, inline = field_state(c, field("nat_mark_mask"))
    assert invalid
    assert "overlaps 0x0000f000" in tip and "VPN policy routing" in tip and "mape-py refuses it" in tip
    retype(c, field("nat_mark_mask"), "0x00ff0000")
    assert field_state(c, field("nat_mark_mask")) == [False, None, None]
    retype(c, field("nat_mark_mask"), "0xzz")
    assert "hexadecimal" in field_state(c, field("nat_mark_mask"))[1]
    retype(c, field("nat_mark_mask"), "0x0")
    assert "at least one bit" in field_state(c, field("nat_mark_mask"))[1]
    retype(c, field("nat_mark_mask"), "0x00ff0000")

    retype(c, field("mtu"), "1501")
    assert "1500 or less; on FLET'S lines use 1460" in field_state(c, field("mtu"))[1]
    assert "40-byte IPv6 header" in field_state(c, field("mtu"))[1]
    retype(c, field("mtu"), "1500")
    assert field_state(c, field("mtu"))[0] is False   # allowed, as mape-py allows it (status warns)
    retype(c, field("mtu"), "1000")
    assert "at least 1280" in field_state(c, field("mtu"))[1]
    retype(c, field("mtu"), "14x0")
    assert "whole number" in field_state(c, field("mtu"))[1]

    retype(c, field("wan6_iface"), "wan 6")
    assert "Network \u2192 Interfaces" in field_state(c, field("wan6_iface"))[1]
    retype(c, field("recheck"), "5")
    assert "10 or more" in field_state(c, field("recheck"))[1]
    retype(c, field("nat_tcp_time_wait"), "300")
    assert "between 1 and 120" in field_state(c, field("nat_tcp_time_wait"))[1]
    for typed, why in (("lots", "a number of connections (60) or a share"), ("150%", "at most 100%"),
                       ("70000", "at most 65535")):
        retype(c, field("nat_host_cap"), typed)
        assert why in field_state(c, field("nat_host_cap"))[1], typed
    retype(c, field("nat_host_cap"), "25%")
    assert not field_state(c, field("nat_host_cap"))[0]

    # the port list refuses what is not a port, and says why
    retype(c, field("nat_keep_out"), "5190\n")
    retype(c, field("nat_keep_out"), "70000\n")
    assert "ports go from 1 to 65535" in field_state(c, field("nat_keep_out"))[1]
    assert c.js("return Array.from(document.querySelectorAll('.cbi-dynlist .item input')).map("
                "function(e) { return e.value; });") == ["5190"]
    retype(c, field("nat_keep_out"), "5210-5200\n")
    assert "must not be larger than the last" in field_state(c, field("nat_keep_out"))[1]
    c.js("document.querySelector(arguments[0]).scrollIntoView()", field("mtu"))
    shot("en-settings-validation")

    # saving with invalid fields stops with LuCI's error and writes nothing
    c.js("document.activeElement.blur();")
    c.find(".cbi-page-actions .cbi-button-save").click()
    c.wait("return document.querySelectorAll('.cbi-input-invalid').length > 0 && "
           "(document.body.classList.contains('modal-overlay-active') || "
           "document.querySelectorAll('#maincontent > .alert-message').length > 0);")
    assert luci.server.calls_to("uci", "set") == []


def test_validation_message_under_the_field(page):
    """The message is under the field as well as in LuCI's tooltip, on every revision: 21.02's
    validation.js fires validation-failure without `detail` (#12 point 2)."""
    c = page(fixtures.ok())
    retype(c, field("mtu"), "1000")
    invalid, tip, inline = field_state(c, field("mtu"))
    assert invalid and "at least 1280" in tip
    assert inline == tip
    retype(c, field("mtu"), "1460")
    assert field_state(c, field("mtu")) == [False, None, None]


def daemon_accepts(option, value):
    """What mape-py itself says of /etc/config/mape with this one value (src/mape/settings.py
    and the NAT option parser): True, or the daemon's message."""
    from mape.core.errors import InputError
    from mape.core.nat import parse_nat_options
    from mape.settings import settings_from_text
    text = "config mape 'config'\n\toption %s '%s'\n" % (option, value)
    try:
        settings_from_text(text, nat_parser=parse_nat_options)
    except InputError as e:
        return str(e)
    return True


PAGE_VALID_JS = """
var el = document.querySelector(arguments[0]), out = [];
arguments[1].forEach(function(v) {
    el.value = v;
    el.dispatchEvent(new Event('keyup', { bubbles: true }));
    el.dispatchEvent(new Event('blur', { bubbles: true }));
    out.push(!el.classList.contains('cbi-input-invalid'));
});
el.value = arguments[2];
el.dispatchEvent(new Event('keyup', { bubbles: true }));
return out;
"""

SAMPLES = {
    "nat_mark_mask": ["0x00ff0000", "0X00FF0000", "016711680", "16711680", "00", "0x0000f000", "0xf000",
                      "0x0", "0x00_ff_0000", "16_711_680", "0b1", "0o7", "0o17", "4294967295", "4294967296",
                      "0x100000000", "0xffffffff", "0x00000000ff", "abc", "0x", "1e6", "+0x10000", "-1"],
    "wan6_iface": ["wan6", "wan_6", "wan.6", "wan-6", "-wan6", ".wan6", "_wan6", "abcdefghijklmno",
                   "abcdefghijklmnop", "wan 6", "w\u00e4n6", "wan", "wan6pd", "6"],
    "wan_iface": ["wan", "wanx", "abcdefghijk", "abcdefghijkl", "wan6", "wan6pd", "w-a.n", "wan/1"],
    "nat_host_cap": ["0", "00", "0%", "1", "60", "00060", "000060", "65535", "65536", "25%", "25 %", " 25% ",
                     "100%", "101%", "1%", "%", "25%%", "-1", "1.5", "lots", "off", "６０", "25\t%", "60\n"],
}


@pytest.mark.parametrize("option", sorted(SAMPLES))
def test_page_validation_agrees_with_the_daemon(page, option):
    """The page accepts exactly what mape-py then accepts (#12 point 6): a mark mask as
    Python's int(x, 0) reads it (leading zeros refused), interface names of at most 15
    characters (wan: 11, for map-<wan>), all different."""
    c = page(fixtures.ok())
    default = {"nat_mark_mask": "", "wan6_iface": "wan6", "wan_iface": "wan", "nat_host_cap": ""}[option]
    on_page = c.js(PAGE_VALID_JS, field(option), SAMPLES[option], default)
    daemon = [daemon_accepts(option, v) for v in SAMPLES[option]]
    disagree = [(v, p, d) for v, p, d in zip(SAMPLES[option], on_page, daemon) if p != (d is True)]
    assert disagree == [], "value, page accepts, daemon says: %r" % disagree


def test_validation_message_is_text_not_html(page):
    """A message that quotes what was typed is inserted as text (#12 point 7)."""
    c = page(fixtures.ok())
    typed = '<img src="x" onerror="window.__injected=1">'
    retype(c, field("nat_keep_out"), typed + "\n")
    invalid, tip, inline = field_state(c, field("nat_keep_out"))
    assert invalid and typed in tip
    assert inline == tip                 # the markup shows as typed, as text
    assert c.js("return document.querySelectorAll('.mape-field-error *').length") == 0
    time.sleep(0.3)
    assert c.js("return window.__injected") is None


def test_settings_save_writes_uci(page, luci):
    c = page(fixtures.ok())
    retype(c, field("mtu"), "1454")
    retype(c, field("nat_mark_mask"), "0x0f000000")
    c.js("var s = document.querySelector(arguments[0]); s.value = 'nftables';"
         "s.dispatchEvent(new Event('change', {bubbles: true}));", field("nat_backend"))
    c.js("var s = document.querySelector(arguments[0]); s.value = 'hash';"
         "s.dispatchEvent(new Event('change', {bubbles: true}));", field("nat_strategy"))
    retype(c, field("nat_keep_out"), "5190\n")
    retype(c, field("nat_keep_out"), "5200-5210\n")
    retype(c, field("nat_tcp_time_wait"), "30")
    c.js("document.querySelector(arguments[0]).click();", field("nat_guard"))
    c.js("document.activeElement.blur();")
    c.find(".cbi-page-actions .cbi-button-save").click()
    wait_for(lambda: luci.server.calls_to("uci", "set"), message="Save sent no uci set")
    wait_for(lambda: staged(luci)["config"].get("mtu") == "1454", message="rpcd did not stage the change")
    conf = staged(luci)["config"]
    assert {k: conf.get(k) for k in ("mtu", "nat_mark_mask", "nat_backend", "nat_strategy", "nat_keep_out",
                                     "nat_tcp_time_wait", "nat_guard")} == {
        "mtu": "1454", "nat_mark_mask": "0x0f000000", "nat_backend": "nftables", "nat_strategy": "hash",
        "nat_keep_out": ["5190", "5200-5210"], "nat_tcp_time_wait": "30", "nat_guard": "0"}
    assert all(x[4] == 0 for x in luci.server.calls_to("uci")), luci.server.calls_to("uci")
    assert denied(luci) == []

    # what the form wrote is what mape-py's own parsers accept
    from mape.core.nat import parse_nat_options
    from mape.settings import settings_from_text
    settings = settings_from_text(uci_text(staged(luci)), nat_parser=parse_nat_options)
    assert settings.mtu == 1454 and settings.nat["strategy"] == "hash"
    assert settings.nat["kept_out"] == [(5190, 5190), (5200, 5210)]
    assert settings.nat["mark_mask"] == 0x0F000000 and settings.nat["guard"] is False
    assert settings.nat["tcp_time_wait"] == 30


def test_save_and_apply(page, luci):
    """Save & Apply: uci set, then luci-base's apply_rollback (rpcd's uci apply with
    rollback) and confirm, as on a router: /etc/config/mape is committed."""
    c = page(fixtures.ok())
    retype(c, field("recheck"), "600")
    c.js("document.activeElement.blur();")
    c.find(".cbi-page-actions .cbi-button-apply").click()
    wait_for(lambda: luci.bed.sh("uci -q get mape.config.recheck", check=False).strip() == "600",
             message="Save & Apply did not commit /etc/config/mape")
    wait_for(lambda: luci.server.dispatcher.rollback_pending() is None, message="the apply was not confirmed")
    sets = luci.server.calls_to("uci", "set")
    assert sets and sets[0][3]["values"]["recheck"] == "600" and sets[0][4] == 0
    assert denied(luci) == []
    from mape.core.nat import parse_nat_options
    from mape.settings import settings_from_text
    assert settings_from_text(luci.bed.read("/etc/config/mape"), nat_parser=parse_nat_options).recheck == 600
    # LuCI reloads the page once the apply is confirmed
    c.wait("return !!document.getElementById('mape-status') && "
           "document.querySelector(arguments[0]).value == '600';", field("recheck"))


def test_custom_rule_section(page, luci, shot):
    c = page(fixtures.ok())
    c.find("#cbi-mape-rule .cbi-button-add").click()
    c.wait("return !!document.querySelector('#cbi-mape-rule .cbi-section-node');")
    sid = c.js("return document.querySelector('#cbi-mape-rule .cbi-section-node').id.replace(/^cbi-mape-/, '')")

    def rf(name):
        return field(name, sid)
    retype(c, rf("ip6prefix"), "240b:10::/31")
    retype(c, rf("ipaddr"), "106.72.0.0")
    retype(c, rf("ip4prefixlen"), "15")
    retype(c, rf("ealen"), "25")
    retype(c, rf("psidlen"), "6")
    invalid, tip, _ = field_state(c, rf("psidlen"))
    assert invalid and "the PSID length must be 8" in tip and "32 \u2212 15 = 17" in tip
    retype(c, rf("psidlen"), "8")
    assert field_state(c, rf("psidlen"))[0] is False
    retype(c, rf("ealen"), "40")
    assert "more than 64" in field_state(c, rf("ealen"))[1]
    retype(c, rf("ealen"), "25")
    retype(c, rf("offset"), "12")
    assert "more than the 16 bits" in field_state(c, rf("offset"))[1]
    retype(c, rf("offset"), "4")
    retype(c, rf("peeraddr"), "2404:9200:225:100::64:1:2:3:4")
    assert "is not an IPv6 address" in field_state(c, rf("peeraddr"))[1]
    c.js("document.getElementById('cbi-mape-rule').scrollIntoView()")
    shot("en-custom-rule")
    retype(c, rf("peeraddr"), "2404:9200:225:100::64")
    retype(c, rf("ip6prefix"), "240b:10::/31")
    c.js("document.activeElement.blur();")
    c.find(".cbi-page-actions .cbi-button-save").click()
    wait_for(lambda: any(s.get(".type") == "rule" and s.get("peeraddr") for s in staged(luci).values()),
             message="the rule was not staged")
    rule = [s for s in staged(luci).values() if s.get(".type") == "rule"][0]
    assert {k: rule.get(k) for k in ("ip6prefix", "ipaddr", "ip4prefixlen", "ealen", "psidlen", "offset",
                                     "peeraddr", "legacymap", "enabled")} == {
        "ip6prefix": "240b:10::/31", "ipaddr": "106.72.0.0", "ip4prefixlen": "15", "ealen": "25",
        "psidlen": "8", "offset": "4", "peeraddr": "2404:9200:225:100::64", "legacymap": "1", "enabled": "1"}
    assert denied(luci) == []
    # and the engine accepts what the form wrote
    from mape.core.rules import parse_user_rule
    parse_user_rule({k: v for k, v in rule.items() if not k.startswith(".")})


def test_long_drop_down_labels_fit(page, luci, shot):
    """Every option of the settings' drop-downs is readable in the theme's select (#12 point 8)."""
    for lang in ("en", "ja"):
        c = page(fixtures.ok(), lang=lang)
        cut = c.js("""
            var canvas = document.createElement('canvas'), ctx = canvas.getContext('2d'), out = [];
            document.querySelectorAll('#maincontent select').forEach(function(s) {
                var cs = getComputedStyle(s);
                ctx.font = cs.fontWeight + ' ' + cs.fontSize + ' ' + cs.fontFamily;
                var room = s.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 20;
                Array.from(s.options).forEach(function(o) {
                    var w = ctx.measureText(o.text).width;
                    if (w > room) out.push([s.id, o.text, Math.round(w), Math.round(room)]);
                });
            });
            return out;""")
        assert cut == [], "%s: cut off (select, label, text px, room px): %r" % (lang, cut)
    c.js("document.querySelector(arguments[0]).scrollIntoView()", field("nat_backend"))
    shot("ja-settings")


def test_validation_messages_in_japanese(page, shot):
    c = page(fixtures.ok(), lang="ja")
    retype(c, field("mtu"), "abc")
    assert field_state(c, field("mtu"))[1] == "MTU はバイト数を整数で入力します。例：1460"
    retype(c, field("nat_mark_mask"), "0xf000")
    assert "0x0000f000 と重なっています" in field_state(c, field("nat_mark_mask"))[1]
    retype(c, field("nat_keep_out"), "0\n")
    assert field_state(c, field("nat_keep_out"))[1] == "「0」：ポート番号は 1～65535 です。"
    c.js("document.activeElement.blur(); document.querySelector(arguments[0]).scrollIntoView()", field("mtu"))
    shot("ja-settings-validation")


@pytest.mark.parametrize("state", sorted(fixtures.STATES))
def test_every_state_renders_in_japanese_without_english_leftovers(page, state):
    doc, running = fixtures.STATES[state]
    c = page(doc(), lang="ja", running=running)
    labels = texts(c, "#mape-status tr[data-row] strong, h2, h3, .cbi-value-title, .cbi-page-actions button")
    english = [x for x in labels if x and x.isascii() and x.strip() not in ("MAP-E", "PSID", "")]
    assert english == [], english


# -- Status > Overview -------------------------------------------------------------------------

CARD = "#view .mape-overview"


def card_rows(c):
    return c.js("var card = document.querySelector(arguments[0]);"
                "return card ? Array.from(card.querySelectorAll('tr')).map(function(tr) { return tr.innerText; }) : null;",
                CARD)


def test_status_overview_card(page, luci, shot):
    """luci-mod-status' own Status > Overview (status/index.js) finds our include in /www
    through rpcd's file plugin and renders it among its own."""
    c = page(fixtures.ok(), path=OVERVIEW)
    assert c.js("var h = document.querySelector(arguments[0]).closest('.cbi-section').querySelector('h3');"
                "return h.innerText;", CARD) == "MAP-E"
    rows = card_rows(c)
    assert rows[0] == "Status\tMAP-E is working"
    assert c.js("return document.querySelector('#view .mape-overview .mape-badge').getAttribute('data-health')") == "green"
    assert "Shared IPv4 address\t106.73.34.51" in rows
    assert "Port sets\tAll 15 port sets in use" in rows
    assert "Ports\t55 of 240 ports in use (23%)" in rows
    assert c.js("return document.querySelector('#view .mape-overview a').getAttribute('href')") == \
        "/cgi-bin/luci/admin/services/mape"
    listed = [x for x in luci.server.calls_to("file", "list") if "status/include" in x[3].get("path", "")]
    assert listed and listed[0][4] == 0
    c.js("document.querySelector(arguments[0]).scrollIntoView()", CARD)
    shot("en-overview")

    # a stopped daemon: its last port usage is history, greyed and said so (#12 point 3)
    c = page(fixtures.ok(), lang="ja", path=OVERVIEW, running=False)
    rows = card_rows(c)
    assert rows[0] == "状態\tmape-py サービスが停止しています"
    assert "事業者\tJPNE v6プラス" in rows
    ports = [r for r in rows if r.startswith(("ポートセット\t", "ポート\t"))]
    assert ports and all("（最終取得値）" in r for r in ports), rows
    c.js("document.querySelector(arguments[0]).scrollIntoView()", CARD)
    shot("ja-overview-stopped")

    c = page(fixtures.ok(), path=OVERVIEW, plugin=False)
    assert c.js("return document.querySelector(arguments[0])", CARD) is None


def test_status_overview_card_stopped_in_english(page):
    c = page(fixtures.ok(), path=OVERVIEW, running=False)
    rows = card_rows(c)
    assert rows[0] == "Status\tThe mape-py service is not running"
    assert "Port sets\t15 of 15 port sets in use (last known)" in rows or \
        "Port sets\tAll 15 port sets in use (last known)" in rows, rows
    assert "Ports\t55 of 240 ports in use (23%) (last known)" in rows, rows
    badge = c.js("return Array.from(document.querySelectorAll('#view .mape-overview .mape-badge')).map("
                 "function(b) { return b.getAttribute('data-health'); });")
    assert badge[0] == "red" and all(b == "grey" for b in badge[1:]), badge


def test_leaking_ports_are_red(page, shot):
    c = page(fixtures.leaking())
    leak = text(c, ".mape-leak")
    assert leak.startswith("Ports leak: 4 connections use source ports outside your port sets.")
    # the theme paints error alerts with a red gradient
    bg = c.js("var cs = getComputedStyle(document.querySelector('.mape-leak'));"
              "return cs.backgroundImage + ' ' + cs.backgroundColor;")
    import re
    r, g, b = [int(x) for x in re.search(r"rgba?\((\d+), (\d+), (\d+)", bg).groups()]
    assert r > g + 40 and r > b + 40, bg
    assert "70 connections" in text(c, ".mape-ports-summary")
    c.js("document.getElementById('mape-ports-section').scrollIntoView()")
    shot("en-leak")


def test_per_host_cap_and_nearly_exhausted_pool(page, shot):
    """Per-host usage against the cap, the host at its cap marked, and the >80 % warning;
    in Japanese too."""
    c = page(fixtures.crowded())
    hosts = c.js("return Array.from(document.querySelectorAll('tr.mape-host')).map(function(tr) {"
                 " var b = tr.querySelector('.mape-bar > div');"
                 " return [tr.cells[0].innerText, tr.cells[1].innerText.trim(), b.style.width,"
                 " tr.classList.contains('mape-at-cap')]; });")
    assert hosts == [["192.168.1.23", "60 / 60 at the cap", "100%", True], ["192.168.1.40", "12 / 60", "20%", False]]
    assert "at most 60 connections" in text(c, ".mape-host-cap")
    assert text(c, ".mape-pool-warning") == "Ports nearly exhausted: 200 of the 235 ports NAT may use are taken (85%)."
    assert any("More than 80% of the ports are in use" in w for w in texts(c, "#mape-status .alert-message"))
    c.js("document.getElementById('mape-ports-section').scrollIntoView()")
    shot("en-host-cap")
    c = page(fixtures.crowded(), lang="ja")
    assert text(c, ".mape-pool-warning") == ("ポートが残りわずかです: 200 個のポートが使用中です(NAT が使えるポート 235 個の"
                                             "うち 85%)。")
    assert "上限に到達" in texts(c, "tr.mape-host")[0]
    c.js("document.getElementById('mape-ports-section').scrollIntoView()")
    shot("ja-host-cap")


# documents recorded from the real daemon + rpcd plugin (tests/service/show_status.py)

def test_daemon_document_pd56(page):
    c = page(fixtures.daemon_doc("daemon-ok-pd56.json"))
    h = health(c)
    assert h["state"][:2] == ("green", GREEN) and "IPv4 106.73.34.51 with 240 ports" in h["state"][2]
    assert h["tunnel"][:2] == ("green", GREEN) and h["firewall"][:2] == ("green", GREEN)
    assert "one jump, 14 chains, 63 rules" in h["firewall"][2]
    summary = text(c, ".mape-ports-summary")
    assert "3 of 15 port sets in use" in summary and "3 of 240 ports in use (1%)" in summary
    assert c.js("return document.querySelector('.mape-ports-summary .mape-badge').getAttribute('data-health')") == "amber"
    cells = c.js("return Array.from(document.querySelectorAll('.mape-strip-cell')).map(function(e) {"
                 " return e.getAttribute('data-used'); });")
    assert cells == ["1", "1", "1"] + ["0"] * 12
    assert [x.split("\t")[:2] for x in texts(c, "tr.mape-host")] == [["192.168.8.23", "2"], ["192.168.8.40", "1"]]
    assert [x.split("\t")[1] for x in texts(c, "#mape-status .mape-history tr:not(.table-titles)")] == \
        ["Configuration applied", "Prefix changed"]


def test_daemon_document_unsupported_prefix(page):
    c = page(fixtures.daemon_doc("daemon-unsupported-prefix.json"), lang="ja")
    h = health(c)
    assert h["state"][:2] == ("red", RED)
    assert "この IPv6 プレフィックスに対応する MAP-E ルールがありません" in h["state"][2]
    assert "no MAP-E rule covers 2a01:4f8:c0c:1200::/56" in h["state"][2]
    assert text(c, ".mape-noports") == "ポートセットはまだありません：MAP-E が設定されていません。"
    row = texts(c, "#mape-status .mape-history tr:not(.table-titles)")[0].split("\t")
    assert row[1:] == ["プレフィックス変更", "2a01:4f8:c0c:1200::/56", "-"]


# -- UPnP / NAT-PMP / PCP (issue 14 point 2) ---------------------------------------------------

def test_ports_reserved_for_upnp_and_its_leases(page, shot):
    st = fixtures.upnp()
    tops = [a for a, _ in st["upnp"]["reserved"]]    # the top port of every set
    c = page(st)
    kept = c.js("return Array.from(document.querySelectorAll('tr.mape-set .mape-kept')).map("
                "function(td) { return td.innerText; });")
    assert kept[0] == "%d: reserved for UPnP / NAT-PMP / PCP\n%d/udp: UPnP lease \"Xbox\" for " \
                      "192.168.1.50:3074" % (tops[0], tops[0])
    assert kept[1:] == ["%d: reserved for UPnP / NAT-PMP / PCP" % p for p in tops[1:]]
    shot("en-upnp")
    c = page(st, lang="ja")
    last = c.js("return Array.from(document.querySelectorAll('tr.mape-set .mape-kept'))[0].innerText;")
    assert "UPnP / NAT-PMP / PCP 用に確保" in last and "UPnP 割り当て「Xbox」" in last
    shot("ja-upnp")


# -- port forwards (issue 14 point 1) ----------------------------------------------------------

def test_port_forwards_and_use_a_free_allowed_port(page, luci, shot):
    """The forwards against the port sets, what keeps each set's ports out of NAT, and "use a
    free allowed port" through the real rpcd and plugin to `mape-py forward use-free`, which
    changes the redirect in the bed's /etc/config/firewall with the real uci."""
    bed = luci.router.bed
    firewall = bed.read("/etc/config/firewall")
    bed.write("/etc/config/firewall", firewall + fixtures.REDIRECTS)
    try:
        c = page(fixtures.forwards())
        rows = c.js("return Array.from(document.querySelectorAll('tr.mape-forward')).map(function(tr) {"
                    " return [tr.getAttribute('data-section'), tr.innerText,"
                    " tr.querySelector('.mape-badge').getAttribute('data-health')]; });")
        assert [(r[0], r[2]) for r in rows] == [("game", "green"), ("nas", "red")]
        assert rows[0][1].split("\t")[:4] == ["Game", "tcp/udp", "5190", "192.168.1.20:3074"]
        assert "Reachable: in your port sets" in rows[0][1]
        assert "the border relay drops it" in rows[1][1] and "Use free allowed port 9280" in rows[1][1]
        assert c.js("return document.querySelectorAll('.mape-use-free').length") == 1
        kept = c.js("return Array.from(document.querySelectorAll('tr.mape-set .mape-kept')).map("
                    "function(td) { return td.innerText; });")
        assert kept[0] == '5190: port forward "Game"' and kept[-1] == "62530\u201362533: kept out of NAT"
        assert kept[1] == "-"
        assert "See \"Port forwards\" below" in text(c, ".mape-warnings")
        shot("en-forwards")
        c.find(".mape-use-free").click()
        c.wait("return document.querySelector('#maincontent > .alert-message') != null;")
        assert [x[1:] for x in luci.server.calls_to("mape", "use_free_port")] == [
            ("mape", "use_free_port", {"section": "nas"}, 0)]
        assert 'Port forward "NAS" now uses port 9280' in notices(c)[0], notices(c)
        shown = luci.router.uci_show("firewall")
        assert "firewall.nas.src_dport='9280'" in shown and "firewall.nas.dest_port='8080'" in shown
        assert denied(luci) == []
        c = page(fixtures.forwards(), lang="ja")
        assert "空いている利用可能ポート 9280 を使う" in text(c, ".mape-forwards")
        assert "ポートフォワード「Game」" in text(c, "tr.mape-set .mape-kept")
        shot("ja-forwards")
    finally:
        bed.write("/etc/config/firewall", firewall)
