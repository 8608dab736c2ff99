"""Run a registered schedule through the engine and summarise it.

:func:`simulate_schedule` returns the engine's
:class:`~sim.kernel.engine.KernelSimResult` and the built
:class:`~sim.kernel.program.Program`; :func:`summary` turns them into the
JSON-ready dict a CLI prints. Its keys are a contract: ``time_s``, ``cycles``,
``bytes_per_s`` (HBM bytes loaded and stored per second), ``flops_per_s``
(tensor + CUDA-core FLOPs executed per second, padding and exponential
stand-ins included), ``sm_utilization`` (time-average of busy SMs over the
stream) and ``tail_fraction`` (see :class:`~sim.kernel.engine.KernelSimResult`).

``load_bytes_in_flight``: by default the schedule's own per-CTA figure (its
K/V or A/B stage bytes), which sets the engine's Little's-law cap per load;
pass ``None`` explicitly through ``capped=False`` to run uncapped.
"""

from __future__ import annotations

from hwmodels.calibration import Calibration
from hwmodels.device import Device
from sim.kernel.engine import KernelSimResult, simulate
from sim.kernel.program import Program
from sim.kernel.schedules.registry import get_schedule


def build_schedule(name: str, problem, device: Device, **options):
    return get_schedule(name)(problem, device, **options)


def simulate_schedule(name: str, problem, device: Device, *, launch="kernel", cal: Calibration | None = None,
                      capped: bool = True, **options) -> tuple[KernelSimResult, Program]:
    """Build schedule ``name`` for ``problem`` on ``device`` (``options`` go to the builder) and simulate it."""
    sched = build_schedule(name, problem, device, **options)
    res = simulate(sched.program, device, cal=cal, launch=launch,
                   load_bytes_in_flight=sched.load_bytes_in_flight if capped else None)
    return res, sched.program


def summary(result: KernelSimResult) -> dict:
    return {
        "time_s": float(result.seconds),
        "cycles": float(result.cycles),
        "bytes_per_s": float(result.achieved_hbm_bytes_per_s),
        "flops_per_s": float(result.achieved_flops_per_s),
        "sm_utilization": float(result.mean_sm_utilisation),
        "tail_fraction": float(result.tail_fraction),
    }
