"""`paramcalc bench`: real full-width layers on a real device, measured
against what paramcalc predicts for them.

One run: build N copies of the target's first layer stage (optionally with
the embedding, final norm and LM head and a causal-LM loss) in the dtype on
the device; one instrumented step counts forward and backward matmul FLOPs
(FlopCounterMode) and the bytes saved for backward (saved_tensors_hooks, each
storage once, parameters excluded); then W warm-up steps and K timed steps of
forward + backward (CUDA events on GPU, perf_counter on CPU) give seconds per
step, achieved TFLOP/s (3 x forward FLOPs / seconds: model FLOPs, the PaLM
convention) and MFU against the catalog's dense peak.

Predictions come from the blocks: forward FLOPs = the layer's `flops(Pass)` x N
(dense attention: FlopCounterMode counts the full score rectangle, also for
causal SDPA); backward = 2 x forward, plus the score recomputation a fused SDPA
backward does (hardware work); activations = the layer's `saved(Pass,
Activations)` x N with core.memory's conventions (see reference.py).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from paramcalc.blocks.base import Block, Pass, nest, peak_live, scale
from paramcalc.blocks.embed import Embeddings, LMHead
from paramcalc.blocks.moe import MoE
from paramcalc.errors import UserError
from paramcalc.network import Stage, TransformerNetwork, unwrap
from paramcalc.results.bench import Bench, BenchReport, Check, Measured, Predicted
from paramcalc.units import parse_natural, parse_positive_int

if TYPE_CHECKING:  # torch is imported when a bench runs, not with this module
    import torch

    from paramcalc.inputs.gpu_file import Gpu

TOLERANCE = 0.10  # a prediction within 10% of the measurement is "ok"
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

Progress = Callable[[str, int, int], None]  # (phase, done, total)


def check(figure: str, predicted: int | None, measured: int | None) -> Check:
    if predicted is None or measured is None or predicted == 0:
        exact = predicted == measured and predicted is not None
        return Check(figure=figure, predicted=predicted, measured=measured, ratio=None, exact=exact,
                     verdict="ok" if exact else "unknown")
    ratio = measured / predicted
    return Check(figure=figure, predicted=predicted, measured=measured, ratio=ratio, exact=measured == predicted,
                 verdict="ok" if abs(ratio - 1) <= TOLERANCE else "differs")


# Substrings of torch.cuda.get_device_name(), most specific first, to catalog names.
_GPU_NAMES = (("gb200", "gb200"), ("h100 pcie", "h100-pcie"), ("h100", "h100-sxm"), ("h200", "h200"),
              ("h800", "h800"), ("a100-pcie-40gb", "a100-40gb"), ("a100-sxm4-40gb", "a100-40gb"),
              ("a100", "a100-80gb"), ("b200", "b200"), ("l40s", "l40s"), ("l4", "l4"), ("a10g", "a10g"),
              ("4090", "rtx-4090"), ("mi325x", "mi325x"), ("mi300x", "mi300x"), ("mi250x", "mi250x"))


def guess_gpu(device_name: str) -> str | None:
    """The catalog entry for a CUDA device name ('NVIDIA H100 80GB HBM3' -> h100-sxm), or None."""
    name = device_name.lower()
    return next((gpu for tag, gpu in _GPU_NAMES if tag in name), None)


def resolve_device(device: str | None):
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise UserError(f"unknown device {device!r}", field="device", fix="use cuda or cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA is not available on this machine (torch "
                        f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)",
                        field="device", fix="run on a GPU machine, or use the cpu")
    name = torch.cuda.get_device_name() if device == "cuda" else \
        f"CPU ({platform.machine() or 'unknown'}, {torch.get_num_threads()} threads)"
    return torch.device(device), name


@contextmanager
def _default_dtype(dtype):
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


class _Stack:
    """What one step runs: [embedding] -> N layers -> [final norm -> head -> loss]."""

    def __init__(self, stages: dict, layers: list, a, dtype, device, with_head: bool):
        import torch
        from torch import nn

        with torch.device(device), _default_dtype(dtype):
            self.layers = nn.ModuleList(block.module(a) for block in layers)
            self.embedding = self.final_norm = self.head = None
            if with_head:
                self.embedding = stages["embedding"].block.module(a)
                self.final_norm = stages["final_norm"].block.module(a) if "final_norm" in stages else None
                head = stages["head"].block
                self.head = head.module(a)
                if head.tied:
                    self.head.tie(self.embedding.tokens)
        parts = [m for m in (self.embedding, self.layers, self.final_norm, self.head) if m is not None]
        self.modules = nn.ModuleList(parts).to(device=device, dtype=dtype)
        self.params = list(self.modules.parameters())
        self.vocab = stages["head"].block.vocab if with_head else None

    def __call__(self, x, labels=None):
        import torch.nn.functional as F

        h = self.embedding(x) if self.embedding is not None else x
        for layer in self.layers:
            h = layer(h)
        if self.head is None:
            return h
        if self.final_norm is not None:
            h = self.final_norm(h)
        logits = self.head(h)
        # transformers' ForCausalLMLoss: fp32 logits, labels padded by one and shifted (at batch 1 the
        # shifted labels stay a view of the padded storage), mean cross-entropy ignoring the pad
        shifted = F.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
        return F.cross_entropy(logits.float().view(-1, self.vocab), shifted.view(-1), ignore_index=-100)


@dataclass(frozen=True)
class _Plan:
    """Every flag, parsed and checked before anything is built."""

    net: TransformerNetwork
    p: Pass
    stages: dict[str, Stage]
    stage: Stage  # the layer stage benchmarked
    layers: int
    device: torch.device
    device_name: str
    dtype: str
    attention: str
    warmup: int
    steps: int
    with_head: bool
    card: Gpu | None


def run_bench(target, *, device: str | None = None, dtype: str | None = None, layers=1, seq_len=None, batch=1,
              attention: str = "eager", warmup=3, steps=10, with_head: bool = False, gpu: str | None = None,
              require_mfu: bool = False, progress: Progress | None = None) -> BenchReport:
    """Bench `layers` real layers of TARGET and compare with paramcalc's predictions.

    `require_mfu` refuses to start when no GPU peak will be known (a calibration file needs the MFU).
    """
    import torch

    plan = _plan(target, device, dtype, layers, seq_len, batch, attention, warmup, steps, with_head, gpu,
                 require_mfu)
    measured = _measure(plan, progress or (lambda phase, done, total: None))
    predicted = _predict(plan, fused=bool(measured.attention_kernels))
    checks = [check(figure, getattr(predicted, figure), getattr(measured, figure))
              for figure in ("forward_flops", "backward_flops", "activations", "peak_memory")]
    card = plan.card
    return BenchReport(
        model=plan.net.name, device=plan.device.type, device_name=plan.device_name,
        gpu=card.name if card else None, gpu_peak_flops=card.peak(plan.dtype) if card else None, dtype=plan.dtype,
        layers=plan.layers, stage=plan.stage.name, seq_len=plan.p.seq, batch=plan.p.batch, attention=plan.attention,
        with_head=plan.with_head, warmup=plan.warmup, steps=plan.steps, torch_version=torch.__version__,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        bench=Bench(predicted=predicted, measured=measured, checks=checks),
        notes=_notes(plan, measured.attention_kernels))


def _plan(target, device, dtype, layers, seq_len, batch, attention, warmup, steps, with_head, gpu,
          require_mfu) -> _Plan:
    from paramcalc.analysis.settings import make_pass, parse_attention
    from paramcalc.catalog import load_gpu
    from paramcalc.network import lower
    from paramcalc.torchref.reference import TORCH_DTYPES

    net = lower(target)
    if not net.has_architecture:
        raise UserError(f"{net.name!r} is a bare parameter count; bench needs the architecture",
                        fix="pass a preset, a config.json or a YAML spec")
    attention = "eager" if parse_attention(attention) == "eager" else "sdpa"
    dev, device_name = resolve_device(device)
    dtype = dtype or ("bf16" if dev.type == "cuda" else "fp32")
    if dtype not in TORCH_DTYPES:
        raise UserError(f"bench runs fp32, bf16 or fp16 layers, not {dtype!r}", field="dtype",
                        fix="use bf16 (GPU default) or fp32 (CPU default)")
    n = parse_positive_int(layers, field="layers")
    warm, k = parse_natural(warmup, field="warmup"), parse_positive_int(steps, field="steps")
    p = make_pass(net, seq_len, batch)
    if not isinstance(net, TransformerNetwork) or not net.layers:
        raise UserError(f"{net.name} has no transformer layers to bench")
    stages = {s.name: s for s in net.stages}
    if with_head and not (net.kind == "decoder" and isinstance(stages["head"].block, LMHead)):
        raise UserError("the embedding, LM head and loss are benched for decoder-only language models",
                        field="with_head", fix="bench the layers alone (without {with_head})")
    card = None
    gpu_name = gpu or (guess_gpu(device_name) if dev.type == "cuda" else None)
    if gpu_name:
        card = load_gpu(gpu_name)
        card.peak(dtype)  # an unknown dtype peak fails now, not after the run
    elif require_mfu:
        raise UserError(f"no GPU peak is known for {device_name!r}, so there is no MFU to calibrate with",
                        field="calibration_out", fix="name the GPU with {gpu} (paramcalc gpus lists them)")
    return _Plan(net, p, stages, net.layers[0], n, dev, device_name, dtype, attention, warm, k, with_head, card)


def _measure(plan: _Plan, tick: Progress) -> Measured:
    """Build the stack, count one instrumented step, then time warm-up and timed steps."""
    import torch

    from paramcalc.torchref import reference as ref

    total = 2 + plan.warmup + plan.steps
    tick("build", 0, total)
    torch.manual_seed(0)
    p, net, dev, tdtype = plan.p, plan.net, plan.device, ref.TORCH_DTYPES[plan.dtype]
    a = ref.activations(net, DTYPE_BYTES[plan.dtype], plan.attention)
    stack = _Stack(plan.stages, [plan.stage.block] * plan.layers, a, tdtype, dev, plan.with_head)
    labels = grad = None
    if plan.with_head:
        head = plan.stages["head"].block
        assert isinstance(head, LMHead)  # _plan benches the embedding and head of language models only
        vocab = head.vocab
        x = torch.randint(0, vocab, (p.batch, p.seq), device=dev)
        labels = torch.randint(0, vocab, (p.batch, p.seq), device=dev)
    else:
        x = torch.randn(p.batch, p.seq, net.hidden, device=dev, dtype=tdtype, requires_grad=True)
        grad = torch.randn(p.batch, p.seq, net.hidden, device=dev, dtype=tdtype)

    def step():
        for param in stack.params:
            param.grad = None
        x.grad = None
        stack(x, labels).backward(grad)

    tick("measure", 1, total)
    with ref.flop_counter() as forward, ref.SavedBytes(stack.modules) as saved:
        out = stack(x, labels)
    with ref.flop_counter() as backward:
        out.backward(grad)
    del out
    peak_live = _peak_live(stack, x, labels, grad)
    tick("warmup", 2, total)
    for i in range(plan.warmup):
        step()
        tick("warmup", 3 + i, total)
    times = _time_steps(step, plan.steps, dev, lambda i: tick("time", 3 + plan.warmup + i, total))
    seconds = sum(times) / len(times)
    achieved = 3 * forward.get_total_flops() / seconds  # model FLOPs: forward + 2 x forward (PaLM, appendix B)
    peak_flops = plan.card.peak(plan.dtype) if plan.card else None
    allocated = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return Measured(forward_flops=forward.get_total_flops(), backward_flops=backward.get_total_flops(),
                    activations=saved.total, weights=sum(t.numel() * t.element_size() for t in stack.params),
                    peak_allocated=allocated, peak_live=peak_live,
                    peak_memory=allocated if allocated is not None else peak_live,
                    seconds_per_step=seconds, seconds_min=min(times), seconds_median=statistics.median(times),
                    achieved_tflops=achieved / 1e12, mfu=achieved / peak_flops if peak_flops else None,
                    attention_kernels=ref.attention_kernels(forward))


def _peak_live(stack, x, labels, grad) -> int:
    """One untimed step with every tensor's bytes tracked: the tensors alive
    before it (weights, inputs) plus the most allocated on top of them."""
    from paramcalc.torchref.reference import LiveBytes

    held = [*stack.params, *(t for t in (x, labels, grad) if t is not None)]
    for param in stack.params:
        param.grad = None
    x.grad = None
    with LiveBytes(held) as live:
        stack(x, labels).backward(grad)
    storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in held}
    return sum(storages.values()) + live.peak


def _time_steps(step, k: int, dev, tick) -> list[float]:
    """Seconds of each of k steps: CUDA events around each step, one sync at the end (GPU); perf_counter (CPU)."""
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(k)]
        for i, (start, end) in enumerate(events):
            start.record()
            step()
            end.record()
            tick(i)
        torch.cuda.synchronize(dev)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    times = []
    for i in range(k):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
        tick(i)
    return times


def _predict(plan: _Plan, fused: bool) -> Predicted:
    from paramcalc.torchref.reference import activations, predicted_layer

    p, layer, n = plan.p, plan.stage.block, plan.layers
    a = activations(plan.net, DTYPE_BYTES[plan.dtype], plan.attention)
    blocks: list[tuple[str, Block, int]] = [("layers", predicted_layer(layer), n)]
    embedding: Block | None = None
    head: Block | None = None
    if plan.with_head:
        stages = plan.stages
        embedding, head = stages["embedding"].block, stages["head"].block
        blocks = [("embedding", embedding, 1), *blocks,
                  *([("final_norm", stages["final_norm"].block, 1)] if "final_norm" in stages else []),
                  ("head", head, 1)]
    fwd = sum(sum(b.flops(p).values()) * count for _, b, count in blocks)
    # A fused SDPA backward recomputes QK^T (FlashAttention, Dao et al. 2022, algorithm 4): hardware FLOPs.
    scores = n * sum(v for key, v in layer.flops(p).items() if key.endswith("/scores")) if fused else 0
    breakdown: dict[str, int] = {}
    for name, block, count in blocks:
        breakdown.update(nest(name, scale(block.saved(p, a), count)))
    params = sum(sum(b.params().values()) * count for _, b, count in blocks)
    weights = params * DTYPE_BYTES[plan.dtype]
    saved = sum(breakdown.values())
    # Alive when backward starts: weights, the inputs (token ids and labels, or the hidden states, the
    # output gradient and the output) and every saved activation; backward then runs block by block.
    inputs = 2 * 8 * p.tokens + 4 if plan.with_head else 3 * a.x * p.tokens * plan.net.hidden
    steps = [step for _, block, count in reversed(blocks) for _ in range(count) for step in block.backward_steps(p, a)]
    if isinstance(head, LMHead) and head.tied:  # with_head: _plan has checked the head is an LM head
        # The embedding's table gradient is added out of place to the head's: both and
        # the sum are alive for a moment, then one table's worth remains.
        assert embedding is not None  # set beside the head
        tokens = unwrap(embedding)
        assert isinstance(tokens, Embeddings)  # a language model's first stage
        table = a.x * tokens.vocab * tokens.dim
        last = steps[-1]
        steps[-1] = replace(last, grads=last.grads - table, transient=last.transient + 2 * table)
    return Predicted(forward_flops=fwd, backward_flops=2 * fwd + scores, activations=saved, weights=weights,
                     peak_memory=peak_live(steps, weights + inputs + saved), activations_breakdown=breakdown)


def _notes(plan: _Plan, kernels: list[str]) -> list[str]:
    net, stage, attention, dtype, card = plan.net, plan.stage, plan.attention, plan.dtype, plan.card
    notes = [f"{stage.name}: full-width layers built from paramcalc's blocks; FLOPs 2 per multiply-add, "
             "dense attention (FlopCounterMode counts the full score rectangle, causal or not)",
             "achieved TFLOP/s = 3 x forward FLOPs / seconds per step (model FLOPs, the PaLM convention)",
             "activations: bytes saved for backward, each storage once, parameters excluded; dropout off; "
             "no rotary (no parameters, no matmuls)"]
    if attention == "eager":
        upcast = net.profile.softmax_fp32 and dtype != "fp32"
        notes.append("eager attention: explicit matmuls, softmax " + ("upcast to fp32" if upcast else f"in {dtype}"))
    else:
        ran = ", ".join(kernels) or "no fused kernel (SDPA fell back to its math path)"
        notes.append(f"sdpa attention: {ran}; a fused backward recomputes the scores (counted as hardware FLOPs)")
    if plan.with_head:
        notes.append("with the embedding, final norm, LM head and transformers' causal-LM loss (fp32 logits, "
                     "labels padded and shifted)")
    if card is None:
        notes.append("MFU unknown: " + ("pass --gpu to compare with a GPU's peak" if plan.device.type == "cuda"
                                        else "no GPU peak applies on CPU (pass --gpu to compare anyway)"))
    else:
        notes.append(f"MFU against {card.name}'s dense {dtype} peak, {card.peak(dtype) / 1e12:,.1f} TFLOP/s")
    if isinstance(getattr(stage.block, "mlp", None), MoE):
        notes.append("MoE: the reference loops over experts; paramcalc's bytes model transformers' grouped-matmul "
                     "path, so activations may differ by a few percent")
    return notes


def write_calibration(report: BenchReport, path: str | Path) -> dict:
    """The file `paramcalc cost --calibration FILE` reads (docs/bench.md): the measured MFU and how it was measured."""
    m = report.bench.measured
    if m.mfu is None:
        raise UserError("this run has no MFU (no GPU peak known)", field="calibration_out",
                        fix="name the GPU with {gpu}")
    data = {
        "schema_version": 1,
        "kind": "paramcalc.calibration",
        "mfu": m.mfu,
        "gpu": report.gpu,
        "dtype": report.dtype,
        "peak_flops": report.gpu_peak_flops,
        "achieved_tflops": m.achieved_tflops,
        "measured": {"model": report.model, "stage": report.stage, "layers": report.layers,
                     "seq_len": report.seq_len, "batch": report.batch, "attention": report.attention,
                     "with_head": report.with_head, "seconds_per_step": m.seconds_per_step,
                     "device_name": report.device_name, "torch_version": report.torch_version, "date": report.date},
    }
    target = Path(path)
    try:
        target.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise UserError(f"cannot write {target}: {e.strerror}", field="calibration_out") from None
    return data
