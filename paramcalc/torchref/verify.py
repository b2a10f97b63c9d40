"""`paramcalc verify`: the analytic counts against real PyTorch modules.

The network is lowered to its stages and each stage's block is built as a
module on the meta device (shapes only: no memory, no arithmetic, so a 405B
layer costs nothing): the embedding, `--layers` copies of every layer stage
(one per kind of layer), the final norm and the head, tied to the embedding
where the spec ties them.

- Parameters: sum(p.numel()) of those modules, each tensor once (a tied head
  owns nothing), scaled by how often each stage repeats, against `params()`.
- FLOPs: one forward and one backward of each component under FlopCounterMode
  (2 FLOPs per multiply-add), and the forward under fvcore's FlopCountAnalysis.
  fvcore counts one multiply-add as one "flop" (a MAC): its count is doubled
  here, at that boundary. It has no handler for SDPA; the reference modules
  compute attention with explicit matmuls, so it sees every one. Its norm
  handlers (elementwise work) are switched off: the analytic figures are
  matmul FLOPs. Backward is FlopCounterMode's alone (fvcore traces forwards).
- Layers networks (CNNs, MLPs): each block runs on (batch, *input shape) samples
  (time steps too in a sequential network); the first block reads data, so its
  backward is its weight gradient alone, as `paramcalc flops` counts it. torch.jit
  cannot trace a meta convolution, so fvcore traces these blocks on the CPU, their
  tensors allocated uninitialised (a trace reads shapes). Recurrent layers are not
  counted: autograd skips the initial state's gradient, which 2 x forward includes.
- MoE: meta tensors have no values to route on, so tokens are routed to fixed
  experts (token t, slot j -> expert (t k + j) mod E); each token still runs k
  distinct experts, and the FLOPs do not depend on which.
"""

from __future__ import annotations

import types
import warnings
from math import prod

from paramcalc.errors import UserError
from paramcalc.results.verify import Component, OptimizerCheck, ParamsCheck, StageParams, VerifyReport, VerifyTotals
from paramcalc.units import parse_positive_int


def run_verify(model, *, layers=1, seq_len=128, batch=1) -> VerifyReport:
    import torch

    from paramcalc.analysis.flops import forward_flops
    from paramcalc.analysis.settings import make_pass
    from paramcalc.network import lower

    net = lower(model)
    if not net.has_architecture:
        raise UserError(f"{net.name!r} is a bare parameter count; verify needs the architecture",
                        fix="pass a preset, a config.json or a YAML spec")
    per_stage = parse_positive_int(layers, field="layers")
    p = make_pass(net, seq_len, batch, "eager")  # the reference modules compute the full score matmuls

    built: dict[str, list] = {}
    with torch.device("meta"):
        for stage in net.stages:
            k = min(per_stage, stage.count) if _kind(stage.block) == "layer" else 1
            built[stage.name] = [_runnable(stage.block, stage.block.module()) for _ in range(k)]
    head = _unwrap(net.stages[-1].block)
    if getattr(head, "tied", False) and "embedding" in built:
        built[net.stages[-1].name][0].tie(built["embedding"][0].tokens)

    params = _params(net, built)
    hidden = net.width
    sequential = bool(getattr(net, "sequential", False))
    components = [_component(stage, built[stage.name], p, hidden, sequential=sequential, first=i == 0)
                  for i, stage in enumerate(net.stages)]
    forwards = [(c.flop_counter_forward, c) for c in components if c.flop_counter_forward is not None]
    counted_all = len(forwards) == len(components)
    counted = sum(f * c.count // c.instantiated for f, c in forwards) if counted_all else None
    analytic = forward_flops(net, p)
    totals = VerifyTotals(analytic_forward=analytic, counted_forward=counted,
                    exact=analytic == counted if counted_all else None)
    notes = [f"modules built on the meta device; FLOPs of batch {p.batch} x seq {p.seq}, 2 per multiply-add, "
             "dense attention (the reference modules compute the full score matmuls)",
             "fvcore counts one multiply-add as one flop (a MAC) and has no SDPA handler: its counts are doubled "
             "here; the reference attention uses explicit matmuls, and fvcore's norm handlers are off",
             "backward from FlopCounterMode only (fvcore traces the forward); analytic backward = 2 x forward",
             "parameters: sum(p.numel()) of the built modules, each tensor once (tied weights in the embedding)"]
    if any(c.exact is not None and c.fvcore_forward is None for c in components):
        notes.append("fvcore: n/a where it is not installed or its tracer failed")
    if any(hasattr(_unwrap(s.block), "image") for s in net.stages):
        notes.append("ViT: the patch projection's backward is its weight gradient alone (images need no "
                     "gradient), as `paramcalc flops` counts it; the per-component backward here is 2 x forward")
    optimizer = _optimizer_states(built, net)
    notes.append("optimizer state: one step of torch.optim on one layer's meta parameters (fp32), against "
                 "paramcalc's bytes per parameter")
    if any(_kind(s.block) == "shaped" for s in net.stages):
        notes.append("layers network: each block runs on (batch, *input shape) samples, or (batch, seq, ...) "
                     "time steps; the first block reads data, so its backward is the weight gradient alone; "
                     "fvcore traces it on the CPU (uninitialised tensors: a trace reads shapes)")
    if not counted_all:
        notes.append("FLOPs not counted for recurrent layers (their backward skips the initial state's "
                     "gradient, which paramcalc's 2 x forward counts: tests/test_blocks_shaped.py proves their "
                     "forward block by block); parameters are checked for every stage")
    if any(_is_moe(s.block) for s in net.stages):
        notes.append("MoE: fixed routing on meta tensors (token t, slot j -> expert (t k + j) mod E); "
                     "each token runs k distinct experts, so FLOPs match any routing")
    passed = params.exact and totals.exact is not False and all(c.exact is not False for c in components) \
        and all(o.exact for o in optimizer)
    return VerifyReport(model=net.name, seq_len=p.seq, batch=p.batch, layers=per_stage, params=params,
                        components=components, totals=totals, optimizer=optimizer, passed=passed, notes=notes)


def _optimizer_states(built: dict, net) -> list[OptimizerCheck]:
    """Real torch.optim state after one step, on meta tensors (no memory used)."""
    import torch

    from paramcalc.analysis.settings import OPTIMIZER_STATE

    stage = next((s for s in net.stages if _kind(s.block) == "layer"), net.stages[0])
    params = [p for p in built[stage.name][0].parameters() if p.requires_grad]
    if not params:
        return []
    numel = sum(p.numel() for p in params)
    makers = {"adamw": lambda ps: torch.optim.AdamW(ps, foreach=False),
              "adam": lambda ps: torch.optim.Adam(ps, foreach=False),
              "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=False),
              "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=False)}
    out = []
    for name, make in makers.items():
        copies = [torch.nn.Parameter(torch.empty_like(p, dtype=torch.float32)) for p in params]
        for c in copies:
            c.grad = torch.empty_like(c)
        opt = make(copies)
        opt.step()
        measured = sum(t.numel() * t.element_size() for state in opt.state.values() for t in state.values()
                       if torch.is_tensor(t) and t.dim() > 0)
        predicted = OPTIMIZER_STATE[name] * numel
        out.append(OptimizerCheck(optimizer=name, params=numel, predicted=predicted, measured=measured,
                                  exact=predicted == measured))
    return out


def _params(net, built) -> ParamsCheck:
    seen: set[int] = set()
    rows = []
    for stage in net.stages:
        modules = built[stage.name]
        numel = 0
        for module in modules:
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    numel += param.numel()
        analytic = sum(stage.block.params().values()) * stage.copies
        rows.append(StageParams(stage=stage.name, count=stage.copies, analytic=analytic,
                                counted=numel * stage.copies // len(modules)))
    a, c = sum(r.analytic for r in rows), sum(r.counted for r in rows)
    exact = a == c and all(r.analytic == r.counted for r in rows)
    return ParamsCheck(analytic=a, counted=c, exact=exact, by_stage=rows)


def _unwrap(block):
    """A LoRA-adapted block's base block (its module carries the adapters)."""
    base = getattr(block, "base", None)
    return base if base is not None and hasattr(block, "adapters") else block


def _kind(block) -> str:
    from paramcalc.blocks.embed import Embeddings
    from paramcalc.blocks.layer import TransformerLayer
    from paramcalc.blocks.norm import Norm

    block = _unwrap(block)
    if hasattr(block, "in_shape"):
        return "shaped"  # a CNN / RNN / MLP layer of a layers spec
    if isinstance(block, Embeddings) or block.kind == "embedding":
        return "embedding"
    if isinstance(block, TransformerLayer):
        return "layer"
    if isinstance(block, Norm):
        return "norm"
    return "head"


def _is_moe(block) -> bool:
    from paramcalc.blocks.moe import MoE

    return isinstance(getattr(_unwrap(block), "mlp", None), MoE)


def _runnable(block, module):
    """The block's own module, with a forward where it has none (BERT's pooler)
    or where meta tensors cannot run it (MoE routing)."""
    from paramcalc.blocks.embed import Pooler

    if isinstance(_unwrap(block), Pooler):
        module.forward = types.MethodType(_pooler_forward, module)
    if type(_unwrap(block)).__name__ == "ClassTokenHead":  # a ViT classifies the class token only
        module.forward = types.MethodType(lambda self, x: type(self).forward(self, x[:, 0]), module)
    for sub in module.modules():
        if _is_moe_module(sub):
            sub.route = types.MethodType(_fixed_routing, sub)
    return module


def _is_moe_module(module) -> bool:
    from paramcalc.blocks.moe import MoE

    return isinstance(getattr(module, "spec", None), MoE)


def _pooler_forward(self, x):
    import torch

    pooled = torch.tanh(self["dense"](x[:, 0]))
    return self["classifier"](pooled) if "classifier" in self else pooled


def _fixed_routing(self, flat):
    """Routing fixed in advance (no data-dependent ops, so meta tensors run it):
    token t's slot j goes to expert (t k + j) mod E; the bookkeeping stays on the CPU."""
    import torch

    s = self.spec
    pair = torch.arange(flat.shape[0] * s.top_k).view(-1, s.top_k)
    return self.router(flat).softmax(-1)[:, : s.top_k], pair % s.experts


def _inputs(block, p, hidden: int | None, *, sequential: bool = False, first: bool = False):
    """Meta inputs for one component, or None where none is known for it. A layers
    network's block (CNN, RNN, MLP) takes (batch, *in_shape) samples, or (batch, seq,
    *in_shape) time steps in a sequential network; its embedding token ids; its loss
    the logits as rows with their targets. The network's first block reads data: no
    gradient flows into it."""
    import torch

    meta = torch.device("meta")
    kind, block = _kind(block), _unwrap(block)
    if kind == "shaped":
        from paramcalc.analysis.flops import holds

        if holds(block, "recurrent"):
            return None  # its backward skips the initial state's gradient (see the notes)
        lead = (p.batch, p.seq) if sequential else (p.batch,)
        if block.kind == "embedding":
            return (torch.zeros(*lead, dtype=torch.long, device=meta),)
        if block.kind == "loss":  # nn.CrossEntropyLoss: (rows, classes) logits, (rows,) int64 targets
            rows = p.tokens * prod(block.in_shape[:-1])
            return (torch.zeros(rows, block.in_shape[-1], device=meta, requires_grad=True),
                    torch.zeros(rows, dtype=torch.long, device=meta))
        return (torch.zeros(*lead, *block.in_shape, device=meta, requires_grad=not first),)
    if hidden is None:
        return None
    if kind == "embedding" and hasattr(block, "image"):  # ViT patches: images
        return (torch.zeros(p.batch, block.channels, *block.image, device=meta),)
    if kind == "embedding":
        return (torch.zeros(p.batch, p.seq, dtype=torch.long, device=meta),)
    x = torch.zeros(p.batch, p.seq, hidden, device=meta, requires_grad=True)
    if kind == "layer" and block.cross_attention is not None:
        return x, torch.zeros(p.batch, p.keys, hidden, device=meta, requires_grad=True)  # the encoder's output
    return (x,)


def _chain(modules):
    """The k built copies of a stage as one module: each feeds the next."""
    from torch import nn

    class Chain(nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = nn.ModuleList(modules)

        def forward(self, x, *memory):
            for part in self.parts:
                x = part(x, *memory)
            return x

    return Chain()


def _component(stage, modules, p, hidden: int | None, *, sequential: bool = False,
               first: bool = False) -> Component:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    analytic = sum(stage.block.flops(p).values()) * len(modules)
    kind = _kind(stage.block)
    # Images need no gradient: a ViT's patch projection computes its weight gradient only (1 x forward),
    # and so does the first conv or linear of a layers network, which reads the data.
    backward = analytic if hasattr(_unwrap(stage.block), "image") else 2 * analytic
    if kind == "shaped" and first:
        backward -= _unwrap(stage.block).data_input_flops(p) * len(modules)
    fields = dict(stage=stage.name, kind=kind, instantiated=len(modules), count=stage.count,
                  analytic_forward=analytic, analytic_backward=backward)
    inputs = _inputs(stage.block, p, hidden, sequential=sequential, first=first)
    if inputs is None:
        return Component(**fields, flop_counter_forward=None, fvcore_forward=None, flop_counter_backward=None,
                         exact=None)
    chain = _chain(modules)
    with FlopCounterMode(display=False) as fwd:
        out = chain(*inputs)
    bwd_flops = 0
    if out.requires_grad:
        with FlopCounterMode(display=False) as bwd:
            out.backward(torch.ones_like(out))
        bwd_flops = bwd.get_total_flops()
    fv = _fvcore(*_on_cpu(chain, inputs)) if kind == "shaped" else _fvcore(chain, inputs)
    exact = fwd.get_total_flops() == analytic and fv in (None, analytic) and bwd_flops == backward
    return Component(**fields, flop_counter_forward=fwd.get_total_flops(), fvcore_forward=fv,
                     flop_counter_backward=bwd_flops, exact=exact)


# fvcore's handlers for elementwise work, off: the analytic figures are matmul FLOPs only.
_FVCORE_OFF = ("aten::layer_norm", "aten::group_norm", "aten::batch_norm", "aten::instance_norm",
               "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
               "aten::grid_sampler")


def _zero(inputs, outputs) -> int:
    return 0


def _grouped_mm_macs(inputs, outputs) -> int:
    """MoE's grouped matmul (blocks/moe.py's GroupedMM, a custom autograd function the tracer
    sees as one Python op): (S, d_in) rows against (E, d_out, d_in) weights, S x d_in x d_out MACs."""
    from fvcore.nn.jit_handles import get_shape

    rows, d_in = get_shape(inputs[0])
    return rows * d_in * get_shape(inputs[1])[1]


# A layers network's component is traced for fvcore on the CPU (torch.jit cannot trace a meta
# convolution): its weights and inputs allocated, uninitialised, up to this many bytes.
_CPU_TRACE_BYTES = 2 << 30


def _on_cpu(module, inputs):
    """The module and inputs as CPU tensors (uninitialised: a trace reads shapes, not values),
    or (None, inputs) where they would take more than _CPU_TRACE_BYTES."""
    import copy

    import torch

    tensors = [*module.parameters(), *module.buffers(), *inputs]
    if sum(t.numel() * t.element_size() for t in tensors) > _CPU_TRACE_BYTES:
        return None, inputs
    cpu = copy.deepcopy(module).to_empty(device="cpu")
    return cpu, tuple(torch.zeros(x.shape, dtype=x.dtype) for x in inputs)


# fvcore has no handler for the fused recurrent ops: it would count their matmuls as 0.
_FVCORE_BLIND = ("aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu")


def _fvcore(module, inputs) -> int | None:
    """fvcore's forward count in FLOPs: its MACs x 2 (one multiply-add = 2 FLOPs)."""
    import logging

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and tracer warn about torch.jit's deprecation
        try:
            from fvcore.nn import FlopCountAnalysis
        except ImportError:
            return None
        if module is None:  # too large to trace on the CPU
            return None
        try:
            # a zero-count handler: fvcore 0.1.5 keeps using a built-in handle set to None
            analysis = FlopCountAnalysis(module, inputs).set_op_handle(
                **{op: _zero for op in _FVCORE_OFF}, **{"prim::PythonOp.GroupedMM": _grouped_mm_macs})
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = 2 * int(analysis.total())
            if any(op in _FVCORE_BLIND for op in analysis.unsupported_ops()):
                return None
            return total
        except Exception:  # a tracer failure leaves the FlopCounterMode figure standing alone
            return None
