"""`paramcalc schema` is a JSON Schema editors can validate spec files with:
every embedded preset validates, a misspelt field does not."""

from __future__ import annotations

import jsonschema
import pytest

from cli import run
from paramcalc.inputs.files import load_yaml
from paramcalc.catalog import preset_names, presets_root


@pytest.fixture(scope="module")
def schema():
    r = run("schema")
    assert r.code == 0
    return r.json


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_against_the_exported_schema(schema, name):
    jsonschema.validate(load_yaml(presets_root() / "models" / f"{name}.yaml"), schema)


def test_a_misspelt_field_fails_the_schema(schema):
    spec = load_yaml(presets_root() / "models" / "llama-3.1-8b.yaml") | {"num_kv_heads": 8}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema)
