"""Proxies for the Ray Serve deployments (deploy/serve_app.py), one per model family, with the in-process
pipelines' interfaces: the tabs call them exactly as they call the pipelines.

Each proxy subclasses its family's pipeline and replaces only the network passes with HTTP calls, so
everything around them (checking arguments, drawing latents, slerp, PCA maps, attribute vectors) is the same
code, and the same inputs and seed give the same pixels as in-process. `registry.load(id)` returns them in
client mode.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

import torch
from PIL import Image

from pipelines.core.device import DeviceChoice
from pipelines.core.limits import SEED
from pipelines.gan.faces import FacePipeline
from pipelines.gan.options import FACES, TRUNCATION
from pipelines.serving import wire
from pipelines.serving.options import serve_url
from pipelines.serving.transport import ServeClient, ServingError
from pipelines.vae.model import ConvVAEConfig
from pipelines.vae.pipeline import HubVAEPipeline, TrainedVAEPipeline, VAEPipeline

# Tensors made in this process (latents, pixels) stay on its CPU in float32; the deployment moves them to its
# own device and precision, exactly as the in-process pipeline does.
CLIENT_DEVICE = DeviceChoice(torch.device("cpu"), torch.float32)

MAX_ROWS = 4 * FACES.high  # latents in one request: the deployments' largest batched pass (deploy/serve_app.py)

SERVICES = {
    "gan": "The GAN deployment",
    "vae": "The VAE deployment",
    "diffusion": "The text-to-image deployment",
    "text": "The text deployment",
}


def _query(model_id: str) -> str:
    return urllib.parse.urlencode({"model": model_id})


class RemoteFacePipeline(FacePipeline):
    """The DCGAN on the GAN deployment: `sample` and `generate` run there (batched with other callers'
    requests by `@serve.batch`); `interpolate` and `attribute_edit` draw their latents here, as in-process."""

    def __init__(self, client: ServeClient):
        self.client = client
        self.device_choice = CLIENT_DEVICE

    def generate(self, latents: torch.Tensor) -> list[Image.Image]:
        images = []
        for chunk in torch.split(latents.float(), MAX_ROWS):  # the deployment's largest pass
            images += wire.unpack_images(self.client.post("/gan/generate", content=wire.pack({"latents": chunk})))[0]
        return images

    def sample(
        self, seed: int, count: int = FACES.default, truncation: float = TRUNCATION.default
    ) -> list[Image.Image]:
        arguments = dict(
            seed=SEED.check(seed, "seed"),
            count=FACES.check(count, "count"),
            truncation=TRUNCATION.check(truncation, "truncation"),
        )
        return wire.unpack_images(self.client.post("/gan/sample", json_body=arguments))[0]

    def probe(self) -> None:
        self.client.get_json("/gan/healthz")


class ServedVAE:
    """The network passes of a VAE pipeline, run on the VAE deployment: the batching runners of `VAEPipeline`
    call these two methods, so concurrent callers here still share one request."""

    client: ServeClient
    model_id: str

    def _served(self, method: str, tensor: torch.Tensor) -> torch.Tensor:
        body = self.client.post(f"/vae/{method}?{_query(self.model_id)}", content=wire.pack({"input": tensor.float()}))
        return wire.unpack(body)[0]["output"]

    def _run_encoder(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._served("encode", pixels)

    def _run_decoder(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._served("decode", chunk) for chunk in torch.split(latents, MAX_ROWS)])

    def probe(self) -> None:
        self.client.get_json(f"/vae/healthz?{_query(self.model_id)}")


class RemoteTrainedVAE(ServedVAE, TrainedVAEPipeline):
    """A VAE trained here, served by the deployment; its examples, latent map and prior samples are made here
    from served passes (the faces' examples come from the served GAN)."""

    def __init__(self, client: ServeClient, model_id: str, settings: dict):
        VAEPipeline.__init__(self)
        self.client, self.model_id = client, model_id
        self.settings = settings
        self.config = ConvVAEConfig(**{**settings["model"], "features": tuple(settings["model"]["features"])})
        self.name = settings["data"]
        self.image_size = self.config.image_size
        self.device_choice = CLIENT_DEVICE


class RemoteHubVAE(ServedVAE, HubVAEPipeline):
    """A diffusers AutoencoderKL (an allow-listed Hub id), loaded and run by the deployment."""

    def __init__(self, client: ServeClient, model_id: str, image_size: int):
        VAEPipeline.__init__(self)
        self.client, self.model_id = client, model_id
        self.name = model_id
        self.image_size = image_size
        self.device_choice = CLIENT_DEVICE


class RemoteTextToImage:
    """A text-to-image pipeline on its deployment. `pipelines.diffusion.text_to_image.generate` hands a call
    to `generate` here; the deployment runs that same function and streams each step back for progress."""

    runs_remotely = True

    def __init__(self, client: ServeClient, model_id: str):
        self.client, self.model_id = client, model_id

    def generate(
        self,
        prompt: str,
        negative_prompt: str,
        steps: int,
        guidance_scale: float,
        seed: int,
        scheduler_name: str,
        count: int,
        on_step: Callable[[int, int], None] | None,
        max_seconds: float | None,
    ):
        from pipelines.diffusion.text_to_image import Generation

        arguments = dict(
            model=self.model_id,
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
            scheduler_name=scheduler_name,
            count=count,
            max_seconds=max_seconds,
        )
        for event in self.client.stream_events("/text-to-image/generate", arguments):
            if "step" in event and on_step is not None:
                on_step(event["step"], event["total"])
            if "result" in event:
                result = event["result"]
                images = wire.unpack_images(wire.from_text(result["images"]))[0]
                strip = wire.unpack_images(wire.from_text(result["strip"]))[0]
                return Generation(images, result["steps_shown"], strip, result["strip_label"], result["withheld"])
        raise ServingError(f"{self.client.service} ended its answer without a result; try again.")

    def probe(self) -> None:
        self.client.get_json(f"/text-to-image/healthz?{_query(self.model_id)}")


def load_remote(model_id: str, family: str, url: str | None = None):
    """The proxy for one model in client mode (what `registry.load` returns there); `url`: the Serve
    application's (default: the configured one)."""
    url = (url or serve_url() or "").rstrip("/") or None
    if url is None:
        raise ServingError("No model server is configured (GENAI_PLAYGROUND_SERVE_URL is not set).")
    client = ServeClient(url, SERVICES[family])
    if family == "gan":
        return RemoteFacePipeline(client)
    if family == "vae":
        description = client.get_json(f"/vae/describe?{_query(model_id)}")
        if description["kind"] == "trained":
            return RemoteTrainedVAE(client, model_id, description["settings"])
        return RemoteHubVAE(client, model_id, description["image_size"])
    if family == "diffusion":
        return RemoteTextToImage(client, model_id)
    if family == "text":
        from pipelines.core.registry import BUILTIN_MODELS
        from pipelines.serving.openai_text import OpenAITextGenerator

        names = {spec.id: spec.name for spec in BUILTIN_MODELS}  # what the in-process app calls the model
        return OpenAITextGenerator(f"{url}/v1", model_id, names.get(model_id, model_id))
    raise ValueError(f"no deployment serves the {family!r} family")


def probe_remote(proxy) -> None:
    """For /healthz: the deployment answers for this model (its replica ran a tiny inference)."""
    proxy.probe()
