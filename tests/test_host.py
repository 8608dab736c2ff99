"""The host CPU as a device: probed once, cached, and usable like any catalog device."""

import json

import pytest

import hwmodels as hw
from hwmodels import host


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_probe_measures_positive_ceilings_and_caches_them(cache_dir):
    d = hw.host_device()
    assert d.kind == "cpu" and d.name == "host-cpu"
    assert d.hbm_bytes_per_s > 1e8  # any machine streams more than 100 MB/s
    assert d.peak("fp32") > 1e8 and d.peak("fp64") > 1e8
    files = list((cache_dir / "kernelab").glob("host-*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["measured"]["stream_copy_bytes_per_s"] == d.hbm_bytes_per_s


def test_cached_result_is_reused_without_probing(cache_dir, monkeypatch):
    first = hw.host_device()
    monkeypatch.setattr(host, "probe", lambda: pytest.fail("probed again despite the cache"))
    assert hw.host_device() == first


def test_host_is_a_device_with_measured_sources_and_a_roofline(cache_dir):
    d = hw.get_device("host")
    assert d.provenance["hbm_bytes_per_s"].source.kind == "measured"
    rf = hw.roofline(d, "fp32", calibrated=True)
    assert [c.level for c in rf.ceilings] == ["hbm"]
    assert rf.peak_flops_per_s == d.peak("fp32")
