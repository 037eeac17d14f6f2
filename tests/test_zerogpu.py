"""ZeroGPU (pipelines/core/zerogpu.py) with a stand-in `spaces` package that records every `spaces.GPU` use:
model events run inside it with their durations, generators stay generators, and without `spaces` nothing
changes."""

from __future__ import annotations

import inspect
import json
import sys
import textwrap

import gradio as gr
import pytest

from pipelines.core import zerogpu
from tools.app_process import get_json, launched_app

# A stand-in for Hugging Face's `spaces` package: GPU(duration=...) decorates, and every decoration, entry and exit
# is recorded (in memory, and in the file FAKE_SPACES_LOG names, for a test that runs the app as a process).
FAKE_SPACES = textwrap.dedent(
    """
    import functools, inspect, json, os

    RECORD = []

    def _note(*event):
        RECORD.append(event)
        if os.environ.get("FAKE_SPACES_LOG"):
            with open(os.environ["FAKE_SPACES_LOG"], "a") as log:
                log.write(json.dumps(event) + "\\n")

    def GPU(duration=60):
        def decorate(function):
            name = function.__name__
            _note("decorate", name, duration)
            if inspect.isgeneratorfunction(function):
                @functools.wraps(function)
                def on_gpu_generator(*args, **kwargs):
                    _note("enter", name)
                    try:
                        for item in function(*args, **kwargs):
                            _note("yield", name)
                            yield item
                    finally:
                        _note("exit", name)
                return on_gpu_generator

            @functools.wraps(function)
            def on_gpu(*args, **kwargs):
                _note("enter", name)
                try:
                    return function(*args, **kwargs)
                finally:
                    _note("exit", name)
            return on_gpu
        return decorate
    """
)


def install_fake_spaces(folder) -> None:
    (folder / "spaces").mkdir(exist_ok=True)
    (folder / "spaces" / "__init__.py").write_text(FAKE_SPACES)


@pytest.fixture
def fake_spaces(tmp_path, monkeypatch):
    """`import spaces` finds the stand-in for this test only."""
    install_fake_spaces(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    import spaces

    yield spaces
    sys.modules.pop("spaces", None)


@pytest.fixture(scope="module")
def app_on_zerogpu(tmp_path_factory):
    """(the app built once with the stand-in `spaces` importable, the stand-in's record)."""
    import app  # built at import without `spaces`, as everywhere but a ZeroGPU Space

    folder = tmp_path_factory.mktemp("zerogpu")
    install_fake_spaces(folder)
    sys.path.insert(0, str(folder))
    try:
        import spaces

        yield app.build_app(), spaces.RECORD
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("spaces", None)


def wrapped_handlers(app: gr.Blocks) -> dict[str, int]:
    return {
        getattr(f.fn, "__name__", ""): f.fn.gpu_seconds for f in app.fns.values() if getattr(f.fn, "gpu_seconds", None)
    }


def test_every_model_event_of_the_app_runs_inside_spaces_gpu_with_its_groups_duration(app_on_zerogpu):
    built, record = app_on_zerogpu
    wrapped = wrapped_handlers(built)
    assert wrapped["sample_faces"] == wrapped["interpolate_faces"] == wrapped["face_arithmetic"] == 30
    assert wrapped["text_to_image"] == wrapped["generate_text"] == wrapped["compare_models"] == 90
    assert wrapped["vae_interpolate"] == wrapped["vae_sample_prior"] == wrapped["refresh_for_model"] == 45
    assert not {"ngram_generate", "random_seed", "use_sample"} & set(wrapped)  # no model: no GPU asked for
    decorated = {(name, seconds) for kind, name, seconds in (e for e in record if e[0] == "decorate")}
    assert decorated >= {("sample_faces", 30), ("text_to_image", 90), ("generate_text", 90)}


def test_wrapped_handlers_keep_what_gradio_reads_from_them(app_on_zerogpu):
    by_name = {getattr(f.fn, "__name__", ""): f.fn for f in app_on_zerogpu[0].fns.values()}
    assert inspect.isgeneratorfunction(by_name["generate_text"])  # streaming stays streaming
    assert "progress" in inspect.signature(by_name["text_to_image"]).parameters  # gr.Progress still injected
    assert getattr(by_name["sample_faces"], "is_guarded", False)  # faults' messages still inside


def test_without_spaces_nothing_is_wrapped(monkeypatch):
    import app

    assert wrapped_handlers(app.demo) == {}  # built at import, where `spaces` is not importable
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` raises ImportError
    assert zerogpu.spaces_gpu() is None
    with gr.Blocks() as blocks:
        gr.Button().click(lambda: None, None, None, concurrency_id="gan-faces")
    assert zerogpu.wrap_gpu_events(blocks) == {}


def test_a_call_and_a_stream_run_inside_the_gpu_function(fake_spaces):
    def stream_tokens(count):
        yield from (f"token {i}" for i in range(count))

    def count_words(text):
        return len(text.split())

    with gr.Blocks() as blocks:
        text, number = gr.Textbox(), gr.Number()
        gr.Button().click(stream_tokens, number, text, concurrency_id="text-lm", concurrency_limit=1)
        gr.Button().click(count_words, text, number, concurrency_id="a-new-model", concurrency_limit=1)
        gr.Button().click(count_words, text, number)  # no model group: left alone
    assert zerogpu.wrap_gpu_events(blocks) == {"stream_tokens": 90, "count_words": zerogpu.DEFAULT_GPU_SECONDS}
    stream, counter, plain = (f.fn for f in blocks.fns.values())
    fake_spaces.RECORD.clear()
    assert list(stream(2)) == ["token 0", "token 1"]
    assert counter("a b c") == 3 and plain("a b") == 2
    assert fake_spaces.RECORD == [
        ("enter", "stream_tokens"),
        ("yield", "stream_tokens"),
        ("yield", "stream_tokens"),
        ("exit", "stream_tokens"),
        ("enter", "count_words"),
        ("exit", "count_words"),
    ]
    assert zerogpu.wrap_gpu_events(blocks) == {}  # once only


@pytest.fixture
def zerogpu_app_url(fake_spaces, tmp_path):
    """`python app.py` with the stand-in `spaces` importable; its record goes to tmp_path/spaces.log."""
    repo = zerogpu.__file__.rsplit("/pipelines/", 1)[0]
    with launched_app(
        [sys.executable, "app.py"],
        tmp_path / "app.log",
        PYTHONPATH=f"{tmp_path}:{repo}",
        FAKE_SPACES_LOG=str(tmp_path / "spaces.log"),
    ) as url:
        yield url


def test_the_running_app_serves_requests_and_streams_through_spaces_gpu(zerogpu_app_url, tmp_path):
    from gradio_client import Client

    status, health = get_json(f"{zerogpu_app_url}healthz")  # loaded at start-up, before any request
    assert status == 200 and health["models"]["gan-faces"]["state"] == "ok"
    assert health["models"]["smollm2-135m"]["state"] == "ok"
    client = Client(zerogpu_app_url, verbose=False)
    gallery, _ = client.predict(seed=3, count=2, truncation=1.5, api_name="/sample_faces")
    assert len(gallery) == 2
    job = client.submit(prompt="Name a colour.", max_new_tokens=4, seed=1, mode="Chat", api_name="/generate_text")
    job.result(timeout=300)
    events = [tuple(json.loads(line)) for line in (tmp_path / "spaces.log").read_text().splitlines()]
    calls = [e for e in events if e[0] != "decorate"]
    assert ("enter", "sample_faces") in calls and ("exit", "sample_faces") in calls
    text_events = [e[0] for e in calls if e[1] == "generate_text"]
    assert text_events[0] == "enter" and text_events[-1] == "exit" and "yield" in text_events
