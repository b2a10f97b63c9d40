"""Every embedded preset: its count equals its published figure and the
instantiated network (our blocks on the meta device), exactly; presets that
mirror a reference config.json give the same spec figures as the import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paramcalc.blocks.base import Pass
from paramcalc.catalog import preset_catalog
from paramcalc.inputs.target import load_spec as resolve
from paramcalc.inputs.hf import from_config
from paramcalc.analysis.memory import estimate_memory
from paramcalc.network import lower as build
from paramcalc.catalog import preset_names

DATA = Path(__file__).parent / "data" / "hf-configs"
NAMES = preset_names()
MIRRORS = ["llama-2-7b", "llama-3.1-8b", "llama-3.1-405b", "qwen2.5-14b", "mixtral-8x7b", "gpt2", "bert-base-uncased",
           "t5-base"]


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_validates_and_the_trusted_fast_path_builds_the_same_spec(name):
    from paramcalc.inputs.files import load_yaml
    from paramcalc.catalog import preset_path
    from paramcalc.inputs.target import read_preset as load_preset, read_spec_file as load_yaml_spec

    path = preset_path(name)
    validated = load_yaml_spec(path)
    assert load_preset(path) == validated
    if load_yaml(path).get("architecture") != "layers":
        assert load_preset(path).model_dump() == validated.model_dump()


@pytest.mark.parametrize("name", NAMES)
def test_preset_count_equals_its_published_count(name):
    spec = resolve(name)
    assert spec.source and spec.expected_params
    assert sum(build(spec).params().values()) == spec.expected_params


@pytest.mark.parametrize("name", [n for n in NAMES if n != "deepseek-v3"])
def test_preset_count_equals_the_instantiated_network(name):
    net = build(resolve(name))
    with torch.device("meta"):
        module = net.module()
    assert sum(p.numel() for p in module.parameters()) == sum(net.params().values())


@pytest.mark.slow
def test_deepseek_v3_instantiated_on_meta_has_671_026_419_200_parameters():
    net = build(resolve("deepseek-v3"))
    with torch.device("meta"):
        module = net.module()
    assert sum(p.numel() for p in module.parameters()) == 671_026_419_200


@pytest.mark.parametrize("name", MIRRORS)
def test_preset_and_reference_config_agree_on_every_figure(name):
    preset, imported = resolve(name), from_config(json.loads((DATA / f"{name}.json").read_text()))
    p = Pass(1, 256)
    assert build(preset).params() == build(imported).params()
    assert build(preset).flops(p) == build(imported).flops(p)
    a = estimate_memory(preset, seq_len=256).memory
    b = estimate_memory(imported, seq_len=256).memory
    assert a.activations == b.activations


def test_the_preset_listing_reads_every_file():
    assert [p.name for p in preset_catalog().presets] == NAMES


@pytest.mark.parametrize("name,count", [("mistral-7b", 7_241_732_096), ("deepseek-v3", 671_026_419_200),
                                        ("orion-14b", 14_498_703_360)])
def test_contract_fixed_preset_meanings(name, count):
    assert resolve(name).expected_params == count


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("deepseek-v3", "resnet-50")])
def test_every_transformer_preset_matches_its_instantiated_network_component_by_component(name):
    """named_parameters() of the meta-device network, keyed like params()
    (stage/component/.../tensor), equals the analytic breakdown key by key."""
    net = build(resolve(name))
    with torch.device("meta"):
        module = net.module()
    stage_of = {s.name.replace(".", "_"): s.name for s in net.stages}
    counted: dict[str, int] = {}
    for key, p in module.named_parameters():
        stage, _index, *rest = key.split(".")
        path = "/".join([stage_of[stage], *(r for r in rest if not r.isdigit())])
        counted[path] = counted.get(path, 0) + p.numel()
    assert counted == {k: v for k, v in net.params().items() if v}
