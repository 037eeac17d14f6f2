"""Start a local Ray head (or join `RAY_ADDRESS`), deploy the Serve application of deploy/serve_config.yaml, and
point the app's registry at it (client mode). `make run-cluster` runs this before the app starts serving.

    python -m deploy.cluster        deploy and keep serving until Ctrl-C (the Serve application alone)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pipelines.serving.options import SERVE_URL_VARIABLE

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).with_name("serve_config.yaml")
NAMESPACE = "genai-playground"


def load_config(path: Path = CONFIG) -> dict:
    return yaml.safe_load(path.read_text())


def deployment_options(application: dict) -> dict[str, dict]:
    """Each deployment's settings from the config's application entry, by deployment name."""
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in application.get("deployments", [])}


def start(
    config_path: Path = CONFIG,
    *,
    address: str | None = None,
    num_cpus: float | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    overrides: dict[str, dict] | None = None,
) -> str:
    """Deploy the application and return its URL (also set as the app's serve URL, for client mode).

    Without an address (nor RAY_ADDRESS) a local Ray head starts in this process with `num_cpus`; with one,
    this joins that cluster, whose nodes must already hold this repository (the KubeRay image does).
    `overrides` replaces settings of named deployments (tests use small ones).
    """
    import ray
    import torch
    from ray import serve

    from deploy.serve_app import TORCH_THREADS_VARIABLE, build_application

    config = load_config(config_path)
    application = config["applications"][0]
    address = address or os.environ.get("RAY_ADDRESS") or None
    threads = torch.get_num_threads()
    if not ray.is_initialized():
        local = address is None
        ray.init(
            address=address,
            num_cpus=num_cpus if local else None,
            namespace=NAMESPACE,
            include_dashboard=False,
            # Local workers import the app's packages from this checkout, and use as many torch threads as the
            # in-process app on this machine, so both give the same bytes (deploy/serve_app.py).
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), TORCH_THREADS_VARIABLE: str(threads)}}
            if local
            else None,
            log_to_driver=False,
        )
    http = dict(config.get("http_options", {}))
    http.update(host=host, port=port or http.get("port", 8000))
    serve.start(http_options=http)
    options = deployment_options(application)
    for name, changes in (overrides or {}).items():  # a None value removes that setting
        merged = {**options.get(name, {}), **changes}
        options[name] = {key: value for key, value in merged.items() if value is not None}
    serve.run(build_application(options), name=application["name"], route_prefix=application["route_prefix"])
    cluster_host = urlparse(address).hostname if address and "://" in address else None
    url = os.environ.get(SERVE_URL_VARIABLE) or f"http://{cluster_host or '127.0.0.1'}:{http['port']}"
    os.environ[SERVE_URL_VARIABLE] = url
    return url


def stop() -> None:
    """Remove the application and shut down the Ray this process started (or leave the joined cluster)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="a Serve config (default: deploy/serve_config.yaml)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="where Serve listens (0.0.0.0 for other machines)")
    parser.add_argument("--port", type=int, default=None, help="Serve's HTTP port (default: the config's)")
    args = parser.parse_args()
    url = start(args.config, host=args.host, port=args.port)
    print(f"Serving the models at {url} (health: {url}/healthz). Ctrl-C stops.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


if __name__ == "__main__":
    main()
