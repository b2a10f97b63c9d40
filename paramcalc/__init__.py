"""paramcalc: exact parameter counts, FLOPs, memory and GPU cost of neural networks.

>>> import paramcalc
>>> paramcalc.count_params("llama-3.1-8b").params.total
8030261248
>>> paramcalc.flops("gpt2", seq_len=1024).flops.forward
291648307200

Every function takes a model: a TARGET (a preset name, a config.json path, a
YAML spec path, a bare count such as "7.5B"), a spec from `load_spec`, or a
Network from `lower` (lower once, analyse many times), and returns a typed
pydantic result (`.model_dump()` for plain data). `profile(module, inputs)`
turns a live torch.nn.Module into such a network, measured by torch. Nothing
else imports torch, and nothing prints. Names load lazily, so `import paramcalc`
is cheap.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "count_params": ("paramcalc.analysis.count", "count_params"),
    "flops": ("paramcalc.analysis.flops", "count_flops"),
    "memory": ("paramcalc.analysis.memory", "estimate_memory"),
    "cost": ("paramcalc.analysis.cost", "estimate_cost"),
    "estimate": ("paramcalc.analysis.estimate", "estimate"),
    "serve": ("paramcalc.analysis.serve", "estimate_serving"),
    "checkpoint": ("paramcalc.analysis.checkpoint", "checkpoint_sizes"),
    "check": ("paramcalc.analysis.check", "check_budgets"),
    "plan": ("paramcalc.analysis.plan", "plan_pipeline"),
    "lower": ("paramcalc.network", "lower"),
    "profile": ("paramcalc.torchref.profile", "profile"),
    "load_spec": ("paramcalc.inputs.target", "load_spec"),
    "presets": ("paramcalc.catalog", "preset_names"),
    "gpus": ("paramcalc.catalog", "gpu_names"),
    "load_gpu": ("paramcalc.catalog", "load_gpu"),
    "TransformerSpec": ("paramcalc.inputs.spec", "TransformerSpec"),
    "UserError": ("paramcalc.errors", "UserError"),
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'paramcalc' has no attribute {name!r}")


def __dir__():
    return __all__
