"""The analyses: parameters, FLOPs, memory and cost, each a function from a spec to a typed result."""
