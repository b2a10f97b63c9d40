"""Architecture sizing: Llama-style decoder shapes whose exact parameter count
lands within a tolerance of a target (issue #9).

The family is Llama's (Touvron et al. 2023): pre-RMSNorm decoder layers,
grouped-query attention without biases, a gated SwiGLU MLP, rotary positions
(no table), a final RMSNorm and an untied LM head unless asked to tie it. Its
count has a closed form (`llama_params`), tested exactly against
`paramcalc.network.build(spec).params()`, so the search never builds a spec
and proposes in well under a second even at 405B.

Constraints are the ones published dense decoders respect (shapes from the
models' config.json; see docs/sizing.md):

    model            hidden  layers  hidden/layers  heads x dim  kv   ffn / hidden
    Llama-2-7B        4096     32       128           32 x 128   32   11008 (2.69)
    Llama-2-13B       5120     40       128           40 x 128   40   13824 (2.70)
    Llama-2-70B       8192     80       102.4         64 x 128    8   28672 (3.50)
    Llama-3.1-8B      4096     32       128           32 x 128    8   14336 (3.50)
    Llama-3.1-405B   16384    126       130          128 x 128    8   53248 (3.25)
    Mistral-7B        4096     32       128           32 x 128    8   14336 (3.50)
    Qwen2.5-0.5B       896     24        37.3         14 x  64    2    4864 (5.43)
    Qwen2.5-14B       5120     48       106.7         40 x 128    8   13824 (2.70)
    Qwen2.5-32B       5120     64        80           40 x 128    8   27648 (5.40)
    Falcon-180B      14848     80       185.6        232 x  64    8   (plain 4x MLP)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from fractions import Fraction

from paramcalc.errors import UserError
from paramcalc.results.size import Candidate, SizeReport
from paramcalc.units import parse_natural, parse_number, parse_positive_int

# head_dim: 128 in Llama 2/3, Mistral and Qwen2.5 >= 1.5B; 64 in Qwen2.5-0.5B and Falcon.
HEAD_DIMS = (128, 64)
# hidden_size: every model above is a multiple of 128 (Qwen2.5-0.5B's 896 = 7 x 128).
HIDDEN_MULTIPLE = 128
# intermediate_size: Llama rounds its FFN width up to `multiple_of` = 256 (meta-llama/llama
# model.py); 11008, 13824, 14336, 28672 and 53248 are all multiples of 256.
FFN_MULTIPLE = 256
# ffn / hidden: SwiGLU at equal cost to a 4h plain MLP is 8/3 (Shazeer 2020, "GLU Variants Improve
# Transformer"); Llama 2 uses 2.69-3.5, Llama 3 3.25-3.5. Qwen2.5's 5.3-5.8x lies outside (widen it in
# the library call if you want that family).
FFN_RATIO = (2.5, 4.0)
# hidden / layers: 37 (Qwen2.5-0.5B) to 186 (Falcon-180B) above; Kaplan et al. 2020 (sec. 3.1, fig. 5):
# at fixed non-embedding parameters the loss moves only a few percent across a wide range of aspect ratios.
ASPECT_RATIO = (32, 200)
# K/V heads in order of preference (ties in deviation go to the earlier one): 8 as in Llama 2-70B,
# Llama 3 and Mistral; 4 (Qwen2.5-7B); 2 (Qwen2.5 <= 3B); "mha" = as many as query heads (Llama-2-7B/13B).
KV_HEADS: tuple[int | str, ...] = (8, 4, 2, "mha")
DEFAULT_VOCAB = 128256  # Llama 3's tokenizer

# ---------------------------------------------------------------- the ranking (issue #19)
# Within 2% nearly every width reaches the target to a few parts per million, so the distance to the target says
# nothing about a shape: 99 layers of width 3584 was the closest 14B. Candidates are ranked instead by how far
# they stray from the shapes that well-trained models use, and from what the hardware divides evenly.
# Kaplan et al. 2020 (sec. 3.1, fig. 5): at fixed non-embedding parameters the loss depends only weakly on the
# shape over a wide range of aspect ratios (a few percent across 20x), so a penalty only applies outside the
# band the published families chose. Levine et al. 2020 ("Limits to Depth Efficiencies of Self-Attention",
# NeurIPS): depth is efficient only up to a threshold logarithmic in the width, L_th = log3(hidden) (about 7.6
# layers at 4096); past it depth and width buy about the same, so depth should grow with the log of the width
# and the width faster, as hidden / layers rising with size in the families below shows:
#     Llama 3.1 8B 4096 x 32 (128), Mistral 7B 4096 x 32 (128), Qwen2.5 14B 5120 x 48 (107),
#     Llama 3.1 70B 8192 x 80 (102), Llama 3.1 405B 16384 x 126 (130).
ASPECT_BAND = (100.0, 132.0)  # hidden / layers: no penalty inside (405B's 130.03 included)
ASPECT_WEIGHT = 4.0  # per unit of |ln(ratio / band edge)|: 10% outside the band costs about 0.4
# ffn / hidden: from Shazeer 2020's equal-cost SwiGLU 8/3 (Llama 2: 2.69) to Llama 3 and Mistral 7B's 3.5
# (Llama 3.1 405B: 3.25); no penalty inside
FFN_BAND = (8 / 3, 3.5)
FFN_WEIGHT = 2.0
TP_DEGREE = 8  # one 8-GPU node: query and K/V heads divisible by 8 split evenly under tensor parallelism
TP_PENALTY = 0.25
HEAD_DIM_PENALTY = 0.25  # head_dim 128: every model above, and the tile FlashAttention is tuned for
GEMM_MULTIPLE = 256  # hidden a multiple of 256 (Llama 3 and Qwen2.5 widths are multiples of 1024 or 256)
WIDTH_PENALTY = 0.1
SHALLOW_PENALTY = 1.0  # fewer layers than Levine et al.'s depth threshold log3(hidden)
KV_RANK_WEIGHT = 0.05  # per place down the --kv-heads list (8 first by default)


def _band_distance(x: float, band: tuple[float, float]) -> float:
    """|ln(x / nearest edge)| outside the band, 0 inside."""
    return max(0.0, math.log(band[0] / x), math.log(x / band[1]))


def shape_score(h: int, L: int, n: int, g: int, f: int, d: int, kv_rank: int = 0) -> float:
    """How far a shape strays from well-trained, hardware-friendly ones (0: a Llama 3 shape; lower is better).

    >>> shape_score(4096, 32, 32, 8, 14336, 128), shape_score(8192, 80, 64, 8, 28672, 128)
    (0.0, 0.0)
    >>> round(shape_score(3584, 99, 56, 8, 9728, 64), 2)  # the closest 14B: 99 layers, h/L 36, head_dim 64
    4.31
    """
    score = ASPECT_WEIGHT * _band_distance(h / L, ASPECT_BAND) + FFN_WEIGHT * _band_distance(f / h, FFN_BAND)
    if n % TP_DEGREE or g % TP_DEGREE:
        score += TP_PENALTY
    if d != 128:
        score += HEAD_DIM_PENALTY
    if h % GEMM_MULTIPLE:
        score += WIDTH_PENALTY
    if L < math.log(h, 3):
        score += SHALLOW_PENALTY
    return score + KV_RANK_WEIGHT * kv_rank


def llama_params(h: int, L: int, d: int, g: int, f: int, V: int, tied: bool = False) -> int:
    """Exact count of a Llama-style decoder with n = h / d query heads:

        per layer: q and o projections 2 h (n d) = 2 h^2, k and v 2 h (g d),
                   gate/up/down 3 h f, two RMSNorm weights 2 h (no biases anywhere)
        once:      token table V h, final RMSNorm h, LM head V h (0 when tied)
    """
    layer = 2 * h * h + 2 * h * g * d + 3 * h * f + 2 * h
    return L * layer + V * h * (1 if tied else 2) + h


def _parse_tolerance(tolerance) -> Fraction:
    value = parse_number(tolerance, field="tolerance")
    if not 0 <= value < 1:
        raise UserError(f"tolerance must be a fraction in [0, 1), got {tolerance!r}", field="tolerance",
                        fix="give a relative tolerance such as 0.02 (2%)")
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def _kv_choices(kv_heads) -> tuple[int | str, ...]:
    items = kv_heads.split(",") if isinstance(kv_heads, str) else list(kv_heads)
    out: list[int | str] = []
    for item in items:
        text = str(item).strip().lower()
        if text == "mha":
            out.append("mha")
        else:
            out.append(parse_positive_int(text, field="kv_heads"))
    if not out:
        raise UserError("no K/V head counts given", field="kv_heads", fix="e.g. 8,4,mha")
    return tuple(out)


def compute_optimal_params(flops) -> tuple[int, int, int]:
    """(C, N, D) for a FLOP budget C by Hoffmann et al. 2022 ("Chinchilla"): C = 6 N D and
    D = 20 N (their table 3), so N = sqrt(C / 120), D = 20 N (floors: exact ints)."""
    value = parse_number(flops, field="flops")
    if value <= 0:
        raise UserError(f"the FLOP budget must be positive, got {flops!r}", field="flops", fix="e.g. 8.4e22")
    c = int(value)
    n = math.isqrt(c // 120)
    if n <= 0:
        raise UserError(f"a budget of {flops!r} FLOPs trains no model", field="flops", fix="e.g. 8.4e22")
    return c, n, 20 * n


def _shapes(target: int, slack: int, V: int, tied: bool, kv: tuple[int | str, ...],
            ffn_ratio: tuple[float, float], aspect: tuple[float, float]) -> Iterator[tuple]:
    """Every (params, h, L, n, g, f, d) with |params - target| <= slack. The count is
    linear in L and in f, so each loop's range comes from the bounds in closed form."""
    lo, hi = target - slack, target + slack
    embed = V * (1 if tied else 2) + 1  # per unit of h: token table (+ head) + final norm
    h = HIDDEN_MULTIPLE
    while True:
        f_min = -(-math.ceil(ffn_ratio[0] * h) // FFN_MULTIPLE) * FFN_MULTIPLE
        f_max = math.floor(ffn_ratio[1] * h) // FFN_MULTIPLE * FFN_MULTIPLE
        L_min, L_max = max(1, math.ceil(h / aspect[1])), math.floor(h / aspect[0])
        base = embed * h
        # the smallest model at this width (fewest layers, g = 1, narrowest FFN) grows with h: stop
        if base + L_min * (2 * h * h + 2 * h * HEAD_DIMS[-1] + 3 * h * max(f_min, 0) + 2 * h) > hi:
            return
        if f_min <= f_max and L_min <= L_max:
            for d in HEAD_DIMS:
                n = h // d
                if n == 0:
                    continue
                for g in sorted({n if isinstance(k, str) else k for k in kv}):  # "mha": g = n
                    if n % g:
                        continue
                    fixed = 2 * h * h + 2 * h * g * d + 2 * h  # per layer, without the MLP
                    lo_L = max(L_min, -(-(lo - base) // (fixed + 3 * h * f_max)))
                    hi_L = min(L_max, (hi - base) // (fixed + 3 * h * f_min))
                    for L in range(lo_L, hi_L + 1):
                        step = 3 * h * L  # params per unit of intermediate_size
                        rest = base + L * fixed
                        f_lo = max(f_min, -(-max(lo - rest, 0) // step))
                        f_hi = min(f_max, (hi - rest) // step)
                        f = -(-f_lo // FFN_MULTIPLE) * FFN_MULTIPLE
                        while f <= f_hi:  # the ranges only prune: the count is llama_params'
                            yield llama_params(h, L, d, g, f, V, tied), h, L, n, g, f, d
                            f += FFN_MULTIPLE
        h += HIDDEN_MULTIPLE


class _Counted:
    """An iterator that counts what passes through it."""

    def __init__(self, items):
        self.items, self.n = items, 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            yield item


def propose_architectures(target=None, *, flops=None, tolerance=0.02, vocab_size=DEFAULT_VOCAB,
                          tied: bool = False, max_candidates: int | str | None = 10, kv_heads=KV_HEADS,
                          ffn_ratio: tuple[float, float] = FFN_RATIO,
                          aspect_ratio: tuple[float, float] = ASPECT_RATIO) -> SizeReport:
    """Llama-style architectures whose exact count is within `tolerance` of `target`
    (or of the compute-optimal N for a FLOP budget), the most conventional shape first (`shape_score`).

    >>> best = propose_architectures("6738415616", vocab_size=32000, kv_heads="mha", tolerance=0,
    ...                              max_candidates=1).candidates[0]
    >>> best.hidden_size, best.num_hidden_layers, best.num_key_value_heads, best.intermediate_size
    (4096, 32, 32, 11008)
    """
    notes: list[str] = []
    c = tokens = None
    if (target is None) == (flops is None):
        raise UserError("give exactly one of a target count and a FLOP budget", field="target",
                        fix="e.g. a target of 7B, or a budget of 8.4e22 FLOPs")
    if flops is not None:
        c, n_opt, tokens = compute_optimal_params(flops)
        target_n = n_opt
        notes.append(f"a FLOP budget: compute-optimal N = sqrt(C / 120) = {n_opt:,} parameters and D = 20 N = "
                     f"{tokens:,} tokens (C = 6 N D, D = 20 N: Hoffmann et al. 2022)")
    else:
        value = parse_number(target, field="target")
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"the target must be a positive whole parameter count, got {target!r}",
                            field="target", fix="e.g. 7B, 7e9 or 405B")
        target_n = value
    tol = _parse_tolerance(tolerance)
    V = parse_positive_int(vocab_size, field="vocab_size")
    kv = _kv_choices(kv_heads)
    limit: int | None = None  # candidates shown (None: all)
    if max_candidates is not None:
        limit = parse_natural(max_candidates, field="max_candidates") or None  # 0: all
    slack = math.floor(tol * target_n)

    preference = {k: i for i, k in enumerate(kv)}
    last = len(kv)

    def key(shape):
        p, h, L, n, g, f, d = shape
        kv_rank = min(preference.get(g, last), preference.get("mha", last) if g == n else last)
        # the most conventional shape first (shape_score); then the closest count, then the wider model
        return shape_score(h, L, n, g, f, d, kv_rank), abs(p - target_n), -h

    shapes = _shapes(target_n, slack, V, tied, kv, ffn_ratio, aspect_ratio)
    if limit is None:
        chosen = sorted(shapes, key=key)
        matches = len(chosen)
    else:
        counted = _Counted(shapes)
        chosen = heapq.nsmallest(limit, counted, key=key)
        matches = counted.n
    candidates = [Candidate(params_total=p, hidden_size=h, num_hidden_layers=L, num_attention_heads=n,
                            num_key_value_heads=g, intermediate_size=f, head_dim=d, vocab_size=V,
                            tie_word_embeddings=tied, deviation=(p - target_n) / target_n,
                            score=round(key((p, h, L, n, g, f, d))[0], 4))
                  for p, h, L, n, g, f, d in chosen]
    notes.append("Llama-style decoder: pre-RMSNorm, GQA without biases, SwiGLU MLP, RoPE, "
                 + ("LM head tied to the token table" if tied else "untied LM head"))
    notes.append(f"constraints: head_dim {' or '.join(map(str, HEAD_DIMS))}, hidden a multiple of {HIDDEN_MULTIPLE}, "
                 f"heads = hidden / head_dim, K/V heads {', '.join(map(str, kv))} (dividing the heads), "
                 f"intermediate a multiple of {FFN_MULTIPLE} in {ffn_ratio[0]:g}-{ffn_ratio[1]:g} x hidden, "
                 f"hidden / layers in {aspect_ratio[0]:g}-{aspect_ratio[1]:g}")
    notes.append(f"ranked by shape, not by distance to the target (every match is within the tolerance): score = "
                 f"{ASPECT_WEIGHT:g} x ln-distance of hidden/layers from {ASPECT_BAND[0]:g}-{ASPECT_BAND[1]:g} "
                 f"(Llama 3, Qwen2.5, Mistral) + {FFN_WEIGHT:g} x ln-distance of ffn/hidden from "
                 f"{FFN_BAND[0]:.3g}-{FFN_BAND[1]:g} (SwiGLU: 8/3 to Llama 3) + {TP_PENALTY:g} if query or K/V heads "
                 f"are not divisible by {TP_DEGREE} (tensor parallelism) + {HEAD_DIM_PENALTY:g} if head_dim is not 128 "
                 f"+ {WIDTH_PENALTY:g} if hidden is not a multiple of {GEMM_MULTIPLE} + {SHALLOW_PENALTY:g} below "
                 f"Levine et al.'s depth threshold log3(hidden) + {KV_RANK_WEIGHT:g} per place down --kv-heads; "
                 "lowest first, ties to the closest count (docs/sizing.md)")
    if not matches:
        notes.append(f"no architecture within {float(tol):.2%} of {target_n:,}: widen the tolerance or change "
                     "the vocabulary (counts of this family are multiples of 128)")
    return SizeReport(target=target_n, tolerance=float(tol), vocab_size=V, tie_word_embeddings=tied, flops=c,
                      tokens=tokens, matches=matches, candidates=candidates, notes=notes)
