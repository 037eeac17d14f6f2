"""Shared infrastructure: device, weight sources, the model registry and its load lock (building.py), limits,
batching, imaging, health, the background warm-up, ZeroGPU, and the clock and thread of live training runs."""
