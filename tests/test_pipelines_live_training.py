"""The models the Training tab trains live (toy GAN, 2-D VAE, character model), the run machinery, and AR(p)."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.core.training_runs import one_cpu_thread, seeded_init, stretch, watch
from pipelines.gan.toy_training import (
    MODE_COLLAPSE,
    TOY_SAMPLES,
    GANSettings,
    final_snapshot,
    ring_centres,
    ring_coverage,
    sample_real,
    train_toy_gan,
)
from pipelines.text.char_model import CharModel, CharSettings, CharVocabulary, check_corpus, train_char_model
from pipelines.text.options import CHAR_TEMPERATURES, MAX_CHAR_CORPUS
from pipelines.text.sample_texts import SAMPLE_TEXTS
from pipelines.timeseries.autoregressive import (
    AR2_PHI,
    PRESET_LENGTH,
    SEED_EXAMPLE_THETA,
    SeriesError,
    fit_autoregressive,
    ma1_lag1_autocorrelation,
    parse_series,
    preset_values,
    seed_example_series,
    series_text,
    simulate_ar,
)
from pipelines.timeseries.options import MAX_VALUES
from pipelines.vae.live_training import PRIOR_SAMPLES, VAESettings, train_vae_live

SEA = SAMPLE_TEXTS["The sea"]
TINY_GAN = GANSettings(steps=20, hidden=16, batch_size=32, snapshot_every=10, seed=3)
TINY_VAE = VAESettings(steps=20, batch_size=16, snapshot_every=10, seed=3)
TINY_CHAR = CharSettings(SEA, steps=10, hidden=16, snapshot_every=5, seed=3, sample_length=20)


def last(iterator):
    *_, final = iterator
    return final


# ----------------------------------------------------------------------------- the run machinery


def test_seeded_init_draws_exactly_what_torch_would_from_the_same_seed():
    makers = [
        lambda: nn.Linear(7, 5),
        lambda: nn.Conv2d(3, 4, 3),
        lambda: nn.ConvTranspose2d(6, 2, 4),
        lambda: nn.Embedding(11, 4),
        lambda: nn.LSTM(4, 8, batch_first=True),
        lambda: nn.GRU(4, 8),
    ]
    for make in makers:
        torch.manual_seed(0)
        reference = make()
        seeded = seeded_init(make(), torch.Generator().manual_seed(0))
        for (name, expected), actual in zip(reference.named_parameters(), seeded.parameters()):
            assert torch.equal(expected, actual), f"{type(reference).__name__}.{name}"


def test_seeded_init_refuses_a_layer_it_does_not_know():
    with pytest.raises(TypeError, match="PReLU"):
        seeded_init(nn.Sequential(nn.PReLU()), torch.Generator())


def test_one_cpu_thread_sets_one_thread_here_only_and_restores_it():
    before = torch.get_num_threads()
    seen = {}
    with one_cpu_thread():
        assert torch.get_num_threads() == 1
        other = threading.Thread(target=lambda: seen.setdefault("other", torch.get_num_threads()))
        other.start()
        other.join()
    assert torch.get_num_threads() == before
    assert seen["other"] == before  # a thread started meanwhile (another tab's request) keeps the usual count


class CountingRun:
    """A stand-in run: counts its steps; its snapshot is (step, done, why)."""

    def __init__(self):
        self.step = 0

    def train_step(self):
        self.step += 1

    def snapshot(self, seconds, done=False, stopped_early=""):
        return SimpleSnapshot(self.step, done, stopped_early)


class SimpleSnapshot:
    def __init__(self, step, done, stopped_early):
        self.step, self.done, self.stopped_early = step, done, stopped_early


def test_watch_yields_every_stretch_and_ends_with_done():
    snapshots = list(watch(CountingRun, steps=25, snapshot_every=10, max_seconds=60))
    assert [s.step for s in snapshots] == [0, 10, 20, 25]
    assert [s.done for s in snapshots] == [False, False, False, True]
    assert snapshots[-1].stopped_early == ""


def test_watch_stops_at_its_time_limit_and_says_so():
    ticks = iter(range(10_000))
    snapshots = list(watch(CountingRun, steps=1000, snapshot_every=10, max_seconds=25, clock=lambda: next(ticks)))
    assert snapshots[-1].done and "time limit of 25 s" in snapshots[-1].stopped_early
    assert snapshots[-1].step < 1000


def test_closing_a_watched_run_stops_its_training():
    run = CountingRun()
    snapshots = watch(lambda: run, steps=1000, snapshot_every=10, max_seconds=60)
    next(snapshots)
    next(snapshots)
    snapshots.close()  # what Gradio does on Stop or a closed page
    assert run.step == 10


def test_stretch_gives_about_the_asked_number_of_snapshots_in_round_steps():
    assert stretch(2000, 25) == 80
    assert stretch(200, 12) == 20  # 17 rounded up to a round number
    assert stretch(20, 25) == 1
    assert stretch(7, 2) == 4


# ----------------------------------------------------------------------------- toy GAN


def test_the_datasets_look_like_their_descriptions():
    generator = torch.Generator().manual_seed(0)
    ring = sample_real("ring", 4000, generator)
    assert ring.shape == (4000, 2)
    distances = torch.cdist(ring, ring_centres())
    assert distances.min(1).values.max() < 0.12  # std 0.02: every point is close to a centre
    assert set(distances.argmin(1).tolist()) == set(range(8))
    assert torch.allclose(ring_centres().norm(dim=1), torch.full((8,), 2.0))
    spiral = sample_real("spiral", 1000, generator)
    assert spiral.shape == (1000, 2) and spiral.norm(dim=1).max() < 2.5
    images = sample_real("diagonals", 500, generator)
    assert images.shape == (500, 4) and images.min() >= 0 and images.max() <= 1
    # Ink on the "\" diagonal (top-left, bottom-right), little on the other two pixels.
    assert (images[:, [0, 3]].min(1).values > images[:, [1, 2]].max(1).values).all()


def test_ring_coverage_counts_modes_and_points_near_them():
    real = sample_real("ring", 2000, torch.Generator().manual_seed(1))
    full = ring_coverage(real)
    assert full.modes_covered == 8 and full.near_share == 1.0 and full.meets_target()
    one_mode = ring_coverage(ring_centres()[[0]].repeat(500, 1))
    assert one_mode.modes_covered == 1 and not one_mode.meets_target()
    nowhere = ring_coverage(torch.zeros(500, 2))
    assert nowhere.modes_covered == 0 and nowhere.near_share == 0.0


def test_a_gan_run_yields_snapshots_and_a_complete_record():
    snapshots = list(train_toy_gan(TINY_GAN))
    assert [s.step for s in snapshots] == [0, 10, 20]
    assert [s.done for s in snapshots] == [False, False, True]
    final = snapshots[-1]
    assert final.fake.shape == (TOY_SAMPLES, 2) and final.surface.values.shape == (81, 81)
    assert 0 <= final.surface.values.min() and final.surface.values.max() <= 1
    result = final.as_json()
    assert len(result["samples"]) >= 500 and all(len(point) == 2 for point in result["samples"])
    assert [record["step"] for record in result["history"]] == [10, 20]
    assert all(math.isfinite(record[key]) for record in result["history"] for key in ("d_loss", "g_loss"))
    assert result["coverage"]["modes_covered"] == final.coverage.modes_covered


def test_the_same_settings_give_the_same_run_and_another_seed_another():
    first, again = final_snapshot(TINY_GAN), final_snapshot(TINY_GAN)
    assert np.array_equal(first.fake, again.fake)
    assert first.as_json()["history"] == again.as_json()["history"]
    other = final_snapshot(replace(TINY_GAN, seed=4))
    assert not np.array_equal(first.fake, other.fake)


def test_every_loss_and_dataset_trains_and_the_critic_gives_scores():
    for dataset in ("ring", "spiral", "diagonals"):
        for loss in ("minimax", "non-saturating", "wasserstein"):
            final = final_snapshot(replace(TINY_GAN, dataset=dataset, loss=loss, steps=10))
            assert np.isfinite(final.fake).all() and final.surface.probability == (loss != "wasserstein")
    diagonals = final_snapshot(replace(TINY_GAN, dataset="diagonals", steps=10)).as_json()
    assert len(diagonals["images"][0]) == 4 and len(diagonals["samples"][0]) == 2
    assert replace(TINY_GAN, loss="wasserstein").critic_steps == 5
    assert replace(TINY_GAN, loss="wasserstein", discriminator_steps=2).critic_steps == 2
    assert TINY_GAN.critic_steps == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dataset="moons"), "ring, spiral, diagonals"),
        (dict(loss="hinge"), "minimax, non-saturating, wasserstein"),
        (dict(steps=5), "steps must be a whole number from 10 to 5000"),
        (dict(generator_lr=0.5), "generator_lr"),
        (dict(discriminator_steps=11), "discriminator_steps"),
        (dict(seed=-1), "seed"),
    ],
)
def test_gan_settings_out_of_range_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        train_toy_gan(replace(GANSettings(), **change))


@pytest.mark.slow
def test_a_quick_run_on_the_ring_meets_the_coverage_target_and_the_collapse_preset_collapses():
    quick = final_snapshot(GANSettings(steps=500, generator_lr=0.001, discriminator_lr=0.001, snapshot_every=500))
    assert quick.coverage.meets_target(), quick.coverage
    collapsed = final_snapshot(replace(MODE_COLLAPSE, seed=42, snapshot_every=MODE_COLLAPSE.steps))
    assert collapsed.coverage.modes_covered <= 2, collapsed.coverage


# ----------------------------------------------------------------------------- VAE


def test_a_vae_run_shows_the_map_samples_and_both_loss_terms():
    snapshots = list(train_vae_live(TINY_VAE))
    assert [s.step for s in snapshots] == [0, 10, 20] and snapshots[-1].done
    final = snapshots[-1]
    assert final.latent_means.shape == (300, 2) and sorted(set(final.labels.tolist())) == list(range(10))
    assert final.prior_samples.shape == (PRIOR_SAMPLES, 16, 16)
    assert 0 <= final.prior_samples.min() and final.prior_samples.max() <= 1
    assert final.reconstructions.shape == final.originals.shape == (8, 16, 16)
    record = final.history[-1]
    assert record.loss == pytest.approx(record.reconstruction + TINY_VAE.beta * record.kl, rel=1e-5)
    assert set(final.as_json()) >= {"history", "held_out", "latent_means", "labels"}


@pytest.mark.slow
def test_the_vae_run_repeats_with_its_seed_and_learns():
    first, again = last(train_vae_live(TINY_VAE)), last(train_vae_live(TINY_VAE))
    assert np.array_equal(first.latent_means, again.latent_means)
    assert first.as_json()["history"] == again.as_json()["history"]
    longer = list(train_vae_live(replace(TINY_VAE, steps=60, snapshot_every=60)))
    assert longer[-1].held_out_reconstruction < longer[0].held_out_reconstruction - 20


def test_vae_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="beta"):
        train_vae_live(replace(TINY_VAE, beta=9))
    with pytest.raises(ValueError, match="steps"):
        train_vae_live(replace(TINY_VAE, steps=5000))


@pytest.mark.slow
def test_a_larger_beta_keeps_the_codes_closer_to_the_prior():
    settings = replace(TINY_VAE, steps=200, batch_size=64, snapshot_every=200)
    plain, strong = last(train_vae_live(replace(settings, beta=0.0))), last(train_vae_live(replace(settings, beta=4.0)))
    assert strong.held_out_kl < plain.held_out_kl / 2
    assert np.abs(strong.latent_means).mean() < np.abs(plain.latent_means).mean()


# ----------------------------------------------------------------------------- character model


def test_the_corpus_limits_are_checked():
    with pytest.raises(ValueError, match="at least 100 characters"):
        check_corpus("too short")
    with pytest.raises(ValueError, match="over the limit of 200,000"):
        check_corpus("a" * (MAX_CHAR_CORPUS + 1))
    with pytest.raises(ValueError, match="distinct characters"):
        check_corpus("".join(chr(0x4E00 + i) for i in range(400)))
    assert check_corpus(SEA) == SEA


def test_the_vocabulary_round_trips_and_skips_unknown_characters():
    vocabulary = CharVocabulary.of("hello world")
    assert vocabulary.decode(vocabulary.encode("low rod").tolist()) == "low rod"
    assert vocabulary.decode(vocabulary.encode("HELLO, hi").tolist()) == " h"  # only known characters remain


def test_a_character_run_records_every_step_and_samples_at_each_temperature():
    snapshots = list(train_char_model(TINY_CHAR))
    final = snapshots[-1]
    assert [s.step for s in snapshots] == [0, 5, 10] and final.done
    assert len(final.loss) == 10 and all(math.isfinite(value) for value in final.loss)
    assert [s.temperature for s in final.latest_samples] == list(CHAR_TEMPERATURES)
    assert len(final.samples) == 3 * len(CHAR_TEMPERATURES)
    assert all(len(s.text) == 20 and set(s.text) <= set(SEA) for s in final.samples)
    assert [step for step, _ in final.held_out_loss] == [0, 5, 10]  # the sea is long enough to hold some out
    result = final.as_json()
    assert len(result["loss"]) == 10 and {"step", "temperature", "text"} <= set(result["samples"][0])


def test_the_character_run_repeats_with_its_seed():
    first, again = last(train_char_model(TINY_CHAR)), last(train_char_model(TINY_CHAR))
    assert first.loss == again.loss and first.as_json()["samples"] == again.as_json()["samples"]
    other = last(train_char_model(replace(TINY_CHAR, seed=4)))
    assert other.loss != first.loss


@pytest.mark.slow
def test_the_character_model_learns_and_its_sampling_is_reproducible():
    final = last(train_char_model(replace(TINY_CHAR, steps=60, hidden=32, snapshot_every=60, temperatures=())))
    assert np.mean(final.loss[-10:]) < final.loss[0] - 0.5  # from about log(33) = 3.5 nats
    model: CharModel = final.model
    assert model.sample("The ", 30, 0.8, seed=1) == model.sample("The ", 30, 0.8, seed=1)
    assert model.sample("The ", 30, 0.0, seed=1) == model.sample("The ", 30, 0.0, seed=2)  # greedy
    assert len(model.sample("???", 12, 1.0, seed=1)) == 12  # a prompt of unknown characters still works


def test_a_small_corpus_trains_on_everything_and_reports_no_held_out_loss():
    final = last(train_char_model(replace(TINY_CHAR, corpus=SEA[:400])))
    assert final.held_out_loss == [] and final.as_json()["held_out_loss"] == []


# ----------------------------------------------------------------------------- AR(p)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1, 2, 3.5", [1, 2, 3.5]),
        ("1 2\n3\t4;5", [1, 2, 3, 4, 5]),
        ("-1e3\n2.5e-1\n", [-1000, 0.25]),
        ("value\n1\n2\n3", [1, 2, 3]),
        ("year,spots\n1700,5\n1701,11", [5, 11]),  # a table: its last column by default
        ("year;spots\n1700;5\n1701;11", [5, 11]),
    ],
)
def test_series_are_read_from_the_usual_ways_of_pasting_numbers(text, expected):
    assert parse_series(text).values.tolist() == expected


def test_a_csv_column_is_chosen_by_name_or_number():
    table = "year,spots,other\n1700,5,9\n1701,11,8\n1702,16,7"
    assert parse_series(table, "spots").values.tolist() == [5, 11, 16]
    assert parse_series(table, "Year").values.tolist() == [1700, 1701, 1702]
    assert parse_series(table, "2").values.tolist() == [5, 11, 16]
    assert parse_series("1,5\n2,6\n3,7", "2").values.tolist() == [5, 6, 7]  # no header: a column number
    with pytest.raises(SeriesError, match="no column 'sun'.*'year', 'spots', 'other'"):
        parse_series(table, "sun")


@pytest.mark.parametrize(
    "text, message",
    [
        ("1, 2, abc, 4", "'abc' \\(line 1\\) is not a number"),
        ("1\n2\nthree", "'three' \\(line 3\\)"),
        ("1, nan, 3", "not a finite number"),
        ("", "empty"),
        ("a,b\n1,\n2,3", "Line 2 has no value"),
        (" ".join(["1"] * (MAX_VALUES + 1)), "100,001 values, over the limit of 100,000"),
        ("1" * 4_000_001, "over the limit of 4,000,000"),
        ("1 2 3", None),  # a short series parses; the fit refuses it
    ],
)
def test_bad_series_text_is_refused_with_what_is_wrong(text, message):
    if message is None:
        assert parse_series(text).values.tolist() == [1, 2, 3]
        return
    with pytest.raises(SeriesError, match=message):
        parse_series(text)


def test_the_ar2_preset_is_recovered_and_the_forecast_is_the_one_step_loop():
    values = preset_values("AR(2)")
    assert len(values) == PRESET_LENGTH
    fit = fit_autoregressive(values, 2, 12)
    for phi, (low, high) in zip(AR2_PHI, fit.intervals[1:]):
        assert low <= phi <= high
    from statsmodels.tsa.ar_model import AutoReg

    reference = AutoReg(values, lags=2, trend="c").fit().predict(start=len(values), end=len(values) + 11)
    assert np.allclose(fit.forecast, reference)
    assert np.all(fit.lower < fit.forecast) and np.all(fit.forecast < fit.upper)
    assert np.all(np.diff(fit.upper - fit.lower) >= -1e-9)  # the band never narrows further ahead
    assert fit.steps[0].previous == pytest.approx([values[-1], values[-2]])
    band = fit.correlation_band
    assert abs(fit.partial_autocorrelation[1]) > band and abs(fit.partial_autocorrelation[2]) > band
    assert np.mean(np.abs(fit.partial_autocorrelation[3:15]) < band) >= 0.75  # the PACF stops after lag p
    result = fit.as_json()
    assert len(result["coefficients"]) == 2 and len(result["forecast"]) == len(result["lower"]) == 12


def test_the_seed_example_is_an_ma1_and_its_ar1_fit_finds_about_0_44_not_0_6():
    rng = np.random.RandomState(1)  # seed 000 §8's code, line by line
    x = rng.normal(size=1000)
    y = np.zeros_like(x)
    y[1] = x[1] + 0.6 * x[0]
    for t in range(2, 1000):
        y[t] = x[t] + 0.6 * x[t - 1]
    assert np.array_equal(seed_example_series(), y)
    fit = fit_autoregressive(y, 1, 1)
    assert ma1_lag1_autocorrelation(SEED_EXAMPLE_THETA) == pytest.approx(0.441, abs=1e-3)
    assert fit.coefficients[0] == pytest.approx(0.441, abs=0.05)
    assert fit.intervals[1][1] < 0.6  # 0.6 is far outside the interval
    assert abs(fit.autocorrelation[2]) < fit.correlation_band  # an MA(1): its ACF stops after lag 1


def test_the_presets_round_trip_through_their_text():
    for name in ("AR(1)", "AR(2)", "Seed 000 §8 (an MA(1))", "Sunspots"):
        values = preset_values(name)
        assert np.allclose(parse_series(series_text(values)).values, values, atol=1e-4), name
    assert len(preset_values("Sunspots")) == 309  # 1700 to 2008
    assert np.array_equal(preset_values("AR(1)"), simulate_ar((0.8,), PRESET_LENGTH, 0))


@pytest.mark.parametrize(
    "values, p, message",
    [
        (np.arange(13.0), 2, "13 values; AR\\(2\\) needs at least 14"),
        (np.full(50, 3.0), 1, "constant"),
        (np.array([1.0, np.nan] * 20), 1, "finite"),
        (np.arange(40.0) * 1e13, 1, "rescale"),
    ],
)
def test_series_that_cannot_be_fitted_are_refused(values, p, message):
    with pytest.raises(SeriesError, match=message):
        fit_autoregressive(values, p, 5)


def test_fit_arguments_out_of_range_are_refused():
    values = preset_values("AR(1)")
    with pytest.raises(ValueError, match="p must be a whole number from 1 to 30"):
        fit_autoregressive(values, 31, 5)
    with pytest.raises(ValueError, match="forecast_steps"):
        fit_autoregressive(values, 1, 0)
