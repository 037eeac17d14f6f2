"""Faults: a model with corrupt weights, out of memory, an image past its time budget, a full queue.

Most tests talk to a second `python app.py` started here with faults built in: the GAN reads a corrupt copy
of its weights file, the queue holds 1 waiting request and an image may take 0.2 s. The out-of-memory tests
run the real handlers in-process with a pipeline method patched to raise once.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
import time

import gradio as gr
import pytest
import torch

from pipelines.core.weights import GAN_FACES_PACK, pack_file
from tools.app_process import get_json, launched_app

IMAGE_SECONDS = 0.2
QUEUE_SIZE = 1

# `python -c` this, with the corrupt file as argument: app.py, but the GAN finds the corrupt file as its weights.
FAULTY_APP = textwrap.dedent(
    """
    import runpy, sys
    from pathlib import Path
    import pipelines.gan.faces
    corrupt = Path(sys.argv[1])
    pipelines.gan.faces.pack_file = lambda pack, relative_path: corrupt
    sys.argv = ["app.py"]
    runpy.run_path("app.py", run_name="__main__")
    """
)


@pytest.fixture(scope="module")
def faulty_app_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faulty")
    weights = pack_file(GAN_FACES_PACK, "weights.tar").read_bytes()
    corrupt = folder / "weights.tar"
    corrupt.write_bytes(weights[: len(weights) // 3])  # a download cut short
    command = [sys.executable, "-c", FAULTY_APP, str(corrupt)]
    settings = dict(GENAI_PLAYGROUND_QUEUE_SIZE=str(QUEUE_SIZE), GENAI_PLAYGROUND_IMAGE_SECONDS=str(IMAGE_SECONDS))
    with launched_app(command, folder / "app.log", **settings) as url:
        yield url


@pytest.fixture(scope="module")
def faulty_client(faulty_app_url):
    from gradio_client import Client

    return Client(faulty_app_url, verbose=False)


def one_quick_image(client):
    """One step never meets the time budget (the check runs between steps)."""
    return client.predict("a red circle", "", 1, 0.0, 3, "DDIM", 1, api_name="/text_to_image")


def test_corrupt_weights_switch_off_that_model_by_name_and_the_other_tabs_work(faulty_client):
    with pytest.raises(Exception, match=r"GAN faces \(DCGAN\) is switched off: its weights could not be loaded"):
        faulty_client.predict(42, 4, 1.5, api_name="/sample_faces")
    with pytest.raises(Exception, match=r"GAN faces \(DCGAN\) is switched off"):  # every GAN event says it
        faulty_client.predict(1, 2, 4, 1.5, api_name="/interpolate_faces")

    text, _, _ = faulty_client.predict(
        "the sea is blue and the sky is blue", 2, "the", 5, 0, api_name="/ngram_generate"
    )
    assert text.split()
    assert len(faulty_client.predict("digits", 0, 2, api_name="/vae_sample_prior")) == 2
    images, _, _, _ = one_quick_image(faulty_client)
    assert len(images) == 1


def test_healthz_answers_503_naming_the_model_that_failed_to_load(faulty_app_url, faulty_client):
    with pytest.raises(Exception, match="switched off"):
        faulty_client.predict(7, 1, 1.0, api_name="/sample_faces")
    deadline = time.monotonic() + 60  # an earlier answer may be cached for a few seconds
    while True:
        status, answer = get_json(faulty_app_url + "healthz")
        if status == 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == 503
    assert answer["status"] == "unhealthy"
    assert answer["failing"] == ["gan-faces"]
    assert "switched off" in answer["models"]["gan-faces"]["detail"]
    assert all(
        model["state"] in ("ok", "not loaded") for name, model in answer["models"].items() if name != "gan-faces"
    )


def test_an_image_past_its_time_budget_stops_with_a_message_naming_the_budget(faulty_client):
    with pytest.raises(
        Exception, match=rf"Stopped after \d+ of 100 steps: one generation may take at most {IMAGE_SECONDS:g} s"
    ):
        faulty_client.predict("a blue square", "", 100, 4.0, 1, "DDPM", 4, api_name="/text_to_image")
    images, _, _, _ = one_quick_image(faulty_client)  # the model is free again
    assert len(images) == 1


def test_a_full_queue_answers_busy_and_the_app_recovers(faulty_client):
    """Text generations share a batch of MAX_BATCH; beyond it one waits (the queue's size), the rest are refused."""
    from pipelines.core.device import select_device
    from pipelines.text.options import MAX_BATCH

    running_at_once = MAX_BATCH.get(select_device().device.type, MAX_BATCH["cuda"])
    prompt = "Count from one to twenty in words."
    jobs = [
        faulty_client.submit(prompt, 48, 0.0, api_name="/generate_text")
        for _ in range(running_at_once + QUEUE_SIZE + 3)
    ]
    outcomes = []
    for job in jobs:
        try:
            job.result(timeout=600)
            outcomes.append("served")
        except Exception as error:
            outcomes.append(str(error))
    assert any("Queue is full! Please try again." in outcome for outcome in outcomes), outcomes
    assert "served" in outcomes
    assert set(outcomes) <= {"served", "Queue is full! Please try again."}
    text, _, _ = faulty_client.predict("the sea is calm", 2, "the", 3, 0, api_name="/ngram_generate")
    assert text.split()


# ---------------------------------------------------------------------------------------------
# Out of memory, in-process


def event_handler(api_name: str):
    """The function the app really runs for an event (wrapped by demos.faults), from the built Blocks."""
    import app

    return next(function.fn for function in app.demo.fns.values() if function.api_name == api_name)


def test_out_of_memory_frees_memory_says_what_to_lower_and_the_next_request_works(monkeypatch):
    from pipelines.gan.faces import FacePipeline

    real_sample = FacePipeline.sample
    raised, emptied = [], []

    def sample_out_of_memory_once(self, *args, **kwargs):
        if not raised:
            raised.append(True)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(FacePipeline, "sample", sample_out_of_memory_once)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    sample_faces = event_handler("sample_faces")
    with pytest.raises(gr.Error, match="ran out of memory.*Lower the size or the number of images, faces"):
        sample_faces(42, 4, 1.5)
    assert emptied == [True]
    gallery, grid_path = sample_faces(42, 4, 1.5)
    assert len(gallery) == 4


def test_out_of_memory_in_the_middle_of_a_stream_is_reported_too(monkeypatch):
    from demos import faults

    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))

    def stream_tokens():
        yield "Once"
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    guarded = faults.guarded(stream_tokens)
    assert inspect.isgeneratorfunction(guarded)  # Gradio streams it like the original
    tokens = guarded()
    assert next(tokens) == "Once"
    with pytest.raises(gr.Error, match="ran out of memory"):
        next(tokens)
    assert emptied == [True]


def test_bugs_are_not_disguised_as_user_errors():
    from demos import faults

    def broken_handler(value):
        return 1 / value

    with pytest.raises(ZeroDivisionError):
        faults.guarded(broken_handler)(0)
