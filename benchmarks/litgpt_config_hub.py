"""LitGPT's config hub table against paramcalc (issue #20, post-training memory).

Source: Lightning-AI/litgpt, config_hub/finetune/README.md at commit 03ffc5515b251fb7e3a461efd0e3c163e45b6b3b
(2024-08-01). Its table gives, per config file, the peak memory of `litgpt finetune {lora,full}` (the scripts print
`torch.cuda.max_memory_allocated() / 1e9` as "Memory used", litgpt/finetune/lora.py and full.py) on A10G GPUs
(24 GB), bf16-true, the Alpaca2k data set, or OOM. Every row with figures is here (the two gemma2-2b rows carry
"xxxxx" placeholders and are left out), misses included:

    .venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); from litgpt_config_hub import litgpt_rows; \
from pathlib import Path; import tempfile; [print(r) for r in litgpt_rows(Path(tempfile.mkdtemp()))]"

Where the figures come from (git blame / git log -S of the README): the commit "Update table with new benchmark
results" 5895df10 (2024-04-26) for falcon, gemma-2b, gemma-7b, llama-2-7b, llama-3-8b, mistral, phi-2, stablelm and
tiny-llama; f247be87 (2024-07-05) for phi-3; 916a84ca (2024-07-23) for gemma2-9b; fd71063c (2024-07-24) for
llama-3.1-8b. Each config's settings (lora_r, lora_* targets, quantize, precision, devices, micro_batch_size,
max_seq_length, epochs) are read at the commit that last changed them (named per model below), all before the
figures' commit and unchanged up to 03ffc551; the table's epochs, micro-batch and 512-token length agree with them.

Not compared: the time column. The runtimes depend on the Alpaca2k samples' token counts (each batch is padded to
its longest sample, litgpt/data/base.py), which are not available here.

Each row: source, setup, the published figure, paramcalc's prediction and the error (prediction / measured - 1).
The published figure is `torch.cuda.max_memory_allocated()`, the tensors' peak, so the prediction is paramcalc's
tensors: total_per_gpu less the CUDA context, the allocator's fragmentation and NCCL's buffers, which the caching
allocator never counts (`tensor_bytes`). An OOM row asks whether paramcalc's total says "does not fit" on an A10G's
23,028 MiB. Rows that ran the same config on the same one device (the "4xA10G" LoRA rows, tiny-llama's two full
rows) and published the same figure are one row here, with both machines named.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paramcalc.analysis.memory import estimate_memory  # noqa: E402

SPECS = ROOT / "tests" / "data" / "specs"
PRESETS = ROOT / "presets" / "models"
SOURCE = "LitGPT config hub (finetune/README.md)"

# LitGPT's lora_* switches as paramcalc's linear names. LitGPT fuses q, k and v into one `attn` linear for every
# model (litgpt/model.py CausalSelfAttention); its LoRAQKVLinear (litgpt/lora.py) gives each enabled part its own r
# rows of A and of B, the same parameters as separate q_proj/k_proj/v_proj adapters. lora_projection is the
# attention output (o_proj); lora_mlp adapts every MLP linear (LLaMAMLP/GemmaMLP: fc_1, fc_2, proj = gate, up,
# down; GptNeoxMLP: fc, proj = up, down); lora_head the LM head (paramcalc's head linear "decoder").
QV = "q_proj,v_proj"


def _all_targets(gated: bool) -> str:
    mlp = "gate_proj,up_proj,down_proj" if gated else "up_proj,down_proj"
    return f"q_proj,k_proj,v_proj,o_proj,{mlp},decoder"


# Bytes outside torch's caching allocator, which max_memory_allocated does not see (analysis/memory.py _overheads)
UNALLOCATED = ("overhead/cuda_context", "overhead/fragmentation", "overhead/nccl_buffers")


def tensor_bytes(report) -> int:
    """What torch.cuda.max_memory_allocated measures: the peak less the terms outside the allocator. A
    paged optimizer's state is outside it too: bitsandbytes allocates it with cudaMallocManaged
    (bitsandbytes/functional.py get_paged, GlobalPageManager), not through torch's caching allocator, for
    tensors of 100,000 elements or more (`optimizer_paged`)."""
    return (report.memory.total_per_gpu - sum(report.breakdown.get(k, 0) for k in UNALLOCATED)
            - report.memory.optimizer_paged)


# (spec or preset file, gated MLP, extra spec fields as LitGPT builds the model)
MODELS: dict[str, tuple[Path, bool, dict]] = {
    "falcon-7b": (SPECS / "falcon-7b.yaml", False, {}),
    "gemma-2b": (SPECS / "gemma-2b.yaml", True, {}),
    "gemma-7b": (SPECS / "gemma-7b.yaml", True, {}),
    # LitGPT's Gemma-2-9b config (litgpt/config.py at 916a84ca and 03ffc551) sets lm_head_bias=True
    "gemma-2-9b": (PRESETS / "gemma-2-9b.yaml", True, {"lm_head_bias": True}),
    "llama-2-7b": (PRESETS / "llama-2-7b.yaml", True, {}),
    "llama-3-8b": (SPECS / "llama-3-8b.yaml", True, {}),
    "llama-3.1-8b": (PRESETS / "llama-3.1-8b.yaml", True, {}),
    "mistral-7b-v0.2": (SPECS / "mistral-7b-v0.2.yaml", True, {}),
    "mistral-7b": (PRESETS / "mistral-7b.yaml", True, {}),
    # LitGPT's Phi-2 MLP is GptNeoxMLP: torch.nn.functional.gelu(x, approximate="tanh") (config gelu_approximate
    # "tanh"), one native kernel keeping its input, where transformers' gelu_new is composed of four kept tensors
    "phi-2": (SPECS / "phi-2.yaml", False, {"hidden_act": "gelu_pytorch_tanh"}),
    "phi-3": (SPECS / "phi-3-mini-4k-instruct.yaml", True, {}),
    "stablelm-base-alpha-3b": (SPECS / "stablelm-base-alpha-3b.yaml", False, {}),
    "tiny-llama": (SPECS / "tinyllama-1.1b.yaml", True, {}),
    # the resource tables' models (lit-gpt's config.py at 8641822): phi-1_5 with gelu_approximate "tanh" as Phi-2
    "phi-1.5": (SPECS / "phi-1.5.yaml", False, {"hidden_act": "gelu_pytorch_tanh"}),
    "llama-2-13b": (PRESETS / "llama-2-13b.yaml", True, {}),
    "falcon-40b": (SPECS / "falcon-40b.yaml", False, {}),
}

# The table's rows, in its order: (config, model, micro-batch, machine, measured GB or None for OOM) and the config's
# settings: kind (lora / qlora / full), lora_r, targets ("qv": lora_query and lora_value only; "all": query, key,
# value, projection, mlp and head), devices. All configs: precision bf16-true, max_seq_length 512; the qlora ones
# quantize: bnb.nf4.
#   falcon-7b/{lora,qlora}.yaml at 0d207708: r 32, q+v, micro-batch 1, devices 1, 4 epochs
#   gemma-2b/full.yaml at 84a73fd0: devices 4, micro-batch 1, 1 epoch; lora.yaml: r 8, all, micro-batch 2, devices 1;
#     qlora.yaml: r 16, all, micro-batch 2 (84a73fd0; the 12.62 GB lora figure first appeared at bc3c337f with r 16 and
#     4 epochs, and 5895df10 re-measured it at the 84a73fd0 settings the table's 2 epochs name)
#   gemma-7b/{lora,qlora}.yaml at 84a73fd0: r 16, all, micro-batch 1, devices 1
#   gemma2-9b/{lora,qlora}.yaml at 916a84ca: r 16, all, micro-batch 1, devices 1
#   llama-2-7b/full.yaml at 41dece20: devices 4, micro-batch 4; {lora,qlora}.yaml at 092a759d: r 32, q+v, micro-batch 2
#   llama-3-8b/*.yaml at 58c5b188: full devices 4, micro-batch 4; lora r 32, q+v, micro-batch 1; qlora micro-batch 2
#   llama-3.1-8b/*.yaml at fd71063c: as llama-3-8b's (full.yaml says devices 4, the table's machine is 1xA10G)
#   mistral-7b-v0.2/*.yaml at 134a0714, mistral-7b/*.yaml at 0d207708: r 32, q+v, micro-batch 2, devices 1
#   phi-2/*.yaml at 3e9fd36c: full devices 2, micro-batch 4; lora and qlora r 8, all, micro-batch 4
#   phi-3/*.yaml at f247be87: full devices 1, micro-batch 4; lora and qlora r 8, all, micro-batch 4
#   stablelm-base-alpha-3b/*.yaml at 0d207708: full devices 2, micro-batch 1; lora and qlora r 32, q+v, micro-batch 1
#   tiny-llama/full.yaml at 4a9b7e62: devices 1, micro-batch 4; {lora,qlora}.yaml at 41397ed6: r 32, all, micro-batch 8
# The "4xA10G" lora rows ran with the config's devices: 1: their peak memory and runtime equal the 1xA10G rows'
# (16.69 GB and 24.84 / 24.94 min for falcon-7b), and the README says "All runs are single-GPU experiments, use
# `--devices 4` to utilize more than one GPU". The full rows run the config's devices on the 4xA10G machine (4 or 2,
# FSDP); tiny-llama's full.yaml has devices 1, and its two rows agree.
ROWS = [
    ("falcon-7b/lora.yaml", "falcon-7b", "lora", 32, "qv", 1, 1, "1xA10G", 16.69),
    ("falcon-7b/lora.yaml", "falcon-7b", "lora", 32, "qv", 1, 1, "4xA10G", 16.69),
    ("falcon-7b/qlora.yaml", "falcon-7b", "qlora", 32, "qv", 1, 1, "1xA10G", 9.44),
    ("gemma-2b/full.yaml", "gemma-2b", "full", 0, "", 1, 4, "4xA10G", 17.43),
    ("gemma-2b/lora.yaml", "gemma-2b", "lora", 8, "all", 2, 1, "1xA10G", 12.62),
    ("gemma-2b/lora.yaml", "gemma-2b", "lora", 8, "all", 2, 1, "4xA10G", 12.62),
    ("gemma-2b/qlora.yaml", "gemma-2b", "qlora", 16, "all", 2, 1, "1xA10G", 11.58),
    ("gemma-7b/lora.yaml", "gemma-7b", "lora", 16, "all", 1, 1, "1xA10G", None),
    ("gemma-7b/lora.yaml", "gemma-7b", "lora", 16, "all", 1, 1, "4xA10G", None),
    ("gemma-7b/qlora.yaml", "gemma-7b", "qlora", 16, "all", 1, 1, "1xA10G", 17.18),
    ("gemma2-9b/lora.yaml", "gemma-2-9b", "lora", 16, "all", 1, 1, "1xA10G", None),
    ("gemma2-9b/lora.yaml", "gemma-2-9b", "lora", 16, "all", 1, 1, "4xA10G", None),
    ("gemma2-9b/qlora.yaml", "gemma-2-9b", "qlora", 16, "all", 1, 1, "1xA10G", 20.92),
    ("llama-2-7b/full.yaml", "llama-2-7b", "full", 0, "", 4, 4, "4xA10G", None),
    ("llama-2-7b/lora.yaml", "llama-2-7b", "lora", 32, "qv", 2, 1, "1xA10G", 19.77),
    ("llama-2-7b/lora.yaml", "llama-2-7b", "lora", 32, "qv", 2, 1, "4xA10G", 19.77),
    ("llama-2-7b/qlora.yaml", "llama-2-7b", "qlora", 32, "qv", 2, 1, "1xA10G", 13.68),
    ("llama-3-8b/full.yaml", "llama-3-8b", "full", 0, "", 4, 4, "4xA10G", None),
    ("llama-3-8b/lora.yaml", "llama-3-8b", "lora", 32, "qv", 1, 1, "1xA10G", 19.73),
    ("llama-3-8b/lora.yaml", "llama-3-8b", "lora", 32, "qv", 1, 1, "4xA10G", 19.73),
    ("llama-3-8b/qlora.yaml", "llama-3-8b", "qlora", 32, "qv", 2, 1, "1xA10G", 17.41),
    # the table's machine is one A10G (full.yaml's devices 4 cannot run there): one GPU
    ("llama-3.1-8b/full.yaml", "llama-3.1-8b", "full", 0, "", 4, 1, "1xA10G", None),
    ("llama-3.1-8b/lora.yaml", "llama-3.1-8b", "lora", 32, "qv", 1, 1, "1xA10G", 19.73),
    ("llama-3.1-8b/qlora.yaml", "llama-3.1-8b", "qlora", 32, "qv", 2, 1, "1xA10G", 17.41),
    ("mistral-7b-v0.2/lora.yaml", "mistral-7b-v0.2", "lora", 32, "qv", 2, 1, "1xA10G", 20.66),
    ("mistral-7b-v0.2/lora.yaml", "mistral-7b-v0.2", "lora", 32, "qv", 2, 1, "4xA10G", 20.66),
    ("mistral-7b-v0.2/qlora.yaml", "mistral-7b-v0.2", "qlora", 32, "qv", 2, 1, "1xA10G", 14.29),
    ("mistral-7b/lora.yaml", "mistral-7b", "lora", 32, "qv", 2, 1, "1xA10G", 20.66),
    ("mistral-7b/lora.yaml", "mistral-7b", "lora", 32, "qv", 2, 1, "4xA10G", 20.66),
    ("mistral-7b/qlora.yaml", "mistral-7b", "qlora", 32, "qv", 2, 1, "1xA10G", 14.29),
    ("phi-2/full.yaml", "phi-2", "full", 0, "", 4, 2, "4xA10G", 14.44),
    ("phi-2/lora.yaml", "phi-2", "lora", 8, "all", 4, 1, "1xA10G", 13.98),
    ("phi-2/lora.yaml", "phi-2", "lora", 8, "all", 4, 1, "4xA10G", 13.98),
    ("phi-2/qlora.yaml", "phi-2", "qlora", 8, "all", 4, 1, "1xA10G", 14.27),
    ("phi-3/full.yaml", "phi-3", "full", 0, "", 4, 1, "1xA10G", 17.01),
    ("phi-3/lora.yaml", "phi-3", "lora", 8, "all", 4, 1, "1xA10G", 19.75),
    ("phi-3/qlora.yaml", "phi-3", "qlora", 8, "all", 4, 1, "1xA10G", 19.13),
    ("stablelm-base-alpha-3b/full.yaml", "stablelm-base-alpha-3b", "full", 0, "", 1, 2, "4xA10G", 21.23),
    ("stablelm-base-alpha-3b/lora.yaml", "stablelm-base-alpha-3b", "lora", 32, "qv", 1, 1, "1xA10G", 8.58),
    ("stablelm-base-alpha-3b/lora.yaml", "stablelm-base-alpha-3b", "lora", 32, "qv", 1, 1, "4xA10G", 8.58),
    ("stablelm-base-alpha-3b/qlora.yaml", "stablelm-base-alpha-3b", "qlora", 32, "qv", 1, 1, "1xA10G", 5.24),
    ("tiny-llama/full.yaml", "tiny-llama", "full", 0, "", 4, 1, "1xA10G", 14.10),
    ("tiny-llama/full.yaml", "tiny-llama", "full", 0, "", 4, 1, "4xA10G", 14.10),
    ("tiny-llama/lora.yaml", "tiny-llama", "lora", 32, "all", 8, 1, "1xA10G", 13.50),
    ("tiny-llama/qlora.yaml", "tiny-llama", "qlora", 32, "all", 8, 1, "1xA10G", 16.24),
]


def _litgpt_spec(folder: Path, model: str) -> str:
    """The model as LitGPT builds it, written to `folder`: the Hugging Face shapes of the spec or preset, with
    - an untied LM head: LitGPT's GPT has its own `lm_head` nn.Linear beside `transformer.wte` and never ties them
      (litgpt/model.py at 5895df10, GPT.__init__); convert_hf_checkpoint.py copies the embedding into lm_head.weight
      when a checkpoint has none (Falcon, Gemma), so the head's weights are held twice;
    - no dropout: LitGPT's model has no dropout module and calls SDPA with dropout_p=0.0 (litgpt/model.py), whatever
      the Hugging Face config says (Phi-2's resid_pdrop 0.1); only the LoRA branch drops (lora_dropout)."""
    path, _, extra = MODELS[model]
    spec = yaml.safe_load(path.read_text())
    spec.pop("expected_params", None)  # the untied head changes the count
    spec |= {"tie_word_embeddings": False, "hidden_dropout": 0.0, "attention_dropout": 0.0,
             "embedding_dropout": 0.0, **extra}
    out = folder / f"litgpt-{model}.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(out)


def _settings(model: str, kind: str, r: int, targets: str, micro: int, devices: int) -> dict:
    """estimate_memory's arguments for one config as LitGPT runs it."""
    # max_seq_length 512: LitGPT truncates the samples to it (litgpt/data/base.py SFTDataset; the collate pads a
    # batch to its longest sample) and sets model.max_seq_length = min(longest sample, 512) (finetune/lora.py fit);
    # the longest batch sets the peak
    kw: dict = dict(seq_len=512, batch=micro, gpu="a10g", trainer="litgpt")
    if model == "gemma-2-9b":
        # Gemma 2's attention soft-capping: LitGPT computes q @ k^T, tanh, the mask and the softmax (in fp32)
        # itself instead of SDPA (litgpt/model.py at 916a84ca and 03ffc551, "with softcapping we cannot use SDPA")
        kw["attention"] = "eager"
    if kind == "full":
        # bf16-true: weights, gradients and torch.optim.AdamW's exp_avg / exp_avg_sq (zeros_like the bf16 params)
        # in bf16, no fp32 master (finetune/full.py: torch.optim.AdamW at 5895df10, instantiate_torch_optimizer
        # "AdamW" later)
        kw["precision"] = "bf16"
        if devices > 1:
            # devices > 1: FSDPStrategy(auto_wrap_policy={Block}, activation_checkpointing_policy={Block},
            # state_dict_type="full", limit_all_gathers=True, cpu_offload=False) (finetune/full.py): full sharding
            # over the devices and each Block checkpointed
            kw |= dict(zero=3, dp=devices, recompute="full")
        # one device: strategy "auto", no checkpointing. The loss (both scripts): chunked_cross_entropy
        # (litgpt/utils.py) splits the logits in 128-token chunks but keeps every chunk's graph until backward,
        # and upcasts nothing to fp32: not a fused loss, so chunked_loss stays off
        return kw
    # lora_dropout: 0.05 in every config (LitGPT's default): each LoRALinear drops its input before lora_A. LitGPT's
    # fused qkv has one dropout for q, k and v (LoRAQKVLinear) where paramcalc gives each adapter its own (PEFT's
    # way): errs high by one copy on the q+v rows
    kw |= dict(lora_rank=r, lora_targets=QV if targets == "qv" else _all_targets(MODELS[model][1]), lora_dropout=0.05)
    if kind == "lora":
        # finetune/lora.py: the base frozen in bf16 (bf16-true), LoRA A/B and torch.optim.AdamW state in bf16; one
        # device (devices > 1 would take the same FSDPStrategy with checkpointing as full.py); the LM head runs in
        # 128-token chunks (model(input_ids, lm_head_chunk_size=128)), all kept for backward
        kw["precision"] = "bf16"
    else:
        # quantize bnb.nf4: Lightning's BitsandbytesPrecision("nf4", bfloat16) swaps every nn.Linear, the LM head's
        # included (no ignore_modules: trainer litgpt), for bitsandbytes' Linear4bit without double quantization
        # (_NF4Linear: compress_statistics=False); the optimizer is bitsandbytes' PagedAdamW (32-bit state; lora.py
        # at 5895df10, utils.instantiate_bnb_optimizer later); bitsandbytes 0.42.0 (LitGPT's pyproject at
        # 5895df10): MatMul4Bit kept each input (fixed in 0.43.2)
        kw |= dict(dtype="int4", optimizer="paged-adamw", bnb_legacy=True, double_quant=False)
    return kw


# LitGPT's resource tables (tutorials/resource-tables.md, "Finetuning with LoRA on 1 GPU": last updated 10/20/2023,
# lit-gpt commit 8641822, one A100-SXM4-40GB, PyTorch 2.1.0, bitsandbytes 0.41.1, --precision bf16-true, Alpaca at its
# default length). lit-gpt's finetune/lora.py at that commit: r 8, alpha 16, lora_dropout 0.05 on query and value
# only (its trainable counts agree: 4,194,304 for Llama 2 7B, 12,042,240 for Falcon-40B's 8 K/V groups); no
# checkpointing; the longest sample in the first batch (get_batch's longest_seq_ix at iteration 0);
# torch.optim.AdamW, or bitsandbytes' PagedAdamW under --quantize bnb.*, which takes Lightning's
# BitsandbytesPrecision: "nf4" without, "nf4-dq" with double quantization. Batches are padded to their longest sample,
# and the longest sets the peak: the table gives it per tokenizer (Llama 2 1,304 tokens, phi-1.5 1,044, StableLM 1,034,
# Falcon 1,079). "Max GPU RAM" is torch.cuda.max_memory_allocated. Every row of the table, OOMs included:
# (model, quantize, micro-batch, measured GB or None for OOM). Not compared: the adapter tables (LLaMA-Adapter, which
# paramcalc does not model) and the multi-GPU table, whose peaks are not the training step's: Llama 2 7B on 2 GPUs
# (FSDP with checkpointing) peaks at 22.18 GB, above the 21.30 GB of one GPU without either, which sharding and
# checkpointing can only lower (the checkpoint's loading, not modelled, is the likely peak).
RESOURCE_TOKENS = {"phi-1.5": 1044, "stablelm-base-alpha-3b": 1034, "llama-2-7b": 1304, "llama-2-13b": 1304,
                   "falcon-40b": 1079}
RESOURCE_ROWS = [
    ("phi-1.5", None, 1, 4.82), ("phi-1.5", "nf4", 1, 3.78), ("phi-1.5", "nf4-dq", 1, 3.72),
    ("phi-1.5", None, 2, 6.76), ("phi-1.5", None, 4, 10.68),
    ("stablelm-base-alpha-3b", None, 1, 9.69), ("stablelm-base-alpha-3b", "nf4", 1, 6.35),
    ("stablelm-base-alpha-3b", "nf4-dq", 1, 6.19), ("stablelm-base-alpha-3b", None, 2, 12.10),
    ("stablelm-base-alpha-3b", None, 4, 16.92),
    ("llama-2-7b", None, 1, 21.30), ("llama-2-7b", "nf4", 1, 14.14), ("llama-2-7b", "nf4-dq", 1, 13.84),
    ("llama-2-7b", None, 2, 29.07), ("llama-2-7b", None, 4, None),
    ("llama-2-13b", None, 1, 38.12), ("llama-2-13b", "nf4", 1, 23.14), ("llama-2-13b", "nf4-dq", 1, 22.55),
    ("llama-2-13b", None, 2, None), ("llama-2-13b", None, 4, None),
    ("falcon-40b", None, 1, None), ("falcon-40b", "nf4", 1, None), ("falcon-40b", "nf4-dq", 1, None),
]


def resource_rows(folder: Path, rows: list[tuple]) -> list[tuple[str, str, str, str, str]]:
    """The resource tables' `rows` against paramcalc, as `litgpt_rows` compares the config hub's, on an A100-40GB."""
    out = []
    for model, quantize, micro, measured in rows:
        tokens = RESOURCE_TOKENS[model]
        # lit-gpt's get_batch put the longest sample first ("so potential OOMs happen right away"): no earlier
        # step's leftovers meet it (longest_first)
        kw: dict = dict(seq_len=tokens, batch=micro, gpu="a100-40gb", trainer="litgpt", precision="bf16",
                        lora_rank=8, lora_targets=QV, lora_dropout=0.05, longest_first=True)
        if quantize:
            kw |= dict(dtype="int4", optimizer="paged-adamw", bnb_legacy=True, double_quant=quantize == "nf4-dq")
        r = estimate_memory(_litgpt_spec(folder, model), **kw)
        what = f"QLoRA {quantize}" if quantize else "LoRA"
        setup = (f"{model} {what} r=8 q,v, dropout 0.05, micro-batch {micro}, {tokens} tokens, bf16-true, "
                 "A100-40GB")
        out.append(_compared("LitGPT resource tables (LoRA on 1 GPU)", setup, r, measured))
    return out


def _compared(source: str, setup: str, r, measured: float | None) -> tuple[str, str, str, str, str]:
    """One row: an OOM against paramcalc's fit verdict on its whole total, else the tensors against the peak."""
    assert r.fits is not None and r.memory.total_per_gpu is not None
    fits, total = r.fits.fits, r.memory.total_per_gpu / 1e9
    if measured is None:
        return (source, setup, "OOM", f"{'fits' if fits else 'does not fit'} ({total:.2f} GB in all)",
                "WRONG" if fits else "right")
    gb = tensor_bytes(r) / 1e9
    error = f"{(gb / measured - 1) * 100:+.1f}%" + ("" if fits else ", verdict WRONG")
    return source, setup, f"{measured:.2f} GB", f"{gb:.2f} GB" + ("" if fits else ", does not fit"), error


def litgpt_rows(folder: Path) -> list[tuple[str, str, str, str, str]]:
    specs = {row[1]: _litgpt_spec(folder, row[1]) for row in ROWS}
    out: list[tuple[str, str, str, str, str]] = []
    seen: dict[tuple, int] = {}
    for config, model, kind, r, targets, micro, devices, machine, measured in ROWS:
        same = (config, micro, devices, measured)
        if same in seen:  # the same run on the same one device, published twice: one row naming both machines
            i = seen[same]
            row = out[i]
            out[i] = (row[0], f"{row[1]} and {machine}", *row[2:])
            continue
        seen[same] = len(out)
        r_ = estimate_memory(specs[model], **_settings(model, kind, r, targets, micro, devices))
        if kind == "full":
            what = f"full, bf16-true AdamW, {devices} GPU" + (" (FSDP, checkpointing)" if devices > 1 else "")
        else:
            names = "q,v" if targets == "qv" else "q,k,v,proj,mlp,head"
            what = f"{'QLoRA nf4' if kind == 'qlora' else 'LoRA'} r={r} {names}, dropout 0.05, 1 GPU"
        out.append(_compared(SOURCE, f"{config}: {what}, micro-batch {micro}, 512 tokens, on {machine}", r_, measured))
    return out


if __name__ == "__main__":
    import tempfile

    for row in litgpt_rows(Path(tempfile.mkdtemp())):
        print(" | ".join(row))
