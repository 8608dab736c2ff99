"""Speculative-decoding techniques against Spec-Bench's leaderboard: one harness, two named GPUs.

The papers' own speedups rarely name their GPU (see ``sim/data/papers/``);
Spec-Bench (Xia et al., ACL Findings 2024, github.com/hemingkx/Spec-Bench)
measures the methods on a single A100 80GB and a single RTX 3090 at batch 1,
greedy, fp16, and prints each method's mean accepted tokens per step beside its
speedup (``sim/data/measured/specbench_leaderboard.csv``). Each row is predicted
from that tokens-per-step figure and the method's published drafting structure
(below, with sources), on the named GPU, at 512 tokens of context (Spec-Bench's
prompts are a few hundred tokens). ``python -m sim.techniques.specbench``
prints the table the README shows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sim.techniques import Setting, get_technique

LEADERBOARD = Path(__file__).resolve().parent.parent / "data" / "measured" / "specbench_leaderboard.csv"
CONTEXT = 512

#: each method's drafting structure, with where it comes from
STRUCTURE = {
    "Token Recycling": ({"verify_tokens": 80, "tree": 1}, "an 80-node static tree (Luowaterbi/TokenRecycling README, tree '2.2.2')"),
    "Hydra": ({"heads": 4, "head_layers": 1, "sequential": 1, "tree_tokens": 64},
              "4 sequentially dependent one-layer heads on Medusa's 64-node tree (Ankner et al., arXiv:2402.05109)"),
    "Medusa": ({"heads": 5, "head_layers": 1, "tree_tokens": 64},
               "5 one-layer heads, a 64-node tree (FasterDecoding/Medusa: medusa_num_heads 5, tree mc_sim_7b_63)"),
}


@dataclass(frozen=True)
class Row:
    device: str
    model: str
    method: str
    measured: float
    mean_accepted_tokens: float
    predicted: float
    verify_over_decode: float

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0


@lru_cache(maxsize=1)
def rows() -> tuple[Row, ...]:
    out = []
    with LEADERBOARD.open(newline="") as f:
        for r in csv.DictReader(f):
            params, _ = STRUCTURE[r["method"]]
            tau = float(r["mean_accepted_tokens"])
            p = get_technique(r["technique"])(mean_accepted_tokens=tau, **params).predict(
                Setting(r["device"], r["model"], batch=int(r["batch"]), context=CONTEXT))
            out.append(Row(r["device"], r["model"], r["method"], float(r["speedup"]), tau, p.value,
                           p.breakdown["verify_over_decode"]))
    return tuple(out)


def table() -> str:
    lines = ["| GPU | model | method | tokens per step | measured | predicted | error | verification in decode steps |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows():
        lines.append(f"| {r.device} | {r.model} | {r.method} | {r.mean_accepted_tokens:.2f} | {r.measured:.2f} | "
                     f"{r.predicted:.2f} | {r.error:+.0%} | {r.verify_over_decode:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
