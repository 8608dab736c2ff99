"""Model descriptions read from Hugging Face ``config.json`` files.

The bundled catalog lives in ``sim/models/*.json`` (each file names its source
in ``_source``); any user ``config.json`` path works too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hwmodels.errors import DataFileError
from hwmodels.registry import Registry

MODELS_DIR = resources.files("sim") / "models"


@dataclass(frozen=True)
class ModelConfig:
    """The shapes of a decoder-only transformer that its cost depends on."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    gated_mlp: bool
    tie_word_embeddings: bool
    source: str = ""

    @property
    def params_per_layer(self) -> int:
        attn = self.hidden_size * (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        attn += self.num_heads * self.head_dim * self.hidden_size
        mlp = (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size
        return attn + mlp


_REQUIRED_INTS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
# Activations whose MLP is gated (gate and up projections): LLaMA-style SwiGLU/GeGLU.
_GATED_ACTS = {"silu", "swiglu", "gelu_pytorch_tanh_gated", "geglu"}


def parse_model_config(doc: dict, name: str, path: Path | str) -> ModelConfig:
    for key in _REQUIRED_INTS:
        v = doc.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DataFileError(path, key, f"must be a positive integer, got {v!r}")
    heads = doc["num_attention_heads"]
    kv_heads = doc.get("num_key_value_heads", heads)
    if isinstance(kv_heads, bool) or not isinstance(kv_heads, int) or kv_heads < 1 or heads % kv_heads:
        raise DataFileError(path, "num_key_value_heads", f"must be a positive divisor of {heads}, got {kv_heads!r}")
    head_dim = doc.get("head_dim") or doc["hidden_size"] // heads
    if doc.get("head_dim") is None and doc["hidden_size"] % heads:
        raise DataFileError(path, "hidden_size", f"{doc['hidden_size']} is not divisible by {heads} heads; give head_dim")
    return ModelConfig(
        name=name,
        hidden_size=doc["hidden_size"],
        intermediate_size=doc["intermediate_size"],
        num_layers=doc["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=doc["vocab_size"],
        gated_mlp=str(doc.get("hidden_act", "silu")).lower() in _GATED_ACTS,
        tie_word_embeddings=bool(doc.get("tie_word_embeddings", False)),
        source=str(doc.get("_source", path)),
    )


def load_model_config(path: Path | str, name: str | None = None) -> ModelConfig:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFileError(path, "<file>", "file not found") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(path, "<file>", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataFileError(path, "<file>", "must be a JSON object")
    return parse_model_config(doc, name or str(doc.get("_name") or path.stem), path)


def _load() -> dict:
    out = {}
    for entry in sorted(MODELS_DIR.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            with resources.as_file(entry) as path:
                model = load_model_config(path)
            out[model.name] = (model, (path.stem,))
    return out


MODELS: Registry[ModelConfig] = Registry("model", _load)


def get_model(name: str | Path) -> ModelConfig:
    """A bundled model by name (case-insensitive) or a path to a ``config.json``."""
    text = str(name)
    if text.endswith(".json") or Path(text).is_file():
        return load_model_config(text)
    return MODELS.get(text)
