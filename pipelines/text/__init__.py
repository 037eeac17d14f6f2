"""Text: a transformer language model (transformers) and a word n-gram model."""
