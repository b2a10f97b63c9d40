"""Bytes per GPU (`paramcalc memory`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class Setup(Result):
    """Every setting that shapes memory, as parsed and checked (analysis/memory.py)."""

    mode: str = Field("train", description="train | infer")
    dtype: str = Field("bf16", description="weights and activations")
    kv_dtype: str | None = Field(None, description="KV cache [default: dtype]")
    precision: str = Field("mixed", description="mixed | fp32 | amp | megatron")
    optimizer: str = "adamw"
    zero: int = Field(0, description="ZeRO stage 0-3")
    dp: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = Field(1, description="context-parallel ranks: each holds 1/cp of every sequence")
    ep: int = Field(1, description="expert-parallel ranks (inside dp x cp): each holds 1/ep of the routed experts")
    vpp: int = Field(1, description="virtual pipeline stages per GPU (interleaved 1F1B)")
    schedule: str = Field("1f1b", description="pipeline schedule: 1f1b (interleaved with vpp > 1) | dualpipe "
                                              "(DeepSeek-V3: two stages per rank, pp + 1 micro-batches in flight)")
    micro_batches: int = Field(1, description="micro-batches per step on each pipeline (in flight: up to pp)")
    sequence_parallel: bool = False
    recompute: str = Field("none", description="none | selective | full | op (torchtitan's op-level selective) | "
                                               "deepseek (DeepSeek-V3: norms, MLA up-projections, MoE SwiGLU rerun)")
    fp8_activations: bool = Field(False, description="fp8 training caches each Linear's input in fp8 for backward "
                                                     "(DeepSeek-V3, section 3.3.3)")
    attention: str = Field("flash", description="eager | flash")
    reshard: bool = Field(True, description="ZeRO-3 / FSDP frees the gathered weights after forward")
    fsdp2: bool = Field(False, description="ZeRO-3 as torchtitan's FSDP2 runs it (the plans' ZeRO-3, and by "
                                           "default the Megatron profile's): PyTorch's loss on fp32-upcast logits, "
                                           "unsharded gradients accumulated in the reduce dtype")
    grad_reduce: str = Field("fp32", description="the dtype gradients are reduced and accumulated in: fp32 | bf16")
    profile: str = Field("transformers", description="whose saved tensors: transformers (eager reference) | "
                                                     "megatron (Megatron-LM + Transformer Engine)")
    quantized_base: bool = Field(False, description="QLoRA: the frozen base stored in int4, adapters trained in bf16")
    bnb_legacy: bool = Field(False, description="QLoRA on bitsandbytes up to 0.42: 4-bit linears keep their inputs "
                                                "until the graph is freed (until 0.43.2), weights quantized from fp16 "
                                                "(until 0.43)")
    double_quant: bool = Field(True, description="QLoRA's NF4 block scales double-quantized (4.127 bits a weight; "
                                                 "false: fp32 scales, 4.5 bits)")
    longest_first: bool = Field(False, description="the run's longest batch comes first (lit-gpt 2023's get_batch, "
                                                   "HF's group_by_length), so no earlier step's leftovers meet it")
    trainer: str = Field("hf", description="whose training loop: hf (transformers, PEFT, TRL, DeepSpeed) | litgpt "
                                           "(LitGPT's finetune scripts on Lightning Fabric: the last step's logits "
                                           "and graph held through the next forward, QLoRA's LM head quantized)")
    offload: str = Field("none", description="training state on the CPU: none | optimizer (ZeRO-Offload) | params "
                                             "(DeepSpeed offload_param) | both (FSDP CPUOffload)")
    offload_activations: bool = Field(False, description="checkpointed layer inputs kept on the CPU (torchtune)")
    chunked_loss: bool = Field(False, description="fused linear cross-entropy: no full logits (Liger kernel)")
    optimizer_in_backward: bool = Field(False, description="each gradient is stepped and freed in backward "
                                                           "(torchtune's optimizer_in_bwd)")

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def shards(self) -> int:
        """The ranks ZeRO shards over: data and context parallel together (Megatron, torchtitan)."""
        return self.dp * self.cp


class Fit(Result):
    """Whether the per-GPU total fits a GPU, and the largest batch that does."""

    gpu: str
    gpu_bytes: int
    fits: bool
    headroom: int = Field(description="gpu_bytes - total_per_gpu (negative: short by that much)")
    gpus: int = Field(description="dp x tp x pp")
    max_batch: int = Field(description="the largest micro-batch (serving: concurrent sequences) that fits; 0: none")


class Memory(Result):
    weights: int
    gradients: int
    optimizer: int
    activations: int | None
    kv_cache: int | None
    model_states_per_gpu: int
    overhead: int | None
    total_per_gpu: int | None
    fits: bool | None = Field(None, description="with a GPU: whether total_per_gpu fits its memory")
    cpu_bytes: int = Field(0, description="bytes per GPU held in CPU memory by offload (beside total_per_gpu)")
    pcie_bytes_per_step: int = Field(0, description="bytes each GPU moves over PCIe per optimizer step "
                                                    "(optimizer offload: the gradients' last copy out, 16-bit "
                                                    "weights in)")
    pcie_bytes_per_micro_batch: int = Field(0, description="bytes each GPU moves over PCIe per micro-batch "
                                                           "(parameter and activation offload; ZeRO-Offload's "
                                                           "gradient accumulation round trip)")
    cpu_optimizer_params: int = Field(0, description="parameters each GPU's process steps on the CPU "
                                                     "(optimizer offload)")
    optimizer_paged: int = Field(0, description="of optimizer, the bytes a paged bitsandbytes optimizer keeps in CUDA "
                                                "managed memory (tensors of 100,000 elements or more), which may page "
                                                "out to CPU memory and which torch.cuda.max_memory_allocated does "
                                                "not count")


class MemoryReport(Report):
    command: str = "memory"
    mode: str
    seq_len: int
    batch: int
    settings: Setup
    memory: Memory
    breakdown: dict[str, int | None] = Field({})
    fits: Fit | None = Field(None, description="with a GPU: whether it fits, and the largest batch that does")
