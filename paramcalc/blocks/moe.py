"""Mixture of experts: a router, E routed experts of which each token uses k,
and optional always-on shared experts.

Shazeer et al. 2017; Switch/GShard-style top-k routing. Mixtral: 8 experts,
top-2. DeepSeekMoE (Dai et al. 2024): fine-grained experts plus shared ones;
DeepSeek-V3 adds a per-expert score-correction bias to the router. Qwen2-MoE:
one shared expert scaled by a sigmoid gate (a 1-output linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge, scale
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.mlp import MLP


@dataclass(frozen=True)
class MoE(Block):
    hidden: int
    experts: int
    top_k: int
    expert: MLP
    shared: MLP | None = None
    shared_gate: bool = False
    router_bias: bool = False
    score_correction_bias: bool = False
    kind = "moe"

    @property
    def router(self) -> Linear:
        return Linear(self.hidden, self.experts, self.router_bias)

    def _params(self, routed: int) -> Breakdown:
        out = merge(("router", self.router.params()), ("experts", scale(self.expert.params(), routed)))
        if self.score_correction_bias:
            out["router/e_score_correction_bias"] = self.experts
        if self.shared:
            out.update(merge(("shared_expert", self.shared.params())))
        if self.shared_gate:
            out["shared_expert_gate/weight"] = self.hidden
        return out

    def params(self) -> Breakdown:
        return self._params(self.experts)

    def active_params(self) -> Breakdown:
        """Per token: the router, k routed experts and every shared expert."""
        return self._params(self.top_k)

    def flops(self, p: Pass) -> Breakdown:
        # Expected work: each token runs k experts, whichever they are, so the
        # total is exact for any routing (load balance moves work, not FLOPs).
        out = {"router": self.router.matmul_flops(p.tokens), "experts": self.top_k * sum(self.expert.flops(p).values())}
        if self.shared:
            out["shared_expert"] = sum(self.shared.flops(p).values())
        if self.shared_gate:
            out["shared_expert_gate"] = 2 * p.tokens * self.hidden
        return out

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """transformers' grouped-matmul experts path (integrations/moe.py's
        grouped_mm_experts_forward), which this block's module runs: routing (an
        fp32 softmax, top-k indices, the renormalisation), the token-expert pairs
        sorted by expert (three int64 index tensors: the gather, the weights' order,
        the inverse order) and int32 group offsets, the gathered tokens through the
        up (and gate) grouped matmul and the activation, the down matmul's input, the
        fp32 routing weights and the down output they scale; plus shared experts."""
        x, T, h, E, k = a.x, p.tokens, self.hidden, self.experts, self.top_k
        f, S = self.expert.ffn, T * k
        if a.megatron:
            # Megatron-Core's MoE layer (token dispatcher + grouped GEMM): fp32 router probabilities and
            # top-k indices, the permuted token copies, each expert's fc1 output and fc2 input, the
            # routing weights; the shared expert as a dense MLP on the same input
            # DeepSeek-V3's recipe (report, section 3.3.3): the tokens are quantized to fp8 before their
            # dispatch and cached so, the SwiGLU's input (fc1's output) is cached in fp8, and its output
            # (fc2's input) rerun in backward (moe_act); the input stays 16-bit for the router, whose
            # gating runs in higher precision (section 3.3.1)
            up = S * f * (2 if self.expert.gated else 1)
            down = 0 if a.recomputes("moe_act") else a.linear_input(S * f)
            out = {"input": x * T * h, "routing": 4 * T * E + 8 * S + 4 * S,
                   "experts": a.linear_input(S * h) + a.linear_input(up) + down}
            if self.shared:
                shared = self.shared.saved(p, a)
                shared.pop("input")
                out["shared_expert"] = sum(shared.values())
            return out
        out = {"input": x * T * h, "routing": 4 * T * E + 8 * S + 4 * T + 4 * S}
        if self.score_correction_bias and x != 4:  # DeepSeek-V3 routes in fp32: copies of input and weight
            out["routing"] += 4 * T * h + 4 * h * E
        gated = self.expert.gated
        out["experts"] = (24 * S + 4 * E + 2 * x * S * h  # indices, offsets; gathered tokens, down output
                          + x * S * f * (2 if gated else 1)  # up (and gate) outputs: the activation's input
                          + (2 if gated else 1) * x * S * f  # act(gate) and the product (down's input), or act(up)
                          + 4 * S)  # fp32 routing weights
        if self.expert.bias:
            out["experts"] += 8 * S  # the sorted expert ids that gather each pair's biases
        if self.expert.act == "swiglu_clamp":
            # gpt-oss: (up + 1) * g * sigmoid(1.702 g), g clamped at 7: the clamped gate,
            # its sigmoid and up + 1 are kept besides the product
            out["experts"] += 3 * x * S * f
        if self.shared:
            shared = self.shared.saved(p, a)
            shared.pop("input")  # the MoE input, counted once
            out["shared_expert"] = sum(shared.values())
        if self.shared_gate:
            out["shared_expert_gate"] = x * T + x * T * h
        return out

    def linear_inputs(self, p: Pass, a: Activations) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Saved bytes that only linears' weight gradients keep (blocks/lora.py Adapted.saved): the layer's
        input (the router's, the shared expert's and its gate's), the gathered tokens (the routed up and gate
        grouped matmuls') and the down matmul's input (the product, or the activation's output but a ReLU's),
        the shared expert's down input. No adapter reaches inside an MoE block, so
        these go whenever the base is frozen."""
        x, T, h, S, f = a.x, p.tokens, self.hidden, p.tokens * self.top_k, self.expert.ffn
        routed = x * S * h + (x * S * f if self.expert.gated or self.expert.act != "relu" else 0)
        out: dict[str, tuple[int, tuple[str, ...]]] = {"input": (x * T * h, ("router",)),
                                                       "experts": (routed, ("experts",))}
        if self.shared:
            out["shared_expert"] = (self.shared.linear_inputs(p, a).get("down_input", (0, ()))[0], ("shared",))
        # Qwen2-MoE's shared gate reads the layer's input (above); what its entry holds besides the sigmoid is the
        # shared expert's output, which the gating product keeps
        return out

    def module(self, a: Activations | None = None):
        return _module_class()(self)


@cache
def _module_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from paramcalc.blocks.mlp import activation

    class GroupedMM(torch.autograd.Function):
        """x (S, d_in) sorted by expert times weight[e] (d_out, d_in)^T for each expert's rows;
        saves what torch._grouped_mm saves (input, weight, offsets), loops with mm so every
        FLOP counter sees the matmuls, on any device and dtype."""

        @staticmethod
        def forward(ctx, x, weight, offs, bounds):
            out = x.new_empty(x.shape[0], weight.shape[1])
            for e, (start, end) in enumerate(zip([0, *bounds[:-1]], bounds)):
                if end > start:
                    out[start:end] = x[start:end] @ weight[e].T
            ctx.save_for_backward(x, weight, offs)
            ctx.bounds = bounds
            return out

        @staticmethod
        def backward(ctx, grad):
            x, weight, _ = ctx.saved_tensors
            dx, dw = torch.zeros_like(x), torch.zeros_like(weight)
            for e, (start, end) in enumerate(zip([0, *ctx.bounds[:-1]], ctx.bounds)):
                if end > start:
                    dx[start:end] = grad[start:end] @ weight[e]
                    dw[e] = grad[start:end].T @ x[start:end]
            return dx, dw, None, None

    class Grouped(nn.Module):
        """One linear per expert, stored as (experts, d_out, d_in): `experts.gate_proj.weight`."""

        def __init__(self, experts: int, d_in: int, d_out: int, bias: bool):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(experts, d_out, d_in))
            self.bias = nn.Parameter(torch.zeros(experts, d_out)) if bias else None
            nn.init.normal_(self.weight, std=d_in**-0.5)

        def forward(self, x, offs, bounds, ids):
            out = GroupedMM.apply(x, self.weight, offs, bounds)
            return out + self.bias[ids] if self.bias is not None else out

    class Experts(nn.Module):
        """The routed experts' grouped linears: `experts.up_proj.weight` is (experts, d_out, d_in)."""

        gate_proj: Grouped  # gated experts only

        def __init__(self, e: int, h: int, f: int, b: bool, gated: bool):
            super().__init__()
            if gated:
                self.gate_proj = Grouped(e, h, f, b)
            self.up_proj = Grouped(e, h, f, b)
            self.down_proj = Grouped(e, f, h, b)

    class MoEModule(nn.Module):
        """Top-k routing and the experts as transformers' grouped_mm path runs them."""

        def __init__(self, spec: MoE):
            super().__init__()
            self.spec = spec
            e, h, f, b = spec.experts, spec.hidden, spec.expert.ffn, spec.expert.bias
            self.router = spec.router.module()
            if spec.score_correction_bias:
                self.router.e_score_correction_bias = nn.Parameter(torch.zeros(e))
            self.experts = Experts(e, h, f, b, spec.expert.gated)
            self.act = activation(spec.expert.act)
            if spec.shared:
                self.shared_expert = spec.shared.module()
            if spec.shared_gate:
                self.shared_expert_gate = nn.Linear(spec.hidden, 1, bias=False)

        def route(self, flat):
            """(weights, chosen experts), both tokens x top_k: Mixtral's fp32 softmax, top-k and
            renormalisation; DeepSeek-V3's fp32 sigmoid scores, chosen with the correction bias."""
            s = self.spec
            if s.score_correction_bias:
                scores = F.linear(flat.float(), self.router.weight.float()).sigmoid()
                chosen = (scores + self.router.e_score_correction_bias).topk(s.top_k, dim=-1).indices
                weights = scores.gather(1, chosen)
            else:
                weights, chosen = self.router(flat).float().softmax(-1).topk(s.top_k, dim=-1)
            return weights / weights.sum(-1, keepdim=True), chosen

        def forward(self, x):
            s = self.spec
            flat = x.reshape(-1, s.hidden)
            weights, chosen = self.route(flat)
            ids, order = torch.sort(chosen.reshape(-1))  # token-expert pairs grouped by expert
            bounds = torch.bincount(ids.cpu(), minlength=s.experts).cumsum(0).tolist()
            offs = torch.tensor(bounds, dtype=torch.int32, device=x.device)
            order = order.to(x.device)
            ids = ids.to(x.device)
            tokens = flat[order // s.top_k]
            pair_weights = weights.reshape(-1)[order]
            experts = self.experts
            up = experts.up_proj(tokens, offs, bounds, ids)
            if s.expert.act == "swiglu_clamp":  # gpt-oss: (up + 1) * g sigmoid(1.702 g), clamped at 7
                gate = experts.gate_proj(tokens, offs, bounds, ids).clamp(max=7.0)
                inner = (up.clamp(-7.0, 7.0) + 1) * (gate * torch.sigmoid(gate * 1.702))
            elif s.expert.gated:
                inner = self.act(experts.gate_proj(tokens, offs, bounds, ids)) * up
            else:
                inner = self.act(up)
            weighted = experts.down_proj(inner, offs, bounds, ids) * pair_weights.unsqueeze(-1)
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel(), device=order.device)
            out = weighted[inverse].view(-1, s.top_k, s.hidden).sum(1).to(x.dtype)
            if s.shared:
                shared = self.shared_expert(flat)
                if s.shared_gate:
                    shared = shared * torch.sigmoid(self.shared_expert_gate(flat))
                out = out + shared
            return out.view_as(x)

    return MoEModule
