"""Every embedded preset: its count equals its published figure, the network
instantiated from our blocks (meta device) and, where transformers has the
family, the transformers model built from the config.json the preset cites,
exactly; and the preset gives the same figures as importing that config."""

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

DATA = Path(__file__).parent / "data"
NAMES = preset_names()


def cited_config(name: str) -> Path | None:
    """The config.json a preset's source cites: the task's reference configs, or tests/data/preset-configs."""
    for folder in ("hf-configs", "preset-configs"):
        path = DATA / folder / f"{name}.json"
        if path.is_file():
            return path
    return None


MIRRORS = [n for n in NAMES if cited_config(n)]


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


def test_every_preset_but_two_cites_a_config_that_transformers_builds():
    assert set(NAMES) - set(MIRRORS) == {"orion-14b", "resnet-50"}  # no transformers family; torchvision (README)


@pytest.mark.slow
@pytest.mark.parametrize("name", MIRRORS)
def test_preset_counts_and_computes_what_transformers_builds_from_the_config_it_cites(name):
    """sum(p.numel()) of the transformers model on the meta device; DeepSeek-V3's router
    score-correction bias is a buffer there and a parameter in the preset (docs/contract.md).
    Forward FLOPs by FlopCounterMode over 32 tokens, for text models whose routing needs no
    values (ViT's FLOPs against transformers: tests/test_vit.py)."""
    from hf_reference import hf_flops, hf_model

    cfg = json.loads(cited_config(name).read_text())
    model = hf_model(cfg)
    counted = sum(p.numel() for p in model.parameters())
    counted += sum(b.numel() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))
    net = build(resolve(name))
    assert net.total_params == counted == resolve(name).expected_params
    if not any(k in cfg for k in ("num_local_experts", "n_routed_experts", "image_size")):
        assert hf_flops(cfg, seq=32)[0] == sum(net.flops(Pass(1, 32)).values())


@pytest.mark.parametrize("name", MIRRORS)
def test_preset_and_the_config_it_cites_agree_on_every_figure(name):
    preset, imported = resolve(name), from_config(json.loads(cited_config(name).read_text()))
    net = build(preset)
    p = Pass(1, net.seq_len(256))
    # DeepSeek-V3's router bias: a parameter in the preset, a buffer in transformers and its import (docs/contract.md)
    assert {k: v for k, v in net.params().items() if not k.endswith("e_score_correction_bias")} == \
        build(imported).params()
    assert net.flops(p) == build(imported).flops(p)
    if name == "deepseek-v3":  # the preset routes with the bias (fp32 sigmoid scores), the import as transformers
        return
    a = estimate_memory(preset, seq_len=p.seq).memory
    b = estimate_memory(imported, seq_len=p.seq).memory
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
