"""Services -> MAP-E rendered by headless Chromium in the LuCI stand-in.

Asserts what a person sees (texts, colours, bars, translations), what the page asks
rpcd for (ubus calls, checked against the app's ACL), and saves screenshots under
test-artifacts/luci/.
"""
import time

import pytest

from tests.luci import fixtures

GREEN, AMBER, RED, GREY = "rgb(46, 125, 50)", "rgb(230, 138, 0)", "rgb(198, 40, 40)", "rgb(117, 117, 117)"

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


def field(name, sid="config"):
    return '[id="cbid.mape.%s.%s"]' % (sid, name)


def wait_for(cond, timeout=30, message="condition not reached"):
    """Wait for a server-side condition (a bound for failures only, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


def no_denied_calls(server):
    denied = [c for c in server.calls if c[2].get("__denied")]
    assert denied == [], "ACL denied: %r" % denied


def test_ok_state(page, server, shot):
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
    shot("01-ok-en")


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
    shot("02-ok-ja")


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
    shot("03-applying-en")


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
    shot("04-unsupported-prefix-en")


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
    shot("05-error-en")


def test_error_state_in_japanese(page, shot):
    c = page(fixtures.error(), lang="ja")
    body = c.js("return document.getElementById('mape-status').innerText")
    assert "MAP-E でエラーが発生" in body
    assert "フローオフロードが有効です" in body
    assert "ネットワークアクセラレーション" in body
    assert "ロールバック" in body
    assert "/56 の先頭の /60 ではありません" in body
    assert "最後のエラー" in body
    shot("06-error-ja")


def test_daemon_down_shows_last_known_values(page, shot):
    c = page(fixtures.stopped())
    banner = text(c, ".mape-down")
    assert banner.startswith("The mape-py service is not running.")
    assert '"/etc/init.d/mape start"' in banner
    assert "last known ones, from 2025-11-26 04:06:40" in banner
    h = health(c)
    assert h["state"][:2] == ("red", RED)
    for row in ("wan6", "tunnel", "firewall"):
        assert h[row][:2] == ("grey", GREY), row
        assert "(last known)" in h[row][2]
    assert "MAP-E up:" not in h["state"][2]
    assert "usage is not known yet" in text(c, ".mape-ports-summary")
    shot("07-daemon-down-en")


def test_daemon_never_started(page):
    c = page(fixtures.never_started())
    assert text(c, ".mape-down").startswith("The mape-py service is not running.")
    assert "last known" not in text(c, ".mape-down")
    assert text(c, ".mape-noports") == "No port sets yet: MAP-E has not been set up."


def test_status_service_missing(page, shot):
    c = page(fixtures.ok(), mape_object=False)
    banner = text(c, ".mape-down")
    assert banner.startswith("Cannot read the MAP-E status.")
    assert "ubus error 4" in banner
    assert text(c, ".mape-noports") == "No port information without the status service."
    # the settings stay usable
    assert c.js("return !!document.querySelector('[id=\"cbid.mape.config.mtu\"]')")
    shot("08-status-service-missing-en")


def test_status_follows_the_daemon_without_reload(page, server):
    c = page(fixtures.applying())
    c.js("window.__sameDocument = 'yes';")
    polls = len(server.calls_to("mape", "status"))
    server.status = fixtures.ok()
    c.wait("var e = document.querySelector('#mape-status tr[data-row=state]');"
           "return e && e.innerText.indexOf('MAP-E is working') >= 0;",
           message="the status did not follow the daemon")
    assert "All 15 port sets in use" in text(c, ".mape-ports-summary")
    server.status = fixtures.stopped()
    c.wait("return !!document.querySelector('.mape-down');", message="the daemon-down banner did not appear")
    assert c.js("return window.__sameDocument") == "yes"
    assert len(server.calls_to("mape", "status")) > polls + 1


def test_recompute_button(page, server, shot):
    c = page(fixtures.ok())
    c.find("#mape-recompute").click()
    c.wait("return document.querySelector('.alert-message.info') != null;")
    assert server.calls_to("mape", "recompute") == [("mape", "recompute", {})]
    assert "recomputing the mapping" in text(c, ".alert-message.info")
    no_denied_calls(server)


def test_recompute_when_the_daemon_is_down(page, server):
    c = page(fixtures.stopped(), lang="ja")
    c.find("#mape-recompute").click()
    c.wait("return document.querySelector('.alert-message.error:not(.mape-down)') != null;")
    assert text(c, ".alert-message.error:not(.mape-down)").endswith(
        "再計算に失敗しました：mape-py daemon is not running")


def test_calculator(page, server, shot):
    c = page(fixtures.ok())
    box = c.find("#mape-calc-prefix")
    box.send_keys("2400:4050:1234:5600::/56")
    c.find("#mape-calc-button").click()
    c.wait("return !!document.querySelector('#mape-calc-result tr[data-key=ipv4]');")
    assert server.calls_to("mape", "calc") == [("mape", "calc", {"prefix": "2400:4050:1234:5600::/56"})]
    v = kv(c, "#mape-calc-result")
    assert v["provider"] == "OCN Virtual Connect"
    assert v["ipv4"] == "153.240.72.209"
    assert v["psid"] == "22 (length 6, offset 6)"
    assert v["ports"] == "1008 ports in 63 sets"
    assert v["port_sets"].startswith("1376\u20131391, 2400\u20132415")
    assert v["br"] == "2001:380:a120::9"
    assert v["rule"] == "2400:4050:1000::/38 \u2192 153.240.64.0/20, EA 18, PSID 6, offset 6"
    c.js("document.getElementById('mape-calc-section').scrollIntoView()")
    shot("09-calculator-en")

    box.clear()
    box.send_keys("2001:db8::/56\n")     # Enter runs it too
    c.wait("return !!document.querySelector('#mape-calc-result .alert-message.error');")
    assert text(c, "#mape-calc-result").startswith("no MAP-E rule covers 2001:db8::/56")
    no_denied_calls(server)


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


def test_settings_validation_explains_itself(page, server, shot):
    c = page(fixtures.ok())
    retype(c, field("nat_mark_mask"), "0x0000f000")
    invalid, tip, inline = field_state(c, field("nat_mark_mask"))
    assert invalid
    assert "overlaps 0x0000f000" in tip and "VPN policy routing" in tip and "mape-py refuses it" in tip
    assert inline == tip                      # shown under the field as well as in the tooltip
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

    # the port list refuses what is not a port, and says why
    retype(c, field("nat_keep_out"), "70000\n")
    assert "ports go from 1 to 65535" in field_state(c, field("nat_keep_out"))[1]
    assert c.js("return Array.from(document.querySelectorAll('.cbi-dynlist .item')).map("
                "function(e) { return e.getAttribute('data-value'); });") == ["5190"]
    retype(c, field("nat_keep_out"), "5210-5200\n")
    assert "must not be larger than the last" in field_state(c, field("nat_keep_out"))[1]
    c.js("document.querySelector(arguments[0]).scrollIntoView()", field("mtu"))
    shot("10-settings-validation-en")

    # saving with invalid fields stops with LuCI's error dialog and writes nothing
    # (leave the list input first: at the very bottom of the page its re-validation on blur
    # makes the page reflow between chromedriver's mousedown and mouseup)
    c.js("document.activeElement.blur();")
    c.find(".cbi-page-actions .cbi-button-save").click()
    c.wait("return document.body.classList.contains('modal-overlay-active');")
    assert "contains an invalid input value" in text(c, "#modal_overlay .modal")
    assert server.calls_to("uci", "set") == []


def test_settings_save_writes_uci(page, server):
    c = page(fixtures.ok())
    retype(c, field("mtu"), "1454")
    retype(c, field("nat_mark_mask"), "0x0f000000")
    c.js("var s = document.querySelector(arguments[0]); s.value = 'nftables';"
         "s.dispatchEvent(new Event('change', {bubbles: true}));", field("nat_backend"))
    c.js("var s = document.querySelector(arguments[0]); s.value = 'hash';"
         "s.dispatchEvent(new Event('change', {bubbles: true}));", field("nat_strategy"))
    retype(c, field("nat_keep_out"), "5200-5210\n")
    retype(c, field("nat_tcp_time_wait"), "30")
    c.find(field("nat_guard")).click()
    c.find(".cbi-page-actions .cbi-button-save").click()
    server_sets = lambda: server.calls_to("uci", "set")  # noqa: E731
    wait_for(server_sets, message="Save sent no uci set")
    sets = server_sets()
    assert len(sets) == 1
    _, _, args = sets[0]
    assert args["config"] == "mape" and args["section"] == "config"
    assert args["values"] == {"mtu": "1454", "nat_mark_mask": "0x0f000000", "nat_backend": "nftables",
                              "nat_strategy": "hash", "nat_keep_out": ["5190", "5200-5210"],
                              "nat_tcp_time_wait": "30", "nat_guard": "0"}
    no_denied_calls(server)

    # what the form wrote is what mape-py's own parsers accept
    from mape.core.nat import parse_nat_options
    from mape.core.ucifile import parse
    from mape.settings import settings_from_sections
    conf = server.config["mape"]["config"]
    lines = ["config mape 'config'"]
    for k, v in conf.items():
        if k.startswith("."):
            continue
        for item in (v if isinstance(v, list) else [v]):
            lines.append("\t%s %s '%s'" % ("list" if isinstance(v, list) else "option", k, item))
    settings = settings_from_sections(parse("\n".join(lines) + "\n"), nat_parser=parse_nat_options)
    assert settings.mtu == 1454 and settings.nat["strategy"] == "hash"
    assert settings.nat["kept_out"] == [(5190, 5190), (5200, 5210)]
    assert settings.nat["mark_mask"] == 0x0F000000 and settings.nat["guard"] is False
    assert settings.nat["tcp_time_wait"] == 30


def test_custom_rule_section(page, server, shot):
    c = page(fixtures.ok())
    c.find("#cbi-mape-rule .cbi-button-add").click()
    c.wait("return !!document.querySelector('#cbi-mape-rule .cbi-section-node');")
    adds = server.calls_to("uci", "add")
    assert len(adds) == 1 and adds[0][2]["type"] == "rule"
    sid = c.js("return document.querySelector('#cbi-mape-rule .cbi-section-node-wrap').getAttribute('data-section-id')")

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
    shot("11-custom-rule-en")
    retype(c, rf("peeraddr"), "2404:9200:225:100::64")
    retype(c, rf("ip6prefix"), "240b:10::/31")
    c.find(".cbi-page-actions .cbi-button-save").click()
    wait_for(lambda: "peeraddr" in server.config["mape"].get(sid, {}), message="the rule was not saved")
    rule = server.config["mape"][sid]
    assert rule[".type"] == "rule"
    assert {k: rule.get(k) for k in ("ip6prefix", "ipaddr", "ip4prefixlen", "ealen", "psidlen", "offset",
                                     "peeraddr", "legacymap", "enabled")} == {
        "ip6prefix": "240b:10::/31", "ipaddr": "106.72.0.0", "ip4prefixlen": "15", "ealen": "25",
        "psidlen": "8", "offset": "4", "peeraddr": "2404:9200:225:100::64", "legacymap": "1", "enabled": "1"}
    no_denied_calls(server)

    # and the engine accepts what the form wrote
    from mape.core.rules import parse_user_rule
    parse_user_rule({k: v for k, v in rule.items() if not k.startswith(".")})


@pytest.mark.parametrize("state", sorted(fixtures.STATES))
def test_every_state_renders_in_japanese_without_english_leftovers(page, state):
    c = page(fixtures.STATES[state](), lang="ja")
    labels = texts(c, "#mape-status tr[data-row] strong, #mape-view-headings, h3, .cbi-value-title")
    english = [x for x in labels if x and x.isascii() and x not in ("MAP-E", "PSID")]
    assert english == [], english


def test_status_overview_card(page, shot):
    c = page(fixtures.ok(), include="75_mape")
    assert text(c, "#status-include h3") == "MAP-E"
    rows = texts(c, "#status-include tr")
    assert rows[0] == "Status\tMAP-E is working"
    assert c.js("return document.querySelector('#status-include .mape-badge').getAttribute('data-health')") == "green"
    assert "Shared IPv4 address\t106.73.34.51" in rows
    assert "Port sets\tAll 15 port sets in use" in rows
    assert "Ports\t55 of 240 ports in use (23%)" in rows
    assert c.js("return document.querySelector('#status-include a').getAttribute('href')") == \
        "/cgi-bin/luci/admin/services/mape"
    shot("12-status-overview-card-en")

    c = page(fixtures.stopped(), lang="ja", include="75_mape")
    assert texts(c, "#status-include tr")[0] == "状態\tmape-py サービスが停止しています"
    assert "事業者\tJPNE v6プラス" in texts(c, "#status-include tr")

    c = page(fixtures.ok(), include="75_mape", mape_object=False)
    assert c.js("return document.getElementById('status-include')") is None


def test_leaking_ports_are_red(page, shot):
    c = page(fixtures.leaking())
    leak = text(c, ".mape-leak")
    assert leak.startswith("Ports leak: 4 connections use source ports outside your port sets.")
    assert c.js("return getComputedStyle(document.querySelector('.mape-leak')).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert "70 connections" in text(c, ".mape-ports-summary")
    c.js("document.getElementById('mape-ports-section').scrollIntoView()")
    shot("13-leak-en")


# documents recorded from the real daemon + rpcd plugin (tests/service/show_status.py)

def test_daemon_document_pd56(page, server):
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
    # the daemon's document has no ports.kept_out: the configured list is shown
    assert text(c, ".mape-kept-out").startswith("5190")
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


def test_daemon_down_through_the_real_rpcd_plugin(page, tmp_path):
    """The recorded document, then the rpcd plugin run with no daemon: what LuCI gets."""
    import json
    import os
    import subprocess
    run = tmp_path / "run"
    run.mkdir()
    from mape.shell.statusfile import dumps      # the daemon's own serialisation
    (run / "status.json").write_text(dumps(fixtures.daemon_doc("daemon-ok-pd56.json")), encoding="utf-8")
    plugin = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "files", "usr", "libexec", "rpcd", "mape")
    assert os.path.exists(plugin), "mape-py's rpcd plugin is missing: %s" % plugin
    out = subprocess.run(["sh", plugin, "call", "status"], env=dict(os.environ, MAPE_PY_RUN_DIR=str(run)),
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    doc = json.loads(out)
    assert doc["running"] is False and doc["state"] == "stopped"
    c = page(doc)
    assert text(c, ".mape-down").startswith("The mape-py service is not running.")
    h = health(c)
    assert h["state"][:2] == ("red", RED)
    assert h["tunnel"][:2] == ("grey", GREY) and "(last known)" in h["tunnel"][2]


def test_save_and_apply(page, server):
    c = page(fixtures.ok())
    retype(c, field("recheck"), "600")
    c.js("document.activeElement.blur();")
    c.find(".cbi-page-actions .cbi-button-apply").click()
    wait_for(lambda: server.calls_to("uci", "confirm"), message="Save & Apply did not apply")
    names = [(o, m) for o, m, _ in server.calls if o == "uci" and m in ("set", "apply", "confirm")]
    assert names == [("uci", "set"), ("uci", "apply"), ("uci", "confirm")]
    # LuCI writes a list's default when the option is unset: the daemon's defaults, made explicit
    assert server.calls_to("uci", "set")[0][2]["values"] == {"recheck": "600", "nat_backend": "auto",
                                                             "nat_strategy": "rr"}
    no_denied_calls(server)


def test_validation_messages_in_japanese(page, shot):
    c = page(fixtures.ok(), lang="ja")
    retype(c, field("mtu"), "abc")
    assert field_state(c, field("mtu"))[1] == "MTU はバイト数を整数で入力します。例：1460"
    retype(c, field("nat_mark_mask"), "0xf000")
    assert "0x0000f000 と重なっています" in field_state(c, field("nat_mark_mask"))[1]
    retype(c, field("nat_keep_out"), "0\n")
    assert field_state(c, field("nat_keep_out"))[1] == "「0」：ポート番号は 1～65535 です。"
    c.js("document.activeElement.blur(); document.querySelector(arguments[0]).scrollIntoView()", field("mtu"))
    shot("14-settings-validation-ja")
