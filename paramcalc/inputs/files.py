"""The one loader for what users write: JSON and YAML files, read safely, and
every problem placed at its file, line and column.

- Text is UTF-8; a byte-order mark, as some editors write it, is read and dropped.
- YAML goes through PyYAML's SafeLoader (libyaml's when present): a tag such as
  `!!python/object/apply:os.system` is refused, never executed. A key written
  twice in one mapping is refused, naming both lines (YAML would keep the last).
- `validate` turns a mapping into a typed model (every file kind is a pydantic
  model with `extra="forbid"`); its first problem becomes one UserError at the
  key's line, with "did you mean" for a misspelt key.
- `placed` re-places an error the library raised about a setting (`field`)
  at the file key that set it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

from paramcalc.errors import UserError

if TYPE_CHECKING:  # pydantic is imported where a file is validated, not with this module
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

M = TypeVar("M", bound="BaseModel")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # utf-8-sig: a leading byte-order mark is dropped
    except FileNotFoundError:
        raise UserError("no such file", where=str(path), fix="check the path") from None
    except IsADirectoryError:
        raise UserError("is a directory, not a file", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the file ({e.__class__.__name__}: {e})", where=str(path)) from None


def load_json(path: Path) -> Any:
    import json  # here, not above: counting a preset reads no JSON

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise UserError(f"key {key!r} appears twice in one object", where=str(path),
                                fix="keep one of them (JSON readers disagree on which wins)")
            out[key] = value
        return out

    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as e:
        raise UserError(f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}:{e.colno}",
                        fix="fix the JSON syntax there") from None
    except RecursionError:
        raise UserError("JSON nested too deeply", where=str(path)) from None


class _DuplicateKey(Exception):
    def __init__(self, key: object, first, second):
        self.key, self.first, self.second = key, first, second


@cache
def _loader():
    """SafeLoader (libyaml's when present) that refuses a key written twice."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[valid-type, misc]
        pass

    def mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeConstructor names it below
                continue
            if first is not key_node.start_mark and key != "<<":
                raise _DuplicateKey(key, first, key_node.start_mark)
        return base.construct_mapping(loader, node, deep)

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    return Loader


def load_yaml(path: Path) -> Any:
    import yaml

    text = read_text(path)
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader, never the full one
    except _DuplicateKey as e:
        raise UserError(f"key {e.key!r} is written twice, at lines {e.first.line + 1} and {e.second.line + 1}",
                        where=f"{path}:{e.second.line + 1}:{e.second.column + 1}",
                        fix="keep one of them (YAML would silently keep the last)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "constructor" in str(problem) or "tag" in str(problem):
            raise UserError(f"refused YAML tag ({problem})", where=where,
                            fix="paramcalc reads plain YAML only; remove the tag") from None
        raise UserError(f"invalid YAML: {problem}", where=where, fix="fix the YAML syntax there") from None
    except RecursionError:
        raise UserError("YAML nested too deeply", where=str(path)) from None


def load_mapping(path: Path) -> dict:
    """A YAML or JSON file whose top level must be a mapping."""
    data = load_json(path) if path.suffix.lower() == ".json" else load_yaml(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise UserError(f"the top level is {kind}, not a mapping", where=str(path),
                        fix="write keys and values at the top level (key: value)")
    return data


# ---------------------------------------------------------------- places in a file


def dotted(loc: tuple) -> str:
    """('stages', 0, 'parallel', 'dp') -> 'stages[0].parallel.dp'."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def undotted(field: str) -> tuple:
    """'stages[0].parallel.dp' -> ('stages', 0, 'parallel', 'dp'): the inverse of `dotted`."""
    return tuple(int(index) if index else name for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field))


def locate(path: Path, loc: tuple) -> str:
    """'file:line:col' of the value at `loc` (keys and list indices), as far as it resolves."""
    import yaml

    try:
        node = yaml.compose(read_text(path), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, UserError):
        return str(path)
    mark = node.start_mark if node else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            mark, node = match[0].start_mark, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            mark = node.start_mark
        else:
            break
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)


@contextmanager
def placed(path: Path, loc: tuple, keys: dict[str, tuple] | set[str] | None = None) -> Iterator[None]:
    """Re-place an error the library raised about a setting at the file's key for it.

    `keys` maps the library's field names to keys under `loc` (a set: the same
    names); an error about one of them lands on that key's line, any other at `loc`.
    """
    try:
        yield
    except UserError as error:
        if error.where:  # already placed (a model file the key names, say): say where it was named from
            raise error.placed(f"{locate(path, loc)}: {dotted(loc)}: {error.where}", error.field) from None
        mapping = {k: (k,) for k in keys} if isinstance(keys, set) else dict(keys or {})
        key = mapping.get(error.field or "")
        full = loc + key if key is not None else loc
        raise error.placed(locate(path, full), dotted(full) or None) from None


def suggest(word: str, choices: list[str], *, fallback: str) -> str:
    """'did you mean X?' when a choice is close to `word`, then `fallback`."""
    close = difflib.get_close_matches(word.lower(), choices, n=3, cutoff=0.6)
    return (f"did you mean {' or '.join(close)}? " if close else "") + fallback


# ---------------------------------------------------------------- typed models from mappings


def validate(model: type[M], data: dict, *, path: Path | None = None, where: str | None = None) -> M:
    """`model.model_validate(data)`; its first problem becomes one UserError placed at
    the key (its line, when `path` is a YAML file). A misspelt key is named before
    the missing one it explains."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
        loc = _walkable(tuple(err["loc"]), data)
        message, fix = _explain(err, model, loc, data)
        place = locate(path, loc) if path is not None and path.suffix.lower() in (".yaml", ".yml") \
            else where or (str(path) if path else None)
        raise UserError(message, where=place, field=dotted(loc) or None, fix=fix) from None


def _explain(err: ErrorDetails, model: type, loc: tuple, data: dict) -> tuple[str, str | None]:
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _keys_at(model, loc[:-1], data)
        return "unknown key", suggest(str(loc[-1]), known, fallback=f"{dotted(loc[:-1]) or 'the top level'} takes: "
                                                                    + ", ".join(known))
    if kind == "missing":
        return "required key missing", None
    if kind == "union_tag_invalid":
        return (f"unknown {err['ctx']['discriminator'].strip(chr(39))} {err['ctx']['tag']!r}",
                f"use one of: {err['ctx']['expected_tags']}")
    if kind == "union_tag_not_found":
        return f"needs `{err['ctx']['discriminator'].strip(chr(39))}:`", None
    if kind == "too_short" and isinstance(err.get("input"), (list, tuple)) and not err["input"]:
        return "is empty", "list at least one entry"
    if kind == "model_type":
        return "expected a mapping (key: value)", None
    if kind in ("list_type", "tuple_type"):
        return "expected a list (- item)", None
    return err["msg"].removeprefix("Value error, "), None


def _walkable(loc: tuple, data: Any) -> tuple:
    """pydantic's location, as the file spells it: a union member's tag
    (`layers.3.conv2d.kernel_size`, `stages.0.ppo.iterations`) and the member
    types of a union value (`kernel_size.int`) dropped; a missing or unknown
    key kept as the last step."""
    out: list = []
    for key in loc:
        if isinstance(data, dict):
            if key in data:
                out.append(key)
                data = data[key]
            elif key in (data.get("type"), data.get("kind")):
                continue  # the member a tagged union chose
            else:
                out.append(key)
                break
        elif isinstance(data, (list, tuple)) and isinstance(key, int) and 0 <= key < len(data):
            out.append(key)
            data = data[key]
        else:
            break
    return tuple(out)


def _keys_at(model: type, loc: tuple, data: Any) -> list[str]:
    """The keys the mapping at `loc` takes, following the models' field types."""
    models = [model]
    for key in loc:
        data = data[key] if isinstance(data, (dict, list, tuple)) else None
        if isinstance(key, int):
            continue
        models = [m for m in _models_in(_field_annotation(models, key))]
        if len(models) > 1 and isinstance(data, dict):  # a tagged union: the member the data names
            tag = data.get("type", data.get("kind"))
            models = [m for m in models if tag in _tags(m)] or models
        if not models:
            return []
    return list(models[0].model_fields)  # type: ignore[attr-defined]


def _field_annotation(models: list, key: str):
    for m in models:
        field = m.model_fields.get(key)
        if field is not None:
            return field.annotation
    return None


def _models_in(annotation) -> list[type]:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)] if get_origin(annotation) is not None else []


def _tags(model) -> tuple:
    for name in ("type", "kind"):
        field = model.model_fields.get(name)
        if field is not None:
            return get_args(field.annotation)
    return ()
