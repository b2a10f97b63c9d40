"""Options shared by several commands, declared once.

Numbers arrive as strings and go through paramcalc's own grammar
(`15e12`, `7.5B`, `15T`, `8Ki`), which click's int and float types would
refuse. A command's parameter is named as the library's keyword, so an error
the library raises about `seq_len` is shown as `--seq-len` (cli/app.py).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

TargetArg = Annotated[str, typer.Argument(
    metavar="TARGET", help="a preset (llama-3.1-8b), a config.json or snapshot folder, a safetensors checkpoint, "
                           "a paramcalc .yaml spec, a Hugging Face model id (org/name), a count (7.5B), or "
                           "package.module:factory, your own PyTorch module: this IMPORTS AND RUNS YOUR CODE "
                           "(the current directory first), calling factory() under torch.device('meta'), and "
                           "example_inputs() from the same module if it defines one")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print exactly one JSON document on stdout")]
SeqLenOpt = Annotated[Optional[str], typer.Option(
    "--seq-len", "-s", metavar="TOKENS",
    help="tokens per sequence [default: the pre-training context for training memory and plans, else 2048; "
         "the learned-position limit when smaller; fixed for ViTs and CNNs]")]
BatchOpt = Annotated[str, typer.Option("--batch", "-b", metavar="N",
                                       help="sequences per step (micro-batch per GPU for memory)")]
AttentionOpt = Annotated[str, typer.Option(
    "--attention", metavar="eager|flash",
    help="eager: full s x s scores, counted and kept (transformers' eager; the MFU convention); "
         "flash: SDPA's fused kernels, the unmasked pairs only and no s x s tensor (aliases: dense, causal, sdpa)")]
DtypeOpt = Annotated[str, typer.Option("--dtype", metavar="DTYPE",
                                       help="weights and activations: fp32, fp16, bf16, fp8, int8, int4")]
GpuOpt = Annotated[str, typer.Option("--gpu", metavar="GPU",
                                     help="accelerator (paramcalc gpus lists them), or a GPU .yaml file")]
RECOMPUTE_HELP = ("activation recomputation: Korthikanti et al. 2022's selective or full, torchtitan's op-level "
                  "selective (op: every other matmul's output kept), or DeepSeek-V3's (deepseek: the norms, MLA "
                  "up-projections and MoE SwiGLU rerun)")
RECOMPUTE_METAVAR = "none|selective|full|op|deepseek"
RecomputeOpt = Annotated[str, typer.Option("--recompute", metavar=RECOMPUTE_METAVAR, help=RECOMPUTE_HELP)]
Fp8ActivationsOpt = Annotated[bool, typer.Option("--fp8-activations", help=(
    "with --dtype fp8: cache each Linear's input in fp8 for backward, the attention output in E5M6 "
    "(DeepSeek-V3, section 3.3.3)"))]
LoraRankOpt = Annotated[Optional[str], typer.Option(
    "--lora-rank", metavar="R", help="add LoRA adapters of this rank (Hu et al. 2021) and freeze the base model")]
LoraTargetsOpt = Annotated[Optional[str], typer.Option(
    "--lora-targets", metavar="NAMES", help="comma-separated linears to adapt [default: q_proj,v_proj]")]
LoraDropoutOpt = Annotated[Optional[str], typer.Option(
    "--lora-dropout", metavar="P", help=("dropout on each adapter's input (PEFT's lora_dropout): each adapter "
                                         "keeps its dropped copy and mask for backward [default: 0]"))]
