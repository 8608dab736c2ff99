"""The device catalog and its calibration say what their sources say, and are consistent with themselves.

Each test is named after the claim it checks. Device tests are parametrized over every file in
``hwmodels/data/devices``, calibration tests over every file in ``hwmodels/data/calibration``, so a
new device is checked the moment its file lands.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest

from hwmodels.calibration import _SCALARS as CALIBRATION_SCALARS
from hwmodels.calibration import DATA_DIR as CALIBRATION_DIR
from hwmodels.calibration import calibration, measurements
from hwmodels.catalog import CATALOG, FIELD_UNITS
from hwmodels.catalog import DATA_DIR as DEVICE_DIR
from hwmodels.catalog import load_device_toml
from hwmodels.datafile import SOURCE_KINDS, load_toml
from hwmodels.device import Device
from hwmodels.errors import DataFileError, UnknownNameError

DEVICE_FILES = sorted(Path(str(DEVICE_DIR)).glob("*.toml"))
CALIBRATION_FILES = sorted(Path(str(CALIBRATION_DIR)).glob("*.toml"))

REQUIRED_DEVICES = (
    "V100-SXM2", "A100-SXM-40GB", "A100-SXM-80GB", "A100-PCIe-80GB", "H100-SXM", "H100-PCIe",
    "H100-NVL", "H200", "B200", "L4", "L40S", "RTX-4090", "RTX-3090", "A10G", "MI250X", "MI300X",
)  # fmt: skip

WEB_URL = re.compile(r"^https?://[^/\s]+\.[^/\s]+/\S*$")
REPO = Path(__file__).resolve().parents[1]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(params=DEVICE_FILES, ids=_ids(DEVICE_FILES))
def device_file(request) -> Path:
    return request.param


@pytest.fixture
def device(device_file: Path) -> Device:
    return CATALOG.get(load_device_toml(device_file).name)


@pytest.fixture(params=CALIBRATION_FILES, ids=_ids(CALIBRATION_FILES))
def calibration_file(request) -> Path:
    return request.param


def _numbers(device: Device) -> dict[str, float]:
    """Every number the device carries, keyed as in its provenance."""
    out = {name: getattr(device, name) for name in FIELD_UNITS if not name.startswith("peak_flops_per_s.")}
    out.update({f"peak_flops_per_s.{d}": v for d, v in device.peak_flops_per_s.items()})
    return {k: v for k, v in out.items() if v is not None}


def _cited_source_keys(doc: dict) -> set[str]:
    keys: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "value" in node and "source" in node:
                keys.add(node["source"])
            for v in node.values():
                walk(v)

    walk({k: v for k, v in doc.items() if k != "sources"})
    return keys


# --- The catalog's files and names ----------------------------------------------------------------


def test_every_device_file_parses_and_is_named_after_its_device(device_file: Path):
    device = load_device_toml(device_file)
    assert device_file.stem == device.name.lower()
    assert device.kind == "gpu"


def test_the_required_devices_are_all_in_the_catalog():
    missing = set(REQUIRED_DEVICES) - set(CATALOG.names())
    assert not missing, f"devices without a file: {sorted(missing)}"


def test_names_and_aliases_are_unique_ignoring_case():
    # An alias that repeats its own device's name in another case is dead weight, so it counts too.
    keys = Counter(key.lower() for d in CATALOG for key in (d.name, *d.aliases))
    assert [k for k, n in keys.items() if n > 1] == []


def test_every_name_and_alias_finds_its_device_in_any_case(device: Device):
    for key in (device.name, *device.aliases):
        for spelling in (key, key.lower(), key.upper(), f"  {key}  "):
            assert CATALOG.get(spelling).name == device.name


def test_lookup_is_case_insensitive_for_the_documented_example():
    assert CATALOG.get("h100-sxm").name == "H100-SXM"
    assert CATALOG.get("a100").name == "A100-SXM-80GB"
    assert CATALOG.get("4090").name == "RTX-4090"


def test_an_unknown_name_is_refused_with_close_matches():
    with pytest.raises(UnknownNameError) as err:
        CATALOG.get("H100-SX")
    assert "H100-SXM" in err.value.suggestions


# --- Every number has a source ----------------------------------------------------------------------


def test_every_number_cites_a_source_with_a_web_url_and_a_known_kind(device: Device):
    for name in _numbers(device):
        assert name in device.provenance, f"{device.name}.{name} has no source"
        source = device.provenance[name].source
        assert WEB_URL.match(source.url), f"{device.name}.{name}: {source.url!r} is not an http(s) URL"
        assert source.kind in SOURCE_KINDS


def test_derived_numbers_show_their_arithmetic(device: Device):
    for name, sourced in device.provenance.items():
        if sourced.source.kind == "derived":
            arithmetic = re.search(r"[x/*]", sourced.note) and re.search(r"=\s*[\d.]+", sourced.note)
            assert arithmetic, f"{device.name}.{name}: say the arithmetic in the note"


def test_every_declared_source_is_cited(device_file: Path):
    doc = load_toml(device_file)
    unused = set(doc.get("sources", {})) - _cited_source_keys(doc)
    assert not unused, f"{device_file.name}: sources never cited: {sorted(unused)}"


def test_the_mi250x_is_the_two_gcd_package_and_says_a_kernel_runs_on_one_gcd():
    mi250x = CATALOG.get("MI250X")
    assert mi250x.sm_count == 220
    assert "GCD" in mi250x.description and "one GCD" in mi250x.description
    assert "one GCD" in mi250x.provenance["sm_count"].note


# --- Peaks are dense ------------------------------------------------------------------------------


def test_bf16_and_fp16_tensor_peaks_are_equal(device: Device):
    if not {"bf16", "fp16"} <= set(device.dtypes):
        pytest.skip(f"{device.name} lists {device.dtypes}")
    assert device.peak("bf16") == device.peak("fp16")


def test_fp8_is_twice_bf16_on_hopper_ada_and_blackwell(device: Device):
    if device.architecture not in ("Hopper", "Ada Lovelace", "Blackwell"):
        pytest.skip(f"{device.architecture} is not an FP8 Tensor Core architecture")
    assert device.peak("fp8") == pytest.approx(2 * device.peak("bf16"), rel=0.01)


def test_tf32_is_half_of_bf16_on_a100_and_h100_class_parts(device: Device):
    if device.compute_capability not in ("8.0", "9.0"):
        pytest.skip("only the data-center Ampere and Hopper parts have full-rate TF32 at half of BF16")
    assert device.peak("tf32") == pytest.approx(device.peak("bf16") / 2, rel=0.01)


# Dense FP16/BF16 Tensor Core FLOP per clock per SM (or CU) with FP32 accumulate, by compute capability
# and product line, with where the rate comes from. A sparse figure taken for dense, or a wrong SM
# count, shows up as a factor of two or a step away from these.
TENSOR_FLOP_PER_CLOCK = {
    ("7.0", "data center"): (1024, "Volta whitepaper: 8 Tensor Cores x 64 FMA per SM per clock"),
    ("8.0", "data center"): (2048, "ml-engineering @744d01e: 4 Tensor Cores x 256 FMA per SM per clock (A100)"),
    ("8.6", "GeForce"): (512, "GA102 whitepaper: GeForce FP32-accumulate runs at half of the 1024 FP16-accumulate rate"),
    ("8.9", "GeForce"): (512, "Ada whitepaper: RTX 4090 FP32-accumulate is half of its 1024 FP16-accumulate rate"),
    ("8.9", "data center"): (1024, "Ada whitepaper / L4, L40S datasheets: full-rate FP32 accumulate, 4 Tensor Cores x 128 FMA"),
    ("9.0", "data center"): (4096, "ml-engineering @744d01e: 4 Tensor Cores x 512 FMA per SM per clock (H100)"),
    ("gfx90a", "data center"): (1024, "ml-engineering @744d01e: 4 matrix cores x 128 FMA per CU per clock (MI250X)"),
    ("gfx942", "data center"): (2048, "ml-engineering @744d01e: 4 matrix cores x 256 FMA per CU per clock (MI300X)"),
}
# Blackwell (10.0) is absent: no source at hand gives its per-SM rate, so nothing is asserted for it.

POWER_LIMITED_TENSOR_CLOCK = {
    "H100-NVL": "its datasheet Tensor peaks imply ~1545 MHz, 13% below the 1785 MHz maximum clock (350-400 W card)",
}


def _product_line(device: Device) -> str:
    return "GeForce" if device.name.startswith("RTX-") else "data center"


def test_tensor_peak_is_sms_times_clock_times_the_architectures_rate_within_10_percent(device: Device, request):
    dtype = next((d for d in ("bf16", "fp16") if d in device.dtypes), None)
    if dtype is None:
        pytest.skip(f"{device.name} lists no Tensor Core peak")
    key = (device.compute_capability, _product_line(device))
    if key not in TENSOR_FLOP_PER_CLOCK:
        pytest.skip(f"no sourced per-SM Tensor Core rate for {key}")
    if device.name in POWER_LIMITED_TENSOR_CLOCK:
        request.applymarker(pytest.mark.xfail(strict=True, reason=POWER_LIMITED_TENSOR_CLOCK[device.name]))
    expected, _why = TENSOR_FLOP_PER_CLOCK[key]
    implied = device.peak(dtype) / (device.sm_count * device.clock_hz)
    assert 0.9 <= implied / expected <= 1.1, f"{device.name}: {implied:.0f} FLOP/clk/SM implied, {expected} expected"


# --- Ridge points -----------------------------------------------------------------------------------


def test_ridge_point_is_the_peak_over_device_memory_bandwidth(device: Device):
    for dtype in device.dtypes:
        assert device.ridge_point(dtype) == pytest.approx(device.peak(dtype) / device.hbm_bytes_per_s, rel=1e-12)


def test_ridge_points_rise_from_shared_memory_to_l2_to_device_memory(device: Device):
    l2_bytes_per_s = calibration(device).l2_bytes_per_s  # measured, the same-vendor fallback, or unknown
    for dtype in device.dtypes:
        smem = device.ridge_point(dtype, device.smem_bytes_per_s)
        l2 = device.ridge_point(dtype, l2_bytes_per_s) if l2_bytes_per_s is not None else None
        ridges = [smem, l2, device.ridge_point(dtype)] if l2 is not None else [smem, device.ridge_point(dtype)]
        assert ridges == sorted(ridges) and len(set(ridges)) == len(ridges), f"{device.name} {dtype}"


# --- Calibration files --------------------------------------------------------------------------------


def test_every_calibration_file_names_a_catalog_device_by_its_canonical_name(calibration_file: Path):
    name = load_toml(calibration_file)["device"]
    assert CATALOG.get(name).name == name
    assert calibration_file.stem == name.lower()


def test_every_measurement_cites_a_web_source_and_states_its_setting(calibration_file: Path):
    measurement = measurements()[load_toml(calibration_file)["device"]]
    assert measurement.provenance, f"{calibration_file.name} holds no measurement"
    for key, sourced in measurement.provenance.items():
        url = sourced.source.url
        # kernelab's own runs are cited by their data file in this repository, which must exist
        in_repo = url.startswith("kernelab:") and (REPO / url.removeprefix("kernelab:")).is_file()
        assert WEB_URL.match(url) or in_repo, f"{calibration_file.name} {key}: {url!r}"
        assert sourced.source.kind in ("measured", "derived")
        assert sourced.note.strip(), f"{calibration_file.name} {key}: give the exact setting in the note"


def test_every_declared_calibration_source_is_cited(calibration_file: Path):
    doc = load_toml(calibration_file)
    unused = set(doc.get("sources", {})) - _cited_source_keys(doc)
    assert not unused, f"{calibration_file.name}: sources never cited: {sorted(unused)}"


def test_measured_values_never_exceed_the_datasheet_figures_they_relate_to(calibration_file: Path):
    name = load_toml(calibration_file)["device"]
    values = measurements()[name].values
    device = CATALOG.get(name)
    if "stream_bytes_per_s" in values:
        assert values["stream_bytes_per_s"] <= device.hbm_bytes_per_s
    if "l2_bytes_per_s" in values:
        assert device.hbm_bytes_per_s < values["l2_bytes_per_s"] <= device.smem_bytes_per_s
    if {"l2_latency_cycles", "dram_latency_cycles"} <= values.keys():
        assert values["l2_latency_cycles"] < values["dram_latency_cycles"]
    if {"kernel_launch_s", "graph_launch_s"} <= values.keys():
        assert values["graph_launch_s"] <= values["kernel_launch_s"]
    for key, flops in values.items():
        if key.startswith("gemm_flops_per_s."):
            dtype = key.split(".", 1)[1]
            assert dtype in device.dtypes, f"{name}: measured {dtype} GEMM but no {dtype} peak"
            assert flops <= device.peak(dtype), f"{name}: {dtype} GEMM {flops / 1e12:.1f} TF above the peak"


def test_each_calibration_quantity_is_measured_on_at_least_one_device():
    measured = {key for m in measurements().values() for key in m.values}
    for _section, _key, field in CALIBRATION_SCALARS:
        assert field in measured, f"no device measures {field}; the fallback has nothing to take a median of"


def test_a_dtype_no_device_measured_borrows_its_siblings_fraction_and_says_so():
    measured = {key.split(".", 1)[1] for m in measurements().values() for key in m.values if key.startswith("gemm_")}
    h100, b200 = CATALOG.get("H100-SXM"), CATALOG.get("B200")
    assert "int8" not in measured and "fp4" not in measured
    for device, dtype in ((h100, "int8"), (b200, "int8"), (b200, "fp4")):
        cal = calibration(device)
        assert cal.gemm_fraction[dtype] == cal.gemm_fraction["fp8"]
        source = cal.provenance[f"gemm_fraction.{dtype}"].source
        assert source.kind == "derived" and "fp8" in source.title


def test_calibration_works_for_every_device_with_fractions_in_zero_to_one(device: Device):
    cal = calibration(device)
    assert 0 < cal.hbm_fraction <= 1
    assert set(cal.gemm_fraction) == set(device.dtypes)
    for dtype, fraction in cal.gemm_fraction.items():
        assert 0 < fraction <= 1, f"{device.name} {dtype}: {fraction}"
    for value in (cal.l2_latency_cycles, cal.dram_latency_cycles, cal.kernel_launch_s, cal.graph_launch_s):
        assert value > 0 and math.isfinite(value)
    # L2 bandwidth per SM does not carry across vendors: unknown unless the vendor has a measurement.
    vendor_measured = any(
        "l2_bytes_per_s" in m.values and CATALOG.get(name).vendor == device.vendor for name, m in measurements().items()
    )
    assert (cal.l2_bytes_per_s is not None) == vendor_measured
    if cal.l2_bytes_per_s is not None:
        assert cal.l2_bytes_per_s > 0 and math.isfinite(cal.l2_bytes_per_s)


def test_fallbacks_are_derived_and_name_the_measured_devices_they_come_from(device: Device):
    cal = calibration(device)
    for quantity, sourced in cal.provenance.items():
        source = sourced.source
        if source.key == "sibling-dtype":
            assert source.kind == "derived" and quantity.startswith("gemm_fraction.")
            assert any(f"{d} " in source.title for d in cal.gemm_fraction), source.title
            continue
        if source.key != "fallback":
            in_repo = source.url.startswith("kernelab:") and (REPO / source.url.removeprefix("kernelab:")).is_file()
            assert (WEB_URL.match(source.url) or in_repo) and source.kind in ("measured", "derived")
            continue
        assert source.kind == "derived"
        scope, _, names = source.title.partition(": ")
        assert names, f"{device.name} {quantity}: the fallback names no device"
        for name in names.split(", "):
            assert name != device.name
            assert name in measurements(), f"{device.name} {quantity}: {name!r} has no measurements"
            if scope.endswith(f"{device.vendor} devices"):
                assert CATALOG.get(name).vendor == device.vendor


# --- Malformed device files are refused, naming the file and the field ----------------------------


VALID_DEVICE = """\
name = "Test-GPU"
vendor = "Test"
architecture = "Test"
kind = "gpu"

[sources]
spec = { url = "https://example.com/spec", kind = "datasheet" }

[compute]
sm_count = { value = 10, source = "spec" }
boost_clock_mhz = { value = 1000, source = "spec" }

[compute.peak_dense_tflops]
bf16 = { value = 10, source = "spec" }

[memory]
capacity_gb = { value = 16, source = "spec" }
bandwidth_gb_per_s = { value = 500, source = "spec" }
l2_cache_mib = { value = 4, source = "spec" }
smem_per_sm_kib = { value = 64, source = "spec" }
smem_bytes_per_clock_per_sm = { value = 128, source = "spec" }

[limits]
registers_per_sm = { value = 65536, source = "spec" }
max_threads_per_sm = { value = 2048, source = "spec" }
max_ctas_per_sm = { value = 32, source = "spec" }
warp_size = { value = 32, source = "spec" }
"""

MALFORMED = [
    # (case, text to replace, replacement, field the error must name)
    ("missing field", 'sm_count = { value = 10, source = "spec" }\n', "", "compute.sm_count"),
    ("missing GPU limit", 'warp_size = { value = 32, source = "spec" }\n', "", "limits.warp_size"),
    ("negative number", "{ value = 500,", "{ value = -500,", "memory.bandwidth_gb_per_s"),
    ("zero", "{ value = 1000,", "{ value = 0,", "compute.boost_clock_mhz"),
    ("string for a number", "{ value = 10, source", '{ value = "10", source', "compute.sm_count"),
    ("unknown source key", '{ value = 16, source = "spec" }', '{ value = 16, source = "nowhere" }', "memory.capacity_gb"),
    ("unknown source kind", 'kind = "datasheet"', 'kind = "rumour"', "sources.spec"),
    ("unknown dtype", "bf16 = {", "bf17 = {", "compute.peak_dense_tflops.bf17"),
    ("bad TOML", 'bf16 = { value = 10, source = "spec" }', 'bf16 = { value = 10, source = "spec"', "<file>"),
]


def test_the_template_for_malformed_files_is_itself_valid(tmp_path: Path):
    path = tmp_path / "test-gpu.toml"
    path.write_text(VALID_DEVICE)
    assert load_device_toml(path).name == "Test-GPU"


@pytest.mark.parametrize(("old", "new", "field"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_a_malformed_device_file_is_refused_naming_the_file_and_the_field(tmp_path: Path, old: str, new: str, field: str):
    assert old in VALID_DEVICE
    path = tmp_path / "test-gpu.toml"
    path.write_text(VALID_DEVICE.replace(old, new, 1))
    with pytest.raises(DataFileError) as err:
        load_device_toml(path)
    assert err.value.path == str(path)
    assert err.value.field == field
    assert str(path) in str(err.value) and repr(field) in str(err.value)


def test_every_device_link_is_in_the_interconnect_catalog(device: Device):
    from hwmodels.interconnect import get_link

    if device.link_name is not None:
        assert get_link(device.link_name).name == device.link_name
