"""What a user may ask of the text models: sampling limits and defaults, read by the tab and the pipelines.

Importable without transformers, so the tab builds its controls before any model library is imported.
"""

from __future__ import annotations

from pipelines.core.limits import Range

BUILTIN_MODEL = "smollm2-135m"  # the registry id of the built-in language model
MAX_NEW_TOKENS = Range(1, 1024, 128)
TEMPERATURE = Range(0.0, 2.0, 0.7, step=0.05, whole=False)  # 0 = greedy
TOP_K = Range(0, 200, 50)  # 0 = off
TOP_P = Range(0.01, 1.0, 0.95, step=0.01, whole=False)
REPETITION_PENALTY = Range(1.0, 2.0, 1.1, step=0.05, whole=False)
MODES = ("Chat", "Completion")
# A generation never runs longer than this, so one user cannot hold the model for minutes.
MAX_GENERATION_SECONDS = {"cpu": 30.0, "mps": 60.0, "cuda": 60.0}

# Number formats for the transformer (pipelines/text/precision.py), by device type; the first is the default.
# On a CPU decoding reads every weight once per token, so fewer bytes per weight is faster.
PRECISIONS = {"cpu": ("int4", "int8", "float32"), "mps": ("float16", "float32"), "cuda": ("float16", "float32")}
PRECISION_NOTES = {
    "int4": "4-bit weights, the GGUF file's own numbers (fastest on a CPU)",
    "int8": "8-bit weights",
    "float16": "16-bit floats",
    "float32": "32-bit floats: the reference, slowest",
}
# Continuous batching (pipelines/text/decoder.py): requests decoded together in one forward pass, and the most
# memory their key/value caches may take.
MAX_BATCH = {"cpu": 8, "mps": 16, "cuda": 32}
KV_CACHE_BYTES = {"cpu": 1 << 30, "mps": 2 << 30, "cuda": 8 << 30}

NGRAM_ORDER = Range(1, 5, 2)  # n: words of context + 1
NGRAM_WORDS = Range(1, 500, 60)  # words generated in one call
MAX_CORPUS_BYTES = 1_000_000  # a 1 MB corpus counted up to 5-grams takes a few hundred MB

# Inside the transformer (pipelines/text/inspection.py). Layer and head are the built-in model's counts: a model
# with other counts gets its own ranges from its config (`inspection.attention_ranges`).
ATTENTION_LAYER = Range(1, 30, 2)  # 1-based, as the tab shows them
ATTENTION_HEAD = Range(0, 9, 0)  # 0 = the mean of all query heads; 1..9 one head
MAX_ATTENTION_TOKENS = 256  # prompt + answer; the layer's weights for every head are T x T
ATTENTION_SHOWN_TOKENS = 48  # the heat-maps show the last 48 tokens, readable on a projector
MAX_INSPECTED_CHARACTERS = 20_000  # longer texts are refused before they are tokenized
MAX_PERPLEXITY_CHARACTERS = 4_000  # about a page, scored in one forward pass

# The character-level recurrent model trained live (pipelines/text/char_model.py).
CHAR_CELLS = ("lstm", "gru")
CHAR_STEPS = Range(10, 3000, 600, step=10)
CHAR_LEARNING_RATE = Range(0.0001, 0.02, 0.002, step=0.0001, whole=False)
CHAR_HIDDEN = Range(16, 512, 128, step=16)  # units in the recurrent layer
CHAR_SAMPLE_LENGTH = Range(10, 500, 160, step=10)  # characters in each sample
CHAR_TEMPERATURES = (0.4, 0.8, 1.2)  # a sample at each, after every stretch of training
MIN_CHAR_CORPUS = 100  # characters: a few training windows at least
MAX_CHAR_CORPUS = 200_000  # characters: far more than a live run of a few thousand steps can read
MAX_CHAR_VOCABULARY = 300  # distinct characters
CHAR_MAX_SECONDS = 90.0  # a run stops here whatever its steps
