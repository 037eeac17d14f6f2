"""A character-level recurrent language model (an LSTM or a GRU), small enough to train live on a page of text.

Between the n-gram model, which counts what follows the last n-1 words, and the transformer, which attends to
every earlier token, sits the recurrent network: it reads one character at a time and carries what it has seen
in a hidden state (its *memory*), from which it predicts the next character. Training minimises the
cross-entropy of the next character on random windows of the corpus, through time (backpropagation through
time); the LSTM's and GRU's gates let gradients survive over more steps than a plain RNN's. `train_char_model`
is a generator of snapshots with samples at a few temperatures; the same settings give the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.core.building import MODEL_BUILDING
from pipelines.core.limits import SEED, checked_number
from pipelines.core.training_runs import seeded_init, watch
from pipelines.text.options import (
    CHAR_CELLS,
    CHAR_HIDDEN,
    CHAR_LEARNING_RATE,
    CHAR_MAX_SECONDS,
    CHAR_SAMPLE_LENGTH,
    CHAR_STEPS,
    CHAR_TEMPERATURES,
    MAX_CHAR_CORPUS,
    MAX_CHAR_VOCABULARY,
    MIN_CHAR_CORPUS,
)

EMBEDDING_SIZE = 32
SEQUENCE_LENGTH = 64  # characters per training window: how far back gradients flow
BATCH_SIZE = 32
GRADIENT_CLIP = 1.0  # keeps an occasional exploding gradient from undoing the run
HELD_OUT_SHARE = 0.1  # the corpus's last tenth is never trained on: its loss shows memorising
MIN_HELD_OUT = 100  # characters; smaller corpora train on everything and report no held-out loss


def check_corpus(corpus: str) -> str:
    """The corpus, if it is long enough, short enough and has few enough distinct characters; else ValueError."""
    if not isinstance(corpus, str):
        raise ValueError(f"The corpus must be text (got {type(corpus).__name__}).")
    if len(corpus.strip()) < MIN_CHAR_CORPUS:
        raise ValueError(f"The corpus needs at least {MIN_CHAR_CORPUS} characters (got {len(corpus.strip())}).")
    if len(corpus) > MAX_CHAR_CORPUS:
        raise ValueError(f"The corpus has {len(corpus):,} characters, over the limit of {MAX_CHAR_CORPUS:,}.")
    distinct = len(set(corpus))
    if distinct > MAX_CHAR_VOCABULARY:
        raise ValueError(f"The corpus has {distinct:,} distinct characters, over the limit of {MAX_CHAR_VOCABULARY}.")
    return corpus


@dataclass(frozen=True)
class CharVocabulary:
    characters: str  # sorted, distinct

    @classmethod
    def of(cls, corpus: str) -> CharVocabulary:
        return cls("".join(sorted(set(corpus))))

    def __len__(self) -> int:
        return len(self.characters)

    def encode(self, text: str) -> torch.Tensor:
        """Character ids; characters the corpus never had are left out."""
        index = {character: i for i, character in enumerate(self.characters)}
        return torch.tensor([index[c] for c in text if c in index], dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.characters[i] for i in ids)


class CharRNN(nn.Module):
    """ids (B, T) -> logits (B, T, vocabulary) and the recurrent state after the last character."""

    def __init__(self, vocabulary_size: int, hidden: int, cell: str):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, EMBEDDING_SIZE)
        recurrent = nn.LSTM if cell == "lstm" else nn.GRU
        self.recurrent = recurrent(EMBEDDING_SIZE, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocabulary_size)

    def forward(self, ids: torch.Tensor, state=None):
        hidden_states, state = self.recurrent(self.embedding(ids), state)  # (B, T, hidden)
        return self.head(hidden_states), state


@dataclass
class CharModel:
    """A trained (or training) network with its vocabulary: continue a prompt one character at a time."""

    network: CharRNN
    vocabulary: CharVocabulary

    def sample(self, prompt: str, length: int, temperature: float, seed: int) -> str:
        """`length` new characters after `prompt` (characters outside the vocabulary are skipped); the
        same seed gives the same text. Temperature 0 takes the likeliest character each time."""
        length = checked_number(length, "length", 1, CHAR_SAMPLE_LENGTH.high)
        temperature = checked_number(temperature, "temperature", 0.0, 5.0, whole=False)
        generator = torch.Generator().manual_seed(SEED.check(seed, "seed"))
        ids = self.vocabulary.encode(prompt)
        if len(ids) == 0:  # nothing known to start from: the first character is drawn from the corpus's own
            ids = torch.randint(len(self.vocabulary), (1,), generator=generator)
        self.network.eval()
        written: list[int] = []
        with torch.no_grad():
            logits, state = self.network(ids[None])
            for _ in range(length):
                scores = logits[0, -1]
                if temperature == 0:
                    next_id = int(scores.argmax())
                else:
                    probabilities = F.softmax(scores / temperature, dim=-1)
                    next_id = int(torch.multinomial(probabilities, 1, generator=generator))
                written.append(next_id)
                logits, state = self.network(torch.tensor([[next_id]]), state)
        return self.vocabulary.decode(written)


@dataclass(frozen=True)
class CharSettings:
    corpus: str
    cell: str = "lstm"
    steps: int = int(CHAR_STEPS.default)
    seed: int = 0
    learning_rate: float = CHAR_LEARNING_RATE.default
    hidden: int = int(CHAR_HIDDEN.default)
    prompt: str = "The "
    sample_length: int = int(CHAR_SAMPLE_LENGTH.default)
    temperatures: tuple[float, ...] = CHAR_TEMPERATURES
    snapshot_every: int = 50

    def check(self) -> CharSettings:
        check_corpus(self.corpus)
        if self.cell not in CHAR_CELLS:
            raise ValueError(f"cell must be one of {', '.join(CHAR_CELLS)} (got {self.cell!r}).")
        CHAR_STEPS.check(self.steps, "steps")
        SEED.check(self.seed, "seed")
        CHAR_LEARNING_RATE.check(self.learning_rate, "learning_rate")
        CHAR_HIDDEN.check(self.hidden, "hidden")
        CHAR_SAMPLE_LENGTH.check(self.sample_length, "sample_length")
        checked_number(self.snapshot_every, "snapshot_every", 1, 100_000)
        return self


@dataclass
class CharSample:
    step: int
    temperature: float
    text: str


@dataclass
class CharSnapshot:
    step: int
    settings: CharSettings
    loss: list[float]  # the training loss (nats per character) at every step so far
    held_out_loss: list[tuple[int, float]]  # (step, loss on the corpus's unseen last tenth) at each snapshot
    samples: list[CharSample]  # every sample so far, a few temperatures after each stretch
    model: CharModel = field(repr=False)
    vocabulary_size: int = 0
    parameters: int = 0
    seconds: float = 0.0
    done: bool = False
    stopped_early: str = ""

    @property
    def latest_samples(self) -> list[CharSample]:
        return [sample for sample in self.samples if sample.step == self.step]

    def as_json(self) -> dict:
        return {
            "cell": self.settings.cell,
            "steps": self.settings.steps,
            "steps_done": self.step,
            "seed": self.settings.seed,
            "seconds": round(self.seconds, 2),
            "stopped_early": self.stopped_early,
            "vocabulary_size": self.vocabulary_size,
            "parameters": self.parameters,
            "loss": [round(value, 4) for value in self.loss],
            "held_out_loss": [{"step": step, "loss": round(value, 4)} for step, value in self.held_out_loss],
            "samples": [asdict(sample) for sample in self.samples],
        }


class CharRun:
    """One training run: random windows of the corpus, next-character cross-entropy, Adam."""

    def __init__(self, settings: CharSettings):
        self.settings = settings.check()
        self.random = torch.Generator().manual_seed(int(settings.seed))
        vocabulary = CharVocabulary.of(settings.corpus)
        with MODEL_BUILDING:  # not while a model loads in another thread (its loader patches torch.nn.init)
            network = seeded_init(CharRNN(len(vocabulary), settings.hidden, settings.cell), self.random)
        self.model = CharModel(network, vocabulary)
        text = vocabulary.encode(settings.corpus)
        held_out = int(len(text) * HELD_OUT_SHARE)
        if held_out >= MIN_HELD_OUT:
            self.text, self.held_out = text[:-held_out], text[-held_out:]
        else:
            self.text, self.held_out = text, None
        self.window = min(SEQUENCE_LENGTH, len(self.text) - 1)
        self.optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
        self.step = 0
        self.loss: list[float] = []
        self.held_out_loss: list[tuple[int, float]] = []
        self.samples: list[CharSample] = []

    def train_step(self) -> None:
        network = self.model.network
        network.train()
        starts = torch.randint(len(self.text) - self.window, (BATCH_SIZE,), generator=self.random)
        offsets = torch.arange(self.window + 1)
        windows = self.text[starts[:, None] + offsets]  # (B, window + 1)
        logits, _ = network(windows[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(network.parameters(), GRADIENT_CLIP)
        self.optimizer.step()
        self.step += 1
        self.loss.append(loss.item())

    def held_out_cross_entropy(self) -> float:
        """Nats per character on the unseen end of the corpus, read in one pass from an empty memory."""
        self.model.network.eval()
        with torch.no_grad():
            logits, _ = self.model.network(self.held_out[None, :-1])
            return F.cross_entropy(logits[0], self.held_out[1:]).item()

    def snapshot(self, seconds: float, done: bool = False, stopped_early: str = "") -> CharSnapshot:
        settings = self.settings
        if self.held_out is not None:
            self.held_out_loss.append((self.step, self.held_out_cross_entropy()))
        for index, temperature in enumerate(settings.temperatures):
            # Its own seed per step and temperature: a sample does not depend on which others were drawn.
            seed = (settings.seed * 1_000_003 + self.step * 31 + index) % SEED.high
            text = self.model.sample(settings.prompt, settings.sample_length, temperature, seed)
            self.samples.append(CharSample(self.step, temperature, text))
        return CharSnapshot(
            step=self.step,
            settings=settings,
            loss=list(self.loss),
            held_out_loss=list(self.held_out_loss),
            samples=list(self.samples),
            model=self.model,
            vocabulary_size=len(self.model.vocabulary),
            parameters=sum(p.numel() for p in self.model.network.parameters()),
            seconds=seconds,
            done=done,
            stopped_early=stopped_early,
        )


def train_char_model(
    settings: CharSettings, max_seconds: float = CHAR_MAX_SECONDS, clock: Callable[[], float] = time.monotonic
) -> Iterator[CharSnapshot]:
    """Train, yielding a snapshot (with samples) at step 0, every `snapshot_every` steps and at the end.

    The run ends early, saying so in its last snapshot, after `max_seconds`; closing the iterator stops it.
    """
    settings = settings.check()
    return watch(lambda: CharRun(settings), settings.steps, settings.snapshot_every, max_seconds, clock)
