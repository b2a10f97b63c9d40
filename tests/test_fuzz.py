"""No exception but UserError escapes the loaders for arbitrary JSON or YAML
input (so the CLI always exits 0 or 2, never with a traceback)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramcalc.analysis.count import count_params
from paramcalc.errors import UserError
from paramcalc.inputs.hf import FAMILIES
from paramcalc.inputs.spec import TransformerSpec
from paramcalc.inputs.target import load_spec

FIELDS = sorted(TransformerSpec.model_fields) + ["moe", "mla", "n_embd", "n_layer", "n_head", "d_model",
                                                 "num_layers", "num_heads", "d_ff", "ffn_dim", "n_routed_experts",
                                                 "num_local_experts", "num_experts"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**13), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["gated", "plain", "rmsnorm", "layernorm", "decoder", "lm"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4), max_leaves=8)
configs = st.dictionaries(st.sampled_from(FIELDS + ["model_type", "architectures"]), values, max_size=12)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_user_errors(path):
    try:
        count_params(load_spec(str(path)))
    except UserError:
        pass


@SETTINGS
@given(configs, st.sampled_from(sorted(FAMILIES)))
def test_arbitrary_config_json(tmp_path_factory, cfg, model_type):
    path = tmp_path_factory.mktemp("c") / "config.json"
    cfg.setdefault("model_type", model_type)
    path.write_text(json.dumps(cfg, allow_nan=True))
    only_user_errors(path)


@SETTINGS
@given(configs)
def test_arbitrary_yaml_spec(tmp_path_factory, spec):
    import yaml

    path = tmp_path_factory.mktemp("y") / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    only_user_errors(path)


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_as_json_or_yaml(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("t")
    for name in ("config.json", "spec.yaml"):
        (folder / name).write_text(text)
        only_user_errors(folder / name)


def test_absurd_sizes_give_exact_big_integers():
    spec = TransformerSpec(vocab_size=10**9, hidden_size=2**20, intermediate_size=10**7, num_hidden_layers=10**5,
                           num_attention_heads=2**10)
    total = count_params(spec).params.total
    h, f, V, L = 2**20, 10**7, 10**9, 10**5
    assert total == 2 * V * h + L * (4 * h * h + 3 * h * f + 2 * h) + h


def test_a_billion_layers_is_refused_with_the_limit_named(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("vocab_size: 10\nhidden_size: 8\nintermediate_size: 8\nnum_hidden_layers: 1e9\n"
                    "num_attention_heads: 2\n")
    try:
        count_params(load_spec(str(path)))
    except UserError as e:
        assert "num_hidden_layers" in str(e) and "100000" in str(e)
    else:
        raise AssertionError("a billion layers was accepted")


budget_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                             st.dictionaries(st.sampled_from(["name", "model", "train", "memory", "max_params",
                                                              "max_gpu_hours", "tokens", "gpu", "mfu", "seq_len",
                                                              "stages", "kind", "budgets", "search", "global_batch",
                                                              "micro_batch", "parallel", "dp", "lr"]), inner,
                                             max_size=4), max_leaves=10)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["budgets", "stages", "model", "gpu", "search", "name"]), budget_values,
                       max_size=4))
def test_arbitrary_budget_and_pipeline_files_raise_only_user_errors(tmp_path_factory, data):
    import yaml

    from paramcalc.analysis.check import check_budgets
    from paramcalc.analysis.plan import plan_pipeline

    path = tmp_path_factory.mktemp("b") / "file.yaml"
    path.write_text(yaml.safe_dump(data))
    for load in (check_budgets, plan_pipeline):
        try:
            load(str(path))
        except UserError:
            pass
