"""Model code for GenAI Playground: plain Python, no Gradio. Usable from a notebook or a script.

One package per model family, and one for what they share:
- `core/`: the device, weight sources, the model registry (every model's id and loader), limits, batching,
  image helpers and the health report;
- `diffusion/`: text-to-image diffusion and the shapes world it was trained on;
- `gan/`: the pretrained DCGAN face generator;
- `vae/`: variational autoencoders (the network, and the pipelines the tab uses);
- `text/`: the transformer language model, the n-gram model and the sample texts.
Each family's `options.py` holds what a user may ask of it (choices, defaults, limits), importable without
the heavy model libraries so the app's page comes up before any model loads.
"""
