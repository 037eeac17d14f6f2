"""The text-to-image pipeline on tiny random models: training lowers the loss, save/load, seeds, schedulers,
the Hub path."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.core.imaging import pixel_difference
from pipelines.core.weights import ModelSourceError
from pipelines.diffusion import text_to_image as t2i
from pipelines.diffusion.shapes_world import random_scene
from training.train_text_to_image import (
    CachedTextEncoder,
    LearningRatePlan,
    batch_tensors,
    diffusion_loss,
    object_colour_positions,
    sample_timesteps,
)

TINY = (32, 32, 32)


@pytest.fixture(scope="module")
def tiny_pipeline():
    return t2i.new_pipeline(TINY, seed=0)


def test_a_few_training_steps_on_a_tiny_model_reduce_the_loss():
    unet, scheduler = t2i.new_pipeline(TINY, seed=1).unet.train(), t2i.training_scheduler()
    clean, captions, weights = batch_tensors(
        random.Random(0), 4, caption_dropout=0.0, patch=t2i.PATCH, object_weight=4.0
    )
    text = CachedTextEncoder()(captions)

    def fixed_loss() -> float:  # same images, noise and timesteps before and after
        with torch.no_grad():
            return diffusion_loss(unet, scheduler, clean, text, torch.Generator().manual_seed(9), weights).item()

    before = fixed_loss()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        loss = diffusion_loss(unet, scheduler, clean, text, generator, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < 0.8 * before


def test_the_learning_rate_warms_up_holds_then_falls_to_zero_over_the_last_share():
    plan = LearningRatePlan(warmup_steps=10, decay_share=0.3, total_steps=100)
    assert plan.factor(0) == pytest.approx(0.1) and plan.factor(9) == plan.factor(69) == 1.0
    assert plan.factor(85) == pytest.approx(0.5) and plan.factor(99) > 0 and plan.factor(100) == 0.0
    constant = LearningRatePlan(10, decay_share=0.0)
    constant.estimate(step=50, steps_per_second=1.0, seconds_left=100, next_estimate_in=10)
    assert constant.factor(10_000) == 1.0 and not constant.fixed


def test_a_timed_run_fixes_its_step_count_before_the_fall_so_the_recorded_count_replays_it():
    plan, factors, seconds = LearningRatePlan(warmup_steps=10, decay_share=0.3), [], 0.0
    for step in range(5000):
        speed = 1.0 + step / 2000  # steps per second, rising as the caption cache fills
        if step >= 100 and step % 50 == 0:
            plan.estimate(step, speed, seconds_left=1000 - seconds, next_estimate_in=50)
        if plan.fixed and step >= plan.total_steps:
            break
        factors.append(plan.factor(step))
        seconds += 1 / speed
    assert plan.fixed and 1000 < plan.total_steps == len(factors) < 2000
    replay = LearningRatePlan(warmup_steps=10, decay_share=0.3, total_steps=plan.total_steps)
    assert factors == [replay.factor(step) for step in range(len(factors))]
    full_rate_steps = factors.count(1.0)  # after the 10 warm-up steps, before the fall
    assert factors[-1] < 0.01 and full_rate_steps == pytest.approx(0.7 * len(factors) - 10, abs=2)


def test_training_batches_weight_the_shapes_pixels_and_keep_patches_exact():
    clean, captions, weights = batch_tensors(random.Random(3), 6, caption_dropout=0.0, patch=8, object_weight=4.0)
    assert clean.shape == weights.shape == (6, 192, 8, 8) and len(captions) == 6
    assert set(weights.unique().tolist()) == {1.0, 4.0}
    share = (weights > 1).float().mean(dim=(1, 2, 3))
    assert torch.all(share > 0.01) and torch.all(share < 0.3)  # every image has a shape, smaller than the background
    pixels = t2i.patches_to_images(clean)
    assert pixels.shape == (6, 3, 64, 64) and torch.equal(t2i.images_to_patches(pixels, 8), clean)


def test_box_weights_cover_every_shape_pixel_and_the_corners_around_round_and_pointed_shapes():
    shape_weights = batch_tensors(
        random.Random(8), 32, caption_dropout=0.0, patch=4, object_weight=4.0, weight_region="pixels"
    )
    box_clean, _, box_weights = batch_tensors(random.Random(8), 32, caption_dropout=0.0, patch=4, object_weight=4.0)
    assert torch.equal(box_clean, shape_weights[0])  # the same images: only the weights differ
    on_shape, in_box = (t2i.patches_to_images(w)[:, 0] > 1 for w in (shape_weights[2], box_weights))
    assert not (on_shape & ~in_box).any()  # every shape pixel is in its box
    corners = (in_box & ~on_shape).float().mean(dim=(1, 2))
    assert corners.max() > 0.02 and corners.min() >= 0  # circles' and triangles' boxes reach past them


def test_timesteps_favour_the_noisy_end_by_the_asked_share_and_follow_the_seed():
    def draw(share: float, seed: int = 0) -> torch.Tensor:
        return sample_timesteps(20_000, 1000, torch.Generator().manual_seed(seed), share, 700)

    uniform, favoured = draw(0.0), draw(0.5)
    assert uniform.min() >= 0 and uniform.max() <= 999 and favoured.min() >= 0 and favoured.max() <= 999
    assert abs((uniform >= 700).float().mean().item() - 0.3) < 0.02
    assert abs((favoured >= 700).float().mean().item() - (0.5 + 0.5 * 0.3)) < 0.02  # 0.65
    assert torch.all(draw(1.0) >= 700)
    assert torch.equal(draw(0.5, seed=4), draw(0.5, seed=4)) and not torch.equal(draw(0.5, seed=4), draw(0.5, seed=5))


def test_two_object_share_sets_how_many_training_scenes_have_two_shapes():
    rng = random.Random(0)
    counts = [len(random_scene(rng, two_object_share=0.15).objects) for _ in range(4000)]
    assert abs(counts.count(2) / len(counts) - 0.15) < 0.03
    assert all(len(random_scene(rng, two_object_share=0.0).objects) == 1 for _ in range(200))


def test_coordinate_channels_tell_the_unet_where_each_position_is():
    patches = torch.zeros(2, 192, 8, 8)
    with_xy = t2i.with_coordinates(patches)
    assert with_xy.shape == (2, 194, 8, 8) and torch.equal(with_xy[:, :192], patches)
    x, y = with_xy[0, 192], with_xy[0, 193]
    assert x[0, 0] == -1 and x[0, -1] == 1 and torch.all(x[:, 0] == -1)  # x grows to the right
    assert y[0, 0] == -1 and y[-1, 0] == 1 and torch.all(y[0, :] == -1)  # y grows downwards


def test_cached_text_encoder_matches_the_encoder_and_pads_with_a_mask():
    captions = ["a red circle on the left", "a large blue square in the top right corner on a white background", ""]
    cached = CachedTextEncoder()
    first, again = cached(captions), cached(list(reversed(captions)))
    direct = t2i.encode_text(captions, torch.device("cpu"), torch.float32)
    assert first.tokens.shape == direct.tokens.shape and torch.equal(first.mask, direct.mask)
    real = direct.mask.bool()
    assert torch.allclose(first.tokens[real], direct.tokens[real], atol=1e-2)  # stored as float16
    assert torch.all(first.tokens[~real] == 0)
    assert torch.allclose(first.pooled, direct.pooled, atol=1e-3)
    assert torch.allclose(first.pooled.norm(dim=-1), torch.ones(3), atol=1e-3)
    assert torch.equal(again.pooled, first.pooled.flip(0)) and len(cached.cache) == 3


def test_colour_context_swaps_only_the_objects_colour_word_vectors():
    captions = ["a small blue square on the left, black background", "red circle and a white square, blue background"]
    contexts = ["a small blue triangle on the left, black background", "red square and a white circle, blue background"]
    cached = CachedTextEncoder()
    plain, mixed, context = cached(captions), cached.with_colour_context(captions, contexts), cached(contexts)
    assert [object_colour_positions(c) for c in captions] == [[3], [1, 5]]  # [CLS] counts; backgrounds do not
    changed = (mixed.tokens != plain.tokens).any(dim=-1)
    assert changed.nonzero().tolist() == [[0, 3], [1, 1], [1, 5]]
    assert torch.equal(mixed.tokens[changed], context.tokens[changed])
    assert torch.equal(mixed.pooled, plain.pooled) and torch.equal(mixed.mask, plain.mask)
    assert torch.equal(cached(captions).tokens, plain.tokens)  # the cache is not written through


def test_generation_is_deterministic_per_seed(tiny_pipeline):
    def image(seed):
        return t2i.generate(tiny_pipeline, "a red circle on the left", steps=3, seed=seed).images[0]

    first, again, other = image(4), image(4), image(5)
    assert first.size == (64, 64)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert pixel_difference(first, other) > 1


def test_clean_image_estimates_are_clamped_to_the_image_range(tiny_pipeline):
    def estimates(clamp: bool) -> torch.Tensor:
        seen = []

        def keep(pipe, index, timestep, tensors):
            seen.append(tensors["pred_original_sample"])
            return {}

        tiny_pipeline(
            "a red circle",
            num_inference_steps=3,
            guidance_scale=20.0,
            generator=torch.Generator().manual_seed(0),
            callback_on_step_end=keep,
            callback_on_step_end_tensor_inputs=["pred_original_sample"],
            clamp_clean_estimate=clamp,
        )
        return torch.stack(seen)

    assert estimates(clamp=False).abs().max() > 1.0  # strong guidance overshoots the image range ...
    assert estimates(clamp=True).abs().max() <= 1.0  # ... which clamping removes


def test_save_and_load_round_trip_gives_the_same_images(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "ShapesDiffusionPipeline" and "text_encoder" not in index  # referenced, not copied
    loaded = t2i.load_text_to_image(str(tmp_path))
    assert isinstance(loaded, t2i.ShapesDiffusionPipeline)
    for scheduler in ("DDPM", "DPM-Solver++"):  # DDPM draws noise at every step: from the call's generator
        a = t2i.generate(tiny_pipeline, "a blue square", steps=3, seed=2, scheduler_name=scheduler).images[0]
        b = t2i.generate(loaded, "a blue square", steps=3, seed=2, scheduler_name=scheduler).images[0]
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_schedulers_swap_without_touching_the_shared_pipeline(tiny_pipeline):
    images = {}
    for name, scheduler_class in t2i.SCHEDULERS.items():
        swapped = t2i.with_scheduler(tiny_pipeline, name)
        assert isinstance(swapped.scheduler, scheduler_class) and swapped.unet is tiny_pipeline.unet
        images[name] = t2i.generate(tiny_pipeline, "a green triangle", steps=4, seed=1, scheduler_name=name).images[0]
    assert isinstance(tiny_pipeline.scheduler, t2i.DDPMScheduler)
    assert pixel_difference(images["DDPM"], images["DDIM"]) > 0.5  # DDPM adds fresh noise each step; DDIM none
    with pytest.raises(ValueError, match="DDPM, DDIM, DPM-Solver\\+\\+, Euler"):
        t2i.with_scheduler(tiny_pipeline, "PNDM")


def test_generate_returns_count_images_and_a_strip_of_clean_image_estimates(tiny_pipeline):
    steps_seen = []
    result = t2i.generate(
        tiny_pipeline, "", steps=8, seed=3, count=2, on_step=lambda done, total: steps_seen.append((done, total))
    )
    assert len(result.images) == 2 and all(i.size == (64, 64) for i in result.images)
    assert result.steps_shown[-1] == 8 and len(result.strip) == len(result.steps_shown) == 6
    assert steps_seen[-1] == (8, 8) and len(steps_seen) == 8
    assert result.strip_label == "predicted clean image"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(prompt="x" * 1001), "1000 characters"),
        (dict(prompt="a", steps=0), "Steps must be a whole number from 1 to 100"),
        (dict(prompt="a", guidance_scale=20.5), "Guidance scale must be a number from 0.0 to 20.0"),
        (dict(prompt="a", count=5), "from 1 to 4"),
    ],
)
def test_generate_refuses_values_outside_the_limits(tiny_pipeline, arguments, message):
    with pytest.raises(ValueError, match=message):
        t2i.generate(tiny_pipeline, **arguments)


def test_png_metadata_keeps_the_generation_parameters(tmp_path):
    parameters = {"prompt": "a red circle", "seed": 7, "steps": 20}
    path = t2i.png_with_parameters(Image.new("RGB", (64, 64)), tmp_path / "a.png", parameters)
    text = Image.open(path).text
    assert json.loads(text["parameters"]) == parameters and text["seed"] == "7"


def tiny_stable_diffusion(folder):
    """A StableDiffusionPipeline built from configs with random weights: the Hub code path, offline."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*letters, *(c + "</w>" for c in letters)]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=32,
        )
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def test_a_hub_style_diffusers_pipeline_loads_from_a_folder_and_runs_through_generate(tmp_path):
    folder = tiny_stable_diffusion(tmp_path)
    pipeline = t2i.load_text_to_image(str(folder))
    assert type(pipeline).__name__ == "StableDiffusionPipeline"
    result = t2i.generate(pipeline, "a red circle", "blue", steps=2, guidance_scale=3.0, seed=1, scheduler_name="Euler")
    again = t2i.generate(pipeline, "a red circle", "blue", steps=2, guidance_scale=3.0, seed=1, scheduler_name="Euler")
    assert result.images[0].size == (32, 32)  # 16x16 latents through the VAE's 2x upsampling
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(again.images[0]))
    assert result.strip_label == "current latents" and len(result.strip) == 2


def test_an_unreachable_hub_model_gives_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelSourceError, match="could not be downloaded from the Hugging Face Hub"):
        t2i.load_text_to_image("stabilityai/sd-turbo")
    with pytest.raises(ModelSourceError, match="not on this app's list of allowed models"):
        t2i.load_text_to_image("someone/unknown-model")


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", [name for name in t2i.SCHEDULERS if name != t2i.DEFAULT_SCHEDULER])
def test_every_scheduler_draws_what_the_default_one_draws_with_the_trained_weights(scheduler):
    # They all integrate the same learned reverse process; DDIM with x0 clipping once drew a mess instead.
    pipeline = t2i.load_builtin_text_to_image()
    prompt = "a green triangle in the center on a white background"
    reference = np.asarray(t2i.generate(pipeline, prompt, seed=1).images[0], dtype=np.float32)
    image = np.asarray(t2i.generate(pipeline, prompt, seed=1, scheduler_name=scheduler).images[0], dtype=np.float32)
    assert np.abs(image - reference).mean() < 5.0  # of 255; measured 0.1 to 1.1, DDIM with clipping 62
