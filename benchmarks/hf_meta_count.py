"""The baseline: count a config.json's parameters the usual way, by building
the transformers model on the meta device (used by benchmarks/cold_start.py)."""

import json
import sys

import torch
import transformers

cfg = json.load(open(sys.argv[1]))
config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **{k: v for k, v in cfg.items()
                                                                     if k != "architectures"})
with torch.device("meta"):
    model = getattr(transformers, cfg["architectures"][0])(config)
print(sum(p.numel() for p in model.parameters()))
