"""Model descriptions read from Hugging Face ``config.json`` files.

The bundled catalog lives in ``sim/models/*.json``: each file is the model's
own ``config.json`` as published on the Hugging Face Hub, plus ``_name`` (the
catalog name), ``_source`` (where it was transcribed from) and, where
something had to be assumed, ``_note``. Any user ``config.json`` path works too.

Config files of different families spell the same shape differently (GPT-2's
``n_embd``/``n_layer``/``n_head``, OPT's ``ffn_dim``, Falcon's ``num_kv_heads``,
``multi_query`` and ``new_decoder_architecture``); :func:`parse_model_config`
maps each family onto one :class:`ModelConfig`. Whether the MLP is gated
(SwiGLU/GeGLU: gate, up and down projections) or plain (up, activation, down)
is a property of the architecture, so it comes from the family (``model_type``
or ``architectures``), never from the activation's name alone; a config of a
family not listed in :data:`FAMILIES` must say ``"_gated_mlp": true|false``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hwmodels.errors import DataFileError
from hwmodels.registry import Registry

MODELS_DIR = resources.files("sim") / "models"


@dataclass(frozen=True)
class ModelConfig:
    """The shapes of a decoder-only transformer that its cost depends on.

    ``intermediate_size`` is the width of one MLP (one expert's, in a
    mixture-of-experts model); ``gated_mlp`` says whether that MLP has a gate
    projection beside the up projection (three weight matrices, not two).
    """

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
    family: str = ""
    hidden_act: str = ""
    num_experts: int = 1
    experts_per_token: int = 1
    parallel_attention: bool = False
    max_position_embeddings: int | None = None
    sliding_window: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    layer_norm: bool = False
    norms_per_layer: int = 2
    final_norm: bool = True
    learned_position_embeddings: int = 0
    embedding_dim: int | None = None

    # -- classification -------------------------------------------------
    @property
    def attention_kind(self) -> str:
        """``"MHA"`` (one KV head per query head), ``"MQA"`` (one KV head) or ``"GQA"``."""
        if self.num_kv_heads == self.num_heads:
            return "MHA"
        return "MQA" if self.num_kv_heads == 1 else "GQA"

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    # -- parameter counts -----------------------------------------------
    @property
    def attention_params_per_layer(self) -> int:
        """Weights of the Q, K, V and output projections of one layer."""
        q_dim, kv_dim = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return self.hidden_size * (q_dim + 2 * kv_dim) + q_dim * self.hidden_size

    @property
    def mlp_params_per_expert(self) -> int:
        """Weights of one MLP (one expert): gate+up+down when gated, up+down otherwise."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def params_per_layer(self) -> int:
        """Weight-matrix parameters of one layer with a single MLP (one expert): attention + MLP."""
        return self.attention_params_per_layer + self.mlp_params_per_expert

    @property
    def _small_params_per_layer(self) -> int:
        """Norms, biases and the MoE router of one layer (a fraction of a percent of it)."""
        h = self.hidden_size
        out = self.norms_per_layer * (2 * h if self.layer_norm else h)
        if self.qkv_bias:
            out += (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        if self.o_bias:
            out += h
        if self.is_moe:
            out += h * self.num_experts  # router
        return out

    def _mlp_bias_params(self, experts: int) -> int:
        if not self.mlp_bias:
            return 0
        return experts * ((2 if self.gated_mlp else 1) * self.intermediate_size + self.hidden_size)

    @property
    def embedding_params(self) -> int:
        """Token embedding and LM head (one matrix when tied), plus learned positions and projections."""
        e = self.embedding_dim or self.hidden_size
        out = self.vocab_size * e * (1 if self.tie_word_embeddings else 2)
        out += self.learned_position_embeddings * self.hidden_size
        if e != self.hidden_size:
            out += 2 * e * self.hidden_size  # OPT's project_in / project_out
        return out

    def _params(self, experts: int) -> int:
        layer = (
            self.attention_params_per_layer
            + experts * self.mlp_params_per_expert
            + self._mlp_bias_params(experts)
            + self._small_params_per_layer
        )
        final_norm = (2 if self.layer_norm else 1) * self.hidden_size if self.final_norm else 0
        return self.num_layers * layer + self.embedding_params + final_norm

    @property
    def params_total(self) -> int:
        """Every parameter, tied embeddings counted once."""
        return self._params(self.num_experts)

    @property
    def params_active_per_token(self) -> int:
        """Parameters one token's forward pass uses: MoE layers count only their top-k experts.

        Embeddings are counted whole, as model cards do (Mixtral-8x7B's 12.9B active).
        """
        return self._params(self.experts_per_token)

    def kv_bytes_per_token(self, kv_bits: float = 16) -> float:
        """KV-cache bytes one token adds across all layers: 2 (K and V) x layers x kv heads x head_dim x bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_bits / 8


# -- families ---------------------------------------------------------------

# Traits of each architecture that its config.json leaves implicit (the
# defaults of the transformers config class and what its modelling code hard-codes).
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": dict(gated=True, layer_norm=False, tie=False, max_pos=2048),
    "mistral": dict(gated=True, layer_norm=False, tie=False, max_pos=4096 * 32),
    "mixtral": dict(gated=True, layer_norm=False, tie=False, max_pos=4096 * 32),
    "qwen2": dict(gated=True, layer_norm=False, tie=False, max_pos=32768, qkv_bias=True),
    "qwen3": dict(gated=True, layer_norm=False, tie=False, max_pos=32768),
    "phi3": dict(gated=True, layer_norm=False, tie=False, max_pos=4096),
    "gemma": dict(gated=True, layer_norm=False, tie=True, max_pos=8192),
    "falcon": dict(gated=False, layer_norm=True, tie=True, max_pos=2048),
    "opt": dict(gated=False, layer_norm=True, tie=True, max_pos=2048),
    "gpt2": dict(gated=False, layer_norm=True, tie=True, max_pos=1024),
    "gpt_neox": dict(gated=False, layer_norm=True, tie=False, max_pos=2048, bias=True),
}
# model_type spellings of older configs, and architecture class names, mapped to a family.
_FAMILY_ALIASES = {
    "yi": "llama",
    "refinedweb": "falcon",
    "refinedwebmodel": "falcon",
    "rw": "falcon",
}
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Phi3ForCausalLM": "phi3",
    "GemmaForCausalLM": "gemma",
    "FalconForCausalLM": "falcon",
    "RWForCausalLM": "falcon",
    "OPTForCausalLM": "opt",
    "GPT2LMHeadModel": "gpt2",
    "GPTNeoXForCausalLM": "gpt_neox",
    "YiForCausalLM": "llama",
}
# Mixture-of-experts designs whose extra pieces (shared experts, a separate
# expert width) this model does not describe: refused rather than mis-costed.
_UNMODELLED_MOE_KEYS = ("moe_intermediate_size", "shared_expert_intermediate_size", "n_shared_experts")


def _family(doc: dict, path) -> str:
    model_type = doc.get("model_type")
    if isinstance(model_type, str) and model_type:
        key = model_type.lower()
        key = _FAMILY_ALIASES.get(key, key)
        if key in FAMILIES or "_gated_mlp" in doc:
            return key
    archs = doc.get("architectures")
    if isinstance(archs, list):
        for arch in archs:
            if arch in _ARCHITECTURES:
                return _ARCHITECTURES[arch]
    if "_gated_mlp" in doc:
        return str(model_type or "")
    field = "model_type" if model_type is not None or not archs else "architectures"
    raise DataFileError(
        path,
        field,
        f"unknown architecture {model_type or archs!r}: whether its MLP is gated cannot be told from the config; "
        f"known families: {', '.join(sorted(FAMILIES))} (architectures {', '.join(sorted(_ARCHITECTURES))}), "
        'or add "_gated_mlp": true (gate, up and down projections) or false (up and down)',
    )


class _Reader:
    """Typed field access that names the file and field in every error."""

    def __init__(self, doc: dict, path):
        self.doc, self.path = doc, path

    def _find(self, keys: tuple[str, ...]):
        for key in keys:
            if key in self.doc and self.doc[key] is not None:
                return key, self.doc[key]
        return keys[0], None

    def int(self, *keys: str, default: int | None = None, required: bool = True) -> int | None:
        key, v = self._find(keys)
        if v is None:
            if default is not None or not required:
                return default
            also = f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""
            raise DataFileError(self.path, key, f"missing{also}: a positive integer is needed")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DataFileError(self.path, key, f"must be a positive integer, got {v!r}")
        return v

    def bool(self, key: str, default: bool) -> bool:
        v = self.doc.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise DataFileError(self.path, key, f"must be true or false, got {v!r}")
        return v

    def str(self, *keys: str, default: str = "") -> str:
        key, v = self._find(keys)
        if v is None:
            return default
        if not isinstance(v, str):
            raise DataFileError(self.path, key, f"must be a string, got {v!r}")
        return v


def parse_model_config(doc: dict, name: str, path: Path | str) -> ModelConfig:
    """Map a Hugging Face ``config.json`` (already parsed) onto a :class:`ModelConfig`."""
    r = _Reader(doc, path)
    family = _family(doc, path)
    traits = FAMILIES.get(family, {})
    gated = r.bool("_gated_mlp", traits.get("gated", False)) if "_gated_mlp" in doc else traits["gated"]
    for key in _UNMODELLED_MOE_KEYS:
        if doc.get(key):
            raise DataFileError(
                path, key, "this mixture-of-experts layout (shared experts or a separate expert width) is not modelled"
            )

    max_pos = r.int("max_position_embeddings", "n_positions", "n_ctx", required=False) or traits.get("max_pos")
    extra: dict[str, Any] = {}
    if family == "gpt2":
        hidden = r.int("n_embd", "hidden_size")
        layers = r.int("n_layer", "num_hidden_layers")
        heads = r.int("n_head", "num_attention_heads")
        kv_heads = heads
        ffn = r.int("n_inner", default=4 * hidden)
        act = r.str("activation_function", default="gelu_new")
        extra.update(qkv_bias=True, o_bias=True, mlp_bias=True, learned_position_embeddings=max_pos)
        kv_key = "n_head"
    elif family == "opt":
        hidden = r.int("hidden_size")
        layers = r.int("num_hidden_layers")
        heads = r.int("num_attention_heads")
        kv_heads = heads
        ffn = r.int("ffn_dim")
        act = r.str("activation_function", default="relu")
        bias = r.bool("enable_bias", True)
        proj = r.int("word_embed_proj_dim", default=hidden)
        final = r.bool("do_layer_norm_before", True) and not r.bool("_remove_final_layer_norm", False)
        # OPT's learned positions carry an offset of 2 rows (OPTLearnedPositionalEmbedding).
        extra.update(qkv_bias=bias, o_bias=bias, mlp_bias=bias, final_norm=final, embedding_dim=proj,
                     learned_position_embeddings=(max_pos or 2048) + 2)
        kv_key = "num_attention_heads"
    elif family == "falcon":
        hidden = r.int("hidden_size")
        layers = r.int("num_hidden_layers", "n_layer")
        heads = r.int("num_attention_heads", "n_head")
        # The first Falcon-40B configs (model_type "RefinedWeb") predate the flag and use the new layout.
        new_arch = r.bool("new_decoder_architecture", str(doc.get("model_type", "")).lower() == "refinedweb")
        multi_query = r.bool("multi_query", True)
        # transformers' FalconAttention: the new decoder architecture reads num_kv_heads;
        # otherwise multi_query means one shared KV head.
        if new_arch or not multi_query:
            kv_heads = r.int("num_kv_heads", "n_head_kv", default=heads)
        else:
            kv_heads = 1
        ffn = r.int("ffn_hidden_size", default=4 * hidden)
        act = r.str("activation", "hidden_act", default="gelu")
        parallel = r.bool("parallel_attn", True)
        bias = r.bool("bias", False)
        if new_arch:
            norms = r.int("num_ln_in_parallel_attn", default=2)
        else:
            norms = 1 if parallel else 2
        extra.update(parallel_attention=parallel, qkv_bias=bias, o_bias=bias, mlp_bias=bias, norms_per_layer=norms)
        kv_key = "n_head_kv" if "num_kv_heads" not in doc and "n_head_kv" in doc else "num_kv_heads"
    else:
        hidden = r.int("hidden_size")
        layers = r.int("num_hidden_layers")
        heads = r.int("num_attention_heads")
        kv_heads = r.int("num_key_value_heads", default=heads)
        ffn = r.int("intermediate_size")
        act = r.str("hidden_act", "hidden_activation", default="silu")
        # LlamaConfig's attention_bias covers q, k, v and o; Qwen2 hard-codes q, k, v biases.
        attn_bias = r.bool("attention_bias", traits.get("bias", False))
        extra.update(
            qkv_bias=attn_bias or traits.get("qkv_bias", False),
            o_bias=attn_bias,
            mlp_bias=r.bool("mlp_bias", traits.get("bias", False)),
            parallel_attention=family == "gpt_neox" and r.bool("use_parallel_residual", True),
        )
        kv_key = "num_key_value_heads"
    if "layer_norm" not in extra:
        extra["layer_norm"] = traits.get("layer_norm", False)

    if heads % kv_heads:
        raise DataFileError(path, kv_key, f"{kv_heads} KV heads do not divide {heads} attention heads")
    head_dim = r.int("head_dim", required=False)
    if head_dim is None:
        if hidden % heads:
            hidden_key = "n_embd" if family == "gpt2" and "n_embd" in doc else "hidden_size"
            raise DataFileError(path, hidden_key, f"{hidden} is not divisible by {heads} heads; give head_dim")
        head_dim = hidden // heads

    experts = r.int("num_local_experts", "num_experts", default=1)
    if experts > 1:
        per_token = r.int("num_experts_per_tok")
        if per_token > experts:
            raise DataFileError(
                path, "num_experts_per_tok", f"{per_token} experts per token exceed the {experts} experts"
            )
    else:
        per_token = r.int("num_experts_per_tok", default=1)
        if per_token > 1:
            raise DataFileError(path, "num_experts_per_tok", f"{per_token} experts per token, but the config has "
                                "no experts (num_local_experts / num_experts missing or 1)")

    window = doc.get("sliding_window")
    if family == "qwen2" and not r.bool("use_sliding_window", False):
        window = None
    if window is not None:
        window = r.int("sliding_window")

    tie = r.bool("tie_word_embeddings", traits.get("tie", True))
    return ModelConfig(
        name=name,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=r.int("vocab_size"),
        gated_mlp=gated,
        tie_word_embeddings=tie,
        source=str(doc.get("_source") or path),
        family=family,
        hidden_act=act,
        num_experts=experts,
        experts_per_token=per_token,
        max_position_embeddings=max_pos,
        sliding_window=window,
        **extra,
    )


def load_model_config(path: Path | str, name: str | None = None) -> ModelConfig:
    """A :class:`ModelConfig` from a ``config.json`` file (named by ``_name``, else the file stem)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFileError(path, "<file>", "file not found") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(path, "<file>", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataFileError(path, "<file>", "must be a JSON object")
    if name is None:
        name = doc.get("_name") or (path.parent.name if path.stem == "config" and path.parent.name else path.stem)
    return parse_model_config(doc, str(name), path)


_HF_PREFIX = "https://huggingface.co/"


def _aliases(path: Path, source: str) -> tuple[str, ...]:
    """The file stem, and the Hugging Face repo id (``org/model``) of a config transcribed from the Hub."""
    out = [path.stem]
    if source.startswith(_HF_PREFIX):
        parts = source[len(_HF_PREFIX):].split("/")
        if len(parts) >= 2:
            out.append(f"{parts[0]}/{parts[1]}")
    return tuple(out)


def _load() -> dict:
    out = {}
    for entry in sorted(MODELS_DIR.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            with resources.as_file(entry) as path:
                model = load_model_config(path)
            if model.name in out:
                raise DataFileError(path, "_name", f"{model.name!r} is already the name of another bundled model")
            out[model.name] = (model, _aliases(path, model.source))
    return out


MODELS: Registry[ModelConfig] = Registry("model", _load)


def get_model(name: str | Path) -> ModelConfig:
    """A bundled model by name, file stem or Hugging Face repo id (case-insensitive), or a path to a ``config.json``."""
    text = str(name)
    if isinstance(name, Path) or text.endswith(".json") or (text not in MODELS and Path(text).exists()):
        path = Path(text)
        # A model directory (a Hugging Face snapshot) holds its config.json.
        return load_model_config(path / "config.json" if path.is_dir() else path)
    return MODELS.get(text)
