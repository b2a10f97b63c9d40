"""LoRA's activation memory against what autograd saves in transformers' own layers with frozen
weights and PEFT-style adapters (meta device, bf16, saved_tensors_hooks): a frozen nn.Linear keeps
no input, an adapter keeps the one it reads (or, under lora_dropout, its own dropped copy and the
noise), and bitsandbytes' 4-bit linears (QLoRA) keep theirs (blocks/lora.py Adapted.saved)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pathlib import Path  # noqa: E402

from hf_reference import hf_model  # noqa: E402
from saved_bytes import saved_bytes  # noqa: E402
from torch import nn  # noqa: E402

from paramcalc.analysis.memory import estimate_memory  # noqa: E402
from paramcalc.inputs.hf import from_config  # noqa: E402

LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=101, hidden_size=64,
             intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64, pad_token_id=0)
OPT = dict(model_type="opt", architectures=["OPTForCausalLM"], vocab_size=101, hidden_size=64, ffn_dim=256,
           num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=64,
           dropout=0.0, attention_dropout=0.0, pad_token_id=0)
R = 4


class LoraLinear(nn.Module):
    """PEFT's lora.Linear forward: base(x) + lora_B(lora_A(dropout(x))) * scaling."""

    def __init__(self, base: nn.Linear, rank: int, dropout: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device="meta", dtype=base.weight.dtype)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device="meta", dtype=base.weight.dtype)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * 2.0


def measured(cfg: dict, targets: tuple[str, ...], dropout: float, seq: int, batch: int) -> int:
    model = hf_model(cfg, dtype=torch.bfloat16)
    model.requires_grad_(False)
    for module in list(model.modules()):
        for child, linear in list(module.named_children()):
            if child in targets and isinstance(linear, nn.Linear):
                setattr(module, child, LoraLinear(linear, R, dropout))
    # PEFT's enable_input_require_grads: the embeddings' output requires grad, so the first layer's
    # ops before its first adapter are recorded like every other layer's
    model.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out.requires_grad_(True))
    model.train()
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    return saved_bytes(model, buffers=True, input_ids=ids, labels=ids)


def predicted(cfg: dict, targets: tuple[str, ...], dropout: float, seq: int, batch: int) -> int:
    return estimate_memory(from_config(cfg), mode="train", seq_len=seq, batch=batch, dtype="bf16",
                           attention="eager", lora_rank=R, lora_targets=",".join(targets),
                           lora_dropout=dropout or None).memory.activations


@pytest.mark.parametrize("cfg,targets", [
    (LLAMA, ("q_proj", "v_proj")),
    (LLAMA, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    (LLAMA, ("down_proj",)),
    (OPT, ("q_proj", "v_proj")),
    (OPT, ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")),
], ids=["llama-qv", "llama-all", "llama-down", "opt-qv", "opt-all"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_activations_match_transformers_with_frozen_weights(cfg, targets, dropout):
    names = {"out_proj": "o_proj", "fc1": "up_proj", "fc2": "down_proj"}  # paramcalc's names for OPT's linears
    ours = tuple(names.get(t, t) for t in targets)
    assert predicted(cfg, ours, dropout, 16, 2) == measured(cfg, targets, dropout, 16, 2)


def test_each_adapter_keeps_its_dropped_copy_and_the_frozen_mlp_keeps_no_input():
    """Llama-2-7B at 1,024 tokens, adapters on q and v: the MLP's input (h) and down_proj's (ffn) go
    (frozen gate, up and down keep no input), the two norms' normalised copies (2h) go, and dropout
    gives q's and v's adapters a dropped copy of the attention input and its noise each (2 x 2 x 2h)."""
    from paramcalc.analysis.memory import estimate_memory as memory

    T, h, f, layers = 1024, 4096, 11008, 32
    kw = dict(seq_len=T, precision="bf16", lora_rank=8, attention="flash")
    plain, dropped = memory("llama-2-7b", **kw), memory("llama-2-7b", **kw, lora_dropout=0.05)
    full = memory("llama-2-7b", seq_len=T, precision="bf16", attention="flash")
    adapters = 2 * 2 * T * 8  # lora_B's r-wide inputs (q and v)
    frozen = 2 * T * (h + f + 2 * h)  # MLP input, down_proj input, two normalised copies
    outside = 2 * T * h + 8 * T + 2 * T * h  # the head's input, the ids, the final norm's normalised copy
    assert full.memory.activations - plain.memory.activations == layers * (frozen - adapters) + outside
    # with dropout the attention input (h) is no longer lora_A's: each adapter keeps a copy and its noise
    assert dropped.memory.activations - plain.memory.activations == layers * (2 * (2 + 2) * T * h - 2 * T * h)


def test_qlora_keeps_4_bit_linear_inputs_only_on_bitsandbytes_before_0_43_2():
    """bitsandbytes' MatMul4Bit kept its input in `ctx.tensors = (A, B)` until PR #1270 (0.43.2) made it
    `(None, B)`: a 4-bit linear now keeps no input, as a frozen nn.Linear; `bnb_legacy` keeps the old
    behaviour (the frozen linears' inputs stay, the norms' normalised copies still go)."""
    from paramcalc.analysis.memory import estimate_memory as memory

    T, h, f, layers = 1024, 4096, 11008, 32
    kw = dict(seq_len=T, lora_rank=8, attention="flash")
    lora = memory("llama-2-7b", **kw, precision="bf16").memory.activations
    qlora = memory("llama-2-7b", **kw, dtype="int4")
    legacy = memory("llama-2-7b", **kw, dtype="int4", bnb_legacy=True)
    assert qlora.memory.activations == lora
    assert legacy.memory.activations - lora == layers * 2 * T * (h + f)
    assert any("since 0.43.2" in n for n in qlora.notes) and any("before 0.43.2" in n for n in legacy.notes)


def test_bnb_legacy_without_qlora_exits_2():
    from cli import assert_user_error, run

    assert_user_error(run("memory", "llama-2-7b", "--lora-rank", "8", "--bnb-legacy"), "bnb_legacy", "int4")


def test_layers_trained_in_full_beside_the_adapters_keep_their_inputs(tmp_path):
    """modules_to_save inside the layers (a spec's lora.modules_to_save) trains their weights: the layers keep
    what trained layers keep, the adapters' own tensors besides."""
    import yaml

    from paramcalc.analysis.memory import estimate_memory as memory

    spec = yaml.safe_load((Path(__file__).parent.parent / "presets" / "models" / "llama-2-7b.yaml").read_text())
    lora = tmp_path / "lora.yaml"
    lora.write_text(yaml.safe_dump(spec | {"lora": {"rank": 8, "modules_to_save": ["layers"]}}))
    full = memory("llama-2-7b", seq_len=1024).memory.activations
    trained = memory(str(lora), seq_len=1024).memory.activations
    assert trained - full == 32 * 2 * 2 * 1024 * 8  # lora_B's r-wide inputs on q and v, nothing dropped


@pytest.mark.parametrize("args,fragment", [
    (("--lora-dropout", "0.1"), "--lora-rank"),
    (("--lora-rank", "8", "--lora-dropout", "1"), "[0, 1)"),
    (("--lora-rank", "8", "--lora-dropout", "x"), "--lora-dropout"),
])
def test_lora_dropout_mistakes_exit_2_naming_the_flag(args, fragment):
    from cli import assert_user_error, run

    assert_user_error(run("memory", "llama-2-7b", *args), "--lora-dropout", fragment)


def test_a_pipeline_s_lora_dropout_is_checked_and_kept(tmp_path):
    import yaml
    from cli import assert_user_error, run

    from paramcalc.analysis.plan import plan_pipeline

    def write(dropout):
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [
            {"kind": "sft", "tokens": "1B", "seq_len": 1024, "global_batch": 8, "micro_batch": 1,
             "lora": {"rank": 8, "dropout": dropout}, "parallel": {"dp": 8}}]}))
        return path

    assert_user_error(run("plan", str(write(1.5))), "p.yaml", "dropout")
    plain, dropped = (plan_pipeline(write(p)).stages[0].memory.peak_per_gpu for p in (0, 0.1))
    assert dropped > plain


def test_the_validation_specs_count_their_published_parameters():
    """tests/data/specs: each model file the validation tables use counts what its source publishes."""
    import yaml

    from paramcalc.analysis.count import count_params

    for path in sorted((Path(__file__).parent / "data" / "specs").glob("*.yaml")):
        want = yaml.safe_load(path.read_text()).get("expected_params")
        if want:
            assert count_params(str(path)).params.total == want, path.name


def test_a_paged_optimizer_fits_when_all_but_its_state_does():
    """bitsandbytes' paged optimizers keep their state in CUDA unified memory, evicted to CPU memory when the
    GPU runs out (QLoRA, section 3): the verdict counts the rest, and says the state pages."""
    from paramcalc.analysis.memory import estimate_memory as memory

    spec = str(Path(__file__).parent / "data" / "specs" / "llama-3.2-1b.yaml")
    kw = dict(seq_len=2048, gpu="rtx-4090")
    plain, paged = memory(spec, **kw, optimizer="adamw"), memory(spec, **kw, optimizer="paged-adamw")
    assert plain.fits is not None and paged.fits is not None
    assert plain.memory.total_per_gpu == paged.memory.total_per_gpu > plain.fits.gpu_bytes
    assert paged.memory.total_per_gpu - paged.memory.optimizer <= paged.fits.gpu_bytes
    assert not plain.fits.fits and paged.fits.fits and paged.fits.headroom < 0
    assert any(n.startswith("fits by paging") for n in paged.notes)
    assert plain.fits.max_batch == 0 < paged.fits.max_batch  # the largest micro-batch pages the state too


MIXTRAL = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], vocab_size=101, hidden_size=64,
               intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64, pad_token_id=0)


QWEN2_MOE = dict(model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], vocab_size=101, hidden_size=64,
                 intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                 num_experts=4, num_experts_per_tok=2, moe_intermediate_size=40, shared_expert_intermediate_size=48,
                 max_position_embeddings=64, pad_token_id=0)


def _measured_moe(cfg: dict) -> int:
    model = hf_model(cfg, dtype=torch.bfloat16, experts="grouped_mm")
    model.requires_grad_(False)
    for module in list(model.modules()):
        for child, linear in list(module.named_children()):
            if child in ("q_proj", "v_proj") and isinstance(linear, nn.Linear):
                setattr(module, child, LoraLinear(linear, R, 0.0))
    model.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out.requires_grad_(True))
    model.train()
    ids = torch.zeros(2, 16, dtype=torch.long, device="meta")
    return saved_bytes(model, buffers=True, input_ids=ids, labels=ids)


def test_frozen_moe_layers_keep_no_gathered_tokens_or_down_inputs():
    """Adapters on q and v: the frozen router and experts keep none of their inputs (transformers' grouped-matmul
    experts path, as test_activations measures MoE). Mixtral exactly; Qwen2-MoE, whose gated shared expert's output
    the gating product keeps, within 1% (16 bytes a token more are predicted, not identified)."""
    assert predicted(MIXTRAL, ("q_proj", "v_proj"), 0.0, 16, 2) == _measured_moe(MIXTRAL)
    assert predicted(QWEN2_MOE, ("q_proj", "v_proj"), 0.0, 16, 2) == pytest.approx(_measured_moe(QWEN2_MOE), rel=0.01)


def test_bnb_legacy_keeps_the_4_bit_inputs_and_still_drops_the_q_k_norms_copies():
    """Qwen3-8B: bitsandbytes before 0.43.2 keeps the MLP's input (h) and down_proj's (ffn) in each of 36 layers;
    its q/k norms are torch's, whose normalised copies go either way."""
    from paramcalc.analysis.memory import estimate_memory as memory

    T, h, f, layers = 1024, 4096, 12288, 36
    kw = dict(seq_len=T, lora_rank=8, dtype="int4")
    legacy, modern = (memory("qwen3-8b", **kw, bnb_legacy=b).memory.activations for b in (True, False))
    assert legacy - modern == layers * 2 * T * (h + f)


def test_estimate_and_plan_let_a_paged_optimizer_s_state_page_out(tmp_path):
    import yaml
    from cli import run

    args = ("estimate", "llama-2-7b", "--gpus", "1", "--gpu", "a100-80gb", "--seq-len", "512", "--recompute", "full",
            "--tokens", "10M", "--json")
    paged, plain = run(*args, "--optimizer", "paged-adamw"), run(*args, "--optimizer", "adamw")
    assert paged.code == 0 and plain.code == 0
    assert paged.json["memory"]["total_per_gpu"] > 80 * 2**30
    assert paged.json["memory"]["fits"] and not plain.json["memory"]["fits"]
    assert "fits by paging" in paged.json["verdict"]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [
        {"kind": "sft", "tokens": "10M", "seq_len": 512, "global_batch": 8, "micro_batch": 1,
         "parallel": {"dp": 1, "optimizer": "paged-adamw", "recompute": "full"}}]}))
    from paramcalc.analysis.plan import plan_pipeline

    st = plan_pipeline(path).stages[0]
    assert st.memory.fits and st.memory.peak_per_gpu > st.memory.gpu_bytes
    assert any(n.startswith("fits by paging") for n in st.notes)


QWEN3 = dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], vocab_size=101, hidden_size=64,
             intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             max_position_embeddings=64, pad_token_id=0)
OLMO2 = dict(model_type="olmo2", architectures=["Olmo2ForCausalLM"], vocab_size=101, hidden_size=64,
             intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64, pad_token_id=0, eos_token_id=1)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_frozen_q_and_k_norms_keep_no_normalised_copy(dropout):
    """Qwen3's per-head q/k RMSNorms, exactly; OLMo 2's whole-projection ones within 0.5% (it keeps 16 bytes a
    token more, not identified)."""
    targets = ("q_proj", "v_proj")
    assert predicted(QWEN3, targets, dropout, 16, 2) == measured(QWEN3, targets, dropout, 16, 2)
    assert predicted(OLMO2, targets, dropout, 16, 2) == pytest.approx(measured(OLMO2, targets, dropout, 16, 2),
                                                                      rel=0.005)
