"""Post-training predictions against published measurements (issue #20): prints the
table of docs/post-training-validation.md.

    .venv/bin/python benchmarks/post_training_validation.py

Each row: source, setup, the published figure, paramcalc's prediction and the error
(prediction / measured - 1; for a fit verdict, whether the verdict agrees).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paramcalc.analysis.checkpoint import checkpoint_sizes  # noqa: E402
from paramcalc.analysis.count import count_params  # noqa: E402
from paramcalc.analysis.memory import estimate_memory, nf4_bytes  # noqa: E402
from paramcalc.analysis.plan import plan_pipeline  # noqa: E402
from paramcalc.units import GIB  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from litgpt_config_hub import RESOURCE_ROWS, litgpt_rows, resource_rows  # noqa: E402

ALL = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
# LLaMA 33B and 65B (Touvron et al. 2023, table 2; huggyllama/llama-30b and -65b config.json)
SPECS = {
    "llama-33b": dict(vocab_size=32000, hidden_size=6656, intermediate_size=17920, num_hidden_layers=60,
                      num_attention_heads=52, max_position_embeddings=2048),
    "llama-65b": dict(vocab_size=32000, hidden_size=8192, intermediate_size=22016, num_hidden_layers=80,
                      num_attention_heads=64, max_position_embeddings=2048),
    # GPT-3 175B's shapes (Brown et al. 2020, table 2.1: 96 layers, d_model 12288, 96 heads); the adapters on
    # its h x h Wq and Wv depend on nothing else, so the rest of the layer is left as a llama-style one
    # CodeLlama-34B (codellama/CodeLlama-34b-hf config.json): GQA with 8 KV heads
    "codellama-34b": dict(vocab_size=32000, hidden_size=8192, intermediate_size=22016, num_hidden_layers=48,
                          num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=16384),
    "gpt3-175b": dict(vocab_size=50257, hidden_size=12288, intermediate_size=49152, num_hidden_layers=96,
                      num_attention_heads=96, max_position_embeddings=2048),
}


# OPT's published shapes (Zhang et al. 2022, table 1; facebook/opt-* config.json), with their sources in the files
OPT = Path(__file__).resolve().parent.parent / "tests" / "data" / "specs"


def spec(folder: Path, name: str) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **SPECS[name]}))
    return str(path)


def rows(folder: Path) -> list[tuple[str, str, str, str, str]]:
    out = []
    # 1-2. QLoRA (Dettmers et al. 2023, abstract, sections 1 and 4): 65B on one 48 GB GPU, 33B on a 24 GB one;
    # r = 64 on every linear, paged AdamW, gradient checkpointing; batch 1 x 512 tokens (figure 6's setting); LoRA
    # dropout 0.05 for 33B and 65B (appendix B.2); bitsandbytes of 2023, whose 4-bit linears kept their inputs
    qlora = dict(seq_len=512, dtype="int4", lora_rank=64, lora_targets=ALL, recompute="full", lora_dropout=0.05,
                 optimizer="paged-adamw", bnb_legacy=True)
    for name, gpu, gb in (("llama-33b", "rtx-4090", 24), ("llama-65b", "l40s", 48)):
        r = estimate_memory(spec(folder, name), gpu=gpu, **qlora)
        assert r.fits is not None and r.memory.total_per_gpu is not None
        out.append(("QLoRA paper, abstract and section 4", f"{name} QLoRA r=64 all linears, 1 x 512, "
                    f"checkpointing, paged AdamW, {gb} GB", "fits", f"{'fits' if r.fits.fits else 'does not fit'}"
                    + (" by paging" if any(n.startswith("fits by paging") for n in r.notes) else "")
                    + f" ({r.memory.total_per_gpu / GIB:.1f} GiB of {r.fits.gpu_bytes / GIB:.0f})",
                    "right" if r.fits.fits else "WRONG"))
    # 3. QLoRA section 3, Double Quantization: 0.127 bits a parameter of quantization constants
    n = 4096 * 4096
    bits = 8 * nf4_bytes(n) / n - 4
    out.append(("QLoRA paper, section 3 (Double Quantization)", "NF4 constants, blocks of 64 and 256",
                "0.127 bits/param", f"{bits:.4f} bits/param", f"{(bits / 0.127 - 1) * 100:+.1f}%"))
    # 4. PEFT's print_trainable_parameters for Llama-2-7b, r = 8 on q_proj and v_proj
    p = count_params("llama-2-7b", lora_rank=8, lora_targets="q_proj,v_proj").params
    out.append(("PEFT docs (print_trainable_parameters)", "Llama-2-7b, r=8, q_proj v_proj", "4,194,304 trainable",
                f"{p.trainable:,}", f"{(p.trainable / 4_194_304 - 1) * 100:+.1f}%"))
    # 5. LoRA paper (Hu et al. 2021, section 4.2): GPT-3 175B, r = 4 on q and v, a 35 MB checkpoint
    c = checkpoint_sizes(spec(folder, "gpt3-175b"), dtype="fp16", lora_rank=4, lora_targets="q_proj,v_proj")
    mb = c.checkpoint.weights / 1e6
    out.append(("LoRA paper, section 4.2", "GPT-3 175B adapters r=4 on Wq, Wv, fp16", "35 MB",
                f"{mb:.1f} MB", f"{(mb / 35 - 1) * 100:+.1f}%"))
    # 6. Stanford Alpaca README: LLaMA-7B, 52K examples, 3 epochs, 8 x A100 80GB, FSDP full_shard, ~3 hours.
    # train.py tokenizes each example unpadded and its collator pads a batch to its longest (pad_sequence), at
    # most model_max_length 512: 512 is the ceiling, so the row errs slow. LLaMA reached transformers in March
    # 2023 with eager attention only (matmul, mask, fp32 softmax; SDPA came in v4.36, FlashAttention-2 in v4.34)
    alpaca = {"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [
        {"name": "alpaca", "kind": "sft", "samples": 52_000, "epochs": 3, "seq_len": 512, "global_batch": 128,
         "micro_batch": 4, "parallel": {"dp": 8, "zero": 3, "attention": "eager"}}]}
    path = folder / "alpaca.yaml"
    path.write_text(yaml.safe_dump(alpaca))
    s = plan_pipeline(path).stages[0]
    out.append(("Stanford Alpaca README", "7B full SFT, 52K x 3 epochs, at most 512 tokens, eager attention, "
                "8 x A100-80GB",
                "~3 h", f"{s.wall_clock_hours:.2f} h", f"{(s.wall_clock_hours / 3 - 1) * 100:+.0f}%"))
    # 7. OpenRLHF README and paper (Hu et al. 2024): "RLHF training spends 80% of the time on the sample
    # generation stage". The sentence names no setup (no model split, GPUs, batch or lengths): it motivates
    # vLLM, so there is no placement to give; the row keeps a plain colocated setup (OpenRLHF's own measured
    # split: rows 18-21)
    ppo = {"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [
        {"name": "ppo", "kind": "ppo", "prompts": 1024, "rollout_batch": 1024, "prompt_tokens": 1024,
         "response_tokens": 1024, "micro_batch": 1, "parallel": {"dp": 8, "zero": 3}}]}
    path = folder / "ppo.yaml"
    path.write_text(yaml.safe_dump(ppo))
    s = plan_pipeline(path).stages[0]
    total = s.gpu_hours * 3600 / s.gpus
    share = _generation_share(s)
    out.append(("OpenRLHF README / paper", "7B PPO, 1024 prompts, 1024 + 1024 tokens, 8 x A100-80GB, vLLM",
                "~80% of time generating", f"{share * 100:.0f}% ({total:,.0f} s/iteration)",
                f"{(share / 0.8 - 1) * 100:+.0f}%"))
    # 8-12. LitGPT's resource tables (tutorials/resource-tables.md, 10/20/2023): finetune/lora.py on one
    # A100-SXM4-40GB, bf16-true, r = 8 on query and value (benchmarks/litgpt_config_hub.py RESOURCE_ROWS; the
    # table's other rows are 62-79)
    first = [RESOURCE_ROWS[i] for i in (10, 13, 15, 12, 14)]
    out += resource_rows(folder, first)
    # 13. HF PEFT README: bigscience/bloomz-7b1 (7,069,016,064 parameters) full fine-tuning on one A100-80GB: OOM
    r = estimate_memory("7069016064")
    gb = r.memory.model_states_per_gpu / 1e9
    out.append(("HF PEFT README (memory table)", "bloomz-7b1 full fine-tuning, mixed AdamW, A100-80GB", "OOM",
                f"does not fit (model states alone {gb:.0f} GB)" if gb > 80 * 2**30 / 1e9 else "fits",
                "right" if gb > 80 * 2**30 / 1e9 else "WRONG"))
    # 14-17. OpenRLHF paper (Hu et al. 2024, arXiv:2405.11143) and README (commit 391e1de4, 2024-05-18): average
    # seconds to train 1,024 prompts for 1 PPO epoch on A800-80GB, prompt 1024 + response 1024: 7B on 16 GPUs
    # 471.11 s, 13B on 32 608.93 s, 34B on 32 1526.4 s, 70B on 32 4488.53 s. The paper gives no split of the GPUs;
    # the rows take the README's Performance Tuning Guide (commit a437272c, 2024-06-22): half the GPUs to vLLM, a
    # quarter each to the actor (with the reference, --colocate_actor_ref) and to the critic (with the reward
    # model, --colocate_critic_reward), reference and reward offloaded (--ref_reward_offload), Adam on the CPU
    # (--adam_offload, the README's "placing the Adam optimizer on the CPU"), gradient checkpointing, ZeRO-3
    # (ZeRO-2 for 7B, as examples/scripts/train_ppo_llama_ray.sh), train_batch_size 128; the micro-batches are
    # not published (the guide says "as large as possible"): 8, 4, 2, 1. The A800 is the A100-80GB with NVLink cut
    # to 400 GB/s and the A100's PCIe Gen4 host link (presets/gpus/a800-80gb.yaml)
    for name, target, gpus, tp, micro, zero, measured in (
            ("llama-2-7b", "llama-2-7b", 16, 1, 8, 2, 471.11), ("llama-2-13b", "llama-2-13b", 32, 2, 4, 3, 608.93),
            ("codellama-34b", spec(folder, "codellama-34b"), 32, 4, 2, 3, 1526.4),
            ("llama-2-70b", "llama-2-70b", 32, 4, 1, 3, 4488.53)):
        quarter = gpus // 4
        st = _openrlhf(folder, name, target, micro=micro, zero=zero, generation={"gpus": gpus // 2, "tp": tp},
                       placement={"actor": quarter, "critic": quarter, "colocate_actor_ref": True,
                                  "colocate_critic_reward": True}, offload_frozen=True)
        out.append(("OpenRLHF paper / README (PPO time per 1024 prompts)",
                    f"{name} PPO, {gpus} x A800: vLLM {gpus // 2} (tp {tp}), actor+ref {quarter}, critic+reward "
                    f"{quarter} (ZeRO-{zero}, Adam and ref/reward offloaded), micro-batch {micro}",
                    f"{measured:,.0f} s", _said(st), _error(st, measured)))
    # 18-21. OpenRLHF's benchmark (the repository's branch wuxibin/benchmark, benchmark/README.md, commit 8201f882,
    # 2024-03-26): A800-SXM-80GB, vllm 0.3.1, deepspeed 0.13.2, rollout_batch_size 1024, train_batch_size 128,
    # 1024 + 1024 tokens; "OpenRLHF(ray+vllm)" with GPUs ref:reward:actor:critic:vLLM = 1:1:2:2:2 (7B, 13B, 34B)
    # and 2:2:4:4:4 (70B), the GPU counts of the branch's examples/scripts/train_ppo_llama_ray*.sh (the E2E
    # TFLOPs x GPUs x seconds agree with DeepSpeed-Chat's 8-GPU row only for 8 GPUs at 7B and 13B); generation
    # micro-batch (--micro_rollout_batch_size, the prompts each actor rank sends vLLM per request) 16, 8, 4, 4;
    # training micro-batch 8, 4, 2, 4; the scripts' --adam_offload, --gradient_checkpointing, ZeRO-2 (7B, 13B) and
    # ZeRO-3 (34B, 70B, whose states do not fit 2 GPUs at ZeRO-2); vLLM tp 1 (7B, 13B), 2 (34B; 70B as its script).
    # Its "Generation" column is make_experience (generation and the scoring forwards), "Training" ppo_train.
    for name, target, ratio, tp, per_request, micro, zero, (gen, train, e2e) in (
            ("llama-2-7b", "llama-2-7b", 1, 1, 16, 8, 2, (481.86, 403.29, 885.16)),
            ("llama-2-13b", "llama-2-13b", 1, 1, 8, 4, 2, (1425.75, 967.15, 2392.91)),
            ("codellama-34b", spec(folder, "codellama-34b"), 1, 2, 4, 2, 3, (5518.07, 3296.18, 8814.25)),
            ("llama-2-70b", "llama-2-70b", 2, 2, 4, 4, 3, (7122.65, 2699.97, 9822.62))):
        st = _openrlhf(folder, name, target, micro=micro, zero=zero,
                       generation={"gpus": 2 * ratio, "tp": tp, "per_request": per_request},
                       placement={"actor": 2 * ratio, "critic": 2 * ratio, "reference": ratio,
                                  "reward_model": ratio})
        r = st.rollout
        assert r is not None and r.experience_seconds is not None and r.update_seconds is not None
        made = r.generation_seconds + r.experience_seconds
        out.append(("OpenRLHF benchmark branch (ray+vllm, per 1024 prompts)",
                    f"{name} PPO, {8 * ratio} x A800: ref {ratio}, reward {ratio}, actor {2 * ratio}, critic "
                    f"{2 * ratio}, vLLM {2 * ratio} (tp {tp}); micro-batches {per_request} (rollout) and {micro}",
                    f"{e2e:,.0f} s (experience {gen:,.0f} + training {train:,.0f})",
                    f"{r.iteration_seconds:,.0f} s ({made:,.0f} + {r.update_seconds:,.0f}), "
                    + ("fits" if st.memory.fits else "does not fit"),
                    f"{(r.iteration_seconds / e2e - 1) * 100:+.0f}% ({(made / gen - 1) * 100:+.0f}%, "
                    f"{(r.update_seconds / train - 1) * 100:+.0f}%)" + ("" if st.memory.fits else ", verdict WRONG")))
    # 22-27. DeepSpeed-Chat's end-to-end breakdowns (microsoft/DeepSpeedExamples, applications/DeepSpeed-Chat/README.md
    # at the release commit e468799f, 2023-04-11: "E2E time breakdown"): OPT-13B actor + OPT-350M reward model on one
    # DGX node of 8 x A100-40G, step 1 2.5 h, step 2 0.25 h, step 3 10.8 h; OPT-66B + OPT-350M on 8 DGX nodes of
    # 8 x A100-80G, 82 min, 5 min, 7.5 h. Each step runs train.py's script at that commit (training/step*/
    # training_scripts/single_node/run_13b.sh, run_350m.sh; multi_node/run_66b.sh, run_350m.sh): the six datasets
    # split 2,4,4 (20% to step 1, 40% each to steps 2 and 3); step 3's 40% is 264,292 prompts (BenckmarkSetting.md:
    # "The total training samples we have is 264,292", 256 + 256 tokens, 1 epoch), so step 1 has half as many;
    # every sample padded to max_seq_len 512 (data_utils.py, padding="max_length"). Step 1: 2 epochs, micro-batch 4,
    # ZeRO-3, gradient checkpointing. Step 2: 1 epoch, micro-batch 8 (single node) or 2 (multi node), ZeRO-0, the
    # reward model a scalar head on OPT-350M. Step 3: micro-batch = generation batch 16 (13B) or 4 (66B) a GPU,
    # one optimizer step per generation batch (ppo_epochs 1), ZeRO-3 actor and critic, actor gradient
    # checkpointing, the hybrid engine generating with inference_tp_size 2 (13B) or 8 (66B) on the training GPUs,
    # answers forced to 256 tokens (min_length), reference not offloaded. --actor_lora_dim 128 without
    # --only_optimize_lora: every weight trains and the adapters add ~4% (not modelled: errs fast)
    for step, model, gpu, gpus, measured, stage in (
            (1, "opt-13b", "a100-40gb", 8, 2.5 * 3600, {"kind": "sft", "samples": 132_146, "epochs": 2, "seq_len": 512,
                                                        "global_batch": 32, "micro_batch": 4}),
            (2, "opt-350m", "a100-40gb", 8, 0.25 * 3600, {"kind": "reward", "samples": 264_292, "epochs": 1,
                                                          "seq_len": 512, "global_batch": 64, "micro_batch": 8}),
            (3, "opt-13b", "a100-40gb", 8, 10.8 * 3600, {"kind": "ppo", "prompts": 264_292, "rollout_batch": 128,
                                                         "global_batch": 128, "micro_batch": 16, "tp": 2}),
            (1, "opt-66b", "a100-80gb", 64, 82 * 60, {"kind": "sft", "samples": 132_146, "epochs": 2, "seq_len": 512,
                                                      "global_batch": 256, "micro_batch": 4}),
            (2, "opt-350m", "a100-80gb", 64, 5 * 60, {"kind": "reward", "samples": 264_292, "epochs": 1,
                                                      "seq_len": 512, "global_batch": 128, "micro_batch": 2}),
            (3, "opt-66b", "a100-80gb", 64, 7.5 * 3600, {"kind": "ppo", "prompts": 264_292, "rollout_batch": 256,
                                                         "global_batch": 256, "micro_batch": 4, "tp": 8})):
        out.append(_dschat(folder, step, model, gpu, gpus, measured, dict(stage)))
    # 28-61. LitGPT's config hub table (config_hub/finetune/README.md): every row with figures, on A10Gs
    # (benchmarks/litgpt_config_hub.py)
    out += litgpt_rows(folder)
    # 62-79. The rest of LitGPT's resource table (rows 8-12 above)
    out += resource_rows(folder, [row for row in RESOURCE_ROWS if row not in first])
    return out


def _dschat(folder: Path, step: int, model: str, gpu: str, gpus: int, measured: float, stage: dict):
    """One DeepSpeed-Chat step as its release scripts run it (rows 22-27), and the row that compares it."""
    kind = stage["kind"]
    zero, recompute = (0, "none") if kind == "reward" else (3, "full")
    # transformers of April 2023 (v4.28) computed OPT's attention eagerly only: bmm scores, the fp32 softmax
    # upcast, bmm (modeling_opt.OPTAttention; SDPA and FlashAttention-2 reached transformers later that year)
    stage["parallel"] = {"dp": gpus, "zero": zero, "recompute": recompute, "attention": "eager"}
    if kind == "ppo":
        # --actor_lora_dim 128 on every nn.Linear under decoder.layers.: DeepSpeed-Chat's LinearLayer_LoRA
        # (training/utils/module/lora.py at e468799f) sets `self.weight.requires_grad = False`, so the layers'
        # linears are frozen even without --only_optimize_lora, and the optimizer holds only parameters that
        # require grad (utils.py get_optimizer_grouped_parameters); the reference is a model of its own
        # (rlhf_engine.py _init_ref, ZeRO-3 like the actor)
        stage |= {"reward_model": str(OPT / "opt-350m.yaml"), "prompt_tokens": 256, "response_tokens": 256,
                  "generation": {"tp": stage.pop("tp")}, "reference": str(OPT / f"{model}.yaml"),
                  "lora": {"rank": 128, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]}}
    path = folder / f"dschat-{step}-{model}-{gpus}.yaml"
    path.write_text(yaml.safe_dump({"model": str(OPT / f"{model}.yaml"), "gpu": gpu, "stages": [stage]}))
    s = plan_pipeline(path).stages[0]
    seconds = s.wall_clock_hours * 3600
    card = gpu.replace("a100-", "A100-").replace("gb", "G")
    m = stage["micro_batch"]
    if step == 1:
        what = (f"step 1 SFT, {stage['samples']:,} x 2 epochs x 512 padded, micro-batch {m}, ZeRO-3, checkpointing, "
                "eager attention")
    elif step == 2:
        what = f"step 2 reward model, {stage['samples']:,} pairs x 512 padded, micro-batch {m}, ZeRO-0, eager attention"
    else:
        what = (f"step 3 PPO + opt-350m critic and reward, {stage['prompts']:,} prompts, 256 + 256 tokens, {m} a GPU, "
                f"ZeRO-3, hybrid engine tp {stage['generation']['tp']}")
    said = _hours(seconds) + ("" if s.memory.fits else ", does not fit")
    if s.rollout is not None:
        said += f" ({s.rollout.iteration_seconds:,.1f} s an iteration, generation {s.rollout.generation_seconds:,.1f})"
    if any(b.field.endswith(".generation") for b in s.breaks):
        said += ", no KV room beside the gathered weights"
    return ("DeepSpeed-Chat README, E2E breakdown", f"{model}, {gpus} x {card}: {what}", _hours(measured), said,
            f"{(seconds / measured - 1) * 100:+.0f}%" + ("" if s.memory.fits else ", verdict WRONG"))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _openrlhf(folder: Path, name: str, target: str, *, micro: int, zero: int, generation: dict, placement: dict,
              offload_frozen: bool = False):
    """One OpenRLHF PPO iteration (1,024 prompts, 1024 + 1024 tokens) on A800s (presets/gpus/a800-80gb.yaml), each
    model on its own Ray group, Adam offloaded, gradient checkpointing."""
    ppo = {"model": target, "gpu": "a800-80gb", "stages": [
        {"name": "ppo", "kind": "ppo", "iterations": 1, "rollout_batch": 1024, "prompt_tokens": 1024,
         "response_tokens": 1024, "global_batch": 128, "micro_batch": micro, "offload_frozen": offload_frozen,
         "parallel": {"zero": zero, "recompute": "full", "offload": "optimizer"},
         "generation": generation, "placement": placement}]}
    path = folder / f"openrlhf-{name}.yaml"
    path.write_text(yaml.safe_dump(ppo))
    st = plan_pipeline(path).stages[0]
    assert st.rollout is not None and st.memory.peak_per_gpu is not None
    return st


def _said(st) -> str:
    r = st.rollout
    return (f"{r.iteration_seconds:,.0f} s (generation {r.generation_seconds:,.0f}, experience "
            f"{r.experience_seconds:,.0f}, update {r.update_seconds:,.0f}), "
            + ("fits" if st.memory.fits else "does not fit") + f" ({st.memory.peak_per_gpu / GIB:.0f} GiB)")


def _error(st, measured: float) -> str:
    return f"{(st.rollout.iteration_seconds / measured - 1) * 100:+.0f}%" + ("" if st.memory.fits else
                                                                             ", verdict WRONG")


def _generation_share(s) -> float:
    """Generation's share of a ppo stage's time, from its per-pass rates (notes give the MFU of the rest)."""
    import re

    mfu = next(float(m.group(1)) for n in s.notes if (m := re.search(r"training passes at MFU ([0-9.]+)", n)))
    peak = 312e12
    other = sum(v for k, v in s.flops_breakdown.items() if not k.startswith("generation/")) / s.iterations
    other_seconds = other / (s.gpus * peak * mfu)
    total = s.gpu_hours * 3600 / s.gpus / s.iterations
    return 1 - other_seconds / total


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = rows(Path(tmp))
    print("| # | source | setup | measured | paramcalc | error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, row in enumerate(table, 1):
        print(f"| {i} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
