"""A Hugging Face Hub model id (`org/name`) as a TARGET: its config.json from a
cache laid out as huggingface_hub writes it (refs/<branch> holds a commit,
snapshots/<commit>/config.json the file), never the network in tests."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from cli import assert_user_error, run

from paramcalc import count_params
from paramcalc.inputs.hub import cached_config, hub_cache, is_repo_id

DATA = Path(__file__).parent / "data" / "hf-configs"
MAIN = "0123456789abcdef0123456789abcdef01234567"
OLD = "fedcba9876543210fedcba9876543210fedcba98"


def cache_model(cache: Path, repo_id: str, commit: str, config: dict, ref: str | None = "main") -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot / "config.json"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    llama = json.loads((DATA / "llama-3.1-8b.json").read_text())
    cache_model(tmp_path / "hub", "meta-llama/Llama-3.1-8B", MAIN, llama)
    # an older commit with half the layers, reachable by its hash or a tag
    cache_model(tmp_path / "hub", "meta-llama/Llama-3.1-8B", OLD, llama | {"num_hidden_layers": 16}, ref="v0")
    return tmp_path / "hub"


def test_a_cached_model_id_counts_as_its_config_and_is_named_after_the_repo(cache):
    r = run("count", "meta-llama/Llama-3.1-8B", "--json")
    assert r.code == 0, r.err
    assert r.json["model"] == "meta-llama/Llama-3.1-8B"
    assert r.json["params"]["total"] == 8_030_261_248  # Llama 3.1 8B's model card, as the preset


def test_a_revision_picks_a_branch_or_a_commit(cache):
    layer = (8_030_261_248 - 525_336_576 * 2 - 4096) // 32  # Llama 3.1 8B: untied 128256 x 4096 tables, final norm
    for revision in ("v0", OLD):
        r = run("count", "meta-llama/Llama-3.1-8B", "--revision", revision, "--json")
        assert r.code == 0, r.err
        assert r.json["params"]["total"] == 8_030_261_248 - 16 * layer
    assert count_params("meta-llama/Llama-3.1-8B", revision=MAIN).params.total == 8_030_261_248


def test_other_commands_take_a_model_id_too(cache):
    r = run("flops", "meta-llama/Llama-3.1-8B", "--seq-len", "2048", "--json")
    assert r.code == 0, r.err
    assert r.json["flops"]["forward"] == run("flops", "llama-3.1-8b", "--seq-len", "2048", "--json").json["flops"][
        "forward"]


def test_the_cache_follows_hf_hub_cache_then_hf_home_then_the_home_folder(monkeypatch, tmp_path):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_cache() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub_cache() == tmp_path / "c"


def test_a_snapshot_without_config_json_or_an_unknown_ref_is_not_cached(cache):
    assert cached_config("meta-llama/Llama-3.1-8B", "no-such-branch") is None
    assert cached_config("meta-llama/Llama-3.1-8B", "0" * 40) is None
    assert cached_config("meta-llama/Llama-3.1-8B") == \
        cache / "models--meta-llama--Llama-3.1-8B" / "snapshots" / MAIN / "config.json"


def test_offline_and_not_cached_says_what_to_do(cache):
    assert_user_error(run("count", "acme/not-cached"), "'acme/not-cached'", "not in the local cache",
                      "HF_HUB_OFFLINE", "hf download acme/not-cached config.json")


def test_a_revision_on_a_preset_is_refused():
    assert_user_error(run("count", "llama-3.1-8b", "--revision", "main"), "--revision", "org/name")


def test_without_huggingface_hub_the_message_names_the_extra(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    assert_user_error(run("count", "acme/not-cached"), "huggingface_hub", "pip install 'paramcalc[hub]'")


def test_online_it_downloads_config_json_only_with_the_token_from_the_environment(cache, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    calls = []

    def hf_hub_download(repo_id, filename, *, revision=None, token=None):
        calls.append((repo_id, filename, revision, token))
        return str(cache_model(cache, repo_id, MAIN, json.loads((DATA / "gpt2.json").read_text())))

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    r = run("count", "openai-community/gpt2", "--json")
    assert r.code == 0, r.err
    assert calls == [("openai-community/gpt2", "config.json", None, "hf_secret")]
    assert r.json["params"]["total"] == 124_439_808  # GPT-2 small, tied head


def test_a_gated_repo_asks_for_a_token(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")

    class GatedRepoError(Exception):
        pass

    def hf_hub_download(*args, **kwargs):
        raise GatedRepoError("401 Client Error")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    assert_user_error(run("count", "meta-llama/Llama-3.3-70B"), "gated", "HF_TOKEN")


@pytest.mark.parametrize("text,expected", [("meta-llama/Llama-3.1-8B", True), ("org/name", True),
                                           ("llama-3.1-8b", False), ("a/b/c", False), ("org/config.json", False),
                                           ("org/spec.yaml", False), ("-x/y", False)])
def test_what_looks_like_a_model_id(text, expected):
    assert is_repo_id(text) is expected
