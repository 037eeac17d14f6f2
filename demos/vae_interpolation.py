"""VAE Interpolation tab: walk between two images through a VAE's latent space, map it, edit with vectors."""

from __future__ import annotations

import warnings

import gradio as gr
from PIL import Image, ImageOps

from demos import common, validation
from demos.outputs import output_path
from pipelines.core import registry
from pipelines.core.imaging import save_gif, upscale
from pipelines.vae.data import pixel_upscale
from pipelines.vae.options import DEFAULT_MODEL, FRAMES, INTERPOLATION_METHODS, MAP_COORDINATE, SAMPLES, STRENGTH
from pipelines.vae.pipeline import TrainedVAEPipeline, VAEPipeline

TAB_TITLE = "VAE Interpolation"
TAB_ID = "vae-interpolation"
# Requests run side by side so the pipelines can batch them into shared encoder and decoder passes.
CONCURRENCY = common.concurrency("vae", 8)

MAX_MEGAPIXELS = validation.MAX_UPLOAD_MEGAPIXELS
GALLERY_SIZE = 24  # numbered examples to pick from (held-out images the VAE never trained on)
TRAINED_HERE = ("vae-faces", "vae-digits")  # registry ids of the VAEs with examples, a map and a prior
# The Attribute vector tab starts from picks that work (checked by eye), numbered as each model's examples.
# Faces: glasses (5, 20, 22) against none, added to face 9. Digits: zeros against sevens turn a seven into a zero.
# The Hub VAE borrows the faces' examples, so their picks too.
STARTING_PICKS = {
    "vae-faces": (["5", "20", "22"], ["1", "7", "11", "16", "19"], "9"),
    "vae-digits": (["16", "17", "22"], ["2", "5", "12", "13"], "12"),
}

HOW_IT_WORKS = """
- **Encoder.** A convolutional network reads an image and outputs, for each of the latent dimensions
  (32 for faces, 12 for digits), a **mean μ** and a **log-variance log σ²**: not one point but a small
  Gaussian cloud of codes that could have made the image.
- **Reparameterisation trick.** Training draws a code z = μ + σ·ε with ε ~ N(0, I). The randomness sits in ε,
  so gradients flow through μ and σ back into the encoder.
- **Decoder.** Another network turns z back into pixels.
- **ELBO.** Training maximises the *evidence lower bound*: reconstruction log-likelihood (how well the decoder
  redraws the input) minus KL(q(z|x) ‖ N(0, I)) (how far each cloud strays from a standard normal), here
  weighted by β = 1. The KL term packs the clouds together, so the space has no holes: every point between two
  encodings decodes to something plausible, which is why the interpolations here look smooth.
- **Why blurrier than a GAN.** The decoder is rewarded for the *average* pixel over everything a code could
  mean, and the KL term forces codes to overlap; averages of sharp images are blurry. A GAN's generator is
  judged only by whether its images look real, so it draws sharp detail (and sometimes invents it).
- **The data.** The digits are real handwriting (scikit-learn's 1,797 digits, upscaled). The faces are
  *synthetic*: sampled from the DCGAN of the GAN Faces tab, so one generative model made the data that
  trained another. Interpolation uses the **means** μ, not random samples, so results are repeatable.
"""


def _display(image: Image.Image) -> Image.Image:
    """Small model images enlarged for the screen (digits are 32 px, faces 64 px)."""
    image = image.convert("RGB")
    return upscale(image, 192) if image.width < 192 else image


def _as_input(image: Image.Image) -> Image.Image:
    """An example for image A or B, enlarged by repeating pixels so the model gets the exact original back."""
    return pixel_upscale(image, max(1, 192 // image.width))


def _model_id(model) -> str:
    """The registry id of a model choice (earlier API values such as "faces" work too)."""
    model_id = registry.MODELS.canonical_id(model)
    allowed = [value for _, value in registry.choices("vae")]
    if model_id not in allowed:
        raise gr.Error(f"Model must be one of {', '.join(allowed)} (got {model!r}).")
    return model_id


def _pipeline(model) -> VAEPipeline:
    return registry.load(_model_id(model))


def _trained_pipeline(model) -> TrainedVAEPipeline:
    if _model_id(model) not in TRAINED_HERE:
        raise gr.Error(
            "The latent map, attribute vectors and prior samples need a model trained here: faces or digits."
        )
    return _pipeline(model)


def _example_source(model) -> TrainedVAEPipeline:
    """Whose example images the galleries show: Hub VAEs borrow the faces."""
    model_id = _model_id(model)
    return _trained_pipeline(model_id if model_id in TRAINED_HERE else "vae-faces")


def _path_of(upload) -> str | None:
    """A file path from what gr.Image sends when preprocessing is off (a FileData dict) or a plain path."""
    if upload is None:
        return None
    if isinstance(upload, dict):
        return upload.get("path")
    return str(upload)


def open_upload(upload, name: str) -> Image.Image:
    """Open an uploaded image safely: refuse missing, non-image, corrupt and over-20-megapixel files."""
    path = _path_of(upload)
    if not path:
        raise gr.Error(f"{name} is missing: pick an example, upload an image or draw one.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only: the size is known before decoding
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise gr.Error(f"{name} is too large: at most {MAX_MEGAPIXELS} megapixels.") from None
    except Exception:
        raise gr.Error(f"{name} is not an image file this app can read (PNG, JPEG, WebP, ...).") from None
    if width * height > MAX_MEGAPIXELS * 1_000_000:
        raise gr.Error(
            f"{name} is too large: {width}×{height} is {width * height / 1e6:.1f} megapixels, "
            f"at most {MAX_MEGAPIXELS} megapixels."
        )
    try:
        image.load()
        return ImageOps.exif_transpose(image)  # phone photos: honour the camera's rotation tag
    except Exception:
        raise gr.Error(f"{name} is corrupt or truncated: the file could not be decoded.") from None


def vae_interpolate(image_a, image_b, frames=FRAMES.default, model=DEFAULT_MODEL, method="slerp"):
    """Frames along the path between the latent means of two images (the endpoints are their reconstructions)."""
    frames = validation.in_range(frames, FRAMES, "Frames")
    if method not in INTERPOLATION_METHODS:
        raise gr.Error(f"Method must be one of {', '.join(INTERPOLATION_METHODS)} (got {method!r}).")
    first = open_upload(image_a, "Image A")
    second = open_upload(image_b, "Image B")
    model = _model_id(model)  # this event skips preprocessing: the handler reads the raw value
    result = _pipeline(model).interpolate(first, second, frames, method)
    captions = [f"t={i / (frames - 1):.2f}" for i in range(frames)]
    gallery = [(_display(image), caption) for image, caption in zip(result.frames, captions)]
    details = {"model": model, "result": result}
    return gallery, details


def show_interpolation_details(details):
    """Inputs beside their reconstructions, the animation, and the path on the latent map."""
    if not details:
        return None, None, None, None
    result = details["result"]
    pairs = [
        (_display(result.inputs[0]), "A as the model sees it"),
        (_display(result.reconstructions[0]), "A reconstructed"),
        (_display(result.inputs[1]), "B as the model sees it"),
        (_display(result.reconstructions[1]), "B reconstructed"),
    ]
    gif_path = save_gif([upscale(frame.convert("RGB"), 256) for frame in result.frames], output_path(".gif", "vae-"))
    path_map = None
    pipeline = registry.load(details["model"])
    if isinstance(pipeline, TrainedVAEPipeline):
        latent_map = pipeline.latent_map
        path_map = latent_map.render(path=latent_map.project(result.latents))
    return pairs, str(gif_path), str(gif_path), path_map


def show_examples(model):
    """The numbered example gallery of the chosen model's data (faces for Hub models)."""
    source = _example_source(model)
    labels = source.examples.labels
    images = source.example_images()[:GALLERY_SIZE]
    captions = [f"#{i + 1}" + (f" (digit {labels[i]})" if labels else "") for i in range(len(images))]
    return [(_display(image), caption) for image, caption in zip(images, captions)]


def _starting_picks(model) -> tuple[list[str], list[str], str]:
    return STARTING_PICKS["vae-digits" if _model_id(model) == "vae-digits" else "vae-faces"]


def refresh_for_model(model):
    """A new model: its example galleries, examples #1 and #2 as A and B, no stale interpolation, its picks."""
    if _model_id(model) not in TRAINED_HERE:
        _pipeline(model)  # says at once when the Hub is unreachable
    gallery = show_examples(model)
    first, second = _example_source(model).example_images()[:2]
    return gallery, gallery, _as_input(first), _as_input(second), None, *_starting_picks(model)


def pick_example(model, target, evt: gr.SelectData):
    """Clicking an example puts it into image A or image B (whichever the radio says)."""
    image = _as_input(_example_source(model).example_images()[evt.index])
    return (image, gr.update()) if target == "A" else (gr.update(), image)


def use_drawing(drawing, model):
    """The sketchpad's drawing, fitted like the digits dataset (white ink on black, centred, 32×32)."""
    composite = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if composite is None:
        raise gr.Error("Draw a digit on the sketchpad first.")
    if _model_id(model) != "vae-digits":
        raise gr.Error("Drawing is for the digits model: choose it in the Model menu first.")
    return _as_input(_trained_pipeline("vae-digits").prepare(composite))


def draw_latent_map(model, details, x, y):
    """The examples' latent means in PCA coordinates, the last interpolation path, a marked point, its decoding."""
    pipeline = _trained_pipeline(model)
    latent_map = pipeline.latent_map
    path = None
    if details and details.get("model") == _model_id(model):
        path = latent_map.project(details["result"].latents)
    x = validation.in_range(x, MAP_COORDINATE, "PCA component 1")
    y = validation.in_range(y, MAP_COORDINATE, "PCA component 2")
    return latent_map.render(path=path, marker=(x, y)), _display(pipeline.decode_map_point(x, y))


def refresh_map(model):
    """Slider ranges that cover the chosen model's map, and the map with its centre decoded."""
    if _model_id(model) not in TRAINED_HERE:
        return gr.update(), gr.update(), None, None
    x_min, x_max, y_min, y_max = _trained_pipeline(model).latent_map.bounds
    map_image, decoded = draw_latent_map(model, None, 0.0, 0.0)
    return (
        gr.update(minimum=round(x_min, 2), maximum=round(x_max, 2), value=0.0),
        gr.update(minimum=round(y_min, 2), maximum=round(y_max, 2), value=0.0),
        map_image,
        decoded,
    )


def click_map(model, details, evt: gr.SelectData):
    """A click on the map picks the point under the cursor."""
    latent_map = _trained_pipeline(model).latent_map
    x, y = latent_map.from_pixel(*evt.index)
    map_image, decoded = draw_latent_map(model, details, x, y)
    return round(x, 2), round(y, 2), map_image, decoded


def vae_attribute_vector(model, with_feature, without_feature, target, strength):
    """Add strength × (mean μ of examples with a feature − mean μ of those without) to the target example."""
    pipeline = _trained_pipeline(model)
    strength = validation.in_range(strength, STRENGTH, "Strength")
    picks_with, picks_without = validation.feature_groups(with_feature, without_feature, GALLERY_SIZE, "example")
    target_index = validation.whole_number(target, "Example to edit", 1, GALLERY_SIZE) - 1
    examples = pipeline.example_images()
    strengths = common.strength_ladder(strength)
    edited = pipeline.attribute_edit(
        [examples[i] for i in picks_with], [examples[i] for i in picks_without], examples[target_index], strengths
    )
    return [(_display(image), f"strength {s:+.2f}") for image, s in zip(edited, strengths)]


def vae_sample_prior(model, seed, count):
    """Decode z ~ N(0, I): what the decoder draws from codes no image produced."""
    pipeline = _trained_pipeline(model)
    seed = validation.seed(seed)
    count = validation.in_range(count, SAMPLES, "Number of samples")
    return [(_display(image), f"#{i + 1}") for i, image in enumerate(pipeline.sample_prior(seed, count))]


def build() -> None:
    gr.Markdown(
        "A **variational autoencoder** squeezes an image into a few numbers (its latent code) and draws it "
        "back. Pick two images and watch one turn into the other through that code space. The face model "
        "learned from faces **made by the DCGAN** of the GAN Faces tab (synthetic data from one generative "
        "model training another); the digit model from real handwriting."
    )
    model = common.model_menu("vae", DEFAULT_MODEL, elem_id="vae-model")
    details = gr.State(None)
    numbers = [str(i) for i in range(1, GALLERY_SIZE + 1)]
    with gr.Tabs():
        with gr.Tab("Interpolate"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    examples = gr.Gallery(
                        label="Examples (held out from training): click one",
                        columns=4,
                        height=320,
                        allow_preview=False,
                        format="png",
                        elem_id="vae-examples",
                        object_fit="contain",
                    )
                    target = gr.Radio(["A", "B"], value="A", label="A click on an example sets image")
                    with gr.Row():
                        image_a = gr.Image(
                            label="Image A",
                            type="filepath",
                            format="png",
                            height=180,
                            elem_id="vae-image-a",
                            sources=["upload", "clipboard"],
                        )
                        image_b = gr.Image(
                            label="Image B",
                            type="filepath",
                            format="png",
                            height=180,
                            elem_id="vae-image-b",
                            sources=["upload", "clipboard"],
                        )
                    gr.Markdown(
                        "Uploaded photos are **centre-cropped to a square and resized** to the model's size "
                        "(64 px for faces, 256 px for the Hub VAE); digits are cropped to the ink and "
                        "shrunk like the dataset. "
                        f"Up to {validation.MAX_UPLOAD_MB} MB and {MAX_MEGAPIXELS} megapixels."
                    )
                    with gr.Accordion("Draw a digit (digits model)", open=True):
                        sketchpad = gr.Sketchpad(
                            label="Click the brush, then draw one digit, large",
                            type="pil",
                            canvas_size=(280, 280),
                            fixed_canvas=True,
                            brush=gr.Brush(default_size=20, colors=["#000000"], color_mode="fixed"),
                            layers=False,
                            transforms=(),
                            elem_id="vae-sketchpad",
                        )
                        with gr.Row():
                            drawing_to_a = gr.Button("Use drawing as A", size="sm")
                            drawing_to_b = gr.Button("Use drawing as B", size="sm")
                    frames = common.slider(FRAMES, "Frames")
                    method = gr.Radio(
                        list(INTERPOLATION_METHODS),
                        value="slerp",
                        label="Path: slerp (arc, keeps the code's length) or lerp (straight line)",
                    )
                    interpolate_button = gr.Button("Interpolate", variant="primary")
                with gr.Column(scale=3):
                    frame_strip = gr.Gallery(
                        label="Frames (A → B), decoded from the path between the two latent means",
                        columns=5,
                        height="auto",
                        format="png",
                        elem_id="vae-frames",
                    )
                    reconstructions = gr.Gallery(
                        label="What the VAE keeps and loses: inputs beside their reconstructions",
                        columns=4,
                        height="auto",
                        format="png",
                        elem_id="vae-reconstructions",
                    )
                    with gr.Row():
                        animation = gr.Image(label="Animation", type="filepath", height=220, elem_id="vae-animation")
                        gif_file = gr.File(label="Download GIF", elem_id="vae-gif")
                        path_map = gr.Image(
                            label="The path on the latent map", height=220, format="png", elem_id="vae-path-map"
                        )

        with gr.Tab("Latent map"):
            gr.Markdown(
                "Every example's latent mean, flattened to 2-D with PCA (the two directions along which the "
                "codes vary most; digits coloured by class). The black line is your last interpolation, from "
                "**A** to **B**. Click the map, or move the sliders, to decode any point."
            )
            with gr.Row():
                with gr.Column(scale=3):
                    map_image = gr.Image(
                        label="Latent map (click a point)",
                        format="png",
                        interactive=False,
                        elem_id="vae-latent-map",
                        height=500,
                    )
                with gr.Column(scale=2):
                    map_x = validation.CheckedSlider(-10, 10, value=0.0, step=0.01, label="PCA component 1")
                    map_y = validation.CheckedSlider(-10, 10, value=0.0, step=0.01, label="PCA component 2")
                    map_button = gr.Button("Draw the map and decode the point", variant="primary")
                    map_decoded = gr.Image(label="Decoded point", format="png", height=220)

        with gr.Tab("Attribute vector"):
            gr.Markdown(
                "Pick examples that share a feature (for faces: glasses, a smile, dark hair; for digits: a "
                "slant, a thick stroke) and examples without it. The difference of their average latent means "
                "is a direction for that feature; adding it to another example adds the feature. Already "
                "picked: **glasses** for faces (blurred by the VAE into dark rims), **zeros minus sevens** for "
                "digits (a seven turns into a zero)."
            )
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    picks_with, picks_without, picked_target = _starting_picks(DEFAULT_MODEL)
                    with_feature = validation.CheckedCheckboxGroup(
                        numbers, value=picks_with, label="Examples WITH the feature", elem_id="vae-with"
                    )
                    without_feature = validation.CheckedCheckboxGroup(
                        numbers, value=picks_without, label="Examples WITHOUT it", elem_id="vae-without"
                    )
                    edit_target = gr.Dropdown(numbers, value=picked_target, label="Example to edit")
                    strength = common.slider(STRENGTH, "Strength")
                    edit_button = gr.Button("Add the feature vector", variant="primary")
                with gr.Column(scale=3):
                    attribute_examples = gr.Gallery(
                        label="Numbered examples",
                        columns=8,
                        height="auto",
                        allow_preview=False,
                        format="png",
                        object_fit="contain",
                    )
                    edited = gr.Gallery(
                        label="Example + strength × (mean WITH − mean WITHOUT)",
                        columns=5,
                        height="auto",
                        format="png",
                        elem_id="vae-edited",
                    )

        with gr.Tab("Sample from the prior"):
            gr.Markdown(
                "Draw codes z ~ N(0, I), the prior the KL term pulled the encoder towards, and decode them: "
                "new images no input produced. Same seed, same images."
            )
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    prior_seed = common.seed_row(0)
                    prior_count = common.slider(SAMPLES, "Number of samples")
                    prior_button = gr.Button("Sample", variant="primary")
                with gr.Column(scale=3):
                    prior_gallery = gr.Gallery(
                        label="Decoded samples from the prior",
                        columns=8,
                        height="auto",
                        format="png",
                        elem_id="vae-prior",
                    )

    # Runs when the page loads and whenever the model changes: galleries, A and B prefilled, the map.
    gr.on(
        None,
        refresh_for_model,
        model,
        [examples, attribute_examples, image_a, image_b, details, with_feature, without_feature, edit_target],
        api_visibility="private",
        **CONCURRENCY,
    ).then(refresh_map, model, [map_x, map_y, map_image, map_decoded], api_visibility="private", **CONCURRENCY)
    examples.select(pick_example, [model, target], [image_a, image_b], api_visibility="private", **CONCURRENCY)
    drawing_to_a.click(use_drawing, [sketchpad, model], image_a, api_visibility="private", **CONCURRENCY)
    drawing_to_b.click(use_drawing, [sketchpad, model], image_b, api_visibility="private", **CONCURRENCY)
    # Gradio's own preprocessing would open the uploads and fail on a corrupt file with a bare "Error";
    # with it off the handler opens them itself and says what was wrong.
    interpolate_button.click(
        vae_interpolate,
        [image_a, image_b, frames, model, method],
        [frame_strip, details],
        api_name="vae_interpolate",
        preprocess=False,
        **CONCURRENCY,
    ).then(
        show_interpolation_details,
        details,
        [reconstructions, animation, gif_file, path_map],
        api_visibility="private",
        **CONCURRENCY,
    )
    map_button.click(
        draw_latent_map,
        [model, details, map_x, map_y],
        [map_image, map_decoded],
        api_name="vae_latent_map",
        **CONCURRENCY,
    )
    # A slider released while the map is being drawn is drawn next, not dropped (Gradio's default for a release).
    gr.on(
        [map_x.release, map_y.release],
        draw_latent_map,
        [model, details, map_x, map_y],
        [map_image, map_decoded],
        api_visibility="private",
        trigger_mode="always_last",
        **CONCURRENCY,
    )
    map_image.select(
        click_map, [model, details], [map_x, map_y, map_image, map_decoded], api_visibility="private", **CONCURRENCY
    )
    edit_button.click(
        vae_attribute_vector,
        [model, with_feature, without_feature, edit_target, strength],
        edited,
        api_name="vae_attribute_vector",
        **CONCURRENCY,
    )
    prior_button.click(
        vae_sample_prior, [model, prior_seed, prior_count], prior_gallery, api_name="vae_sample_prior", **CONCURRENCY
    )
