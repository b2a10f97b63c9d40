"""paramcalc as a library: every figure the CLI prints, as typed results.

    python examples/library.py
"""

import paramcalc

# Exact counts: tied weights once, MoE active parameters apart.
mixtral = paramcalc.count_params("mixtral-8x7b").params
print(f"Mixtral 8x7B: {mixtral.total:,} parameters, {mixtral.active:,} active per token")

# FLOPs of one training step (2 per multiply-add): eager attention computes the full
# s x s scores (the MFU convention), flash kernels only the unmasked (causal) pairs.
eager = paramcalc.flops("llama-3.1-8b", seq_len=8192).flops
flash = paramcalc.flops("llama-3.1-8b", seq_len=8192, attention="flash").flops
print(f"Llama 3.1 8B step at 8k: {eager.train_step:.3e} FLOPs eager, {3 * flash.forward:.3e} flash")

# Lower once, analyse many times: every analysis takes the network.
net = paramcalc.lower("llama-3.1-70b")
for tp in (4, 8):
    m = paramcalc.memory(net, mode="infer", seq_len=8192, batch=8, tp=tp)
    print(f"70B serving on TP{tp}: {m.memory.total_per_gpu / 2**30:.1f} GiB per GPU")

# Memory per GPU: ZeRO-3 over 8 GPUs with flash attention, and whether it fits.
m = paramcalc.memory("llama-3.1-8b", seq_len=8192, zero=3, dp=8, attention="flash", gpu="h100-sxm")
print(f"per GPU: {m.memory.total_per_gpu / 2**30:.1f} GiB, fits: {m.fits.fits}, "
      f"largest micro-batch: {m.fits.max_batch}")

# A training run's cost, and the whole plan in one call.
run = paramcalc.cost("llama-3.1-405b", tokens="15.6T", gpu="h100-sxm", gpus=16384, mfu=0.4, seq_len=8192)
print(f"Llama 3.1 405B: {run.cost.gpu_hours / 1e6:.1f}M GPU-hours, {run.cost.wall_clock_hours / 24:.0f} days")
print(paramcalc.estimate("qwen2.5-7b").verdict)

# Your own architecture: a spec object or a YAML file, same calls.
spec = paramcalc.TransformerSpec(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                 num_attention_heads=32, num_key_value_heads=4)
print(f"TinyLlama-shaped: {paramcalc.count_params(spec).params.total:,}")
print(paramcalc.count_params(spec).model_dump()["params"])
