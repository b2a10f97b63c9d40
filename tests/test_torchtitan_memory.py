"""torchtitan's tensors beyond the layers' (analysis/memory.py: `_torchtitan_loss`, `_stage_outputs`,
FSDP2's fp32 gradient accumulation), pinned to closed forms and, for the loss, to what torch
allocates on CPU."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from paramcalc.analysis.memory import memory_terms
from paramcalc.analysis.step import Plan
from paramcalc.blocks.base import Pass
from paramcalc.network import lower

V = 128256  # Llama 3's vocabulary

# torchtitan's loss (train.py at 9dec370) on a bf16 head, run in a fresh process whose glibc maps
# every allocation over 64 KiB on its own, so that the resident set follows the bytes torch holds;
# the peak (VmHWM, reset through /proc/self/clear_refs) is read around the forward and the backward.
_PROBE = textwrap.dedent("""
    import os, sys, torch, torch.nn.functional as F
    torch.set_num_threads(1)
    parallel = sys.argv[1] == "parallel"
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    def reset():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    N, H, V = 2048, 64, 16384
    h = torch.randn(N, H, dtype=torch.bfloat16)
    W = torch.randn(V, H, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (N,))
    context = __import__("contextlib").nullcontext()
    if parallel:  # one rank of loss parallel: the same local arithmetic as on any tp
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor, Shard
        from torch.distributed.tensor.parallel import loss_parallel
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=0, world_size=1)
        mesh = init_device_mesh("cpu", (1,))
        context = loss_parallel()
    def forward():
        pred = h @ W.t()
        if parallel:
            pred = DTensor.from_local(pred, mesh, [Shard(-1)])
        if sys.argv[1] == "transformers":  # the causal-LM loss of transformers' models (ForCausalLMLoss)
            from transformers.loss.loss_utils import ForCausalLMLoss
            loss = ForCausalLMLoss(pred.view(1, N, V), labels.view(1, N), vocab_size=V)
        else:
            loss = F.cross_entropy(pred.flatten(0, -2).float(), labels)
        del pred  # torchtitan frees the logits before backward, as HF's Trainer does its model outputs
        return loss
    with context:
        forward().backward()  # warm up
        W.grad = None
        base = status("VmRSS"); reset()
        loss = forward()
        fwd = status("VmHWM") - base
        held = status("VmRSS") - base; reset()
        loss.backward()
        bwd = status("VmHWM") - base
    print(fwd / (N * V), held / (N * V), bwd / (N * V))
""")


def _probe(kind: str, must_run: bool = False) -> tuple[float, float, float]:
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc to read the peak resident set")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", _PROBE, kind, str(port)], env=env, capture_output=True, text=True,
                         timeout=300)
    if out.returncode:
        assert not must_run, out.stderr[-600:]
        pytest.skip(f"the probe could not run here: {out.stderr[-300:]}")
    fwd, held, bwd = (float(v) for v in out.stdout.split()[-3:])
    return fwd, held, bwd


def _setup(**kw):
    base = dict(tp=1, pp=1, cp=1, ep=1, dp=8, vpp=1, micro_batch=1, global_batch=8, zero=3, recompute="full",
                sp=False, attention="flash", dtype="bf16", reshard=True, schedule="1f1b", grad_reduce="fp32")
    return Plan(**(base | kw)).setup()


def test_torchtitans_loss_holds_twelve_bytes_a_logit_at_its_backward_peak_as_torch_allocates():
    fwd, held, bwd = _probe("plain")
    assert fwd == pytest.approx(10, abs=0.05)  # bf16 logits, their fp32 copy, the fp32 log-probabilities
    assert held == pytest.approx(4, abs=0.05)  # the log-probabilities, saved for backward
    assert bwd == pytest.approx(12, abs=0.05)  # + nll_loss_backward's gradient + log_softmax's backward result


def test_transformers_causal_lm_loss_holds_twelve_bytes_a_logit_at_its_backward_peak():
    """transformers' ForCausalLMLoss upcasts the logits and runs the same chain; the transformers profile's
    head/loss (saved) and logits_gradient (backward) add up to what torch allocates
    (analysis/memory.py _loss_gradient_bytes)."""
    pytest.importorskip("transformers")
    fwd, held, bwd = _probe("transformers", must_run=True)
    assert held == pytest.approx(4, abs=0.05)
    assert bwd == pytest.approx(12, abs=0.05)
    T = 4096
    b = memory_terms(lower("llama-3.1-8b"), Pass(1, T), _setup(zero=0, dp=1, recompute="none")
                     .model_copy(update={"profile": "transformers", "fsdp2": False})).breakdown
    assert 0 <= b["head/loss"] - 4 * T * V < 2**20  # the saved log-probabilities (and the labels)
    assert (b["head/loss"] + b["overhead/logits_gradient"]) / (T * V) == pytest.approx(bwd, abs=0.05)


def test_loss_parallel_holds_sixteen_bytes_a_local_logit_at_its_backward_peak_as_torch_allocates():
    fwd, held, bwd = _probe("parallel")
    assert fwd == pytest.approx(14, abs=0.05)
    assert held == pytest.approx(4, abs=0.05)
    assert bwd == pytest.approx(16, abs=0.05)  # + zeros_like(x), exp(x) and their sum


def test_an_fsdp2_plan_counts_the_loss_peak_torch_allocates():
    net, seq = lower("llama-3.1-8b"), 8192
    plain = memory_terms(net, Pass(1, seq), _setup()).breakdown
    assert plain["head/loss"] - 4 * seq * V < 2**20  # the saved fp32 log-probabilities (and the labels)
    assert plain["overhead/loss_backward"] == 8 * seq * V  # 12 bytes a logit in all
    assert "overhead/logits_gradient" not in plain
    tp = memory_terms(net, Pass(2, seq), _setup(tp=8, dp=1, sp=True, micro_batch=2, global_batch=2)).breakdown
    assert tp["overhead/loss_backward"] == 12 * (2 * seq * V // 8)  # 16 bytes a local logit in all
    cp = memory_terms(net, Pass(1, seq), _setup(cp=4, dp=2, global_batch=2)).breakdown
    assert cp["overhead/loss_backward"] == 8 * seq * V // 4  # each rank's loss covers its 1/cp of the tokens


def test_megatron_plans_keep_their_fused_loss():
    net = lower("llama-3.1-8b")
    b = memory_terms(net, Pass(1, 8192), _setup(zero=1, recompute="none")).breakdown
    assert b["overhead/logits_gradient"] == 4 * 8192 * V
    assert "overhead/loss_backward" not in b


def test_fsdp2_accumulates_unsharded_gradients_in_fp32_across_pipeline_micro_batches():
    net = lower("llama-3.1-405b")
    s_kw = dict(tp=8, pp=8, dp=8, sp=True, micro_batch=4, global_batch=256, reshard=False, dtype="fp8")
    b = memory_terms(net, Pass(4, 8192), _setup(**s_kw)).breakdown
    # reduce_dtype float32 (pytorch/pytorch#125191): twice the bf16 weights gathered for the stage
    assert b["overhead/unsharded_gradients"] == 2 * b["overhead/unsharded_weights"]
    bf16 = memory_terms(net, Pass(4, 8192), _setup(**{**s_kw, "grad_reduce": "bf16"})).breakdown
    assert bf16["overhead/unsharded_gradients"] == bf16["overhead/unsharded_weights"]  # reduce_dtype bf16: 2 bytes


def test_setup_fsdp2_decides_torchtitans_loss_not_the_other_settings():
    """The same Megatron-profile ZeRO-3 setup keeps Megatron's fused loss when its ZeRO-3 is not FSDP2
    (Setup.fsdp2: step.Plan sets it, `memory --no-fsdp2` clears it)."""
    net, seq = lower("llama-3.1-8b"), 4096
    setup = _setup(tp=2, dp=4, sp=True).model_copy(update={"fsdp2": False})
    b = memory_terms(net, Pass(1, seq), setup).breakdown
    assert b["overhead/logits_gradient"] == 4 * seq * V // 2 and "overhead/loss_backward" not in b
    plan = memory_terms(net, Pass(1, seq), _setup(tp=2, dp=4, sp=True)).breakdown
    assert plan["overhead/loss_backward"] == 12 * (seq * V // 2) and "overhead/logits_gradient" not in plan


def test_every_pipeline_stage_keeps_each_micro_batchs_output_until_the_step_ends():
    net = lower("llama-3.1-405b")
    seq, mb, m, h = 8192, 4, 8, 16384
    for vpp in (1, 2):
        s = _setup(tp=8, pp=8, dp=8, vpp=vpp, sp=True, micro_batch=mb, global_batch=256, reshard=False)
        b = memory_terms(net, Pass(mb, seq), s).breakdown  # the first stage is the busiest here
        assert b["overhead/pipeline_outputs"] == m * vpp * 2 * (mb * seq // 8) * h  # hidden states, 1/tp of the tokens
    from paramcalc.analysis.memory import _stage_outputs

    last = _stage_outputs(net, Pass(mb, seq), s, head=True)
    assert last == m * (2 * (mb * seq * V // 8) + 2 * (mb * seq // 8) * h)  # logits of the last stage + stage 7's


def test_memory_takes_zero3_with_the_megatron_profile_as_fsdp2_unless_told_otherwise():
    from cli import assert_user_error, run

    args = ["memory", "llama-3.1-8b", "--seq-len", "4096", "--zero", "3", "--dp", "4", "--tp", "2", "--sp", "--json"]
    auto, off = run(*args).json, run(*args, "--no-fsdp2").json
    assert auto["settings"]["fsdp2"] is True and off["settings"]["fsdp2"] is False
    assert auto["breakdown"]["overhead/loss_backward"] == 12 * (4096 * V // 2)
    assert off["breakdown"]["overhead/logits_gradient"] == 4 * 4096 * V // 2
    assert_user_error(run("memory", "llama-3.1-8b", "--zero", "1", "--dp", "4", "--tp", "2", "--fsdp2"),
                      "--fsdp2", "ZeRO-3")
