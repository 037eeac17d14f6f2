"""Security: no file outside the app's outputs leaks through any route, Hub and weights policy, no secrets.

The file-route tests talk raw HTTP to a real `python app.py` (the `app_url` fixture) so that `..`, `%2e`,
`%252F` and backslashes reach the server exactly as an attacker would send them.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import subprocess
import urllib.parse
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.core import registry, weights
from pipelines.core.registry import ModelRegistry, ModelSpec
from pipelines.core.weights import ModelSourceError

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON_SOURCES = sorted(
    path
    for folder in ("app.py", "demos", "pipelines", "training", "benchmarks", "tests", "tools")
    for path in ([REPO_ROOT / folder] if folder.endswith(".py") else (REPO_ROOT / folder).rglob("*.py"))
)


# ---------------------------------------------------------------------------------------------
# Raw HTTP against the running app


def http_request(
    app_url: str, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    """Send `path` verbatim (http.client does not normalise '..' or percent-escapes) and read the answer."""
    parts = urllib.parse.urlsplit(app_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def call_endpoint(app_url: str, api_name: str, data: list) -> tuple[str, str]:
    """Gradio's two-step HTTP API: POST the inputs, then read the event stream; returns (event, data)."""
    status, body = http_request(
        app_url,
        f"/gradio_api/call/{api_name}",
        "POST",
        json.dumps({"data": data}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body[:500]
    event_id = json.loads(body)["event_id"]
    _, stream = http_request(app_url, f"/gradio_api/call/{api_name}/{event_id}")
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream.decode(), flags=re.MULTILINE)
    return events[-1]


def upload(app_url: str, filename: str, content: bytes) -> list[str]:
    """POST one file to Gradio's upload route under any file name; returns the server paths it answers."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = http_request(
        app_url, "/gradio_api/upload", "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200, answer[:500]
    return json.loads(answer)


@pytest.fixture(scope="module")
def generated_output(app_url) -> dict:
    """One real output of the app (the GAN's PNG sheet) as the browser sees it: its URL and server path."""
    from gradio_client import Client

    raw_client = Client(app_url, verbose=False, download_files=False)
    _, sheet = raw_client.predict(seed=1, count=1, truncation=1.0, api_name="/sample_faces")
    return {"url_path": urllib.parse.urlsplit(sheet["url"]).path, "path": Path(sheet["path"])}


def secret_files() -> dict[str, Path]:
    """Files that must never be served, each readable by the server process."""
    candidates = {
        "system file": Path("/etc/passwd"),
        "app source": REPO_ROOT / "app.py",
        "pipeline source": REPO_ROOT / "pipelines" / "weights.py",
        "project weights": next((REPO_ROOT / "weights").rglob("*.safetensors")),
        "model cache": next(weights.CACHE_DIR.rglob("*.json"), None),
    }
    return {name: path for name, path in candidates.items() if path is not None and path.is_file()}


def attack_paths(target: Path, upload_dir: Path) -> list[str]:
    """Every spelling of `target` worth trying on each route: absolute, relative, `..`, encoded, backslashes."""
    absolute = str(target)
    relative_to_cwd = os.path.relpath(target, REPO_ROOT)  # the server runs in the repo root
    climb = "../" * 12
    spellings = [
        absolute,
        relative_to_cwd,
        f"{upload_dir}/{climb}{absolute.lstrip('/')}",
        climb + absolute.lstrip("/"),
        quote(absolute, safe=""),  # %2Fetc%2Fpasswd
        quote(quote(absolute, safe=""), safe=""),  # %252Fetc%252Fpasswd
        "..%2f" * 12 + quote(absolute.lstrip("/"), safe=""),
        "%2e%2e/" * 12 + absolute.lstrip("/"),
        "%252e%252e%252f" * 12 + absolute.lstrip("/"),
        "..\\" * 12 + absolute.lstrip("/").replace("/", "\\"),
        "..%5c" * 12 + absolute.lstrip("/").replace("/", "%5c"),
        f"{upload_dir}/..%2f..%2f..%2f..%2f..%2f..%2f{absolute.lstrip('/')}",
        absolute + "%00.png",
    ]
    routes = [
        "/gradio_api/file=",
        "/gradio_api/file/",
        "/file=",
        "/static/",
        "/assets/",
        "/svelte/",
        "/gradio_api/proxy=",
        "/",
    ]
    paths = [route + spelling for route in routes for spelling in spellings]
    paths += [
        "/static//" + absolute.lstrip("/"),
        "/gradio_api/file=file://" + absolute,
        "/gradio_api/custom_component/x/client/" + climb + absolute.lstrip("/") + "/x",
    ]
    return paths


def test_a_generated_output_is_downloadable(app_url, generated_output):
    """The positive case, so the refusals below are refusals of paths, not of the route itself."""
    status, body = http_request(app_url, generated_output["url_path"])
    assert status == 200 and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", sorted(secret_files()))
def test_no_file_route_serves_a_file_outside_the_outputs(app_url, generated_output, name):
    target = secret_files()[name]
    secret = target.read_bytes()[:200]
    upload_dir = generated_output["path"].parent.parent  # <upload dir>/<hash>/<file>
    served = []
    for path in attack_paths(target, upload_dir):
        status, body = http_request(app_url, path)
        if secret in body:
            served.append((path, status))
    assert not served, f"{name} ({target}) was served through: {served}"


def test_a_symlink_planted_in_the_output_folder_is_not_followed(app_url, generated_output):
    """Even where someone can write a link into Gradio's own folder, the route refuses to follow it out."""
    folder = generated_output["path"].parent.parent / f"security-test-{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        for link, target in (("leak.txt", Path("/etc/passwd")), ("leak.png", REPO_ROOT / "app.py")):
            (folder / link).symlink_to(target)
            secret = target.read_bytes()[:100]
            status, body = http_request(app_url, f"/gradio_api/file={folder / link}")
            assert status in (403, 404) and secret not in body, (link, status)
    finally:
        for link in folder.iterdir():
            link.unlink()
        folder.rmdir()


def test_an_upload_cannot_choose_where_it_is_written(app_url, generated_output):
    escape_name = f"genai-playground-escape-{uuid.uuid4().hex}.txt"
    upload_dir = generated_output["path"].parent.parent.resolve()
    for filename in (f"../../../../../../tmp/{escape_name}", f"/tmp/{escape_name}", f"..\\..\\{escape_name}"):
        paths = upload(app_url, filename, b"not an image")
        assert all(Path(p).resolve().is_relative_to(upload_dir) for p in paths), paths
    assert not Path("/tmp", escape_name).exists() and not (upload_dir.parent / escape_name).exists()


def test_an_input_that_names_a_server_file_is_refused(app_url, tmp_path):
    """vae_interpolate takes its images unprocessed (preprocess=False): a path outside the uploads must fail."""
    outside = tmp_path / "private.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(outside)
    as_file_data = {"path": str(outside), "meta": {"_type": "gradio.FileData"}}
    event, data = call_endpoint(app_url, "vae_interpolate", [as_file_data, as_file_data, 2, "faces", "lerp"])
    assert event == "error", data[:300]
    # The same picture sent the proper way (uploaded first) is accepted: the refusal is about the path.
    uploaded = upload(app_url, "private.png", outside.read_bytes())[0]
    as_upload = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    event, data = call_endpoint(app_url, "vae_interpolate", [as_upload, as_upload, 2, "faces", "lerp"])
    assert event == "complete", data[:300]


def test_the_proxy_route_refuses_loopback_and_private_addresses(app_url):
    for target in (
        "http://127.0.0.1:22/",
        app_url + "config",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
    ):
        status, _ = http_request(app_url, "/gradio_api/proxy=" + target)
        assert status in (400, 403, 404), (target, status)


# ---------------------------------------------------------------------------------------------
# Hub and weights policy


@pytest.mark.parametrize(
    "source", ["someone/unknown-model", "../../no-such-folder", "/no/such/folder", "https://evil.example/m"]
)
def test_sources_that_are_neither_a_folder_nor_allow_listed_are_refused_before_any_download(source, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(ModelSourceError, match="not on this app's list of allowed models"):
        weights.resolve_model_folder(source)


def test_the_host_allow_list_adds_ids_and_ignores_blanks(monkeypatch):
    monkeypatch.setenv("GENAI_PLAYGROUND_ALLOWED_MODELS", " org/extra , ,org/extra,")
    allowed = weights.hub_allow_list()
    assert allowed.count("org/extra") == 1 and "" not in allowed
    assert set(weights.DEFAULT_HUB_ALLOW_LIST) <= set(allowed)
    monkeypatch.delenv("GENAI_PLAYGROUND_ALLOWED_MODELS")
    assert "org/extra" not in weights.hub_allow_list()


@pytest.mark.parametrize(
    "api_name, arguments",
    [
        ("/generate_text", dict(prompt="hi", max_new_tokens=2)),
        ("/vae_latent_map", dict(x=0.0, y=0.0)),
        ("/vae_sample_prior", dict(seed=1, count=1)),
    ],
)
def test_the_api_refuses_hub_ids_that_are_not_allow_listed(client, api_name, arguments):
    with pytest.raises(Exception, match="not in the list of choices|Unknown model|allow"):
        client.predict(**arguments, model="someone/unknown-model", api_name=api_name)


def python_calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call `<anything>.name(...)` or `name(...)` in the project's Python files."""
    found = []
    for path in PYTHON_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if called == name:
                    found.append((path, node))
    return found


def keyword_value(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else "not a constant"
    return None


def test_no_code_trusts_remote_code():
    """Hub repos may ship Python; `trust_remote_code=True` would run it on the server."""
    offenders = []
    for path in PYTHON_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.value.lineno}")
    assert not offenders, f"trust_remote_code set (other than False) at {offenders}"


def test_every_torch_load_is_weights_only():
    """A pickled checkpoint can run code when loaded; weights_only=True allows tensors and plain data only."""
    loads = [
        (path, call)
        for path, call in python_calls("load")
        if isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", None) == "torch"
    ]
    assert loads, "expected at least the DCGAN pack's torch.load"
    unsafe = [
        f"{p.relative_to(REPO_ROOT)}:{c.lineno}" for p, c in loads if keyword_value(c, "weights_only") is not True
    ]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
    pickles = [
        f"{p.relative_to(REPO_ROOT)}:{c.lineno}"
        for p, c in python_calls("load")
        if keyword_value(c, "allow_pickle") not in (None, False)
    ]
    assert not pickles, f"numpy pickle loading at {pickles}"


def test_weights_trained_here_are_safetensors_only():
    files = [p for p in (REPO_ROOT / "weights").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    pickled = [str(p.relative_to(REPO_ROOT)) for p in files if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    assert not pickled


# ---------------------------------------------------------------------------------------------
# Secrets

SECRET_PATTERNS = {
    "Hugging Face token": r"\bhf_[A-Za-z0-9]{30,}\b",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    "OpenAI-style key": r"\bsk-[A-Za-z0-9_-]{32,}\b",
    "AWS access key": r"\bAKIA[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
}


def test_the_secret_patterns_catch_a_token():
    token = "hf_" + "Ab3" * 12
    assert re.search(SECRET_PATTERNS["Hugging Face token"], f'HF_TOKEN = "{token}"')
    assert not re.search(SECRET_PATTERNS["Hugging Face token"], "hf_hub_download")


def test_no_secrets_in_tracked_files_or_history():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    leaks = []
    for relative in tracked.decode().split("\0"):
        path = REPO_ROOT / relative
        if not relative or not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        leaks += [f"{relative}: {kind}" for kind, pattern in SECRET_PATTERNS.items() if re.search(pattern, text)]
    assert not leaks, leaks
    combined = "|".join(f"({p})" for p in SECRET_PATTERNS.values()).replace(r"\b", "")
    history = subprocess.run(
        ["git", "log", "--all", "--format=%h", "-G", combined], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert history.returncode == 0, history.stderr
    assert not history.stdout.strip(), f"commits that added or removed a secret: {history.stdout.split()}"


# ---------------------------------------------------------------------------------------------
# Safety checker of Hub Stable Diffusion pipelines


@pytest.fixture(scope="module")
def tiny_pipeline_with_safety_checker(tmp_path_factory) -> Path:
    """The tiny offline StableDiffusionPipeline of the text-to-image tests, saved with a (random) safety checker."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    from tests.test_pipelines_text_to_image import tiny_stable_diffusion

    folder = tmp_path_factory.mktemp("sd-with-checker")
    layers = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config=dict(**layers, vocab_size=99),
            vision_config=dict(**layers, image_size=32, patch_size=4),
            projection_dim=32,
        )
    )
    pipeline = StableDiffusionPipeline.from_pretrained(
        tiny_stable_diffusion(folder),
        safety_checker=checker,
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32),
        requires_safety_checker=True,
    )
    pipeline.save_pretrained(folder / "with-checker")
    return folder / "with-checker"


def test_a_hub_pipeline_keeps_its_safety_checker_by_default(tiny_pipeline_with_safety_checker, monkeypatch):
    from pipelines.diffusion import text_to_image as t2i

    monkeypatch.delenv(t2i.SAFETY_CHECKER_SWITCH, raising=False)
    pipeline = t2i.load_text_to_image(str(tiny_pipeline_with_safety_checker))
    assert type(pipeline.safety_checker).__name__ == "StableDiffusionSafetyChecker"
    result = t2i.generate(pipeline, "a red circle", steps=2, seed=1)  # the checker runs on every image
    assert len(result.images) == 1 and result.images[0].size == (32, 32)


@pytest.mark.parametrize("concept_threshold, withheld", [(-2.0, [1, 2]), (2.0, [])])
def test_images_the_safety_checker_blacks_out_are_reported(
    tiny_pipeline_with_safety_checker, monkeypatch, concept_threshold, withheld
):
    from pipelines.diffusion import text_to_image as t2i

    monkeypatch.delenv(t2i.SAFETY_CHECKER_SWITCH, raising=False)
    pipeline = t2i.load_text_to_image(str(tiny_pipeline_with_safety_checker))
    # The checker flags an image whose similarity to a concept exceeds that concept's threshold (cosine >= -1).
    with torch.no_grad():
        pipeline.safety_checker.concept_embeds_weights.fill_(concept_threshold)
    result = t2i.generate(pipeline, "a red circle", steps=2, seed=1, count=2)
    assert result.withheld == withheld
    for index, image in enumerate(result.images, start=1):
        assert (np.asarray(image).max() == 0) == (index in withheld)


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("0", False), ("", False)])
def test_the_documented_switch_removes_the_safety_checker(
    tiny_pipeline_with_safety_checker, monkeypatch, value, disabled
):
    from pipelines.diffusion import text_to_image as t2i

    monkeypatch.setenv("GENAI_PLAYGROUND_DISABLE_SAFETY_CHECKER", value)
    pipeline = t2i.load_text_to_image(str(tiny_pipeline_with_safety_checker))
    assert (pipeline.safety_checker is None) == disabled
    if disabled:
        assert len(t2i.generate(pipeline, "a red circle", steps=2, seed=1).images) == 1


def test_the_tab_says_which_images_the_safety_checker_withheld(tiny_pipeline_with_safety_checker, monkeypatch):
    from demos import text_to_image as tab
    from pipelines.diffusion import text_to_image as t2i

    monkeypatch.delenv(t2i.SAFETY_CHECKER_SWITCH, raising=False)
    pipeline = t2i.load_text_to_image(str(tiny_pipeline_with_safety_checker))
    with torch.no_grad():
        pipeline.safety_checker.concept_embeds_weights.fill_(-2.0)  # flags every image
    hub_id = "example/flagging-pipeline"
    flagging = ModelSpec(hub_id, "A flagging pipeline", "diffusion", lambda: pipeline, builtin=False)
    monkeypatch.setattr(registry, "MODELS", ModelRegistry([flagging]))
    no_progress = lambda *args, **kwargs: None  # noqa: E731
    *_, note = tab.text_to_image("a red circle", steps=2, seed=1, count=2, model=hub_id, progress=no_progress)
    assert "Images #1, #2 withheld" in note and "safety checker" in note
