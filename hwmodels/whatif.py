"""What-if devices: a catalog device with some numbers changed, or a user's own device file.

``derive(base, name, scale={...}, set={...})`` returns a new frozen Device. Peaks
are rates per SM per clock times SMs times clock, so scaling ``sm_count`` or
``clock_hz`` scales every dense peak (and the shared-memory bandwidth) with it,
unless the peaks are set explicitly. Changed fields are recorded in the
provenance as ``user`` values naming the base, so the derivation is visible.

A what-if file is TOML::

    name = "H100-2xHBM"
    base = "H100-SXM"
    description = "H100 with twice the memory bandwidth"
    [scale]
    hbm_bytes_per_s = 2.0
    [set]
    l2_bytes = 100e6

A file without ``base`` is a full device file in the catalog's format.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from hwmodels.catalog import CATALOG, load_device_toml
from hwmodels.datafile import Source, Sourced, load_toml
from hwmodels.device import Device
from hwmodels.errors import DataFileError, InvalidValueError, UnknownNameError, close_matches

_NUMERIC = tuple(
    f.name
    for f in dataclasses.fields(Device)
    if f.name not in {"name", "vendor", "architecture", "kind", "memory_type", "compute_capability",
                      "link_name", "aliases", "description", "derived_from", "provenance", "peak_flops_per_s"}
)
_INTEGER = {"sm_count", "registers_per_sm", "max_registers_per_thread", "max_threads_per_sm",
            "max_ctas_per_sm", "warp_size", "link_count", "pcie_gen", "pcie_lanes"}
# Fields whose change scales every per-SM-per-clock rate.
_RATE_FIELDS = ("sm_count", "clock_hz")


def overridable_fields() -> tuple[str, ...]:
    """Names accepted by :func:`derive` in ``scale`` and ``set`` (``peak_flops_per_s.<dtype>`` too)."""
    return _NUMERIC + tuple(f"peak_flops_per_s.{d}" for d in ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4"))


def derive(
    base: Device | str,
    name: str | None = None,
    *,
    scale: Mapping[str, float] | None = None,
    set: Mapping[str, float] | None = None,  # noqa: A002 - mirrors the file's [set] table
    description: str = "",
) -> Device:
    """A new device equal to ``base`` except for the scaled and set fields."""
    base = CATALOG.get(base) if isinstance(base, str) else base
    scale, set = dict(scale or {}), dict(set or {})
    for key in (*scale, *set):
        _check_field(key)
    both = scale.keys() & set.keys()
    if both:
        raise InvalidValueError(f"field(s) {sorted(both)} both scaled and set; give each once")
    for key, factor in scale.items():
        _check_number(key, factor, "scale factor")
    for key, value in set.items():
        _check_number(key, value, "value")

    values = {f: getattr(base, f) for f in _NUMERIC}
    peaks = dict(base.peak_flops_per_s)
    changed: dict[str, str] = {}
    for key, factor in scale.items():
        target, current = (peaks, key.split(".", 1)[1]) if key.startswith("peak_flops_per_s.") else (values, key)
        if target.get(current) is None:
            raise InvalidValueError(f"cannot scale {key}: {base.name} has no value for it")
        target[current] = target[current] * factor
        changed[key] = f"{base.name} x {factor:g}"
    for key, value in set.items():
        target, current = (peaks, key.split(".", 1)[1]) if key.startswith("peak_flops_per_s.") else (values, key)
        target[current] = value
        changed[key] = f"set to {value:g}"

    rate = 1.0
    for key in _RATE_FIELDS:
        rate *= values[key] / getattr(base, key)
    if rate != 1.0:
        for dtype in peaks:
            if f"peak_flops_per_s.{dtype}" not in changed:
                peaks[dtype] *= rate
                changed[f"peak_flops_per_s.{dtype}"] = f"{base.name} x {rate:g} (SMs x clock)"
    for key in _INTEGER:
        if values[key] is not None:
            if float(values[key]) != int(values[key]):
                raise InvalidValueError(f"{key} must stay an integer, got {values[key]:g}")
            values[key] = int(values[key])

    name = name or f"{base.name}-whatif"
    user = Source(key="what-if", url=f"kernelab:derived-from:{base.name}", kind="user", title=f"what-if derived from {base.name}")
    provenance = dict(base.provenance)
    for key, how in changed.items():
        value = peaks[key.split(".", 1)[1]] if key.startswith("peak_flops_per_s.") else values[key]
        provenance[key] = Sourced(value=float(value), source=user, note=how)
    return dataclasses.replace(
        base,
        name=name,
        aliases=(),
        description=description or f"{base.name} with " + ", ".join(f"{k} {v}" for k, v in changed.items()),
        derived_from=base.derived_from or base.name,
        peak_flops_per_s=peaks,
        provenance=provenance,
        **values,
    )


def load_device_file(path: Path | str) -> Device:
    """A device from a user's TOML file: a what-if over a catalog device, or a full device."""
    path = Path(path)
    doc = load_toml(path)
    if "base" not in doc:
        return load_device_toml(path)
    allowed = {"name", "base", "description", "scale", "set"}
    for key in doc:
        if key not in allowed:
            raise DataFileError(path, key, f"unexpected in a what-if file; allowed: {', '.join(sorted(allowed))}")
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise DataFileError(path, "name", "missing or not a non-empty string")
    if not isinstance(doc["base"], str):
        raise DataFileError(path, "base", "must name a catalog device")
    try:
        base = CATALOG.get(doc["base"])
    except UnknownNameError as exc:
        raise DataFileError(path, "base", str(exc)) from None
    tables = {}
    for section in ("scale", "set"):
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise DataFileError(path, section, "must be a table of field = number")
        tables[section] = _flatten(table)
        for key, value in tables[section].items():
            try:
                _check_field(key)
                _check_number(key, value, "scale factor" if section == "scale" else "value")
            except InvalidValueError as exc:
                raise DataFileError(path, f"{section}.{key}", str(exc)) from None
    try:
        return derive(base, doc["name"], scale=tables["scale"], set=tables["set"], description=str(doc.get("description", "")))
    except InvalidValueError as exc:
        raise DataFileError(path, "scale/set", str(exc)) from None


def _flatten(table: Mapping, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_field(key: str) -> None:
    known = overridable_fields()
    if key not in known:
        hint = close_matches(key, known)
        raise InvalidValueError(
            f"unknown device field {key!r}" + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
            + f" (fields: {', '.join(known)})"
        )


def _check_number(key: str, value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise InvalidValueError(f"{key}: {what} must be a positive finite number, got {value!r}")
