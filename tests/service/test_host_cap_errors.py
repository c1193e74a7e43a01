"""The per-host cap is an opt-in that needs a kernel module (xt_connlimit / nft_connlimit):
when the ruleset with it cannot be loaded, the one-line error says so."""
import os
import stat

import pytest

from mape.core.nat import NatSpec
from mape.shell import netfilter


@pytest.mark.parametrize("backend,tool,module", [("nftables", "nft", "nft_connlimit"),
                                                 ("iptables", "iptables-restore", "xt_connlimit")])
def test_a_failing_ruleset_with_the_cap_names_the_module(tmp_path, monkeypatch, backend, tool, module):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("nft", "iptables-restore", "iptables-save"):
        script = bindir / name
        if name == "iptables-save":
            script.write_text("#!/bin/sh\necho '*%s'; echo COMMIT\n" % "filter")
        else:
            script.write_text("#!/bin/sh\ncat >/dev/null\necho 'Error: Could not process rule: No such file or "
                              "directory' >&2\nexit 1\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ.get("PATH", "")))
    monkeypatch.setenv("MAPE_PY_IPTABLES", "iptables")
    kw = dict(wan_if="map-wan", backend=backend)
    with pytest.raises(netfilter.NetfilterError) as e:
        netfilter.apply(NatSpec.from_params("192.0.2.1", 5, 4, 8, host_cap="25%", **kw), run_dir=str(tmp_path))
    assert str(e.value).endswith("(option nat_host_cap needs the kernel module %s)" % module)
    assert "\n" not in str(e.value)
    with pytest.raises(netfilter.NetfilterError) as e:   # without the cap: no such hint
        netfilter.apply(NatSpec.from_params("192.0.2.1", 5, 4, 8, **kw), run_dir=str(tmp_path))
    assert "nat_host_cap" not in str(e.value)
