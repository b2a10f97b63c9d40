"""Reading what users write: JSON and YAML files, safely, with the line and
column of every problem.

YAML goes through PyYAML's SafeLoader only: a tag such as
`!!python/object/apply:os.system` is refused with an error, never executed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paramcalc.errors import UserError


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("no such file", where=str(path), fix="check the path") from None
    except IsADirectoryError:
        raise UserError("is a directory, not a file", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the file ({e.__class__.__name__}: {e})", where=str(path)) from None


def load_json(path: Path) -> Any:
    import json  # here, not above: counting a preset reads no JSON

    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}:{e.colno}",
                        fix="fix the JSON syntax there") from None
    except RecursionError:
        raise UserError("JSON nested too deeply", where=str(path)) from None


def _loader():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    import yaml

    text = read_text(path)
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader, never the full one
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


def yaml_line(path: Path, loc: tuple) -> str:
    """'file:line:col' of the value at `loc` (keys and list indices), as far as it resolves."""
    import yaml

    try:
        node = yaml.compose(read_text(path), Loader=_loader())
    except yaml.YAMLError:
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


def require_mapping(data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise UserError(f"the top level is {kind}, not a mapping", where=where,
                        fix="write keys and values at the top level (key: value)")
    return data


# ---- placing errors in files people write (budget and pipeline files) -------------

_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def dotted(loc: tuple) -> str:
    """('stages', 0, 'parallel', 'dp') -> 'stages[0].parallel.dp'."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def located(path: Path, loc: tuple, whole: str = "file") -> str:
    """'budget.yaml:4:5: budgets[0].train.mfu' (the whole file's name when loc is empty)."""
    return f"{yaml_line(path, loc)}: {dotted(loc) or whole}"


def flag_keys(error: UserError) -> list[str]:
    """The file keys of the command-line flags an error names (`--seq-len` -> `seq_len`)."""
    return [flag.replace("-", "_") for flag in _FLAG.findall(f"{error.where or ''} {error.message}")]


def in_file_words(error: UserError, where: str) -> UserError:
    """The same error placed at `where`, its flags spelt as the file's keys."""
    def plain(text):
        return _FLAG.sub(lambda m: m.group(1).replace("-", "_"), text) if text else text

    inner = error.where if error.where and not error.where.startswith("--") else None
    return UserError(plain(error.message), where=where + (f": {inner}" if inner else ""), fix=plain(error.fix))
