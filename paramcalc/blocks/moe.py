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
        """transformers' default grouped-matmul experts path: routing (fp32
        softmax, top-k indices, the renormalisation), the gather/scatter indices,
        each token's k copies through a fused gate_up matmul and SiLU product,
        the routing weights and the weighted outputs; plus shared experts."""
        x, T, h, E, k = a.x, p.tokens, self.hidden, self.experts, self.top_k
        f = self.expert.ffn
        out = {"input": x * T * h, "routing": 4 * T * E + 8 * T * k + 4 * T + 4 * T * k}
        if self.score_correction_bias:  # DeepSeek-V3 routes in fp32: input and weight copies, sigmoid scores
            out["routing"] += 4 * T * h + 4 * h * E
        out["experts"] = (24 * T * k + 4 * E + 2 * x * T * k * h  # indices, offsets; permuted tokens in and out
                          + x * T * k * f * (2 if self.expert.gated else 1)  # gate_up output (activation input)
                          + 2 * x * T * k * f  # activation output, down-projection input
                          + 4 * T * k)  # routing weights
        if self.expert.act == "swiglu_clamp":
            # gpt-oss: (up + 1) * g * sigmoid(1.702 g), g clamped at 7: the clamped gate,
            # its sigmoid and up + 1 are kept besides the product
            out["experts"] += 3 * x * T * k * f
        if self.shared:
            shared = self.shared.saved(p, a)
            shared.pop("input")  # the MoE input, counted once
            out["shared_expert"] = sum(shared.values())
        if self.shared_gate:
            out["shared_expert_gate"] = x * T + x * T * h
        return out

    def module(self, a: Activations | None = None):
        return _module_class()(self)


@cache
def _module_class():
    import torch
    from torch import nn

    class MoEModule(nn.Module):
        """Reference MoE: top-k routing, each expert run on the tokens it got."""

        def __init__(self, spec: MoE):
            super().__init__()
            self.spec = spec
            self.router = spec.router.module()
            if spec.score_correction_bias:
                self.router.e_score_correction_bias = nn.Parameter(torch.zeros(spec.experts))
            self.experts = nn.ModuleList(spec.expert.module() for _ in range(spec.experts))
            if spec.shared:
                self.shared_expert = spec.shared.module()
            if spec.shared_gate:
                self.shared_expert_gate = nn.Linear(spec.hidden, 1, bias=False)

        def route(self, flat):
            """(weights, chosen experts), both tokens x top_k."""
            return self.router(flat).softmax(-1).topk(self.spec.top_k, dim=-1)

        def forward(self, x):
            s = self.spec
            flat = x.reshape(-1, s.hidden)
            weights, chosen = self.route(flat)
            out = torch.zeros_like(flat)
            for e, expert in enumerate(self.experts):
                token, slot = (chosen == e).nonzero(as_tuple=True)
                if token.numel():
                    token, slot = token.to(flat.device), slot.to(flat.device)
                    out = out.index_add(0, token, expert(flat[token]) * weights[token, slot, None])
            if s.shared:
                shared = self.shared_expert(flat)
                if s.shared_gate:
                    shared = shared * torch.sigmoid(self.shared_expert_gate(flat))
                out = out + shared
            return out.view_as(x)

    return MoEModule
