"""`paramcalc flops`: the contract keys, recomputation as hardware FLOPs, the
causal and sliding-window conventions, and the rules of thumb explained."""

from __future__ import annotations


from cli import run
from paramcalc.analysis.flops import count_flops


def test_flops_json_has_the_contract_keys_and_exact_integers():
    doc = run("flops", "gpt2", "--seq-len", "1024", "--batch", "1", "--attention", "dense", "--json").json
    assert doc["flops"]["forward"] == 291_648_307_200  # FlopCounterMode on transformers' GPT2LMHeadModel
    assert doc["flops"]["backward"] == 583_296_614_400
    assert doc["flops"]["forward_per_token"] == 291_648_307_200 // 1024
    assert doc["schema_version"] == 1


def test_recomputation_is_hardware_flops_never_model_flops():
    none = count_flops("llama-2-7b", seq_len=2048, recompute="none").flops
    full = count_flops("llama-2-7b", seq_len=2048, recompute="full").flops
    selective = count_flops("llama-2-7b", seq_len=2048, recompute="selective").flops
    assert none.train_step == full.train_step == selective.train_step
    head = 2 * 2048 * 4096 * 32000
    assert full.recompute == none.forward - head  # every layer's forward again, not the LM head
    assert selective.recompute == 32 * 2 * (2 * 32 * 2048 * 2048 * 128)  # QK^T and AV of every layer


def test_op_recomputation_reruns_wk_wo_and_w3_as_the_step_time_counts_them():
    from paramcalc.analysis.step import Work, op_rerun_flops
    from paramcalc.network import lower

    none = count_flops("llama-3.1-8b", seq_len=8192, batch=2, recompute="none").flops
    op = count_flops("llama-3.1-8b", seq_len=8192, batch=2, recompute="op")
    h, kv, f = 4096, 1024, 14336  # torchtitan's policy reruns every second mm: wk, wo, w3 of each of 32 layers
    assert op.flops.recompute == 2 * 32 * 2 * 8192 * (h * kv + h * h + h * f)
    net = lower("llama-3.1-8b")
    assert op.flops.recompute == 2 * op_rerun_flops(net, Work.of(net, 8192), False)  # the estimate's HFU, 2 seqs
    assert op.flops.train_step == none.train_step and op.flops.hardware_step == none.train_step + op.flops.recompute
    assert any(n.startswith("op recomputation") for n in op.notes)


def test_the_flops_command_takes_recompute_op_on_both_paths():
    from paramcalc.cli.fast import run_fast

    r = run("flops", "gpt2", "--recompute", "op", "--json")
    assert r.code == 0 and r.json["flops"]["recompute"] > 0
    assert run_fast(["flops", "gpt2", "--recompute", "op", "--json"]) == 0
    bad = run("flops", "gpt2", "--recompute", "half", "--json")
    assert bad.code == 2 and "use one of: none, selective, full, op" in bad.err


def test_causal_counts_the_unmasked_pairs_capped_by_mistrals_window():
    s, w = 8192, 4096
    dense = count_flops("mistral-7b", seq_len=s, attention="dense").flops.forward
    causal = count_flops("mistral-7b", seq_len=s, attention="causal").flops.forward
    pairs = w * (w + 1) // 2 + (s - w) * w  # queries past the window see exactly w keys
    per_pair = 32 * 2 * 2 * 32 * 128  # layers x (QK^T + AV) x 2 FLOPs x heads x head_dim
    assert dense - causal == (s * s - pairs) * per_pair


def test_the_rules_of_thumb_are_shown_with_why_they_miss():
    f = count_flops("llama-3.1-8b", seq_len=8192)
    exact = f.flops.train_step
    tokens = 8192
    no_matmul = 128256 * 4096 + (2 * 32 + 1) * 4096  # the token table and the norms' weights
    scores = 3 * 32 * 2 * (2 * 32 * 8192 * 8192 * 128)  # forward + backward of QK^T and AV
    assert f.flops.six_n - exact == 6 * no_matmul * tokens - scores
    assert any(n.startswith("6N: ") and "embedding-table" in n for n in f.notes)
    assert f.flops.palm == exact + 6 * no_matmul * tokens  # PaLM's 12LHQT is the dense score term exactly
