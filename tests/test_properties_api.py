"""Property-based tests against every API endpoint of the running app: random and extreme values in, and
only a result or a clear refusal naming the limit out; never a hang, a traceback or a dead server.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.test_properties import anything, assert_clear_refusal

# ---------------------------------------------------------------------------------------------
# Every API endpoint of the running app

# Valid values that keep a call fast; every other parameter starts at its default.
FAST_VALUES = {
    "/text_to_image": dict(steps=2),
    "/sample_faces": dict(count=2),
    "/interpolate_faces": dict(frames=3),
    "/vae_sample_prior": dict(count=2),
    "/vae_interpolate": dict(frames=2),
    "/generate_text": dict(max_new_tokens=2),
    "/compare_text": dict(max_new_tokens=2, corpus="the cat sat on the mat. the dog sat on the cat."),
    "/ngram_generate": dict(max_words=5),
}
CALL_TIMEOUT = 600  # seconds; a call still running then is a hang (generous: CI shares its CPU)
GENERIC_CRASH = "has not enabled verbose error reporting"  # what Gradio says when a handler crashed


def is_json(value) -> bool:
    """NaN, infinities and the like cannot travel in JSON: gradio_client refuses them before sending, and its
    HTTP library cannot encode lone surrogates (raw HTTP can send them escaped: tested below)."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return False
    return True


sendable = anything.filter(is_json)


def file_values(png: str):
    """What an API caller could put where a file goes: a real upload, nothing, or a file that is not an image
    (gradio_client uploads the file a path names). A bare string is left out: Gradio's own file-data check
    refuses it before any handler runs, with its generic error (see tests/test_security.py for server paths)."""
    from gradio_client import handle_file

    return st.one_of(
        st.just(handle_file(png)),
        st.none(),
        st.just({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}),
    )


@pytest.fixture(scope="module")
def api(client, tmp_path_factory) -> dict:
    """Each endpoint's parameters and fast valid arguments, and a picture to upload."""
    from gradio_client import handle_file

    png = tmp_path_factory.mktemp("api") / "face.png"
    Image.new("RGB", (64, 64), (180, 140, 120)).save(png)
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    valid = {}
    for name, info in endpoints.items():
        arguments = {}
        for parameter in info["parameters"]:
            key = parameter["parameter_name"]
            arguments[key] = (
                handle_file(str(png))
                if parameter["python_type"]["type"] == "filepath"
                else (parameter.get("parameter_default") if parameter.get("parameter_has_default") else "")
            )
        valid[name] = arguments | FAST_VALUES.get(name, {})
    return {
        "valid": valid,
        "png": str(png),
        "types": {
            name: {p["parameter_name"]: p["python_type"]["type"] for p in info["parameters"]}
            for name, info in endpoints.items()
        },
    }


def test_every_endpoint_is_covered(api):
    assert {"/text_to_image", "/sample_faces", "/vae_interpolate", "/generate_text", "/ngram_generate"} <= set(
        api["valid"]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "api_name",
    [
        "/text_to_image",
        "/sample_faces",
        "/interpolate_faces",
        "/face_arithmetic",
        "/vae_interpolate",
        "/vae_latent_map",
        "/vae_attribute_vector",
        "/vae_sample_prior",
        "/generate_text",
        "/ngram_generate",
        "/compare_text",
    ],
)
def test_an_endpoint_answers_random_inputs_with_a_result_or_a_clear_refusal(client, api, api_name):
    parameters = api["types"][api_name]

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(data=st.data())
    def one_call(data):
        arguments = dict(api["valid"][api_name])
        for name in data.draw(st.lists(st.sampled_from(sorted(parameters)), min_size=1, max_size=2, unique=True)):
            arguments[name] = data.draw(file_values(api["png"]) if parameters[name] == "filepath" else sendable)
        job = client.submit(**arguments, api_name=api_name)
        try:
            job.result(timeout=CALL_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"{api_name} did not answer within {CALL_TIMEOUT} s for {arguments!r:.300}")
        except Exception as error:  # gradio_client raises AppError / ValueError with the server's message
            assert GENERIC_CRASH not in str(error), f"{api_name} crashed on {arguments!r:.300}"
            assert_clear_refusal(error)

    one_call()


def raw_call(app_url: str, api_name: str, data: list) -> str:
    """POST an API call as JSON with escapes (as any HTTP client may) and return the event stream's text."""
    body = json.dumps({"data": data}).encode()  # ensure_ascii: a lone surrogate travels as "\\ud800"
    request = urllib.request.Request(f"{app_url}gradio_api/call{api_name}", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{app_url}gradio_api/call{api_name}/{event_id}", timeout=CALL_TIMEOUT) as response:
        return response.read().decode()


@pytest.mark.parametrize(
    "api_name, field, message",
    [
        ("/text_to_image", "prompt", "Prompt has a character that is not valid text"),
        ("/generate_text", "prompt", "The prompt has a character that is not valid text"),
        ("/ngram_generate", "corpus", "The corpus has a character that is not valid text"),
        ("/compare_text", "prompt", "The prompt has a character that is not valid text"),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_by_name(app_url, api, api_name, field, message):
    # Tokenizers and UTF-8 encoders fail on it; the handler used to crash with Gradio's bare "Error".
    arguments = dict(api["valid"][api_name]) | {field: "a red \ud800 circle"}
    stream = raw_call(app_url, api_name, list(arguments.values()))
    assert "event: error" in stream and message in stream, stream[-500:]


def test_the_server_still_serves_after_the_random_inputs(client):
    gallery, _ = client.predict(seed=3, count=2, truncation=1.0, api_name="/sample_faces")
    assert len(gallery) == 2
