"""Ground truth from transformers itself (the test-only reference, 5.24.0):
models built from a config dict on the meta device, parameters counted with
`sum(p.numel())`, matmul FLOPs counted with FlopCounterMode on the eager
attention path, forward and backward apart."""

from __future__ import annotations

import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode


def hf_model(cfg: dict, dtype=torch.float32, device: str = "meta", experts: str | None = "eager"):
    cfg = dict(cfg)
    arch = cfg.get("architectures", [None])[0]
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    config._attn_implementation = "eager"
    if experts:  # "eager": a loop over experts, so FlopCounterMode sees every matmul
        config._experts_implementation = experts
    cls = getattr(transformers, arch)
    with torch.device(device):
        model = cls(config)
    return model.to(dtype)


def hf_params(cfg: dict) -> int:
    return sum(p.numel() for p in hf_model(cfg).parameters())


def _inputs(model, batch: int, seq: int, device: str) -> dict:
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device) if device != "meta" \
        else torch.zeros(batch, seq, dtype=torch.long, device=device)
    if model.config.is_encoder_decoder:
        return {"input_ids": ids, "decoder_input_ids": ids}
    return {"input_ids": ids}


def hf_flops(cfg: dict, seq: int, batch: int = 1, device: str = "meta") -> tuple[int, int]:
    """(forward, backward) matmul FLOPs of one pass at batch x seq tokens.
    MoE routing needs real values: count small MoE models with device="cpu"."""
    model = hf_model(cfg, device=device)
    model.train()
    inputs = _inputs(model, batch, seq, device)
    with FlopCounterMode(display=False) as fwd:
        out = model(**inputs)
    outputs = [v for v in out.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    with FlopCounterMode(display=False) as bwd:
        sum(v.float().sum() for v in outputs).backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


def hf_saved_bytes(cfg: dict, seq: int, batch: int = 1) -> int:
    """docs/contract.md's activation truth: bytes autograd saves in one training
    forward with labels (bf16, eager attention, meta device), each storage once,
    parameters' storages excluded (buffers such as BERT's position ids count)."""
    from saved_bytes import saved_bytes

    # transformers' default experts path where torch has grouped matmuls, named: left unset it can
    # follow what MoE models built earlier in the process chose
    try:
        model = hf_model(cfg, dtype=torch.bfloat16, experts="grouped_mm")
    except ValueError:  # a dense model: no experts to choose a path for
        model = hf_model(cfg, dtype=torch.bfloat16, experts=None)
    model.train()
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    return saved_bytes(model, buffers=True, input_ids=ids, labels=ids)
