"""Kernel schedules: a problem (shapes, dtypes, tiles, device) -> a grid of CTA phase lists.

Each schedule module registers its builders in :data:`SCHEDULES` through
:func:`~sim.kernel.schedules.registry.register`; importing this package imports
them. To add a module, add one import line below. Run one with
:func:`sim.kernel.schedules.run.simulate_schedule`.

- ``gemm`` (:mod:`.gemm`): output tiles, split-K, stream-K.
- ``flash`` (:mod:`.flash`): FlashAttention-2 forward (prefill, causal or not; also decode).
- ``split-kv`` (:mod:`.split_kv`): FlashDecoding, split-KV + combine, GQA query packing.
"""

from sim.kernel.schedules.problem import AttentionProblem, GemmProblem
from sim.kernel.schedules.registry import SCHEDULES, Schedule, get_schedule, register

from sim.kernel.schedules import gemm, flash, split_kv, lean, tree, cascade, ring  # noqa: E402,F401  (registers the schedules)

__all__ = ["AttentionProblem", "GemmProblem", "SCHEDULES", "Schedule", "get_schedule", "register"]
