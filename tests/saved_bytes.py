"""docs/contract.md's activation truth for any torch module: the bytes autograd
saves in one training forward (with the loss where given), each storage once,
parameters excluded (and buffers, unless `buffers=True` keeps them, as the
transformers reference measurement does), seen through saved_tensors_hooks."""

from __future__ import annotations

import weakref

import torch


def saved_bytes(module, *inputs, loss=None, buffers: bool = False, **kwargs) -> int:
    """Counted once the forward (and the loss) is done, over the tensors the graph still holds: a branch
    whose output nobody keeps (a vision tower's unused last layer) frees its saved tensors, and a storage
    freed mid-forward may hand its address to a later one, which counting by address at save time would
    then skip (the measurement used to vary by a few kilobytes from run to run that way)."""
    owned = [*module.parameters(), *([] if buffers else module.buffers())]
    state = {t.untyped_storage()._cdata for t in owned}
    kept: list[weakref.ref] = []

    def pack(t):
        kept.append(weakref.ref(t))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(*inputs, **kwargs)
        if loss is not None:
            out = (out, loss(out))
        alive = [t for t in (ref() for ref in kept) if t is not None]
        seen = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in alive}
        del out
    return sum(n for cdata, n in seen.items() if cdata not in state)
