"""docs/contract.md's activation truth for any torch module: the bytes autograd
saves in one training forward (with the loss where given), each storage once,
parameters excluded (and buffers, unless `buffers=True` keeps them, as the
transformers reference measurement does), seen through saved_tensors_hooks."""

from __future__ import annotations

import torch


def saved_bytes(module, *inputs, loss=None, buffers: bool = False, **kwargs) -> int:
    owned = [*module.parameters(), *([] if buffers else module.buffers())]
    state = {t.untyped_storage()._cdata for t in owned}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in state:
            seen.setdefault(storage._cdata, storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(*inputs, **kwargs)
        if loss is not None:
            loss(out)
    return sum(seen.values())
