"""The `paramcalc` command. Each command parses its flags, makes one library
call and renders the result: a rich table, or one JSON document with --json.

Errors (docs/contract.md): the library raises UserError, which `main` prints on
stderr, its setting spelt as the flag that gave it (`seq_len` -> `--seq-len`),
and exits 2. Anything else is a bug: exit 3 with one line saying so
(`--debug` shows the traceback).
"""

from __future__ import annotations

import copy
import sys
from itertools import takewhile
from typing import Optional

import typer
from typer.core import TyperArgument, TyperOption
from typer.main import get_command_name
from typer.models import CommandInfo

from paramcalc.cli.emit import emit, quiet_stdout, say_warnings
from paramcalc.cli.options import (
    RECOMPUTE_METAVAR,
    AttentionOpt,
    BatchOpt,
    DtypeOpt,
    Fp8ActivationsOpt,
    GpuOpt,
    JsonOpt,
    LoraDropoutOpt,
    LoraRankOpt,
    LoraTargetsOpt,
    RecomputeOpt,
    SeqLenOpt,
    TargetArg,
)
from paramcalc.errors import UserError

_type_shown = TyperOption.display_type_rich


def _no_type_for_flags(self: TyperOption, ctx) -> str | None:
    """Help shows no `<bool>` beside a flag that takes no value (--json, --sp)."""
    return None if self.is_flag else _type_shown(self, ctx)


TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]
TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]  # TARGET says what it is

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Exact parameter counts, FLOPs, memory and GPU cost of neural networks.")
REPORT = "please report it, with the command line, to the paramcalc issue tracker"


def _version(value: bool) -> None:
    if value:
        from paramcalc import __version__

        sys.stdout.write(f"paramcalc {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show the traceback of an internal error (anywhere on "
                                                             "the command line)"),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """--debug is taken off the command line by `run`; it is declared here for the help."""


@app.command()
def count(target: TargetArg, lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None,
          revision: Optional[str] = typer.Option(None, metavar="REV", help=(
              "a Hugging Face model id's branch, tag or commit [default: main]")),
          json: JsonOpt = False) -> None:
    """Exact parameter count with a breakdown by component (trainable and frozen apart); a safetensors
    checkpoint is counted from its headers."""
    from paramcalc.analysis.count import count_params

    emit(count_params(target, lora_rank=lora_rank, lora_targets=lora_targets, revision=revision), json,
         _render("count"))


@app.command()
def flops(target: TargetArg, seq_len: SeqLenOpt = None, batch: BatchOpt = "1", attention: AttentionOpt = "eager",
          recompute: RecomputeOpt = "none", json: JsonOpt = False) -> None:
    """Matmul FLOPs of one forward and backward pass (2 FLOPs per multiply-add); recomputation as hardware FLOPs."""
    from paramcalc.analysis.flops import count_flops

    emit(count_flops(target, seq_len=seq_len, batch=batch, attention=attention, recompute=recompute),
         json, _render("flops"))


@app.command()
def memory(target: TargetArg,
           mode: str = typer.Option("train", metavar="train|infer", help="training step or inference"),
           seq_len: SeqLenOpt = None, batch: BatchOpt = "1", dtype: DtypeOpt = "bf16",
           kv_dtype: Optional[str] = typer.Option(None, metavar="DTYPE", help=(
               "KV cache dtype [default: --dtype for 16- and 32-bit weights; bf16 under fp8, int8 and int4 weights]")),
           precision: Optional[str] = typer.Option(None, metavar="RECIPE", help=(
               "mixed (ZeRO: 16-bit weights and grads, fp32 master and Adam: 16 B/param) | fp32 | amp | megatron "
               "| bf16 (pure bf16: no master, bf16 Adam state: 8 B/param) "
               "[default: fp32 for --dtype fp32, else mixed]")),
           optimizer: str = typer.Option("adamw", metavar="NAME",
                                         help="adamw | adamw-bf16 (bf16 moments, DeepSeek-V3) | adam | adam-8bit | "
                                              "adamw-8bit | paged-adamw | paged-adamw-8bit | sgd | sgd-momentum | "
                                              "lion | adafactor"),
           zero: str = typer.Option("0", metavar="0-3", help="ZeRO stage (3 = FSDP full sharding)"),
           dp: str = typer.Option("1", metavar="N", help="data-parallel GPUs"),
           tp: str = typer.Option("1", metavar="N", help="tensor-parallel GPUs"),
           pp: str = typer.Option("1", metavar="N", help="pipeline stages"),
           cp: str = typer.Option("1", metavar="N", help="context-parallel GPUs (each holds 1/cp of a sequence)"),
           ep: str = typer.Option("1", metavar="N", help="expert-parallel GPUs, within dp x cp (MoE)"),
           vpp: str = typer.Option("1", metavar="N", help="virtual stages per pipeline rank (interleaved 1F1B)"),
           micro_batches: Optional[str] = typer.Option(
               None, metavar="N", help="micro-batches per optimizer step (gradient accumulation) [default: --pp]"),
           sequence_parallel: bool = typer.Option(False, "--sp", help="sequence parallelism with TP "
                                                                      "(Korthikanti et al. 2022)"),
           recompute: RecomputeOpt = "none", fp8_activations: Fp8ActivationsOpt = False,
           attention: AttentionOpt = "flash",
           schedule: str = typer.Option("1f1b", "--schedule", metavar="1f1b|dualpipe", help=(
               "pipeline schedule: 1f1b (interleaved with --vpp) or DeepSeek-V3's DualPipe (two stages per rank)")),
           reshard: bool = typer.Option(True, "--reshard/--no-reshard",
                                        help="ZeRO-3/FSDP frees gathered weights after forward (--no-reshard: "
                                             "keeps them to backward, as Llama 3 did for its pipeline stages)"),
           fsdp2: Optional[bool] = typer.Option(None, "--fsdp2/--no-fsdp2", help=(
               "ZeRO-3 as torchtitan's FSDP2 runs it, as `estimate` plans take ZeRO-3: the loss on fp32-upcast "
               "logits, unsharded gradients accumulated in fp32 [default: with --zero 3 and the Megatron profile; "
               "--no-fsdp2: Megatron's fused loss]")),
           profile: str = typer.Option("auto", metavar="auto|transformers|megatron", help=(
               "whose saved tensors: transformers' eager reference, or Megatron-LM with Transformer Engine "
               "[default: megatron with --tp/--pp/--cp/--sp, else transformers]")),
           gpu: Optional[str] = typer.Option(None, metavar="GPU", help="say whether it fits on this GPU"),
           context_bytes: str = typer.Option("0.5", "--context-gib", metavar="GIB",
                                             help="calibrate: CUDA context and library workspaces per GPU, GiB"),
           fragmentation: str = typer.Option("0.05", "--fragmentation", metavar="SHARE",
                                             help="calibrate: allocator slack as a share of the tensors"),
           lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None, lora_dropout: LoraDropoutOpt = None,
           bnb_legacy: bool = typer.Option(False, "--bnb-legacy", help=(
               "QLoRA on bitsandbytes up to 0.42: 4-bit linears keep their inputs for the graph's life (until "
               "0.43.2), weights quantized from fp16 (until 0.43)")),
           double_quant: bool = typer.Option(True, "--double-quant/--no-double-quant", help=(
               "QLoRA's NF4 block scales double-quantized (4.127 bits a weight; --no-double-quant: fp32 scales, "
               "4.5 bits, transformers' default and LitGPT's bnb.nf4)")),
           trainer: str = typer.Option("hf", "--trainer", metavar="hf|litgpt", help=(
               "whose training loop: hf (transformers, PEFT, TRL, DeepSpeed) | litgpt (LitGPT's finetune scripts: "
               "the last step's logits held into the next forward, QLoRA's LM head quantized)")),
           longest_first: bool = typer.Option(False, "--longest-first", help=(
               "the run's longest batch comes first (lit-gpt 2023, HF's group_by_length): no earlier step's "
               "leftovers meet it")),
           offload: str = typer.Option("none", "--offload", metavar="none|optimizer|params|both", help=(
               "training state in CPU memory: optimizer (ZeRO-Offload), params (offload_param, ZeRO-3), both "
               "(FSDP CPU offload); reported as cpu_bytes")),
           offload_activations: bool = typer.Option(False, "--offload-activations", help=(
               "checkpointed layer inputs in CPU memory (torchtune; needs --recompute full)")),
           chunked_loss: bool = typer.Option(False, "--chunked-loss", help=(
               "fused linear cross-entropy: no full fp32 logits (Liger Kernel)")),
           optimizer_in_backward: bool = typer.Option(False, "--optimizer-in-backward", help=(
               "step and free each gradient in backward: no full gradient buffer (torchtune)")),
           json: JsonOpt = False) -> None:
    """Bytes per GPU: weights, gradients, optimizer state, activations, KV cache, overheads."""
    from paramcalc.analysis.memory import estimate_memory

    emit(estimate_memory(target, mode=mode, seq_len=seq_len, batch=batch, dtype=dtype, kv_dtype=kv_dtype,
                         precision=precision, optimizer=optimizer, zero=zero, dp=dp, tp=tp, pp=pp, cp=cp, ep=ep,
                         vpp=vpp, micro_batches=micro_batches, sequence_parallel=sequence_parallel,
                         recompute=recompute, attention=attention, reshard=reshard, profile=profile, gpu=gpu,
                         schedule=schedule, fsdp2=fsdp2,
                         context_bytes=_gib(context_bytes), fragmentation=fragmentation,
                         lora_rank=lora_rank, lora_targets=lora_targets, lora_dropout=lora_dropout,
                         bnb_legacy=bnb_legacy, double_quant=double_quant, trainer=trainer,
                         longest_first=longest_first, offload=offload,
                         offload_activations=offload_activations, chunked_loss=chunked_loss,
                         optimizer_in_backward=optimizer_in_backward, fp8_activations=fp8_activations),
         json, _render("memory"))


@app.command()
def estimate(target: TargetArg, gpu: GpuOpt = "h100-sxm",
             gpus: Optional[str] = typer.Option(None, "--gpus", metavar="N", help=(
                 "plan for exactly N GPUs [default: the smallest power of two that fits and finishes within "
                 "--days]")),
             tokens: Optional[str] = typer.Option(None, "--tokens", "-t", metavar="T",
                                                  help="training tokens [default: 20 x params]"),
             seq_len: SeqLenOpt = None,
             global_batch: Optional[str] = typer.Option(None, "--global-batch", metavar="SEQS", help=(
                 "sequences per optimizer step [default: about 4M tokens]")),
             micro_batch: Optional[str] = typer.Option(None, "--micro-batch", metavar="SEQS",
                                                       help="sequences per micro-batch [default: searched]"),
             tp: Optional[str] = typer.Option(None, "--tp", metavar="N", help="tensor-parallel GPUs (pins the plan)"),
             pp: Optional[str] = typer.Option(None, "--pp", metavar="N", help="pipeline stages (pins the plan)"),
             vpp: Optional[str] = typer.Option(None, "--vpp", metavar="N",
                                               help="virtual stages per pipeline rank [default: searched]"),
             cp: Optional[str] = typer.Option(None, "--cp", metavar="N", help="context-parallel GPUs (pins the plan)"),
             ep: Optional[str] = typer.Option(None, "--ep", metavar="N",
                                              help="expert-parallel GPUs within dp x cp (pins the plan)"),
             sp: Optional[bool] = typer.Option(None, "--sp/--no-sp", help="sequence parallelism [default: with TP]"),
             zero: Optional[str] = typer.Option(None, "--zero", metavar="0-3",
                                                help="ZeRO stage over dp x cp [default: searched]"),
             recompute: Optional[str] = typer.Option(None, "--recompute", metavar=RECOMPUTE_METAVAR, help=(
                 "activation recomputation; op: torchtitan's op-level selective; deepseek: DeepSeek-V3's norms, "
                 "MLA up-projections and MoE SwiGLU [default: searched among none, full and, with eager "
                 "attention, selective]")),
             optimizer: str = typer.Option("adamw", "--optimizer", metavar="NAME", help=(
                 "adamw (fp32 moments) | adamw-bf16 (bf16 moments, DeepSeek-V3) | another with a fixed state a "
                 "parameter (paramcalc memory --help lists them; not adafactor)")),
             fp8_activations: Fp8ActivationsOpt = False,
             schedule: str = typer.Option("1f1b", "--schedule", metavar="1f1b|dualpipe", help=(
                 "pipeline schedule: 1f1b (interleaved with --vpp), or DeepSeek-V3's DualPipe, which hides the "
                 "expert all-to-alls behind paired chunks (evaluated only when given)")),
             grad_reduce: str = typer.Option("fp32", "--grad-reduce", metavar="fp32|bf16", help=(
                 "precision gradients accumulate and reduce in: fp32 (Megatron-LM, torchtitan) or bf16 (NeMo's "
                 "performance recipes)")),
             attention: AttentionOpt = "flash",
             dtype: str = typer.Option("bf16", "--dtype", metavar="bf16|fp8", help=(
                 "bf16 mixed precision, or fp8 GEMMs as Transformer Engine and torchao train")),
             mfu: str = typer.Option("auto", "--mfu", metavar="auto|M",
                                     help="auto: the step time predicted from the plan; a number fixes MFU"),
             days: str = typer.Option("90", "--days", metavar="D",
                                      help="without --gpus: the longest run the cluster is sized for"),
             usd_per_hour: Optional[str] = typer.Option(None, "--usd-per-hour", metavar="USD",
                                                        help="price per GPU-hour"),
             comm_file: Optional[str] = typer.Option(None, "--comm", metavar="FILE",
                                                     help="a `bench-collectives` file: measured link speed"),
             kernels_file: Optional[str] = typer.Option(None, "--kernels", metavar="FILE", help=(
                 "a benchmarks/gpu_kernels.py file: measured kernel efficiencies")),
             lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None,
             json: JsonOpt = False) -> None:
    """Params, FLOPs, a training plan for a cluster, its step time, memory, GPU-hours and dollars."""
    from paramcalc.analysis.estimate import estimate as run

    emit(run(target, gpu=gpu, gpus=gpus, tokens=tokens, seq_len=seq_len, global_batch=global_batch,
             micro_batch=micro_batch, tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, sp=sp, zero=zero, recompute=recompute,
             attention=attention, dtype=dtype, mfu=mfu, days=days, usd_per_hour=usd_per_hour, comm_file=comm_file,
             kernels_file=kernels_file, schedule=schedule, grad_reduce=grad_reduce, optimizer=optimizer,
             fp8_activations=fp8_activations, lora_rank=lora_rank, lora_targets=lora_targets),
         json, _render("estimate"))


@app.command()
def gpus(json: JsonOpt = False) -> None:
    """The hardware catalog: dense peaks per dtype, memory, bandwidth, sources."""
    from paramcalc.catalog import gpu_catalog

    emit(gpu_catalog(), json, _render("gpus"))


@app.command()
def schema() -> None:
    """The JSON Schema of paramcalc's YAML spec format (for editors and validators)."""
    import json as _json

    from paramcalc.inputs.spec import spec_schema

    sys.stdout.write(_json.dumps(spec_schema(), indent=2) + "\n")


@app.command()
def presets(json: JsonOpt = False) -> None:
    """The embedded model presets, with family, size and source."""
    from paramcalc.catalog import preset_catalog

    emit(preset_catalog(), json, _render("presets"))


@app.command()
def cost(target: TargetArg, gpu: GpuOpt = "h100-sxm",
         tokens: str = typer.Option(..., "--tokens", "-t", metavar="T", help="training tokens (15e12, 15T)"),
         gpus: str = typer.Option("1", "--gpus", metavar="N", help="GPUs in the run (wall-clock = GPU-hours / N)"),
         mfu: str = typer.Option("0.4", "--mfu", metavar="M",
                                 help="model FLOPs utilisation in (0, 1]; absorbs communication"),
         seq_len: SeqLenOpt = None, batch: BatchOpt = "1", dtype: DtypeOpt = "bf16",
         usd_per_hour: Optional[str] = typer.Option(None, "--usd-per-hour", metavar="USD",
                                                    help="USD per GPU-hour [default: built-in table]"),
         recompute: str = typer.Option("none", metavar=RECOMPUTE_METAVAR, help=(
             "activation recomputation (op: torchtitan's op-level selective; deepseek: DeepSeek-V3's), reported as "
             "hardware FLOPs (HFU) only")),
         calibration: Optional[str] = typer.Option(None, "--calibration", metavar="FILE",
                                                   help="use the MFU measured by `paramcalc bench --calibration-out`"),
         lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None,
         json: JsonOpt = False) -> None:
    """GPU-hours, wall-clock, dollars and energy of one training run (model FLOPs / (dense peak x MFU))."""
    from paramcalc.analysis.cost import estimate_cost

    emit(estimate_cost(target, tokens=tokens, gpu=gpu, gpus=gpus, mfu=mfu, seq_len=seq_len, batch=batch, dtype=dtype,
                       usd_per_hour=usd_per_hour, recompute=recompute, calibration=calibration, lora_rank=lora_rank,
                       lora_targets=lora_targets), json, _render("cost"))


_CHECK_RENDER = {"table": "check", "markdown": "check_markdown", "junit": "check_junit", "json": None}


@app.command()
def check(budget: str = typer.Argument(..., metavar="BUDGET.yaml", help="a budget file (docs/ci.md)"),
          format: str = typer.Option("table", "--format", "-f", metavar="table|json|markdown|junit",
                                     help="how to print the results"),
          json: JsonOpt = False) -> None:
    """CI budgets: exit 0 when every budget holds, 1 when one is exceeded, 2 on bad input."""
    from paramcalc.analysis.check import check_budgets

    if format not in _CHECK_RENDER:
        raise UserError(f"unknown format {format!r}", field="format", fix="use table, json, markdown or junit")
    report = check_budgets(budget)
    as_json = json or format == "json"
    emit(report, as_json, _render(_CHECK_RENDER[format] or "check"))
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def diff(a: str = typer.Argument(..., metavar="A", help="a TARGET: preset, config.json, .yaml spec or count"),
         b: str = typer.Argument(..., metavar="B", help="a TARGET to compare with A (deltas are B - A)"),
         seq_len: SeqLenOpt = None, json: JsonOpt = False) -> None:
    """Two models side by side: params, FLOPs per token, training memory, KV cache, with deltas."""
    from paramcalc.analysis.diff import diff as compare

    emit(compare(a, b, seq_len=seq_len), json, _render("diff"))


@app.command()
def size(target: Optional[str] = typer.Option(None, "--target", metavar="N",
                                              help="parameter count to aim at (7B, 7e9, 405B)"),
         flops: Optional[str] = typer.Option(None, "--flops", metavar="C", help=(
             "instead of --target: a FLOP budget; aims at the compute-optimal N = sqrt(C / 120) (Chinchilla)")),
         tolerance: str = typer.Option("0.02", "--tolerance", metavar="SHARE",
                                       help="largest relative deviation from the target"),
         vocab_size: str = typer.Option("128256", "--vocab", metavar="V", help="vocabulary size (Llama 3: 128256)"),
         max_candidates: str = typer.Option("10", "--max", metavar="N",
                                            help="candidates shown, closest first (0: all)"),
         tied: bool = typer.Option(False, "--tied", help="tie the LM head to the token embedding"),
         kv_heads: str = typer.Option("8,4,2,mha", "--kv-heads", metavar="LIST",
                                      help="K/V head counts allowed, preferred first"),
         json: JsonOpt = False) -> None:
    """Llama-style architectures whose exact parameter count is within the tolerance of a target."""
    from paramcalc.analysis.sizing import propose_architectures

    emit(propose_architectures(target, flops=flops, tolerance=tolerance, vocab_size=vocab_size, tied=tied,
                               max_candidates=max_candidates, kv_heads=kv_heads), json, _render("size"))


@app.command()
def checkpoint(target: TargetArg, dtype: DtypeOpt = "bf16",
               optimizer: str = typer.Option("adamw", metavar="NAME", help=(
                   "adamw | adam | adam-8bit | sgd | sgd-momentum | lion | adafactor")),
               precision: Optional[str] = typer.Option(None, metavar="RECIPE", help=(
                   "mixed (16-bit weights + fp32 master) | fp32 | amp | megatron "
                   "[default: fp32 for fp32, else mixed]")),
               train_dtype: Optional[str] = typer.Option(None, "--train-dtype", metavar="DTYPE",
                                                         help="weights as trained [default: --dtype]"),
               zero: str = typer.Option("0", metavar="0-3",
                                        help="ZeRO stage (3 = FSDP full sharding): what each rank writes"),
               dp: str = typer.Option("1", metavar="N", help="data-parallel ranks"),
               keep: str = typer.Option("1", metavar="K", help="checkpoints kept on disk"),
               lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None,
               json: JsonOpt = False) -> None:
    """Checkpoint bytes on disk: weights only, resumable, per-rank shard, K kept (LoRA: adapters only)."""
    from paramcalc.analysis.checkpoint import checkpoint_sizes

    emit(checkpoint_sizes(target, dtype=dtype, precision=precision, optimizer=optimizer, zero=zero, dp=dp, keep=keep,
                          train_dtype=train_dtype, lora_rank=lora_rank, lora_targets=lora_targets), json,
         _render("checkpoint"))


@app.command()
def serve(target: TargetArg, gpu: GpuOpt = "h100-sxm",
          tp: str = typer.Option("1", metavar="N", help="tensor-parallel GPUs per replica"),
          pp: str = typer.Option("1", metavar="N", help="pipeline stages per replica (split the layers)"),
          prompt: str = typer.Option("1024", metavar="TOKENS", help="prompt tokens"),
          output: str = typer.Option("256", metavar="TOKENS", help="output tokens"),
          batch: str = typer.Option("1,8,32,128", "--batch", "-b", metavar="B[,B...]",
                                    help="concurrent sequences, comma-separated"),
          dtype: str = typer.Option("bf16", "--dtype", metavar="DTYPE", help=(
              "weights: fp32, fp16, bf16, fp8 (W8A8 at the fp8 peak), int8 or int4 (weight-only GPTQ/AWQ, "
              "16-bit matmuls)")),
          kv_dtype: Optional[str] = typer.Option(
              None, metavar="DTYPE", help="KV cache dtype [default: 16-bit: bf16 under fp8/int8/int4 weights]"),
          gpu_memory_utilization: str = typer.Option(
              "0.9", "--gpu-memory-utilization", metavar="SHARE",
              help="share of each GPU's memory the engine may use (vLLM's default)"),
          max_batched_tokens: Optional[str] = typer.Option(
              None, "--max-batched-tokens", metavar="TOKENS",
              help="tokens of vLLM's profiling forward and of one scheduler step (chunked prefill's budget) "
                   "[default: 8192 on 70 GiB+ GPUs but the A100, else 2048]"),
          concurrency: Optional[str] = typer.Option(
              None, "--concurrency", metavar="C[,C...]",
              help="continuous batching: requests in flight (a closed loop of clients), comma-separated"),
          rate: Optional[str] = typer.Option(
              None, "--rate", metavar="R[,R...]",
              help="continuous batching: requests per second arriving (Poisson, open loop), comma-separated"),
          draft: Optional[str] = typer.Option(
              None, "--draft", metavar="MODEL", help="speculative decoding with this draft model (a TARGET)"),
          accept: str = typer.Option("0.7", "--accept", metavar="A",
                                     help="probability the target accepts each draft token (with --draft)"),
          lookahead: str = typer.Option("4", "--lookahead", metavar="K",
                                        help="draft tokens proposed per verify step (with --draft)"),
          json: JsonOpt = False) -> None:
    """Inference on a roofline: time to first token, time per output token, tokens/s, KV capacity;
    continuous batching (--concurrency, --rate) and speculative decoding (--draft)."""
    from paramcalc.analysis.serve import estimate_serving

    emit(estimate_serving(target, gpu=gpu, tp=tp, pp=pp, prompt=prompt, output=output, batches=batch, dtype=dtype,
                          kv_dtype=kv_dtype, gpu_memory_utilization=gpu_memory_utilization,
                          max_batched_tokens=max_batched_tokens, concurrency=concurrency, rate=rate, draft=draft,
                          accept=accept, lookahead=lookahead), json, _render("serve"))


@app.command()
def bench(target: TargetArg,
          device: Optional[str] = typer.Option(None, metavar="cuda|cpu", help="default: cuda when available"),
          dtype: Optional[str] = typer.Option(None, "--dtype", metavar="DTYPE",
                                              help="fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on CPU)"),
          layers: str = typer.Option("1", "--layers", metavar="N", help="copies of the first layer stage to run"),
          seq_len: SeqLenOpt = None, batch: BatchOpt = "1",
          attention: AttentionOpt = "eager",
          warmup: str = typer.Option("3", metavar="N", help="untimed steps first"),
          steps: str = typer.Option("10", metavar="N", help="timed steps"),
          with_head: bool = typer.Option(False, "--with-head", help="add the embedding, final norm, LM head and loss"),
          gpu: Optional[str] = typer.Option(None, "--gpu", metavar="GPU",
                                            help="catalog GPU for MFU (default: guessed from the CUDA device)"),
          calibration_out: Optional[str] = typer.Option(None, "--calibration-out", metavar="FILE", help=(
              "write the measured MFU for `paramcalc cost --calibration` (docs/bench.md)")),
          json: JsonOpt = False) -> None:
    """Time real layers on a device and compare FLOPs and saved bytes with paramcalc's predictions."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    _need_torch()
    from paramcalc.torchref.bench import run_bench, write_calibration

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bench", total=None)

        def tick(phase: str, done: int, total: int) -> None:
            bar.update(task, description=f"bench: {phase}", completed=done, total=total)

        report = run_bench(target, device=device, dtype=dtype, layers=layers, seq_len=seq_len, batch=batch,
                           attention=attention, warmup=warmup, steps=steps, with_head=with_head, gpu=gpu,
                           require_mfu=calibration_out is not None, progress=tick)
    if calibration_out:
        write_calibration(report, calibration_out)
    emit(report, json, _render("bench"))


@app.command()
def verify(target: TargetArg,
           layers: str = typer.Option("1", "--layers", metavar="N", help="layers instantiated per layer stage"),
           seq_len: str = typer.Option("128", "--seq-len", "-s", metavar="TOKENS",
                                       help="tokens per sequence (small: counting runs on meta)"),
           batch: BatchOpt = "1", json: JsonOpt = False) -> None:
    """Check the analytic counts against real modules: parameters, FlopCounterMode and fvcore, per component."""
    _need_torch("fvcore.nn")
    from paramcalc.torchref.verify import run_verify

    emit(run_verify(target, layers=layers, seq_len=seq_len, batch=batch), json, _render("verify"))


@app.command()
def plan(pipeline: str = typer.Argument(..., metavar="PIPELINE.yaml", help="a pipeline file (docs/plan.md)"),
         json: JsonOpt = False) -> None:
    """Cost a training pipeline: pretrain, SFT, reward, PPO and DPO stages and a hyperparameter search."""
    from paramcalc.analysis.plan import plan_pipeline

    emit(plan_pipeline(pipeline), json, _render("plan"))


@app.command("bench-collectives")
def bench_collectives(out: str = typer.Option(..., "--out", metavar="FILE",
                                              help="where to write the measurements (JSON)"),
                      nproc: str = typer.Option("2", "--nproc", metavar="N",
                                                help="processes on this machine (one per GPU)"),
                      backend: str = typer.Option("gloo", metavar="gloo|nccl", help="gloo (CPU) | nccl (GPUs)"),
                      max_bytes: str = typer.Option("64Mi", "--max-bytes", metavar="BYTES", help=(
                          "largest message, the sweep's last size: decimal (k, M, G: 64M = 64,000,000) or "
                          "binary (Ki, Mi, Gi: 64Mi = 2^26) suffixes, with or without B")),
                      json: JsonOpt = False) -> None:
    """All-reduce, all-gather and reduce-scatter bandwidth over message sizes, under torchrun."""
    _need_torch()
    from paramcalc.torchref.collectives import launch

    emit(launch(out, nproc=nproc, backend=backend, max_bytes=max_bytes), json, _render("collectives"))


@app.command()
def sweep(target: TargetArg,
          figure: str = typer.Option("memory", metavar="memory|time", help="memory per GPU, by part, or wall-clock"),
          over: str = typer.Option("seq-len", metavar="seq-len|batch|gpus", help="the setting swept"),
          values: str = typer.Option("512,1024,2048,4096,8192", metavar="LIST",
                                     help="comma-separated values of --over"),
          mode: str = typer.Option("train", metavar="train|infer", help="memory: training step or inference"),
          attention: AttentionOpt = "flash", recompute: RecomputeOpt = "none",
          seq_len: SeqLenOpt = None, batch: BatchOpt = "1", gpu: GpuOpt = "h100-sxm",
          tokens: Optional[str] = typer.Option(None, "--tokens", metavar="T",
                                               help="time: training tokens [default: 20 x params]"),
          mfu: str = typer.Option("0.4", "--mfu", metavar="M", help="time: model FLOPs utilisation"),
          plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE",
                                             help="draw the sweep to FILE.svg (or .png with matplotlib)"),
          json: JsonOpt = False) -> None:
    """One figure across a range: memory against sequence length, batch or GPUs; time against GPUs."""
    from paramcalc.analysis.sweep import sweep as run

    flags = {"mode": mode, "attention": attention, "recompute": recompute, "batch": batch}
    if seq_len is not None:
        flags["seq_len"] = seq_len
    report = run(target, figure=figure, over=over, values=values, gpu=gpu, tokens=tokens, mfu=mfu, **flags)
    if plot:
        from paramcalc.cli.plot import write

        write(report, plot)
    emit(report, json, _render("sweep"))


def _gib(text: str) -> int:
    from paramcalc.units import GIB, parse_number

    value = parse_number(text, field="context_bytes")
    if value < 0:
        raise UserError(f"must be >= 0, got {text!r}", field="context_bytes")
    return int(value * GIB)


def _need_torch(*modules: str) -> None:
    """bench, verify and bench-collectives run real modules: when torch (or another module of
    the `torch` extra, fvcore for verify) cannot be imported, say which extra brings it."""
    import importlib
    import warnings

    for name in ("torch", *modules):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fvcore's import warns about torch.jit's deprecation
                importlib.import_module(name)
        except ImportError as e:  # not installed, or installed but broken (a missing dependency of its own)
            missing = (getattr(e, "name", None) or name).split(".")[0]
            raise UserError(f"this command runs real PyTorch modules, and {missing} cannot be imported",
                            fix="pip install 'paramcalc[torch]'") from None


def _render(name: str):
    def call(report):
        from paramcalc.cli import render

        getattr(render, name)(report)

    return call


def _command_name(command: CommandInfo) -> str:
    """A registered command's name: its own, or typer's spelling of its function's."""
    if command.name:
        return command.name
    assert command.callback is not None  # @app.command() registers the function it decorates
    return get_command_name(command.callback.__name__)


def _only_invoked(args: list[str]) -> typer.Typer:
    """The app with just the command being run. Typer inspects the signature of
    every registered command before it parses anything, about 10 ms of a cold
    `paramcalc count`; one command's help and errors read the same without its
    siblings. Anything else (no command, an unknown one, a root option) gets
    the whole app: it lists and suggests."""
    options = list(takewhile(lambda arg: arg.startswith("-"), args))
    name = args[len(options)] if len(options) < len(args) else None
    chosen = [c for c in app.registered_commands if _command_name(c) == name]
    if not chosen or options:
        return app
    only = copy.copy(app)
    only.registered_commands = chosen
    return only


def flag_for(field: str, args: list[str]) -> str:
    """The flag of the invoked command whose parameter is named `field` (`seq_len` -> `--seq-len`)."""
    options = list(takewhile(lambda arg: arg.startswith("-"), args))
    name = args[len(options)] if len(options) < len(args) else None
    command = typer.main.get_command(app)
    command = getattr(command, "commands", {}).get(name, command)  # the invoked command of the group
    for param in command.params:
        if param.name == field:
            flags = [o for o in param.opts if o.startswith("--")]
            return flags[0] if flags else (param.metavar or param.name)
    return field


def run(args: list[str]) -> int:
    """The command line on `args` (without the program name); returns the exit code:
    0 done, 1 a budget exceeded (check), 2 bad input or usage, 3 a bug."""
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]  # --debug works before or after the command
    from paramcalc.errors import collect_warnings

    with collect_warnings():
        try:
            return _run(args, debug)
        finally:
            say_warnings()  # what no report carried (the command failed before it had one)


def _run(args: list[str], debug: bool) -> int:
    try:
        _only_invoked(args)(args=args, prog_name="paramcalc")
    except SystemExit as e:  # click ends every run so: 0, 1 (check), 2 (its own usage errors)
        return e.code if isinstance(e.code, int) else 0
    except UserError as e:
        say_warnings()  # before the error, which they may explain
        print(f"paramcalc: error: {e.render(lambda setting: flag_for(setting, args))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # a reader closed the pipe (`| head`): what was computed stands
        quiet_stdout()
    except Exception as e:  # a bug, not the user's input
        if debug:
            raise
        print(f"paramcalc: internal error: {type(e).__name__}: {e}; this is a bug, not your input: {REPORT} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 3
    return 0
