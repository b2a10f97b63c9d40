"""paramcalc's embedded presets, installed as the package `paramcalc.presets`.

- models/: one YAML spec per model, each with its `source:` and `expected_params`;
- gpus/: one YAML file per accelerator (dense peaks per dtype, memory, links), each with its `source:`;
- prices.yaml: indicative USD per GPU-hour, with its date and sources.

paramcalc.catalog reads them with importlib.resources.
"""
