"""Text: a transformer language model (generation.py) decoded by continuous batching (decoder.py, llama_runner.py)
in 4-bit, 8-bit or float weights (quantization.py, precision.py), looked inside (inspection.py: attention,
perplexity); a word n-gram model (ngram.py); a character-level recurrent model trained live (char_model.py)."""
