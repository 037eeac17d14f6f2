"""Model code for GenAI Playground: plain Python, no Gradio. Usable from a notebook or a script."""
