"""GAN Faces tab: sample faces from a pretrained DCGAN, walk between two, add feature vectors."""

from __future__ import annotations

import gradio as gr

from demos import validation
from demos.outputs import output_path
from pipelines.gan import MAX_FACES, MAX_FRAMES, TRUNCATION_RANGE
from pipelines.health import GAN_FACES, load_model
from pipelines.imaging import image_grid, save_gif, save_png, upscale

TAB_TITLE = "GAN Faces"
TAB_ID = "gan-faces"

DISPLAY_SIZE = 192  # the model draws 64x64; shown 3x larger
GRID_SIZE = 16  # faces in the latent-arithmetic grid
DEFAULT_TRUNCATION = 1.5
ARITHMETIC_STEPS = 5  # results shown from strength 0 to the chosen strength
# Requests run side by side so the pipeline can batch them into shared forward passes;
# the three events share one limit, as they share one model.
CONCURRENCY = dict(concurrency_limit=32, concurrency_id="gan-faces")

HOW_IT_WORKS = """
### How it works
- **Generator vs discriminator.** A GAN trains two networks against each other: the *generator* G turns a
  random vector **z** into an image; the *discriminator* D sees real photos and G's fakes and learns to tell
  them apart. G improves by fooling D (D maximises log D(x) + log(1 − D(G(z))); G minimises it). Only the
  generator is needed to make faces, and only it was published, so that is what runs here.
- **What z is.** 100 numbers drawn from a normal distribution. Every z is a face; nearby z give similar faces,
  so the space can be *walked* (Interpolate) and has *directions* that mean something (Latent arithmetic).
- **Truncation.** z is drawn from a normal cut off at ±*truncation* standard deviations. Low values keep z near
  the centre, where the training faces were dense: typical, clean faces but less variety. High values reach
  the rare edges: more variety, more glitches.
- **This model.** The classic DCGAN (transposed convolutions 4×4 → 64×64, 3.6 M parameters) from the
  `gan-face-generate` package, trained on **DigiFace-1M**, a dataset of *synthetic* (computer-rendered) faces
  made for research. Known GAN troubles: unstable training and *mode collapse* (G makes few kinds of face).
"""

# The Latent arithmetic tab starts from a vector that works (checked by eye): on grid seed 7, faces 2, 4, 13
# and 15 smile showing their teeth and 1, 7, 8 and 14 do not; adding the difference makes face 8 smile.
SMILE_EXAMPLE = dict(seed=7, group_a=["2", "4", "13", "15"], group_b=["1", "7", "8", "14"], target="8", strength=2.0)

SLERP_NOTE = (
    "Frames follow a **spherical** path (slerp): random Gaussian vectors all lie near a sphere, and a straight "
    "line between two of them dips through its near-empty middle, which gives faded faces."
)


def face_pipeline():
    """The DCGAN, loaded on first use; switched off with a clear message if its weights fail to load."""
    return load_model(GAN_FACES)


def _seed_box(value: int, label: str, **layout) -> gr.Number:
    # No precision or minimum: Gradio would round 1.5 silently and fail on "abc" with a generic
    # error; demos.validation refuses both with a clear message instead.
    return gr.Number(value=value, label=label, step=1, **layout)


def _display(images, captions=None):
    """Gallery items as PNG files this tab writes itself: faster than Gradio's own PNG encoding."""
    captions = captions or [None] * len(images)
    return [
        (str(save_png(upscale(image, DISPLAY_SIZE), output_path(".png", "gan-face-"))), caption)
        for image, caption in zip(images, captions)
    ]


def _truncation(value) -> float:
    return validation.number_in_range(value, "Truncation", *TRUNCATION_RANGE)


def sample_faces(seed, count, truncation):
    """Sample `count` faces for a seed; returns the gallery and a PNG grid to download."""
    seed = validation.seed(seed)
    count = validation.whole_number(count, "Number of faces", 1, MAX_FACES)
    truncation = _truncation(truncation)
    faces = face_pipeline().sample(seed, count, truncation)
    captions = [f"#{i + 1}" for i in range(count)]  # short: captions overlay the face
    grid = image_grid([upscale(face, 128) for face in faces], columns=8)
    grid_path = save_png(grid, output_path(".png", "gan-faces-"))
    return _display(faces, captions), str(grid_path)


def interpolate_faces(seed_a, seed_b, frames, truncation=DEFAULT_TRUNCATION):
    """Frames from seed_a's first face to seed_b's, plus an animated GIF."""
    seed_a = validation.seed(seed_a, "Seed A")
    seed_b = validation.seed(seed_b, "Seed B")
    frames = validation.whole_number(frames, "Frames", 2, MAX_FRAMES)
    truncation = _truncation(truncation)
    images = face_pipeline().interpolate(seed_a, seed_b, frames, truncation)
    gif_path = save_gif([upscale(i, 256) for i in images], output_path(".gif", "gan-faces-"))
    captions = [f"{i / (frames - 1):.2f}" for i in range(frames)]
    return _display(images, captions), str(gif_path), str(gif_path)


def show_grid(seed, truncation, shown_grid):
    """The numbered faces to pick from. Picks made on another grid mean nothing here: a new grid clears them
    (the example's grid gets the example's picks back); the grid already on screen is left as it is."""
    seed = validation.seed(seed, "Grid seed")
    truncation = _truncation(truncation)
    if [seed, truncation] == shown_grid:  # every Add click comes here first: no need to draw it again
        return gr.skip(), gr.skip(), gr.skip(), shown_grid
    faces = face_pipeline().sample(seed, GRID_SIZE, truncation)
    grid = _display(faces, [f"#{i + 1}" for i in range(GRID_SIZE)])
    is_example = (seed, truncation) == (SMILE_EXAMPLE["seed"], DEFAULT_TRUNCATION)
    picks_a, picks_b = (SMILE_EXAMPLE["group_a"], SMILE_EXAMPLE["group_b"]) if is_example else ([], [])
    return grid, picks_a, picks_b, [seed, truncation]


def face_arithmetic(seed, truncation, group_a, group_b, target, strength):
    """Add mean(z of group A) − mean(z of group B) to the target face at several strengths."""
    seed = validation.seed(seed, "Grid seed")
    truncation = _truncation(truncation)
    strength = validation.number_in_range(strength, "Strength", -4.0, 4.0)
    picks_a, picks_b = validation.feature_groups(group_a, group_b, GRID_SIZE, "face")
    target_index = validation.whole_number(target, "Face to edit", 1, GRID_SIZE) - 1
    strengths = [strength * k / (ARITHMETIC_STEPS - 1) for k in range(ARITHMETIC_STEPS)]
    images = face_pipeline().attribute_edit(
        seed, picks_a, picks_b, target_index, strengths, truncation, GRID_SIZE
    )
    return _display(images, [f"strength {s:+.2f}" for s in strengths])


def build() -> None:
    gr.Markdown(
        "A pretrained **DCGAN** turns 100 random numbers into a 64×64 face. Same seed, same face: "
        "tell the room a seed and everyone sees it."
    )
    with gr.Tabs():
        with gr.Tab("Sample"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    with gr.Row():
                        seed = _seed_box(42, "Seed", scale=3)
                        dice = gr.Button("Random seed", scale=1, min_width=80)
                    count = validation.CheckedSlider(1, MAX_FACES, value=16, step=1, label="Number of faces")
                    truncation = validation.CheckedSlider(
                        *TRUNCATION_RANGE, value=DEFAULT_TRUNCATION, step=0.05,
                        label="Truncation (lower = more typical faces, higher = more variety)",
                    )  # fmt: skip
                    sample_button = gr.Button("Sample faces", variant="primary")
                    grid_file = gr.File(label="Download all (PNG grid)")
                with gr.Column(scale=3):
                    gallery = gr.Gallery(
                        label="Generated faces", columns=8, height="auto", object_fit="contain",
                        format="png", elem_id="gan-sample-gallery",
                    )  # fmt: skip
            gr.Examples(
                [[42, 16, 1.5], [7, 8, 0.5], [2024, 32, 2.5]],
                inputs=[seed, count, truncation],
                label="Try these (compare truncation 0.5 and 2.5)",
            )
            dice.click(validation.random_seed, outputs=seed, api_visibility="private")
            sample_button.click(
                sample_faces, [seed, count, truncation], [gallery, grid_file], api_name="sample_faces",
                **CONCURRENCY,
            )

        with gr.Tab("Interpolate"):
            gr.Markdown(SLERP_NOTE)
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    seed_a = _seed_box(42, "Seed A")
                    seed_b = _seed_box(7, "Seed B")
                    frames = validation.CheckedSlider(2, MAX_FRAMES, value=12, step=1, label="Frames")
                    walk_truncation = validation.CheckedSlider(
                        *TRUNCATION_RANGE, value=DEFAULT_TRUNCATION, step=0.05, label="Truncation"
                    )
                    interpolate_button = gr.Button("Interpolate", variant="primary")
                with gr.Column(scale=3):
                    frame_strip = gr.Gallery(
                        label="Frames (A → B)", columns=6, height="auto", format="png",
                        elem_id="gan-interpolation-gallery",
                    )  # fmt: skip
                    with gr.Row():
                        animation = gr.Image(label="Animation", type="filepath", height=260)
                        gif_file = gr.File(label="Download GIF")
            interpolate_button.click(
                interpolate_faces,
                [seed_a, seed_b, frames, walk_truncation],
                [frame_strip, animation, gif_file],
                api_name="interpolate_faces",
                **CONCURRENCY,
            )

        with gr.Tab("Latent arithmetic") as arithmetic_tab:
            gr.Markdown(
                "The famous *glasses vector*: pick faces that share a feature (glasses, a smile, long hair) "
                "into **group A** and faces without it into **group B**. The difference of their average "
                "z is a direction that means that feature; adding it to another face adds the feature. "
                "Already picked: a **smile vector** (A smiling, B not) added to face 8."
            )
            numbers = [str(i) for i in range(1, GRID_SIZE + 1)]
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    grid_seed = _seed_box(SMILE_EXAMPLE["seed"], "Grid seed")
                    grid_truncation = validation.CheckedSlider(
                        *TRUNCATION_RANGE, value=DEFAULT_TRUNCATION, step=0.05, label="Truncation"
                    )
                    grid_button = gr.Button("Show 16 faces")
                    group_a = validation.CheckedCheckboxGroup(
                        numbers, value=SMILE_EXAMPLE["group_a"], label="Group A: faces WITH the feature",
                        elem_id="gan-group-a",
                    )
                    group_b = validation.CheckedCheckboxGroup(
                        numbers, value=SMILE_EXAMPLE["group_b"], label="Group B: faces WITHOUT it"
                    )
                    target = gr.Dropdown(numbers, value=SMILE_EXAMPLE["target"], label="Face to edit")
                    strength = validation.CheckedSlider(
                        -4, 4, value=SMILE_EXAMPLE["strength"], step=0.1, label="Strength"
                    )
                    arithmetic_button = gr.Button("Add A − B to the face", variant="primary")
                with gr.Column(scale=3):
                    grid = gr.Gallery(label="Pick from these", columns=8, height="auto", format="png")
                    edited = gr.Gallery(
                        label="Face + strength × (mean A − mean B)", columns=5, height="auto", format="png",
                        elem_id="gan-edited",
                    )
            # The grid fills in when the tab opens, so there is always something to pick from; the picks
            # above belong to the grid last shown (none yet: the first one drawn is the example's).
            shown_grid = gr.State(None)
            gr.on(
                [arithmetic_tab.select, grid_button.click], show_grid, [grid_seed, grid_truncation, shown_grid],
                [grid, group_a, group_b, shown_grid], api_visibility="private", **CONCURRENCY,
            )  # fmt: skip
            # The grid is brought up to date first, so the picks always name faces on screen (a changed
            # seed clears them, and the refusal then says to pick).
            arithmetic_button.click(
                show_grid, [grid_seed, grid_truncation, shown_grid], [grid, group_a, group_b, shown_grid],
                api_visibility="private", **CONCURRENCY,
            ).success(
                face_arithmetic,
                [grid_seed, grid_truncation, group_a, group_b, target, strength],
                edited,
                api_name="face_arithmetic",
                **CONCURRENCY,
            )  # fmt: skip

        with gr.Tab("How it works"):
            gr.Markdown(HOW_IT_WORKS)
