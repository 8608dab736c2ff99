"""What a technique is: parameters with units and sources, a setting, and a prediction that explains itself.

A technique changes a baseline at the layer it acts on (``kernel``, ``step``,
``decode-loop``, ``scheduler``, ``cluster`` or ``training``). It declares its
parameters (:class:`Param`: unit, default, and where the default comes from)
and predicts a metric against its own baseline on a :class:`Setting` (device,
model, batch, context, tensor parallelism, precision). The prediction carries
both times, their breakdowns, and a sentence saying why.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import hwmodels as hw
from hwmodels.errors import InvalidValueError, UnknownNameError
from sim.model import ModelConfig, get_model
from sim.precision import Precision

LAYERS = ("kernel", "step", "decode-loop", "scheduler", "cluster", "training")


@dataclass(frozen=True)
class Param:
    """One parameter of a technique: its default, unit, meaning and where the default comes from."""

    name: str
    default: float | int | str
    unit: str
    description: str
    source: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()  # a name parameter's allowed values (empty: any name)

    def check(self, value):
        if isinstance(self.default, str):
            if not isinstance(value, str):
                raise InvalidValueError(f"{self.name} must be a name, got {value!r}")
            if self.choices and value not in self.choices:
                *rest, last = self.choices
                allowed = f"{', '.join(rest)} or {last}" if rest else last
                raise InvalidValueError(f"{self.name} must be {allowed}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidValueError(f"{self.name} must be a number ({self.unit}), got {value!r}") from None
        if not math.isfinite(value):
            raise InvalidValueError(f"{self.name} must be a finite number ({self.unit}), got {value!r}")
        if isinstance(self.default, int) and value != int(value):
            raise InvalidValueError(f"{self.name} must be a whole number ({self.unit}), got {value!r}")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise InvalidValueError(f"{self.name} must lie in [{self.minimum}, {self.maximum}] ({self.unit}), got {value!r}")
        return int(value) if isinstance(self.default, int) else float(value)


@dataclass(frozen=True)
class Setting:
    """Where a technique runs: device, model, batch, context (tokens already in the cache) and layout."""

    device: str | hw.Device = "H100-SXM"
    model: str | ModelConfig = "Llama-2-7B"
    batch: int = 1
    context: int = 1024
    tp: int = 1
    precision: Precision = Precision()

    def __post_init__(self) -> None:
        for name, lo in (("batch", 1), ("context", 0), ("tp", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise InvalidValueError(f"{name} must be an integer >= {lo}, got {v!r}")
            object.__setattr__(self, name, int(v))

    @property
    def gpu(self) -> hw.Device:
        return self.device if isinstance(self.device, hw.Device) else hw.get_device(self.device)

    @property
    def llm(self) -> ModelConfig:
        return self.model if isinstance(self.model, ModelConfig) else get_model(self.model)

    def as_dict(self) -> dict:
        return {"device": self.gpu.name, "model": self.llm.name, "batch": self.batch, "context": self.context, "tp": self.tp,
                "weight_bits": self.precision.weight_bits, "kv_bits": self.precision.kv_bits}


@dataclass(frozen=True)
class Prediction:
    """A technique's predicted metric against its baseline, with both costs and the reason."""

    technique: str
    metric: str
    value: float
    setting: dict
    baseline: dict
    technique_cost: dict
    breakdown: dict
    explain: str
    parameters: dict = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        return self.value if self.metric == "speedup" else None

    def as_dict(self) -> dict:
        return {"technique": self.technique, "metric": self.metric, "value": self.value,
                "speedup": self.value if self.metric == "speedup" else None, "setting": self.setting,
                "parameters": self.parameters, "baseline": self.baseline, "technique_cost": self.technique_cost,
                "breakdown": self.breakdown, "explain": self.explain}


class Technique:
    """Base class: subclasses set the class attributes and implement :meth:`predict`."""

    name: ClassVar[str]
    layer: ClassVar[str]
    summary: ClassVar[str]
    citation: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **values):
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UnknownNameError(f"parameter of {self.name}", unknown[0], tuple(known))
        self.values = {p.name: p.check(values[p.name]) if p.name in values else p.default for p in self.params}

    def __getattr__(self, name):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def predict(self, setting: Setting) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    def prediction(self, metric: str, value: float, setting: Setting, baseline: dict, technique_cost: dict,
                   breakdown: dict, explain: str) -> Prediction:
        """A prediction of this technique with these parameters on ``setting``."""
        return Prediction(self.name, metric, value, setting.as_dict(), baseline, technique_cost, breakdown, explain,
                          dict(self.values))

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "layer": cls.layer, "summary": cls.summary, "citation": cls.citation,
                "parameters": [{"name": p.name, "default": p.default, "unit": p.unit, "description": p.description,
                                "source": p.source, "minimum": p.minimum, "maximum": p.maximum,
                                "choices": list(p.choices)} for p in cls.params]}
