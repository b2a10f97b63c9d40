"""What LitGPT's model keeps for backward, per layer, measured on CPU (issue #20: `--trainer litgpt`).

Needs LitGPT itself, which paramcalc does not depend on (the rows of docs/post-training-validation.md ran its
April 2024 code, litgpt 0.3.x):

    python -m venv /tmp/litgpt && /tmp/litgpt/bin/pip install torch litgpt==0.3.1 lightning==2.3.0 "setuptools<70"
    /tmp/litgpt/bin/python benchmarks/litgpt_saved_bytes.py

For each case it builds LitGPT's LoRA GPT in bf16 (one and two layers more), runs a training forward with its
chunked head and chunked_cross_entropy, and counts the storages autograd still holds once the loss exists,
parameters and buffers excluded (tests/saved_bytes.py's rule). The difference between the two depths is one
layer's bytes. tests/test_post_training.py pins paramcalc's `trainer="litgpt"` to the figures this prints.
"""

from __future__ import annotations

import weakref

import torch

# (micro-batch, tokens, LoRA targets, lora_dropout, K/V groups) on a 256-wide, 4-head (head dim 64) Llama layer
# (targets: "all", or which of q, k and v)
CASES = [(1, 256, "qv", 0.05, 4), (1, 256, "qv", 0.05, 2), (1, 256, "qv", 0.05, 1), (1, 256, "all", 0.05, 4),
         (2, 128, "qv", 0.0, 2), (1, 256, "qk", 0.05, 2), (1, 256, "k", 0.0, 2)]


def saved(layers: int, batch: int, tokens: int, targets: str, dropout: float, groups: int) -> int:
    from litgpt.lora import GPT, Config, mark_only_lora_as_trainable
    from litgpt.utils import chunked_cross_entropy

    every = targets == "all"
    cfg = Config(name="probe", block_size=512, vocab_size=1000, padded_vocab_size=1024, n_layer=layers, n_head=4,
                 n_embd=256, n_query_groups=groups, rotary_percentage=1.0, parallel_residual=False, bias=False,
                 norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=688, lora_r=8,
                 lora_alpha=16, lora_dropout=dropout, lora_query=every or "q" in targets,
                 lora_key=every or "k" in targets, lora_value=every or "v" in targets,
                 lora_projection=every, lora_mlp=every, lora_head=every)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    model = GPT(cfg)
    torch.set_default_dtype(torch.float32)
    model.max_seq_length = tokens
    mark_only_lora_as_trainable(model)
    model.train()
    owned = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    kept: list[weakref.ref] = []

    def pack(t):
        kept.append(weakref.ref(t))
        return t

    ids = torch.randint(0, 1000, (batch, tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(ids, lm_head_chunk_size=128)  # as finetune/lora.py calls it
        logits[-1] = logits[-1][..., :-1, :]
        loss = chunked_cross_entropy(logits, ids[..., 1:])
        alive = {t.untyped_storage()._cdata: t.untyped_storage().nbytes()
                 for t in (ref() for ref in kept) if t is not None}
        del loss
    return sum(n for cdata, n in alive.items() if cdata not in owned)


if __name__ == "__main__":
    from importlib.metadata import version

    print(f"litgpt {version('litgpt')}, torch {torch.__version__}")
    for case in CASES:
        print(case, saved(3, *case) - saved(2, *case), "bytes a layer")
