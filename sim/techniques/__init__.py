"""Techniques from the seed papers as cost models, each against its own baseline (see :mod:`sim.techniques.base`).

    from sim.techniques import get_technique, Setting
    t = get_technique("draft-heads")(mean_accepted_tokens=3.2, tree_tokens=64)
    t.predict(Setting("A100-SXM-80GB", "Vicuna-7B", batch=1, context=512)).as_dict()
"""

from __future__ import annotations

from hwmodels.errors import UnknownNameError
from sim.techniques.base import LAYERS, Param, Prediction, Setting, Technique
from sim.techniques.attention import TECHNIQUES as _ATTENTION
from sim.techniques.kv import TECHNIQUES as _KV
from sim.techniques.scheduling import TECHNIQUES as _SCHEDULING
from sim.techniques.speculative import TECHNIQUES as _SPECULATIVE
from sim.techniques.step_level import TECHNIQUES as _STEP
from sim.techniques.training import TECHNIQUES as _TRAINING

_ALL: tuple[type[Technique], ...] = (*_SPECULATIVE, *_STEP, *_KV, *_ATTENTION, *_SCHEDULING, *_TRAINING)
TECHNIQUES: dict[str, type[Technique]] = {t.name: t for t in _ALL}

__all__ = ["LAYERS", "TECHNIQUES", "Param", "Prediction", "Setting", "Technique", "get_technique"]


def get_technique(name: str) -> type[Technique]:
    key = name.strip().lower()
    if key not in TECHNIQUES:
        raise UnknownNameError("technique", name, tuple(TECHNIQUES))
    return TECHNIQUES[key]
