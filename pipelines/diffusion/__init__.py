"""Diffusion: text-to-image on the shapes world (trained here) and allow-listed Hub pipelines; the diffusion lab
(the forward process, image-to-image, inpainting, cross-attention maps; lab.py, lab_inputs.py)."""
