"""Diffusion: text-to-image on the shapes world (trained here) and allow-listed Hub pipelines."""
