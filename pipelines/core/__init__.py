"""Shared infrastructure: device, weight sources, model registry, limits, batching, imaging, health."""
