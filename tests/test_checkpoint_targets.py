"""Safetensors checkpoints as TARGETs, counted from their headers (no weights
loaded). The files are written by hand (8-byte little-endian header length,
JSON header, data) so every figure below is a hand sum of the headers."""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path

import pytest
from cli import assert_user_error, run

from paramcalc import count_params

BITS = {"BF16": 16, "F16": 16, "F32": 32, "F8_E4M3": 8, "I32": 32, "F4": 4}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], *, tied: dict[str, str] | None = None,
                      metadata: dict | None = None) -> Path:
    """A safetensors file of zeros: `tensors` name -> (dtype, shape); `tied` name -> the tensor whose storage
    it shares."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = -(-prod(shape) * BITS[dtype] // 8)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    for name, target in (tied or {}).items():
        header[name] = dict(header[target])
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def count_json(*args):
    r = run("count", *args, "--json")
    assert r.code == 0, r.err
    return r.json


def test_a_file_is_counted_per_dtype_from_its_header(tmp_path):
    path = write_safetensors(tmp_path / "weights.safetensors", {
        "embed.weight": ("BF16", [100, 16]), "proj.weight": ("F8_E4M3", [16, 32]),
        "proj.weight_scale_inv": ("F32", [1]), "packed": ("F4", [3, 5])}, metadata={"format": "pt"})
    doc = count_json(path)
    assert doc["model"] == "weights"
    assert doc["params"]["total"] == 1600 + 512 + 1 + 15
    c = doc["checkpoint"]
    assert {d["dtype"]: (d["params"], d["bytes"]) for d in c["by_dtype"]} == {
        "BF16": (1600, 3200), "F8_E4M3": (512, 512), "F32": (1, 4), "F4": (15, 8)}  # F4: two a byte, rounded up
    assert (c["tensors"], c["shared"], c["total"], c["bytes"]) == (4, 0, 2128, 3724)
    assert c["analytic_total"] is None and c["difference"] is None


def test_names_sharing_one_storage_count_once(tmp_path):
    path = write_safetensors(tmp_path / "model.safetensors", {"embed.weight": ("F16", [50, 8]), "norm": ("F16", [8])},
                             tied={"lm_head.weight": "embed.weight"})
    c = count_json(path)["checkpoint"]
    assert (c["total"], c["tensors"], c["shared"], c["bytes"]) == (408, 2, 1, 816)


def test_it_agrees_with_safetensors_own_reader(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    tensors = {"a": torch.zeros(7, 3, dtype=torch.bfloat16), "b": torch.zeros(11, dtype=torch.float32),
               "c": torch.zeros(2, 2, 2, dtype=torch.int32)}
    path = tmp_path / "real.safetensors"
    safetensors_torch.save_file(tensors, str(path))
    with safe_open(str(path), "pt") as f:
        theirs = sum(prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert count_params(str(path)).params.total == theirs == 21 + 11 + 8


def test_an_index_sums_its_shards(tmp_path):
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("BF16", [10, 10])})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": ("BF16", [10]), "c": ("F32", [4])})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 236}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}}))
    for target in (index, tmp_path):  # the index, or the folder holding it
        doc = count_json(target)
        assert doc["params"]["total"] == 114
        assert doc["checkpoint"]["bytes"] == 236 and len(doc["checkpoint"]["files"]) == 2
        assert doc["model"] == tmp_path.name


def test_an_index_naming_a_missing_shard_is_refused(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    assert_user_error(run("count", index), str(index), "'model-00001-of-00002.safetensors', which is missing",
                      "download")


def test_an_index_and_shards_that_disagree_are_refused(tmp_path):
    write_safetensors(tmp_path / "s1.safetensors", {"a": ("BF16", [4])})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}))
    assert_user_error(run("count", index), "tensor 'b'", "does not hold it")


def corrupt(path: Path, kind: str) -> None:
    raw = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    if kind == "short":
        path.write_bytes(b"\x01\x02")
    elif kind == "length":
        path.write_bytes(struct.pack("<Q", 10**6) + raw + bytes(16))
    elif kind == "truncated-json":
        path.write_bytes(struct.pack("<Q", len(raw)) + raw[:-5] + b"     " + bytes(16))
    elif kind == "offsets":
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))  # 16 bytes claimed, 8 present
    elif kind == "size":
        bad = raw.replace(b"[4]", b"[5]")
        path.write_bytes(struct.pack("<Q", len(bad)) + bad + bytes(16))
    elif kind == "dtype":
        bad = raw.replace(b"F32", b"F99")
        path.write_bytes(struct.pack("<Q", len(bad)) + bad + bytes(16))


@pytest.mark.parametrize("kind,fragment", [
    ("short", "too short"), ("length", "header claims 1,000,000 bytes"), ("truncated-json", "not valid JSON"),
    ("offsets", "run past the end of the data"), ("size", "needs 20 bytes"), ("dtype", "unknown dtype 'F99'")])
def test_a_damaged_file_is_refused_naming_it(tmp_path, kind, fragment):
    path = tmp_path / "model.safetensors"
    corrupt(path, kind)
    assert_user_error(run("count", path), str(path), fragment)


# ------------------------------------------------ beside a config.json

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
         "tie_word_embeddings": False}


def llama_tensors(layers: int) -> dict[str, tuple[str, list[int]]]:
    """Llama's state dict shapes (transformers' LlamaForCausalLM): hidden 64, ffn 128, 4 heads, 2 K/V heads."""
    t = {"model.embed_tokens.weight": ("BF16", [1000, 64]), "model.norm.weight": ("BF16", [64]),
         "lm_head.weight": ("BF16", [1000, 64])}
    for i in range(layers):
        p = f"model.layers.{i}."
        t |= {p + "self_attn.q_proj.weight": ("BF16", [64, 64]), p + "self_attn.k_proj.weight": ("BF16", [32, 64]),
              p + "self_attn.v_proj.weight": ("BF16", [32, 64]), p + "self_attn.o_proj.weight": ("BF16", [64, 64]),
              p + "mlp.gate_proj.weight": ("BF16", [128, 64]), p + "mlp.up_proj.weight": ("BF16", [128, 64]),
              p + "mlp.down_proj.weight": ("BF16", [64, 128]), p + "input_layernorm.weight": ("BF16", [64]),
              p + "post_attention_layernorm.weight": ("BF16", [64])}
    return t


def test_the_hand_written_llama_matches_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(**{k: v for k, v in LLAMA.items() if k not in ("model_type", "architectures")})
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == \
        {k: shape for k, (_, shape) in llama_tensors(2).items()}


def test_beside_a_config_the_analytic_count_and_the_difference_are_shown(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    tensors = llama_tensors(3)  # layer 2 is beyond num_hidden_layers: a multi-token-prediction layer
    tensors |= {"model.layers.0.self_attn.rotary_emb.inv_freq": ("F32", [8]),
                "model.layers.0.mlp.down_proj.weight_scale_inv": ("F32", [1, 1])}
    write_safetensors(tmp_path / "model.safetensors", tensors)
    doc = count_json(tmp_path)
    analytic = 2 * 64_000 + 64 + 2 * (2 * 4096 + 2 * 2048 + 3 * 8192 + 128)
    layer = 4096 * 2 + 2048 * 2 + 8192 * 3 + 128
    assert doc["params"]["total"] == analytic == 202_048  # params: the config's, as for the snapshot folder
    c = doc["checkpoint"]
    assert c["total"] == analytic + layer + 8 + 1
    assert (c["analytic_total"], c["difference"]) == (analytic, layer + 9)
    assert {e["params"] for e in c["explained"]} == {layer, 8, 1}
    assert not any(e["reason"].startswith("not explained") for e in c["explained"])
    assert any("checkpoint's headers hold" in n for n in doc["notes"])


def test_other_commands_read_a_checkpoint_folder_through_its_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    write_safetensors(tmp_path / "model.safetensors", llama_tensors(2))
    via_folder = run("flops", tmp_path, "--seq-len", "64", "--json")
    via_config = run("flops", tmp_path / "config.json", "--seq-len", "64", "--json")
    assert via_folder.code == 0, via_folder.err
    assert via_folder.json["flops"] == via_config.json["flops"]
    assert via_folder.json["flops"]["forward"] is not None
    assert run("memory", tmp_path / "model.safetensors", "--json").json["memory"] == \
        run("memory", tmp_path / "config.json", "--json").json["memory"]


def test_a_bare_checkpoint_is_a_count_for_other_commands(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"w": ("BF16", [1000, 1000])})
    r = run("flops", tmp_path, "--seq-len", "100", "--json")
    assert r.code == 0, r.err
    assert r.json["flops"]["forward"] is None and r.json["flops"]["six_n"] == 6 * 10**6 * 100


def test_the_table_shows_the_dtypes_and_the_difference(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    write_safetensors(tmp_path / "model.safetensors", llama_tensors(2) | {"x.inv_freq": ("F32", [8])})
    r = run("count", tmp_path)
    assert r.code == 0, r.err
    assert "BF16" in r.out and "F32" in r.out and "+8" in r.out


def test_a_missing_checkpoint_file_is_refused(tmp_path):
    assert_user_error(run("count", tmp_path / "nope.safetensors"), "nope.safetensors", "does not exist")
