"""From a mapping (a YAML spec, an imported config.json) to a checked spec:
pydantic's first error becomes one UserError naming the field and its line."""

from __future__ import annotations

from paramcalc.errors import UserError
from paramcalc.spec import TransformerSpec


def validate(data: dict, where: str, locate=None):
    """Build a spec from a mapping (`architecture: layers` is a LayersSpec, see
    spec_layers.py; anything else a TransformerSpec); pydantic's first error
    becomes one UserError naming the field (and, through `locate(loc)`, its
    file line)."""
    from pydantic import ValidationError

    layers = data.get("architecture") == "layers"
    if layers:
        from paramcalc.spec_layers import LayersSpec as model, strip_tags
    else:
        model, strip_tags = TransformerSpec, tuple
    try:
        spec = model.model_validate(data)
    except ValidationError as e:
        errors = e.errors()  # a misspelt key also leaves its right spelling missing: name the typo
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = strip_tags(err["loc"])
        field = ".".join(str(x) for x in loc) or "spec"
        fix = "remove it or check its spelling (`paramcalc schema` lists the fields)" \
            if err["type"] == "extra_forbidden" else None
        place = locate(loc) if locate else where
        raise UserError(err["msg"].removeprefix("Value error, "), where=f"{place}: field {field!r}", fix=fix) from None
    if layers or spec.freeze or getattr(spec, "lora", None):
        # shapes propagate and freeze patterns resolve at load time, so a misfit names its item and line
        from paramcalc.network import build
        from paramcalc.network_layers import ShapeError

        try:
            build(spec)
        except ShapeError as e:
            place = locate(e.loc) if locate else where
            field = ".".join(str(x) for x in e.loc)
            raise UserError(e.message, where=f"{place}: field {field!r}", fix=e.fix) from None
        except UserError as e:
            if e.where and e.where.split(".")[0] in ("freeze", "lora"):
                loc = tuple(e.where.split("."))
                raise UserError(e.message, where=f"{locate(loc) if locate else where}: field {e.where!r}",
                                fix=e.fix) from None
            raise
    return spec


def spec_schema() -> dict:
    """The JSON Schema of a spec file: a transformer spec, or `architecture: layers`."""
    from typing import Union

    from pydantic import TypeAdapter

    from paramcalc.spec_layers import LayersSpec

    schema = TypeAdapter(Union[TransformerSpec, LayersSpec]).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "paramcalc spec", **schema}
