"""What-if devices: derived from the catalog or loaded from a user's file."""

import pytest

import hwmodels as hw


def test_doubling_hbm_bandwidth_changes_only_bandwidth_and_halves_the_ridge():
    base = hw.get_device("H100-SXM")
    fast = hw.derive(base, "H100-2xHBM", scale={"hbm_bytes_per_s": 2})
    assert fast.hbm_bytes_per_s == 2 * base.hbm_bytes_per_s
    assert fast.peak_flops_per_s == base.peak_flops_per_s
    assert fast.ridge_point("bf16") == pytest.approx(base.ridge_point("bf16") / 2)
    assert fast.derived_from == "H100-SXM"
    assert fast.provenance["hbm_bytes_per_s"].source.kind == "user"
    assert fast.provenance["sm_count"] == base.provenance["sm_count"]


def test_more_sms_scale_every_peak_and_shared_memory_bandwidth():
    base = hw.get_device("H100-SXM")
    big = hw.derive(base, scale={"sm_count": 1.5})
    assert big.sm_count == 198
    for dtype, peak in base.peak_flops_per_s.items():
        assert big.peak(dtype) == pytest.approx(1.5 * peak)
    assert big.smem_bytes_per_s == pytest.approx(1.5 * base.smem_bytes_per_s)
    assert big.hbm_bytes_per_s == base.hbm_bytes_per_s


def test_an_explicit_peak_wins_over_the_sm_scaling():
    big = hw.derive("H100-SXM", scale={"sm_count": 2}, set={"peak_flops_per_s.bf16": 1e15})
    assert big.peak("bf16") == 1e15
    assert big.peak("fp8") == pytest.approx(2 * hw.get_device("H100-SXM").peak("fp8"))


def test_derived_device_keeps_the_base_calibration_fractions():
    base = hw.get_device("H100-SXM")
    fast = hw.derive(base, "H100-2xHBM", scale={"hbm_bytes_per_s": 2})
    assert hw.calibration(fast).hbm_fraction == hw.calibration(base).hbm_fraction


def test_catalog_entry_is_untouched_by_a_derivation():
    before = hw.get_device("A100-SXM-80GB").hbm_bytes_per_s
    hw.derive("A100-SXM-80GB", scale={"hbm_bytes_per_s": 3})
    assert hw.get_device("A100-SXM-80GB").hbm_bytes_per_s == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale={"hbm_bytes": 2}), "did you mean 'hbm_bytes_per_s'"),
        (dict(scale={"hbm_bytes_per_s": 0}), "positive"),
        (dict(scale={"hbm_bytes_per_s": -1}), "positive"),
        (dict(set={"l2_bytes": "big"}), "positive"),
        (dict(scale={"sm_count": 1.3}), "integer"),
        (dict(scale={"tdp_w": 2}, set={"tdp_w": 3}), "both scaled and set"),
    ],
)
def test_bad_overrides_say_what_is_wrong(kwargs, message):
    with pytest.raises(hw.InvalidValueError, match=message):
        hw.derive("H100-SXM", **kwargs)


def test_whatif_file_loads_through_get_device(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "H100-fat"\nbase = "h100-sxm"\n[scale]\nhbm_bytes_per_s = 1.5\n[set]\nl2_bytes = 1e8\n')
    d = hw.get_device(str(path))
    assert d.name == "H100-fat"
    assert d.hbm_bytes_per_s == pytest.approx(1.5 * 3.35e12)
    assert d.l2_bytes == 1e8


@pytest.mark.parametrize(
    "text, field, problem",
    [
        ('name = "x"\nbase = "H100-SX"\n', "base", "did you mean 'H100-SXM'"),
        ('name = "x"\nbase = "H100-SXM"\n[scale]\nhbm_bytes_per_s = -2\n', "scale.hbm_bytes_per_s", "positive"),
        ('name = "x"\nbase = "H100-SXM"\n[scale]\nhbm = 2\n', "scale.hbm", "unknown device field"),
        ('base = "H100-SXM"\n', "name", "missing"),
        ('name = "x"\nbase = "H100-SXM"\ncolour = "red"\n', "colour", "unexpected"),
        ('name = "x"\nbase = "H100-SXM"\n[scale\n', "<file>", "not valid TOML"),
    ],
)
def test_bad_whatif_file_names_the_file_and_the_field(tmp_path, text, field, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(hw.DataFileError) as info:
        hw.load_device_file(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert problem in str(info.value)
