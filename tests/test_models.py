"""The model catalog says what the models' Hugging Face configs say, and the parser reads every family right.

Each test is named after the claim it checks. Catalog tests are parametrized over every file in
``sim/models``, so a new model is checked the moment its file lands. Parameter counts are compared
with the sizes their publishers state, KV-cache sizes with the arithmetic of the attention layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwmodels.errors import DataFileError, UnknownNameError
from sim import layer_ops
from sim.model import MODELS, MODELS_DIR, ModelConfig, get_model, load_model_config

MODEL_FILES = sorted(Path(str(MODELS_DIR)).glob("*.json"))
KIB = 1024

REQUIRED_MODELS = (
    "Llama-2-7B", "Llama-2-13B", "Llama-2-70B", "Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B",
    "Mistral-7B", "Mixtral-8x7B", "Falcon-180B", "Vicuna-7B", "Vicuna-13B", "Vicuna-33B",
    "CodeLlama-13B", "CodeLlama-34B", "Yi-34B", "Qwen2.5-7B", "DeepSeek-Coder-1.3B",
    "DeepSeek-Coder-6.7B", "DeepSeek-Coder-33B", "OPT-6.7B", "GPT-3-175B",
)  # fmt: skip

# Published total parameter counts, in billions, and where each is stated. "HF page" is the
# parameter count the Hugging Face model page shows (read from the safetensors metadata).
PUBLISHED_PARAMS_B = {
    "Llama-2-7B": (6.74, "HF page meta-llama/Llama-2-7b-hf"),
    "Llama-2-13B": (13.0, "HF page meta-llama/Llama-2-13b-hf"),
    "Llama-2-70B": (69.0, "HF page meta-llama/Llama-2-70b-hf"),
    "Llama-3.1-8B": (8.03, "HF page meta-llama/Llama-3.1-8B"),
    "Llama-3.1-70B": (70.6, "HF page meta-llama/Llama-3.1-70B"),
    "Llama-3.1-405B": (405.9, "HF page meta-llama/Llama-3.1-405B (406B)"),
    "Mistral-7B": (7.24, "HF page mistralai/Mistral-7B-v0.1"),
    "Mixtral-8x7B": (46.7, "Mistral AI, 'Mixtral of experts' (2023-12-11): 46.7B total"),
    # The model card says 180B; the Hub's bf16 safetensors hold 179.5B values (334.4 GiB), an untied
    # lm_head copy included. The model is counted tied (see its _note): 178.6B.
    "Falcon-180B": (179.5, "tiiuae/falcon-180B model card (180B) and safetensors size"),
    "Falcon-7B": (7.0, "tiiuae/falcon-7b model card (7B)"),
    "Vicuna-7B": (6.74, "fine-tune of Llama-2-7B (lmsys/vicuna-7b-v1.5)"),
    "Vicuna-13B": (13.0, "fine-tune of Llama-2-13B (lmsys/vicuna-13b-v1.5)"),
    "Vicuna-33B": (32.5, "fine-tune of LLaMA-33B (lmsys/vicuna-33b-v1.3); HF page 32.5B"),
    "CodeLlama-13B": (13.0, "HF page codellama/CodeLlama-13b-hf"),
    "CodeLlama-34B": (33.7, "HF page codellama/CodeLlama-34b-hf"),
    "Yi-34B": (34.4, "HF page 01-ai/Yi-34B"),
    "Qwen2.5-7B": (7.61, "Qwen/Qwen2.5-7B model card: 7.61B parameters"),
    "DeepSeek-Coder-1.3B": (1.35, "HF page deepseek-ai/deepseek-coder-1.3b-base"),
    "DeepSeek-Coder-6.7B": (6.74, "HF page deepseek-ai/deepseek-coder-6.7b-base"),
    "DeepSeek-Coder-33B": (33.3, "HF page deepseek-ai/deepseek-coder-33b-base"),
    "OPT-6.7B": (6.7, "Zhang et al. 2022 (arXiv:2205.01068), Table 1"),
    "GPT-3-175B": (175.0, "Brown et al. 2020 (arXiv:2005.14165), Table 2.1"),
    "Chameleon-7B": (7.0, "Chameleon Team 2024 (arXiv:2405.09818): Chameleon-7B"),
}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _write(tmp_path: Path, doc: dict, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


LLAMA_LIKE = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 4, "num_attention_heads": 16,
    "num_key_value_heads": 4, "vocab_size": 1000, "tie_word_embeddings": False,
}  # fmt: skip


# -- the catalog ------------------------------------------------------------


@pytest.mark.parametrize("path", MODEL_FILES, ids=_ids(MODEL_FILES))
def test_every_bundled_config_parses_and_cites_an_https_source(path):
    doc = json.loads(path.read_text())
    model = load_model_config(path)
    assert isinstance(model, ModelConfig)
    assert doc["_name"] == model.name
    assert doc["_source"].startswith("https://") and model.source == doc["_source"]
    if "huggingface.co" in doc["_source"]:
        assert doc["_source"].endswith("/blob/main/config.json")
    else:  # no Hugging Face config exists: what was assumed must be said
        assert doc.get("_note")


@pytest.mark.parametrize("path", MODEL_FILES, ids=_ids(MODEL_FILES))
def test_file_names_are_lowercase_and_resolve_to_their_model(path):
    assert path.stem == path.stem.lower()
    assert get_model(path.stem).name == load_model_config(path).name


def test_the_catalog_holds_every_required_model():
    missing = [name for name in REQUIRED_MODELS if name not in MODELS]
    assert not missing


def test_names_and_aliases_are_unique():
    seen: dict[str, str] = {}
    for path in MODEL_FILES:
        doc = json.loads(path.read_text())
        for key in (doc["_name"], path.stem):
            assert seen.setdefault(key.lower(), doc["_name"]) == doc["_name"], f"{key!r} names two models"
    assert len(MODELS.names()) == len(MODEL_FILES)


def test_names_stems_and_hub_repo_ids_all_find_a_model():
    assert get_model("llama-2-70b") is get_model("Llama-2-70B")
    assert get_model("MIXTRAL-8X7B") is get_model("mixtral-8x7b")
    assert get_model("mistralai/Mistral-7B-v0.1").name == "Mistral-7B"
    assert get_model("tiiuae/falcon-180B").name == "Falcon-180B"


# -- parameter counts ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_B))
def test_total_parameters_match_the_published_size_within_2_percent(name):
    published_b, where = PUBLISHED_PARAMS_B[name]
    total_b = get_model(name).params_total / 1e9
    assert total_b == pytest.approx(published_b, rel=0.02), f"{name}: {total_b:.2f}B vs {published_b}B ({where})"


def test_every_bundled_model_has_a_published_size_to_check():
    assert set(MODELS.names()) <= set(PUBLISHED_PARAMS_B)


def test_counts_known_to_the_parameter_agree_exactly():
    # What transformers' num_parameters() reports for the Hub checkpoints (the sums of their tensor
    # shapes); OPT-6.7B's 13,316,947,968 bytes of fp16 weights are 6,658,473,984 parameters.
    assert get_model("Llama-2-7B").params_total == 6_738_415_616
    assert get_model("Mixtral-8x7B").params_total == 46_702_792_704
    assert get_model("OPT-6.7B").params_total == 6_658_473_984
    assert get_model("Qwen2.5-7B").params_total == 7_615_616_512


def test_mixtral_uses_two_of_eight_experts_and_12_9b_parameters_per_token():
    m = get_model("Mixtral-8x7B")
    assert (m.num_experts, m.experts_per_token, m.is_moe) == (8, 2, True)
    assert m.intermediate_size == 14336  # one expert's width
    # Mistral AI, "Mixtral of experts": "only uses 12.9B parameters per token"
    assert m.params_active_per_token / 1e9 == pytest.approx(12.9, rel=0.02)
    assert m.params_total - m.params_active_per_token == 6 * m.num_layers * m.mlp_params_per_expert


@pytest.mark.parametrize("name", [n for n in REQUIRED_MODELS if n != "Mixtral-8x7B"])
def test_dense_models_have_one_expert_and_use_every_parameter(name):
    m = get_model(name)
    assert (m.num_experts, m.experts_per_token, m.is_moe) == (1, 1, False)
    assert m.params_active_per_token == m.params_total


def test_tied_embeddings_are_counted_once():
    m = get_model("GPT-3-175B")
    assert m.tie_word_embeddings
    e = m.vocab_size * m.hidden_size
    assert m.embedding_params == e + 2048 * m.hidden_size  # tokens once, plus learned positions
    untied = get_model("Llama-2-7B")
    assert untied.embedding_params == 2 * untied.vocab_size * untied.hidden_size


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_one_tokens_layer_gemms_use_the_weights_the_active_count_counts(name):
    # A decode step of one sequence multiplies each weight the token uses once: attention, its
    # top-k experts' MLPs (all of a dense model's one MLP) and, in an MoE layer, the router.
    m = get_model(name)
    ops = layer_ops.step_operations(m, "decode", 1, 16)
    gemm_flops = sum(op.flops for op in ops if not op.name.startswith(("attention", "lm_head")))
    router = m.hidden_size * m.num_experts if m.is_moe else 0
    expected = m.attention_params_per_layer + m.experts_per_token * m.mlp_params_per_expert + router
    assert gemm_flops == 2 * expected
    if not m.is_moe:
        assert expected == m.params_per_layer


# -- KV cache ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kv_bits", "expected_bytes"),
    [
        ("Llama-2-7B", 16, 512 * KIB),  # 2 x 32 layers x 32 heads x 128 x 2 B
        ("Llama-2-70B", 16, 320 * KIB),  # GQA: 2 x 80 x 8 x 128 x 2 B
        ("Llama-3.1-405B", 16, 504 * KIB),  # 2 x 126 x 8 x 128 x 2 B
        ("Falcon-180B", 16, 160 * KIB),  # 2 x 80 x 8 x 64 x 2 B
        ("Falcon-7B", 16, 8 * KIB),  # MQA: 2 x 32 x 1 x 64 x 2 B
        ("Mixtral-8x7B", 16, 128 * KIB),
        ("Qwen2.5-7B", 16, 56 * KIB),  # 2 x 28 x 4 x 128 x 2 B
        ("GPT-3-175B", 16, 4608 * KIB),  # 2 x 96 x 96 x 128 x 2 B = 4.5 MiB
        ("Llama-2-7B", 8, 256 * KIB),
        ("Llama-2-70B", 4, 80 * KIB),
    ],
)
def test_kv_bytes_per_token_are_two_times_layers_kv_heads_head_dim_bytes(name, kv_bits, expected_bytes):
    assert get_model(name).kv_bytes_per_token(kv_bits) == expected_bytes


@pytest.mark.parametrize(
    ("name", "kind", "kv_heads"),
    [
        ("Llama-2-7B", "MHA", 32),
        ("Vicuna-33B", "MHA", 52),
        ("OPT-6.7B", "MHA", 32),
        ("GPT-3-175B", "MHA", 96),
        ("Llama-2-70B", "GQA", 8),
        ("Llama-3.1-8B", "GQA", 8),
        ("CodeLlama-34B", "GQA", 8),
        ("Qwen2.5-7B", "GQA", 4),
        ("Falcon-180B", "GQA", 8),
        ("Falcon-7B", "MQA", 1),
    ],
)
def test_attention_is_classified_mha_gqa_or_mqa_from_the_kv_heads(name, kind, kv_heads):
    m = get_model(name)
    assert (m.attention_kind, m.num_kv_heads) == (kind, kv_heads)


# -- families: field names and architecture --------------------------------


@pytest.mark.parametrize(
    ("name", "gated"),
    [
        ("Llama-2-7B", True), ("Mistral-7B", True), ("Mixtral-8x7B", True), ("Qwen2.5-7B", True),
        ("Yi-34B", True), ("DeepSeek-Coder-33B", True), ("CodeLlama-34B", True),
        ("OPT-6.7B", False), ("Falcon-180B", False), ("GPT-3-175B", False),
    ],
)  # fmt: skip
def test_gated_mlps_are_the_swiglu_families_and_plain_mlps_the_others(name, gated):
    assert get_model(name).gated_mlp is gated


def test_gating_comes_from_the_architecture_not_the_activation(tmp_path):
    llama_with_gelu = load_model_config(_write(tmp_path, {**LLAMA_LIKE, "hidden_act": "gelu"}))
    assert llama_with_gelu.gated_mlp
    doc = json.loads((Path(str(MODELS_DIR)) / "opt-6.7b.json").read_text())
    opt_with_silu = load_model_config(_write(tmp_path, {**doc, "activation_function": "silu"}, "opt.json"))
    assert not opt_with_silu.gated_mlp


def test_falcon_180b_is_gqa_with_a_plain_4x_gelu_mlp_beside_attention():
    m = get_model("Falcon-180B")
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (80, 14848, 232, 8, 64)
    assert m.intermediate_size == 4 * m.hidden_size and not m.gated_mlp and m.hidden_act == "gelu"
    assert m.parallel_attention and m.layer_norm and m.norms_per_layer == 2


def test_falcon_multi_query_without_the_new_decoder_has_one_kv_head():
    m = get_model("Falcon-7B")
    assert (m.num_heads, m.num_kv_heads, m.norms_per_layer) == (71, 1, 1)


def test_legacy_refinedweb_configs_read_like_falcon(tmp_path):
    doc = {"model_type": "RefinedWeb", "hidden_size": 8192, "n_layer": 60, "n_head": 128, "n_head_kv": 8,
           "vocab_size": 65024, "parallel_attn": True, "bias": False}  # fmt: skip
    m = load_model_config(_write(tmp_path, doc))
    assert (m.family, m.num_layers, m.num_heads, m.num_kv_heads, m.intermediate_size) == ("falcon", 60, 128, 8, 32768)
    # Falcon-40B, whose first config this is: 41.3B counted tied (the model card says 40B)
    assert m.params_total / 1e9 == pytest.approx(41.3, rel=0.01)


def test_gpt2_style_field_names_map_onto_the_model():
    m = get_model("GPT-3-175B")
    assert (m.family, m.hidden_size, m.num_layers, m.num_heads, m.head_dim) == ("gpt2", 12288, 96, 96, 128)
    assert m.intermediate_size == 4 * 12288 and m.max_position_embeddings == 2048
    assert m.learned_position_embeddings == 2048 and m.vocab_size == 50257


def test_opt_reads_ffn_dim_biases_and_learned_positions():
    m = get_model("OPT-6.7B")
    assert (m.intermediate_size, m.hidden_act, m.tie_word_embeddings) == (16384, "relu", True)
    assert m.qkv_bias and m.o_bias and m.mlp_bias and m.layer_norm
    assert m.learned_position_embeddings == 2048 + 2  # OPT's position table has a 2-row offset


def test_qwen2_has_qkv_biases_and_no_sliding_window_unless_enabled():
    m = get_model("Qwen2.5-7B")
    assert m.qkv_bias and not m.o_bias and not m.mlp_bias
    assert m.sliding_window is None and m.max_position_embeddings == 131072


def test_mistral_7b_v0_1_keeps_its_4096_token_sliding_window():
    assert get_model("Mistral-7B").sliding_window == 4096


def test_explicit_head_dim_overrides_hidden_over_heads(tmp_path):
    m = load_model_config(_write(tmp_path, {**LLAMA_LIKE, "hidden_size": 1000, "head_dim": 64}))
    assert m.head_dim == 64
    assert m.attention_params_per_layer == 1000 * (16 + 2 * 4) * 64 + 16 * 64 * 1000


# -- user configs -----------------------------------------------------------


def test_a_user_config_json_path_loads(tmp_path):
    path = _write(tmp_path, {**LLAMA_LIKE, "_name": "tiny-llama"})
    for handle in (path, str(path)):
        m = get_model(handle)
        assert (m.name, m.num_layers, m.num_kv_heads, m.attention_kind) == ("tiny-llama", 4, 4, "GQA")
        assert m.source == str(path)


def test_a_model_directory_loads_its_config_json_named_after_the_directory(tmp_path):
    folder = tmp_path / "My-Finetune"
    folder.mkdir()
    _write(folder, LLAMA_LIKE)
    assert get_model(folder).name == "My-Finetune"
    assert get_model(str(folder / "config.json")).name == "My-Finetune"


def test_an_unknown_family_loads_when_it_says_whether_its_mlp_is_gated(tmp_path):
    doc = {**LLAMA_LIKE, "model_type": "newfangled", "architectures": ["NewfangledForCausalLM"], "_gated_mlp": False}
    m = load_model_config(_write(tmp_path, doc))
    assert m.family == "newfangled" and not m.gated_mlp


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"hidden_size": None}, "hidden_size", "missing"),
        ({"num_hidden_layers": 0}, "num_hidden_layers", "positive integer"),
        ({"vocab_size": "32k"}, "vocab_size", "positive integer"),
        ({"num_key_value_heads": 5}, "num_key_value_heads", "do not divide"),
        ({"hidden_size": 1000}, "hidden_size", "not divisible"),
        ({"num_local_experts": 4, "num_experts_per_tok": 8}, "num_experts_per_tok", "exceed"),
        ({"num_local_experts": 4}, "num_experts_per_tok", "missing"),
        ({"num_experts_per_tok": 2}, "num_experts_per_tok", "no experts"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings", "true or false"),
        ({"head_dim": -8}, "head_dim", "positive integer"),
        (
            {"moe_intermediate_size": 512, "num_experts": 8, "num_experts_per_tok": 2},
            "moe_intermediate_size",
            "not modelled",
        ),
        ({"model_type": "newfangled", "architectures": ["NewfangledForCausalLM"]}, "model_type", "_gated_mlp"),
    ],
)
def test_malformed_configs_name_the_file_and_the_field(tmp_path, change, field, words):
    doc = {k: v for k, v in {**LLAMA_LIKE, **change}.items() if v is not None}
    path = _write(tmp_path, doc)
    with pytest.raises(DataFileError) as err:
        load_model_config(path)
    assert err.value.field == field
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert words in err.value.problem


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "vocab_size": 10}, "n_embd"),
        ({"model_type": "opt", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "vocab_size": 10}, "ffn_dim"),
        ({"model_type": "falcon", "new_decoder_architecture": True, "num_kv_heads": 7, "hidden_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 10}, "num_kv_heads"),
    ],
)  # fmt: skip
def test_family_specific_errors_use_the_familys_own_field_names(tmp_path, doc, field):
    with pytest.raises(DataFileError) as err:
        load_model_config(_write(tmp_path, doc))
    assert err.value.field == field


@pytest.mark.parametrize(("text", "problem"), [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_unreadable_files_are_data_file_errors(tmp_path, text, problem):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(DataFileError, match=problem):
        get_model(path)


def test_a_missing_file_is_a_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        get_model(tmp_path / "nowhere.json")


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("llama-2-7", "Llama-2-7B"),
        ("mixtral", "Mixtral-8x7B"),
        ("Falcon-180", "Falcon-180B"),
        ("gpt3-175b", "GPT-3-175B"),
    ],
)
def test_unknown_names_suggest_the_closest_ones(typo, suggestion):
    with pytest.raises(UnknownNameError) as err:
        get_model(typo)
    assert err.value.suggestions[0] == suggestion
    assert suggestion in str(err.value)
