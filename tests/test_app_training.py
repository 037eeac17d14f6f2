"""The Training tab through its public API on the running app: live runs stream, repeat per seed, refuse bad
input and a run too many; AR(p) fits pasted series."""

from __future__ import annotations

import base64
import io
import time

import pytest
from gradio_client.client import Job
from PIL import Image

from pipelines.gan.toy_training import ring_coverage
from pipelines.text.sample_texts import SAMPLE_TEXTS
from pipelines.timeseries.autoregressive import preset_values, seed_example_series, series_text

SEA = SAMPLE_TEXTS["The sea"]


def plot_image(plot: dict) -> Image.Image:
    """A gr.Plot output as gradio_client returns it: a matplotlib figure as a data URL."""
    assert plot["type"] == "matplotlib"
    return Image.open(io.BytesIO(base64.b64decode(plot["plot"].split(",", 1)[1])))


def wait_until_streaming(jobs: list[Job], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not all(job.outputs() for job in jobs):
        assert time.monotonic() < deadline, "the runs sent nothing"
        time.sleep(0.5)


# ----------------------------------------------------------------------------- GAN


def test_train_gan_streams_the_run_and_ends_with_samples_and_history(client):
    job = client.submit(dataset="ring", loss="non-saturating", steps=60, seed=5, api_name="/train_gan")
    points, curves, status, result = job.result(timeout=300)
    assert len(job.outputs()) >= 4  # step 0, a few stretches, the end
    assert plot_image(points).width >= 400 and plot_image(curves).width >= 400
    assert "Done" in status and "of 8 modes" in status
    assert result["dataset"] == "ring" and result["loss"] == "non-saturating" and result["steps_done"] == 60
    assert len(result["samples"]) >= 500 and all(len(point) == 2 for point in result["samples"])
    assert [record["step"] for record in result["history"]] == list(range(10, 61, 10))
    assert all({"d_loss", "g_loss", "d_real", "d_fake"} <= set(record) for record in result["history"])
    assert result["coverage"]["modes_covered"] == ring_coverage(result["samples"]).modes_covered


def test_train_gan_repeats_with_the_seed(client):
    arguments = dict(dataset="spiral", loss="minimax", steps=20, api_name="/train_gan")
    first = client.predict(seed=7, **arguments)[3]
    again = client.predict(seed=7, **arguments)[3]
    other = client.predict(seed=8, **arguments)[3]
    assert first["samples"] == again["samples"] and first["history"] == again["history"]
    assert first["samples"] != other["samples"]


def test_train_gan_on_the_diagonals_returns_the_images_behind_the_points(client):
    result = client.predict(dataset="diagonals", loss="wasserstein", steps=10, seed=1, api_name="/train_gan")[3]
    assert len(result["images"]) == len(result["samples"]) >= 500
    assert all(len(image) == 4 and all(0 <= pixel <= 1 for pixel in image) for image in result["images"][:50])


@pytest.mark.parametrize(
    "arguments, message",
    [
        # Gradio's own refusal of a value outside a radio's choices names the choices.
        (dict(dataset="moons"), "'moons'.* not in the list of choices: \\['ring', 'spiral', 'diagonals'\\]"),
        (dict(loss="hinge"), "'hinge'.* not in the list of choices: \\['minimax', 'non-saturating', 'wasserstein'\\]"),
        (dict(steps=5001), "5000"),
        (dict(steps=2.5), "steps must be .*2.5"),
        (dict(generator_lr=1.0), "generator_lr must be from 1e-05 to 0.01"),
        (dict(discriminator_steps=-1), "0 to 10"),
        (dict(seed="abc"), "seed"),
    ],
)
def test_train_gan_refuses_bad_input_by_name(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**{"steps": 10, **arguments}, api_name="/train_gan")


def test_a_third_run_at_once_is_refused_as_busy_and_cancelled_runs_free_their_slots(client):
    jobs = [client.submit(steps=5000, seed=seed, api_name="/train_gan") for seed in (1, 2)]
    try:
        wait_until_streaming(jobs)
        with pytest.raises(Exception, match="Busy: 2 GAN runs are training right now"):
            client.predict(steps=10, api_name="/train_gan")
        assert client.predict(series="1 3 2 4 3 5 4 6 5 7 6 8 7 9", p=1, api_name="/fit_autoregressive")[-1]
    finally:
        for job in jobs:
            job.cancel()
    deadline = time.monotonic() + 60
    while True:  # the cancelled runs let go of their slots within a stretch of steps
        try:
            assert "Done" in client.predict(steps=10, api_name="/train_gan")[2]
            break
        except Exception as error:
            assert "Busy" in str(error) and time.monotonic() < deadline, error
            time.sleep(1)


@pytest.mark.slow
def test_the_default_run_on_the_ring_covers_at_least_six_modes(client):
    result = client.predict(api_name="/train_gan")[3]  # the target, on every default
    assert result["dataset"] == "ring" and result["steps_done"] == result["steps"]
    coverage = ring_coverage(result["samples"])
    assert coverage.modes_covered >= 6 and coverage.near_share >= 0.5, coverage


# ----------------------------------------------------------------------------- VAE


def test_train_vae_streams_both_loss_terms_and_repeats_with_the_seed(client):
    job = client.submit(beta=1.0, steps=20, seed=3, api_name="/train_vae")
    curves, latent, images, status, result = job.result(timeout=300)
    assert len(job.outputs()) >= 3 and "Done" in status
    assert plot_image(latent).width >= 400
    assert [record["step"] for record in result["history"]] == [10, 20]
    assert all({"reconstruction", "kl", "loss"} <= set(record) for record in result["history"])
    assert len(result["latent_means"]) == len(result["labels"]) == 300
    again = client.predict(beta=1.0, steps=20, seed=3, api_name="/train_vae")[4]
    assert again["history"] == result["history"] and again["latent_means"] == result["latent_means"]


@pytest.mark.parametrize(
    "arguments, message", [(dict(beta=-1), "β .* must be from 0.0 to 8.0"), (dict(steps=0), "from 20 to 4000")]
)
def test_train_vae_refuses_bad_input(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**arguments, api_name="/train_vae")


# ----------------------------------------------------------------------------- character model


def test_train_char_model_returns_the_loss_over_training_and_samples(client):
    job = client.submit(corpus=SEA, steps=20, seed=2, hidden=32, api_name="/train_char_model")
    loss_plot, *samples, history, status, result = job.result(timeout=300)
    assert len(job.outputs()) >= 3 and "Done" in status
    assert len(result["loss"]) == 20 and result["loss"][-1] < result["loss"][0]
    assert {sample["temperature"] for sample in result["samples"]} == {0.4, 0.8, 1.2}
    assert all(set(sample["text"]) <= set(SEA) for sample in result["samples"])
    assert len(samples) == 3 and all(text.startswith("The ") for text in samples)
    again = client.predict(corpus=SEA, steps=20, seed=2, hidden=32, api_name="/train_char_model")[-1]
    assert again["loss"] == result["loss"] and again["samples"] == result["samples"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(corpus="too short"), "at least 100 characters"),
        (dict(corpus="ab" * 100_001), "over the limit of 200,000"),
        (dict(cell="transformer"), "not in the list of choices: \\['lstm', 'gru'\\]"),
        (dict(hidden=8), "Units in the recurrent layer must be from 16 to 512"),
    ],
)
def test_train_char_model_refuses_bad_input(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**{"corpus": SEA, "steps": 10, **arguments}, api_name="/train_char_model")


@pytest.mark.slow
def test_compare_char_model_continues_the_prompt_with_a_model_trained_once_on_the_corpus(client):
    arguments = dict(prompt="At night the sea", corpus=SEA, max_new_tokens=20, temperature=0.8, seed=11)
    job = client.submit(**arguments, api_name="/compare_char_model")
    text = job.result(timeout=600)
    assert any("training the character model" in update for update in job.outputs()[:-1])
    assert text.startswith("At night the sea") and len(text) == len("At night the sea") + 80  # 4 a token
    assert set(text) <= set(SEA)
    again = client.submit(**arguments, api_name="/compare_char_model")
    assert again.result(timeout=120) == text
    assert not any("training" in update for update in again.outputs()[:-1])  # the trained model was kept


# ----------------------------------------------------------------------------- AR(p)


def test_fit_autoregressive_returns_coefficients_and_a_forecast_band(client):
    notes, table, series_plot, correlation_plot, result = client.predict(
        series=series_text(preset_values("AR(2)")), p=2, forecast_steps=10, api_name="/fit_autoregressive"
    )
    assert len(result["coefficients"]) == 2 and isinstance(result["intercept"], float)
    assert len(result["forecast"]) == len(result["lower"]) == len(result["upper"]) == 10
    assert all(low < value < high for low, value, high in zip(result["lower"], result["forecast"], result["upper"]))
    assert [row[0] for row in table["data"]] == ["c (intercept)", "φ1", "φ2"]
    assert "one step at a time" in notes and "simulated" in notes
    assert plot_image(series_plot).width >= 400 and plot_image(correlation_plot).width >= 400


def test_fit_autoregressive_explains_the_seed_example(client):
    notes, *_, result = client.predict(series=series_text(seed_example_series()), p=1, api_name="/fit_autoregressive")
    assert result["coefficients"][0] == pytest.approx(0.43, abs=0.03)
    assert "not 0.6" in notes and "MA(1)" in notes


def test_fit_autoregressive_reads_a_csv_column(client):
    table = "year,spots\n" + "\n".join(f"{1700 + i},{value}" for i, value in enumerate(preset_values("Sunspots")))
    by_default = client.predict(series=table, p=2, api_name="/fit_autoregressive")[-1]
    by_name = client.predict(series=table, p=2, column="spots", api_name="/fit_autoregressive")[-1]
    assert by_default["coefficients"] == by_name["coefficients"] and by_name["n"] == 309


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(series="1, 2, three, 4"), "'three' \\(line 1\\) is not a number"),
        (dict(series="1 2 3 4 5", p=3), "5 values; AR\\(3\\) needs at least 16"),
        (dict(series="7 " * 40), "constant"),
        (dict(series="1 " * 100_001), "over the limit of 100,000"),
        (dict(series="a,b\n1,2\n3,4", column="c"), "no column 'c'"),
        (dict(p=0), "p \\(how many previous values\\) must be from 1 to 30"),
        (dict(forecast_steps=201), "200"),
    ],
)
def test_fit_autoregressive_refuses_bad_input_and_keeps_serving(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**arguments, api_name="/fit_autoregressive")
    assert client.predict(p=1, api_name="/fit_autoregressive")[-1]["coefficients"]
