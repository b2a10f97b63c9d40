"""Options shared by several commands, declared once.

Numbers arrive as strings and go through paramcalc's own grammar
(`15e12`, `7.5B`, `15T`), which click's int and float types would refuse.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

TargetArg = Annotated[str, typer.Argument(
    metavar="TARGET", help="a preset (llama-3.1-8b), a config.json, a paramcalc .yaml spec, or a count (7.5B)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print exactly one JSON document on stdout")]
SeqLenOpt = Annotated[Optional[str], typer.Option(
    "--seq-len", "-s", help="tokens per sequence [default: 2048; the learned-position limit when smaller]")]
BatchOpt = Annotated[str, typer.Option("--batch", "-b", help="sequences per step (micro-batch per GPU for memory)")]
AttentionFlopsOpt = Annotated[str, typer.Option(
    "--attention", help="dense: full s x s score matmuls (eager, the MFU convention); causal: unmasked part only (flash)")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="weights and activations: fp32, fp16, bf16, fp8, int8, int4")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="accelerator (paramcalc gpus lists them), or a GPU .yaml file")]
LoraRankOpt = Annotated[Optional[str], typer.Option(
    "--lora-rank", help="add LoRA adapters of this rank (Hu et al. 2021) and freeze the base model")]
LoraTargetsOpt = Annotated[Optional[str], typer.Option(
    "--lora-targets", help="comma-separated linears to adapt [default: q_proj,v_proj]")]
