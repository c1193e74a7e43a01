"""ubus event stream decoding and classification, and conntrack parsing (fuzzed)."""
import json

from hypothesis import given, settings, strategies as st

from mape.core.conntrack import port_usage
from mape.shell.ubus import classify, decode_stream

LINE = '{ "interface.update": {"interface":"wan6","up":true,"updated":["prefixes"]} }\n'


def test_decode_single_and_indented_and_partial():
    values, rest, garbage = decode_stream(LINE + '{ "network.interface": {\n\t"action": "ifup",\n\t"interface": "wan6"\n} }\n{"a"')
    assert [list(v) for v in values] == [["interface.update"], ["network.interface"]]
    assert rest == '{"a"' and garbage == 0


def test_decode_skips_junk_lines():
    values, rest, garbage = decode_stream("Command failed\n" + LINE)
    assert len(values) == 1 and garbage == 1 and rest == ""


def test_classify():
    ifs = ("wan6", "wan")
    assert classify(json.loads(LINE), ifs) == "wan6 interface.update(prefixes)"
    assert classify({"network.interface": {"action": "ifdown", "interface": "wan"}}, ifs) == "wan ifdown"
    assert classify({"network.interface": {"action": "ifup", "interface": "lan"}}, ifs) is None
    assert classify({"ubus.object.add": {"id": 1, "path": "network.interface"}}, ifs) == "netifd restarted"
    assert classify([1], ifs) is None and classify({"a": 1, "b": 2}, ifs) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.just(LINE), st.just("{"), st.just("}\n")), max_size=10))
def test_fuzz_decode_stream(chunks):
    buffer = ""
    decoded = 0
    for chunk in chunks:
        text = buffer + chunk
        values, buffer, _ = decode_stream(text)
        assert text.endswith(buffer)                 # what is kept is the unread tail
        decoded += len(values)
        for v in values:
            assert isinstance(v, dict)
            reason = classify(v, ("wan6",))
            assert reason is None or reason.startswith("wan6 ") or reason == "netifd restarted"
    # a whole event line after whatever came before is never lost for good
    values, _, _ = decode_stream(buffer + "\n" + LINE + LINE)
    assert {"interface.update": json.loads(LINE)["interface.update"]} in values


CT = ("ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.23 dst=1.2.3.4 sport=51234 dport=443 "
      "src=1.2.3.4 dst=106.73.34.51 sport=443 dport=5190 [ASSURED] mark=0 zone=0 use=2\n"
      "ipv4     2 udp      17 29 src=192.168.8.23 dst=8.8.8.8 sport=5353 dport=53 src=8.8.8.8 "
      "dst=106.73.34.51 sport=53 dport=9281 mark=0 use=1\n"
      "icmp     1 29 src=192.168.8.5 dst=8.8.8.8 type=8 code=0 id=77 src=8.8.8.8 dst=106.73.34.51 "
      "type=0 code=0 id=5185 mark=0 use=1\n"
      "tcp      6 10 TIME_WAIT src=192.168.8.9 dst=9.9.9.9 sport=1 dport=2 src=9.9.9.9 dst=192.168.1.2 sport=2 dport=1\n")


def test_port_usage_proc_and_conntrack_L_formats():
    u = port_usage(CT, "106.73.34.51", [(5184, 5199), (9280, 9295), (13376, 13391)])
    assert u["capacity"] == 48 and u["used"] == 3 and u["connections"] == 3
    assert [s["used"] for s in u["sets"]] == [2, 1, 0]
    assert u["top_hosts"] == [{"host": "192.168.8.23", "count": 2}, {"host": "192.168.8.5", "count": 1}]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_port_usage(text):
    u = port_usage(text + "\n" + CT, "106.73.34.51", [(5184, 5199)])
    assert u["connections"] >= 1
