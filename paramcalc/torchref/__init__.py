"""The torch side of paramcalc: real PyTorch modules measured against the
analytic counts. Nothing here is imported by the counting commands; the CLI
imports these modules lazily, inside `paramcalc bench` and `paramcalc verify`.

- `reference`: the bench's layers (the blocks' own modules with attention,
  RMSNorm and tanh-GELU computed as transformers computes them), the saved
  bytes counter and the FLOP counter;
- `bench`: time real layers on a device; predicted vs measured FLOPs, saved
  bytes, seconds per step, TFLOP/s and MFU (`run_bench`, `write_calibration`);
- `verify`: parameters and FLOPs of every component against sum(p.numel()),
  FlopCounterMode and fvcore, on the meta device (`run_verify`).
"""
