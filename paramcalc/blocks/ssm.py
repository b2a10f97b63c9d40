"""Selective state-space mixers: Mamba (Gu & Dao 2023) and Mamba-2 (Dao & Gu
2024), each in place of a layer's attention, as transformers' slow path (the
torch reference it runs without the CUDA kernels) computes them.

Mamba (modeling_mamba.MambaMixer): in_proj h -> 2 d_inner (x and the gate z),
a depthwise causal conv1d over x (kernel k), x_proj d_inner -> dt_rank + 2 N
(dt, B, C), dt_proj dt_rank -> d_inner (+ bias), A_log (d_inner x N) and D
(d_inner), out_proj d_inner -> h. Falcon-Mamba adds weightless RMS norms on
dt, B and C (no parameters); Jamba's (modeling_jamba.JambaMambaMixer: dt_layernorm,
b_layernorm, c_layernorm) have weights, dt_rank + 2 N of them.

Mamba-2 (modeling_mamba2.Mamba2Mixer): one in_proj h -> [z, x, B, C, dt] of
widths d_inner, d_inner, G N, G N, H (G groups, H heads of head_dim P), the
conv over x, B and C, per-head A_log, D and dt_bias, a gated RMSNorm over
d_inner (per group) before out_proj.

FLOPs are what FlopCounterMode sees on that path: the projections, the conv
(torch pads k - 1 on both sides and the causal output keeps the first s of
s + k - 1 positions: all are computed) and the scan's contractions (Mamba's
state readout C h_t, a matmul per step; Mamba-2's chunked einsums). The scan's
elementwise recurrence (discretisation, state update) is not a matmul:
`scan_elementwise_flops` estimates it, reported apart like the other
non-matmul work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass
from paramcalc.blocks.linear import Linear


def _conv_positions(p: Pass, k: int) -> int:
    """Positions the depthwise conv computes per sequence: s + k - 1 with torch's
    symmetric padding (causal_conv1d_fn keeps the first s), s when decoding over a
    conv state (causal_conv1d_update: k - 1 cached inputs and the new one)."""
    return p.seq if p.keys > p.seq else p.seq + k - 1


@dataclass(frozen=True)
class Mamba(Block):
    """Mamba's selective SSM mixer (Gu & Dao 2023, Algorithm 2; transformers' MambaMixer)."""

    hidden: int
    inner: int  # d_inner = expand x hidden (intermediate_size)
    state: int  # N (state_size)
    conv_kernel: int = 4
    dt_rank: int = 48  # time_step_rank ("auto": ceil(hidden / 16))
    bias: bool = False  # use_bias: in_proj and out_proj
    conv_bias: bool = True  # use_conv_bias
    bcdt_norm: bool = False  # Falcon-Mamba: weightless RMS norms on dt, B and C
    bcdt_norm_weight: bool = False  # Jamba: those norms have weights
    kind = "mixer"

    def projections(self) -> dict[str, Linear]:
        h, d, N, r = self.hidden, self.inner, self.state, self.dt_rank
        return {
            "in_proj": Linear(h, 2 * d, self.bias),  # x and the gate z
            "x_proj": Linear(d, r + 2 * N),  # dt (low rank), B and C from x
            "dt_proj": Linear(r, d, bias=True),  # dt back to d_inner; its bias is added in the scan
            "out_proj": Linear(d, h, self.bias),
        }

    def params(self) -> Breakdown:
        d, N, k = self.inner, self.state, self.conv_kernel
        out: Breakdown = {}
        for name, part in self.projections().items():
            out.update({f"{name}/{key}": v for key, v in part.params().items()})
        out["conv1d/weight"] = d * k  # depthwise: one k-tap filter per channel
        if self.conv_bias:
            out["conv1d/bias"] = d
        out["A_log"] = d * N  # S4D-real A = -exp(A_log), one row of N per channel
        out["D"] = d  # the skip connection
        if self.bcdt_norm_weight:  # JambaRMSNorm weights over dt (dt_rank wide), B and C (N wide each)
            out.update({"dt_layernorm/weight": self.dt_rank, "b_layernorm/weight": N, "c_layernorm/weight": N})
        return out

    def flops(self, p: Pass) -> Breakdown:
        T, d, N = p.tokens, self.inner, self.state
        out = {name: part.matmul_flops(T) for name, part in self.projections().items()}
        out["conv1d"] = 2 * p.batch * d * self.conv_kernel * _conv_positions(p, self.conv_kernel)
        out["scan"] = 2 * T * d * N  # y_t = C_t h_t: (d x N) @ (N x 1) per token (the slow path's matmul)
        return out

    def scan_elementwise_flops(self, p: Pass) -> int:
        """The recurrence h_t = exp(dt A) h_t-1 + dt B x_t, not a matmul (Gu & Dao 2023, eq. 2a
        and 4): per (token, channel, state) exp(dt A) (2), dt B (1), times x (1), the update (2);
        per (token, channel) the dt bias and softplus (~5), the D skip (2), the SiLU gate (~5) and
        the conv's SiLU (~5). An estimate: errs high against a fused kernel's shared terms."""
        T, d, N = p.tokens, self.inner, self.state
        return 6 * T * d * N + 17 * T * d

    def state_elements(self) -> int:
        """The recurrent state one sequence keeps while generating, whatever its length:
        the conv's last k - 1 inputs and the SSM state h (d_inner x N)."""
        return self.inner * (self.conv_kernel - 1) + self.inner * self.state

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """Bytes autograd keeps running transformers' slow path (modeling_mamba's
        mamba_selective_scan, its sequential loop) in dtype x, each storage once.
        The scan is fp32 where the slow path upcasts: exp(dt A) and dt B per token,
        channel and state (4 bytes each), and every step's state h_t, saved by the
        next step's product (fp32) and by the readout C h_t (a model-dtype copy; in
        fp32 the state itself): s + 1 states in all, the zero start included."""
        x, b, s, T = a.x, p.batch, p.seq, p.tokens
        h, d, N, r, k = self.hidden, self.inner, self.state, self.dt_rank, self.conv_kernel
        fp32 = x == 4
        out = {
            "input": x * T * h,
            "A": 8 * d * N,  # A = -exp(A_log): exp's output and its negation
            "in_proj_output": x * T * 2 * d,  # the conv reads its x half and SiLU(z) the gate half (views)
            "conv_output": x * b * d * (s + k - 1),  # SiLU reads the first s positions (a view)
            "x_proj_input": x * T * d,  # a contiguous copy of the transposed SiLU output
            "x_proj_output": x * T * (r + 2 * N),  # dt_proj reads dt, the readout each C_t (views)
            "dt": 2 * x * T * d,  # softplus's input and output
            "u": x * T * d,  # the SiLU output, read by the D skip
            "exp_dtA": 4 * T * d * N,
            "dtB": 4 * T * d * N,
            "states": 4 * b * d * N * (s + 1) if fp32 else x * b * d * N * (s + 1) + 4 * b * d * N * (s - 1),
            "y": 4 * T * d,  # the readout plus D u (fp32), read by the gate product
            "silu_gate": x * T * d,
            "out_proj_input": x * T * d,
        }
        if not fp32:
            out["upcasts"] = 4 * T * N + 4 * T * d + 4 * d  # fp32 copies of B, u (for dt B u) and D
        if self.bcdt_norm:
            # three weightless RMS norms (FalconMambaWeightlessRMSNorm): fp32 rows of dt, B and C and
            # their rsqrt; their outputs feed dt_proj and the readout (and dt B in fp32) in place of
            # the x_proj output's views
            out["bcdt_norm"] = 12 * T + 4 * T * (r + 2 * N) - (0 if fp32 else x * T * N)
            if self.bcdt_norm_weight:  # JambaRMSNorm's weight product keeps the normalised rows it scales
                out["bcdt_norm"] += x * T * (r + 2 * N)
        return out

    def module(self, a: Activations | None = None):
        return _module_class()(self)


@cache
def _module_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def rms(x, eps=1e-6):  # FalconMambaWeightlessRMSNorm
        f = x.float()
        return (f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)

    class RMSNorm(nn.Module):  # JambaRMSNorm: the weightless norm, then its weight
        def __init__(self, dim: int):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return self.weight * rms(x)

    class MambaModule(nn.Module):
        """transformers' MambaMixer.forward without a cache, on its slow path."""

        # Registered by name from spec.projections() (add_module); declared for the type checker.
        in_proj: nn.Linear
        x_proj: nn.Linear
        dt_proj: nn.Linear
        out_proj: nn.Linear

        def __init__(self, spec: Mamba):
            super().__init__()
            self.spec = spec
            d, k = spec.inner, spec.conv_kernel
            for name, part in spec.projections().items():
                self.add_module(name, part.module())
            self.conv1d = nn.Conv1d(d, d, k, groups=d, padding=k - 1, bias=spec.conv_bias)
            self.A_log = nn.Parameter(torch.zeros(d, spec.state))
            self.D = nn.Parameter(torch.ones(d))
            if spec.bcdt_norm_weight:
                self.dt_layernorm = RMSNorm(spec.dt_rank)
                self.b_layernorm, self.c_layernorm = RMSNorm(spec.state), RMSNorm(spec.state)

        def forward(self, x):
            spec, s = self.spec, x.shape[1]
            dtype = x.dtype
            projected = self.in_proj(x).transpose(1, 2)
            A = -torch.exp(self.A_log.float())
            u, gate = projected.chunk(2, dim=1)
            u = F.silu(self.conv1d(u.to(self.conv1d.weight.dtype))[:, :, :s]).to(u.dtype)
            u = u.transpose(1, 2)
            dt, B, C = torch.split(self.x_proj(u), [spec.dt_rank, spec.state, spec.state], dim=-1)
            if spec.bcdt_norm_weight:
                dt, B, C = self.dt_layernorm(dt), self.b_layernorm(B), self.c_layernorm(C)
            elif spec.bcdt_norm:
                dt, B, C = rms(dt), rms(B), rms(C)
            dt = self.dt_proj.weight @ dt.transpose(1, 2)
            y = _selective_scan(u.transpose(1, 2), dt, A, B, C, self.D.float(), gate, self.dt_proj.bias.float())
            return self.out_proj(y.transpose(1, 2).to(dtype))

    def _selective_scan(u, dt, A, B, C, D, z, delta_bias):
        """modeling_mamba.mamba_selective_scan's sequential loop (u, dt, z: b x d x s; B, C: b x s x N)."""
        b, d, s = u.shape
        dt = F.softplus(dt + delta_bias.to(dt.dtype)[..., None])
        dA = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
        dB = dt[:, :, :, None] * B[:, None, :, :].float()
        dBu = dB * u[:, :, :, None].float()
        state = torch.zeros(b, d, A.shape[-1], dtype=u.dtype, device=u.device)
        ys = []
        for t in range(s):
            state = dA[:, :, t] * state + dBu[:, :, t]
            ys.append(torch.matmul(state.to(u.dtype), C[:, t, :].unsqueeze(-1))[:, :, 0])
        y = torch.stack(ys, dim=-1) + u * D[None, :, None]
        return y * F.silu(z)

    return MambaModule


@dataclass(frozen=True)
class Mamba2(Block):
    """Mamba-2's SSD mixer (Dao & Gu 2024, section 7 and Listing 1; transformers' Mamba2Mixer):
    H heads of head_dim P = d_inner / H, a scalar A per head, B and C shared by the heads of
    each of G groups, scanned in chunks of Q tokens."""

    hidden: int
    inner: int  # d_inner = expand x hidden = heads x head_dim
    state: int  # N
    heads: int  # H
    groups: int = 1  # G
    chunk: int = 256  # Q (chunk_size)
    conv_kernel: int = 4
    bias: bool = False
    conv_bias: bool = True
    kind = "mixer"

    @property
    def conv_dim(self) -> int:
        """The conv runs over x, B and C: d_inner + 2 G N channels."""
        return self.inner + 2 * self.groups * self.state

    def projections(self) -> dict[str, Linear]:
        h, d = self.hidden, self.inner
        return {"in_proj": Linear(h, d + self.conv_dim + self.heads, self.bias),  # z, x, B, C and dt
                "out_proj": Linear(d, h, self.bias)}

    def params(self) -> Breakdown:
        out: Breakdown = {}
        for name, part in self.projections().items():
            out.update({f"{name}/{key}": v for key, v in part.params().items()})
        out["conv1d/weight"] = self.conv_dim * self.conv_kernel
        if self.conv_bias:
            out["conv1d/bias"] = self.conv_dim
        out.update({"dt_bias": self.heads, "A_log": self.heads, "D": self.heads})  # one scalar each per head
        out["norm/weight"] = self.inner  # the gated RMSNorm (MambaRMSNormGated)
        return out

    def flops(self, p: Pass) -> Breakdown:
        """The projections, the conv, and mamba2_chunk_scan's five einsums over c = ceil(s / Q)
        chunks (the sequence is padded to c Q): C B^T within each chunk (Q x Q x N per head), its
        masked product with x (Q x Q x P), each chunk's final state B^T x (Q x P x N), the
        recurrence over chunk states ((c + 1)^2 x P x N) and the readout C h (Q x P x N)."""
        T, b, H, N, Q = p.tokens, p.batch, self.heads, self.state, self.chunk
        P = self.inner // H
        out = {name: part.matmul_flops(T) for name, part in self.projections().items()}
        out["conv1d"] = 2 * b * self.conv_dim * self.conv_kernel * _conv_positions(p, self.conv_kernel)
        if p.keys > p.seq:  # decoding over the state: h = exp(dt A) h + dt B x; y = C h per head (a bmm)
            out["scan"] = 2 * T * H * P * N
            return out
        c = -(-p.seq // Q)
        out["scan"] = 2 * b * H * (c * Q * Q * (N + P) + 2 * c * Q * P * N + (c + 1) ** 2 * P * N)
        return out

    def scan_elementwise_flops(self, p: Pass) -> int:
        """Not matmuls (Dao & Gu 2024, Listing 1): the decay masks exp(segsum(A dt)) per chunk
        (~3 per Q x Q entry and head), the mask product (1), dt x (1 per element of x), the state
        decay of B (1 per element of B per head) and of the readout (1), the D skip (2) and the gated
        RMSNorm (~8 per element of d_inner). An estimate: errs high against a fused kernel."""
        T, b, H, N, Q = p.tokens, p.batch, self.heads, self.state, self.chunk
        c, d = -(-p.seq // Q), self.inner
        return 4 * b * c * Q * Q * H + 2 * T * H * N + 12 * T * d

    def state_elements(self) -> int:
        """Per sequence: the conv's last k - 1 inputs (x, B and C) and the SSM state (H x P x N)."""
        return self.conv_dim * (self.conv_kernel - 1) + self.inner * self.state

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        return _mamba2_saved(self, p, a)

    def module(self, a: Activations | None = None):
        return _mamba2_module_class()(self)


def _mamba2_saved(m: Mamba2, p: Pass, a: Activations) -> Breakdown:
    """Bytes autograd keeps running modeling_mamba2's torch path (mamba2_chunk_scan) in a
    16-bit dtype x, each storage once: the scan runs in fp32 over the sequence padded to
    c chunks of Q (T' = b c Q padded tokens); each einsum keeps contiguous copies of what
    its bmm reads. Exact against transformers' mixer in 16 bits where torch.einsum contracts
    through those copies (tests/test_ssm.py); where it takes another path (a single chunk at some
    widths) it keeps fewer, and in fp32 the upcasts are the tensors themselves: errs high there,
    by under 10% of the mixer's bytes."""
    x, b, s, T = a.x, p.batch, p.seq, p.tokens
    h, d, N, H, G, Q, k = m.hidden, m.inner, m.state, m.heads, m.groups, m.chunk, m.conv_kernel
    P, c = d // H, -(-s // Q)
    Tp = b * c * Q
    return {
        "input": x * T * h,
        "A": 8 * H,  # -exp(A_log): exp's output and its negation
        "in_proj_output": x * T * (d + m.conv_dim + H),  # z, the conv input and dt are views of it
        "conv_output": x * b * m.conv_dim * (s + k - 1),
        "dt": 2 * x * T * H + 8 * T * H,  # softplus's input and output, two fp32 copies
        "x_fp32": 4 * T * d + 4 * Tp * d,  # x upcast (read by dt x) and padded (read by D)
        "masks": 2 * Q * Q + 2 * (c + 1) ** 2,  # segment_sum's boolean tril masks
        "decay": 4 * H * (b * c * Q * Q + 2 * Tp + b * (c + 1) ** 2),  # exp(segsum), exp of the cumsums
        "B_C": 4 * Tp * H * N * 5,  # B and C repeated to H heads, and the einsums' copies
        "scores": 8 * b * c * Q * Q * H,  # C B^T and its masked copy
        "x_chunks": 8 * Tp * H * P,  # dt x as the diagonal and the state einsums read it
        "chunk_states": 4 * b * H * P * N * (2 * c + 1),  # the states, with the zero start, and the readout's
        "readout": 4 * Tp * d,  # C h before the decay product
        "y": 4 * Tp * d,  # the padded output (the norm reads its first s positions)
        "gated_norm": 4 * T * d * 4 + 4 * T * G,  # silu(z) and z upcast, y silu(z), the normed y, rsqrt
        "out_proj_input": x * T * d,
    }


@cache
def _mamba2_module_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def segment_sum(x):  # modeling_mamba2.segment_sum
        Q = x.size(-1)
        x = x[..., None].expand(*x.size(), Q)
        x = x.masked_fill(~torch.tril(torch.ones(Q, Q, device=x.device, dtype=torch.bool), diagonal=-1), 0)
        x = torch.cumsum(x, dim=-2)
        return x.masked_fill(~torch.tril(torch.ones(Q, Q, device=x.device, dtype=torch.bool), diagonal=0), -torch.inf)

    def chunked(x, pad, Q):  # modeling_mamba2.reshape_into_chunks
        x = F.pad(x, (0, 0, 0, 0, 0, pad, 0, 0) if x.dim() == 4 else (0, 0, 0, pad, 0, 0))
        return x.reshape(x.shape[0], -1, Q, *x.shape[2:])

    def chunk_scan(x, dt, A, B, C, Q, D, dt_bias):
        """modeling_mamba2.mamba2_chunk_scan without initial states (x: b s H P; B, C: b s G N)."""
        b, s, H, P = x.shape
        dt = torch.clamp(F.softplus(dt + dt_bias.to(dt.dtype)), min=0.0, max=float("inf"))
        x = x.float()
        B = B.float().repeat_interleave(H // B.shape[2], dim=2, output_size=H)
        C = C.float().repeat_interleave(H // C.shape[2], dim=2, output_size=H)
        pad = (Q - s % Q) % Q
        D_residual = D[..., None] * F.pad(x, (0, 0, 0, 0, 0, pad, 0, 0))
        x = x * dt[..., None].float()
        A = A.to(x.dtype) * dt.float()
        x, A, B, C = (chunked(t, pad, Q) for t in (x, A, B, C))
        A = A.permute(0, 3, 1, 2)
        A_cumsum = torch.cumsum(A, dim=-1)
        L = torch.exp(segment_sum(A))
        G = torch.einsum("bclhn,bcshn->bclsh", C, B)
        M = G * L.permute(0, 2, 3, 4, 1)
        Y_diag = torch.einsum("bclsh,bcshp->bclhp", M, x)
        decay_states = torch.exp(A_cumsum[:, :, :, -1:] - A_cumsum)
        B_decay = B * decay_states.permute(0, -2, -1, 1)[..., None]
        states = torch.einsum("bclhn,bclhp->bchpn", B_decay, x)
        states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
        decay_chunk = torch.exp(segment_sum(F.pad(A_cumsum[:, :, :, -1], (1, 0)))).transpose(1, 3)
        states = torch.einsum("bzch,bzhpn->bchpn", decay_chunk, states)[:, :-1]
        Y_off = torch.einsum("bclhn,bchpn->bclhp", C, states) * torch.exp(A_cumsum).permute(0, 2, 3, 1)[..., None]
        y = (Y_diag + Y_off).contiguous().reshape(b, -1, H, P) + D_residual
        return y[:, :s] if pad else y

    class Mamba2Module(nn.Module):
        """transformers' Mamba2Mixer.forward without a cache, on its torch path."""

        in_proj: nn.Linear  # registered from spec.projections(), declared for the type checker
        out_proj: nn.Linear

        def __init__(self, spec: Mamba2):
            super().__init__()
            self.spec = spec
            c, k, H = spec.conv_dim, spec.conv_kernel, spec.heads
            self.conv1d = nn.Conv1d(c, c, k, groups=c, padding=k - 1, bias=spec.conv_bias)
            for name, part in spec.projections().items():
                self.add_module(name, part.module())
            self.dt_bias = nn.Parameter(torch.zeros(H))
            self.A_log = nn.Parameter(torch.zeros(H))
            self.D = nn.Parameter(torch.ones(H))
            self.norm = nn.Module()
            self.norm.weight = nn.Parameter(torch.ones(spec.inner))

        def gated_norm(self, y, z, eps=1e-6):  # MambaRMSNormGated, norm_before_gate=False
            dtype = y.dtype
            y = y.to(torch.float32) * F.silu(z.to(torch.float32))
            G = self.spec.groups
            g = y.view(*y.shape[:-1], G, y.shape[-1] // G)
            g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
            return self.norm.weight * g.view(*y.shape).to(dtype)

        def forward(self, x):
            spec, (b, s, _) = self.spec, x.shape
            d, GN, H = spec.inner, spec.groups * spec.state, spec.heads
            dtype = x.dtype
            projected = self.in_proj(x)
            A = -torch.exp(self.A_log.float())
            z, xBC, dt = projected.split([d, spec.conv_dim, H], dim=-1)
            xBC = xBC.transpose(1, 2)
            xBC = F.silu(self.conv1d(xBC.to(self.conv1d.weight.dtype))[:, :, :s]).to(xBC.dtype).transpose(1, 2)
            u, B, C = torch.split(xBC, [d, GN, GN], dim=-1)
            y = chunk_scan(u.view(b, s, H, d // H), dt, A, B.view(b, s, spec.groups, spec.state),
                           C.view(b, s, spec.groups, spec.state), spec.chunk, self.D, self.dt_bias)
            y = self.gated_norm(y.reshape(b, s, -1), z)
            return self.out_proj(y.to(dtype))

    return Mamba2Module
