"""One transformer layer: attention (+ cross-attention), a feed-forward block
and the norms its layout needs.

Layouts (the parameter count differs only in how many norms there are):
- `pre`: x + attn(norm(x)), then x + mlp(norm(x)) (GPT-2, Llama; Xiong et al. 2020)
- `post`: norm(x + attn(x)), then norm(x + mlp(x)) (BERT, the original Transformer)
- `sandwich`: norms before and after each sublayer, four in all (Gemma 2)
- `parallel`: x + attn(norm1(x)) + mlp(norm2(x)) (GPT-NeoX, Falcon-40B's two norms)
- `parallel-shared`: x + attn(norm(x)) + mlp(norm(x)), one norm (GPT-J, Falcon-7B)
- `reordered`: x + norm(attn(x)), then x + norm(mlp(x)) (OLMo 2; OLMo et al. 2024, sec. 3.2)

A state-space layer (Mamba's MambaBlock) has a mixer in attention's place and no
feed-forward block (`mlp` None): x + mixer(norm(x)), one norm, layout `pre`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, Step, merge
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.norm import Norm
from paramcalc.blocks.ssm import Mamba, Mamba2

LAYOUTS = ("pre", "post", "sandwich", "parallel", "parallel-shared", "reordered")

_NORMS = {
    "pre": ("input_layernorm", "post_attention_layernorm"),
    "post": ("attention_layernorm", "output_layernorm"),
    "sandwich": ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm"),
    "parallel": ("input_layernorm", "post_attention_layernorm"),
    "parallel-shared": ("input_layernorm",),
    "reordered": ("post_attention_layernorm", "post_feedforward_layernorm"),
}

# The layouts whose attention and MLP read a norm's output (rerun under `layernorm` recomputation)
_NORMED_INPUTS = ("pre", "sandwich", "parallel", "parallel-shared")

# The forward order of a layer's parts (backward runs it in reverse); the
# parallel layouts run attention before the MLP, as their modules do.
_ORDER = {
    "pre": ("norm/input_layernorm", "attention", "norm/cross_attention_layernorm", "cross_attention",
            "norm/post_attention_layernorm", "mlp"),
    "post": ("attention", "norm/attention_layernorm", "cross_attention", "norm/cross_attention_layernorm", "mlp",
             "norm/output_layernorm"),
    "sandwich": ("norm/input_layernorm", "attention", "norm/post_attention_layernorm",
                 "norm/pre_feedforward_layernorm", "mlp", "norm/post_feedforward_layernorm"),
    "parallel": ("norm/input_layernorm", "norm/post_attention_layernorm", "attention", "mlp"),
    "parallel-shared": ("norm/input_layernorm", "attention", "mlp"),
    "reordered": ("attention", "norm/post_attention_layernorm", "mlp", "norm/post_feedforward_layernorm"),
}


@dataclass(frozen=True)
class TransformerLayer(Block):
    attention: Attention | LatentAttention | Mamba | Mamba2  # the token mixer (a Mamba mixer: blocks/ssm.py)
    mlp: MLP | MoE | None  # None: a mixer-only layer (Mamba)
    norm: Norm
    layout: str = "pre"
    cross_attention: Attention | None = None
    kind = "layer"

    @property
    def norm_names(self) -> tuple[str, ...]:
        names = _NORMS[self.layout] if self.mlp is not None else _NORMS[self.layout][:1]
        return names + ("cross_attention_layernorm",) if self.cross_attention else names

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = {self.attention.kind: self.attention}  # attention, or a Mamba mixer
        if self.cross_attention:
            out["cross_attention"] = self.cross_attention
        if self.mlp is not None:
            out[self.mlp.kind] = self.mlp
        out.update((f"norm/{name}", self.norm) for name in self.norm_names)
        return out

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def active_params(self) -> Breakdown:
        return merge(*((name, part.active_params()) for name, part in self.parts().items()))

    def flops(self, p: Pass) -> Breakdown:
        return merge(*((name, part.flops(p)) for name, part in self.parts().items()))

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The sublayers' saved bytes, each shared tensor once: in the parallel
        layouts both branches read the same residual (NeoX's second LayerNorm
        only adds its statistics) or the same normed input (GPT-J, Falcon-7B);
        with dropout on, each sublayer's output keeps a noise tensor."""
        T = p.tokens
        out = merge(*((name, part.saved(p, a)) for name, part in self.parts().items()))
        if self.layout == "parallel" and self.norm.kind_ == "layernorm":
            out["norm/post_attention_layernorm"] = 8 * T  # the residual input is ln_attn's, saved already
        if self.layout == "parallel-shared" and self.mlp is not None:
            out[f"{self.mlp.kind}/input"] = 0  # the MLP reads the attention's normed input
        if a.recomputes("layernorm") and self.layout in _NORMED_INPUTS:
            # the norms' outputs are rerun in backward from their inputs, which the norms keep
            # (DeepSeek-V3 report, section 3.2.3; Megatron-Core's recompute module "layernorm")
            for part in (self.attention.kind, self.mlp.kind if self.mlp is not None else None):
                if part is not None and f"{part}/input" in out:
                    out[f"{part}/input"] = 0
        if a.hidden_dropout:
            # one noise tensor per sublayer output that is dropped (Phi and GPT-J drop
            # each parallel branch; Falcon drops their sum once, DistilBERT only the FFN's)
            branches = (2 if a.attention_output_dropout else 1) + (1 if self.cross_attention else 0)
            out["dropout"] = branches * a.mask_bytes * T * self.attention.hidden
        return out

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        """The parts' steps in reverse forward order (a part the layout's order
        does not name runs first). Each part frees what the layer counts for it,
        which is less than its own count where parts share a tensor (the parallel
        layouts); the layer's own extras (dropout noise) are freed at the end."""
        parts = self.parts()
        kinds = {"mlp": self.mlp.kind if self.mlp is not None else "mlp", "attention": self.attention.kind}
        order = [kinds.get(name, name) for name in _ORDER[self.layout]]
        forward = [name for name in order if name in parts] + [name for name in parts if name not in order]
        saved = self.saved(p, a)
        steps: list[Step] = []
        for name in reversed(forward):
            own = parts[name].backward_steps(p, a)
            counted = sum(v for k, v in saved.items() if k == name or k.startswith(name + "/"))
            last = own[-1]
            own[-1] = Step(last.grads, last.transient, last.freed + counted - sum(s.freed for s in own))
            steps += own
        return steps + [Step(freed=sum(saved.values()) - sum(s.freed for s in steps))]

    def module(self, a: Activations | None = None):
        return _module_class()(self, a)


@cache
def _module_class():
    from torch import nn

    class TransformerLayerModule(nn.Module):
        # Registered by name from spec.parts() (add_module); declared for the type checker.
        # The feed-forward block is registered as spec.mlp.kind (mlp or moe): see mlp_forward.
        attention: nn.Module
        cross_attention: nn.Module  # with spec.cross_attention only

        def __init__(self, spec: TransformerLayer, a: Activations | None):
            super().__init__()
            self.spec = spec
            for name, part in spec.parts().items():
                if not name.startswith("norm/"):
                    self.add_module(name, part.module(a))  # attention, cross_attention, mlp or moe
            self.norm = nn.ModuleDict({name: spec.norm.module(a) for name in spec.norm_names})

        def mlp_forward(self, x):
            assert self.spec.mlp is not None, "a mixer-only layer returns before its feed-forward"
            return getattr(self, self.spec.mlp.kind)(x)

        def mixer_forward(self, x):  # attention, or a Mamba mixer (registered as mixer)
            return getattr(self, self.spec.attention.kind)(x)

        def forward(self, x, memory=None):
            n, layout = self.norm, self.spec.layout
            if layout == "parallel-shared":
                y = n["input_layernorm"](x)
                return x + self.attention(y) + self.mlp_forward(y)
            if layout == "parallel":
                return x + self.attention(n["input_layernorm"](x)) + self.mlp_forward(n["post_attention_layernorm"](x))
            if layout == "post":
                x = n["attention_layernorm"](x + self.attention(x))
                if memory is not None:
                    x = n["cross_attention_layernorm"](x + self.cross_attention(x, memory))
                return n["output_layernorm"](x + self.mlp_forward(x))
            if layout == "reordered":
                x = x + n["post_attention_layernorm"](self.attention(x))
                return x + n["post_feedforward_layernorm"](self.mlp_forward(x))
            if layout == "sandwich":
                x = x + n["post_attention_layernorm"](self.attention(n["input_layernorm"](x)))
                return x + n["post_feedforward_layernorm"](self.mlp_forward(n["pre_feedforward_layernorm"](x)))
            x = x + self.mixer_forward(n["input_layernorm"](x))
            if self.spec.mlp is None:
                return x
            if memory is not None:
                x = x + self.cross_attention(n["cross_attention_layernorm"](x), memory)
            return x + self.mlp_forward(n["post_attention_layernorm"](x))

    return TransformerLayerModule
