"""The public API as a script sees it: every named endpoint callable with only what it must be told."""

from __future__ import annotations

import json
import re

from tools.app_process import REPO_ROOT

# What an API parameter that is a file looks like in gradio_client's description of it.
FILE_TYPES = ("filepath", "FileData")


def is_file_parameter(parameter: dict) -> bool:
    described = json.dumps(parameter["type"]) + json.dumps(parameter["python_type"])
    return any(name in described for name in FILE_TYPES)


def test_every_parameter_of_every_named_endpoint_has_a_default_except_files(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/text_to_image", "/sample_faces", "/vae_interpolate", "/generate_text"} <= set(endpoints)
    missing = [
        f"{name}({parameter['parameter_name']})"
        for name, endpoint in endpoints.items()
        for parameter in endpoint["parameters"]
        if not parameter["parameter_has_default"] and not is_file_parameter(parameter)
    ]
    assert missing == []


def test_the_api_takes_the_models_ids_and_the_names_earlier_versions_used(client):
    new = client.predict(model="vae-digits", seed=3, count=1, api_name="/vae_sample_prior")
    old = client.predict(model="digits", seed=3, count=1, api_name="/vae_sample_prior")
    assert len(new) == len(old) == 1


def test_the_readmes_api_example_runs_as_written(app_url):
    """The first ```python block of the README, run against the live app."""
    readme = (REPO_ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert 'Client("http://127.0.0.1:7860/")' in example
    namespace: dict = {}
    exec(example.replace("http://127.0.0.1:7860/", app_url), namespace)  # noqa: S102 (our own README)
    images, *_ = namespace["images"], namespace.get("strip")
    assert len(images) == 1
