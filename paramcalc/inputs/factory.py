"""A TARGET `package.module:factory`: the user's own PyTorch module.

This imports the user's code (the current directory first on sys.path) and
calls `factory()` with no arguments under `torch.device("meta")`, so the
module is built with shapes but no memory. Its parameters are counted
exactly; its forward runs (on meta) only when an analysis asks for FLOPs or
activations, over:
- the inputs of `example_inputs()`, a callable in the same module returning a
  tensor, a tuple or a dict of keyword inputs (built on meta too), whose shape
  fixes the batch and sequence measured; else
- `input_ids` of shape (batch, seq), int64, at the batch and sequence asked,
  when the module's forward takes `input_ids` or `x`; else
- nothing: FLOPs and activations are unknown, with a note saying why.

torch is imported here only, when such a TARGET is read (torchref/profile.py measures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paramcalc.errors import UserError

if TYPE_CHECKING:
    from paramcalc.network.profiled import Profiled

INSTALL = "pip install 'paramcalc[torch]'"
_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class FactorySpec:
    """A module the user's factory built, already profiled (network/__init__.py lowers it as it is)."""

    name: str
    network: Profiled


def is_factory(text: str) -> bool:
    """`package.module:callable` (what a file path never looks like once it is not an existing file)."""
    return _FACTORY.fullmatch(text) is not None


def read_factory(text: str) -> FactorySpec:
    module_name, attr = text.split(":")
    try:
        from torch import nn
    except ImportError:
        raise UserError(f"TARGET {text!r} builds your PyTorch module, and torch is not installed",
                        fix=f"install it: {INSTALL}") from None
    from paramcalc.torchref.profile import first_line

    user = _import(module_name, first_line)
    factory = getattr(user, attr, None)
    if factory is None:
        names = sorted(n for n, v in vars(user).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == user.__name__)
        raise UserError(f"module {module_name!r} has no attribute {attr!r}", where=getattr(user, "__file__", None),
                        fix=f"callables it defines: {', '.join(names)}" if names else "name a callable it defines")
    if not callable(factory):
        raise UserError(f"{text} is a {type(factory).__name__}, not a callable", fix="name a function or class "
                                                                                     "that builds the module")
    module = _on_meta(factory, f"{text}()")
    if not isinstance(module, nn.Module):
        raise UserError(f"{text}() returned a {type(module).__name__}, not a torch.nn.Module",
                        fix="return the model (an nn.Module) from the factory")
    return FactorySpec(text, _network(text, user, module))


def _on_meta(function, label: str):
    """The user's `function()` under torch.device("meta"); what it raises, as one line."""
    import torch

    from paramcalc.torchref.profile import first_line

    try:
        with torch.device("meta"):
            return function()
    except Exception as error:
        raise UserError(f"{label} raised {first_line(error)}",
                        fix="it is called with no arguments under torch.device('meta')") from None


def _import(module_name: str, first_line):
    import importlib
    import os
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module file written since the last import is found
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise UserError(f"no module named {module_name!r} in the current directory ({cwd}) or on sys.path",
                            fix="run paramcalc where the module's file is, or install its package") from None
        raise UserError(f"importing {module_name!r} failed: {first_line(error)}",
                        fix="install what the module imports") from None
    except Exception as error:
        raise UserError(f"importing {module_name!r} failed: {first_line(error)}") from None


def _network(text: str, user, module) -> Profiled:
    import functools
    import inspect

    import torch

    from paramcalc.torchref.profile import example_shape, measure_module, profiled

    cls = type(module).__name__
    how = f"built by {text}() on the meta device (your code)"
    examples = getattr(user, "example_inputs", None)
    if callable(examples):
        inputs = _to_meta(_on_meta(examples, f"{user.__name__}.example_inputs()"))
        measured = functools.lru_cache(maxsize=1)(lambda: measure_module(module, inputs))
        return profiled(module, text, lambda batch, seq: measured(), probe=False,
                        example_seq=example_shape(inputs)[1], how=how + ", over example_inputs()")
    try:
        names = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        names = []
    key = "input_ids" if "input_ids" in names else "x" if "x" in names else None
    if key is None:
        why = (f"FLOPs unknown: {cls}.forward({', '.join(names)}) takes neither input_ids nor x; define "
               f"example_inputs() in {user.__name__} returning its inputs to measure them")
        return profiled(module, text, None, probe=False, example_seq=None, how=how, why=why)

    @functools.lru_cache(maxsize=8)
    def probe(batch: int, seq: int):
        ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
        return measure_module(module, {key: ids})

    return profiled(module, text, probe, probe=True, example_seq=None,
                    how=how + f", over {key} of shape (batch, seq), int64")


def _to_meta(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_meta(v) for v in value)
    return value


__all__ = ["FactorySpec", "INSTALL", "is_factory", "read_factory"]
