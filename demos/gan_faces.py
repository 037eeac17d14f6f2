"""GAN Faces tab: sample faces from a pretrained DCGAN, walk between two, add feature vectors."""

from __future__ import annotations

import gradio as gr

from demos import common, validation
from demos.outputs import output_path
from pipelines.core import registry
from pipelines.core.imaging import image_grid, save_gif, save_png, upscale
from pipelines.gan.options import FACES, FRAMES, STRENGTH, TRUNCATION

TAB_TITLE = "GAN Faces"
TAB_ID = "gan-faces"
# Requests run side by side so the pipeline can batch them into shared forward passes.
CONCURRENCY = common.concurrency("gan-faces", 32)

DISPLAY_SIZE = 192  # the model draws 64x64; shown 3x larger
GRID_SIZE = 16  # faces in the latent-arithmetic grid

HOW_IT_WORKS = """
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
SMILE_EXAMPLE = dict(seed=7, group_a=["2", "4", "13", "15"], group_b=["1", "7", "8", "14"], target="8")

SLERP_NOTE = (
    "Frames follow a **spherical** path (slerp): random Gaussian vectors all lie near a sphere, and a straight "
    "line between two of them dips through its near-empty middle, which gives faded faces."
)


def face_pipeline():
    """The DCGAN, loaded on first use; switched off with a clear message if its weights fail to load."""
    return registry.load("gan-faces")


def _display(images, captions=None):
    """Gallery items as PNG files this tab writes itself: faster than Gradio's own PNG encoding."""
    captions = captions or [None] * len(images)
    return [
        (str(save_png(upscale(image, DISPLAY_SIZE), output_path(".png", "gan-face-"))), caption)
        for image, caption in zip(images, captions)
    ]


def _truncation(value) -> float:
    return validation.in_range(value, TRUNCATION, "Truncation")


def sample_faces(seed=42, count=FACES.default, truncation=TRUNCATION.default):
    """Sample `count` faces for a seed; returns the gallery and a PNG grid to download."""
    seed = validation.seed(seed)
    count = validation.in_range(count, FACES, "Number of faces")
    truncation = _truncation(truncation)
    faces = face_pipeline().sample(seed, count, truncation)
    captions = [f"#{i + 1}" for i in range(count)]  # short: captions overlay the face
    grid = image_grid([upscale(face, 128) for face in faces], columns=8)
    grid_path = save_png(grid, output_path(".png", "gan-faces-"))
    return _display(faces, captions), str(grid_path)


def interpolate_faces(seed_a=42, seed_b=7, frames=FRAMES.default, truncation=TRUNCATION.default):
    """Frames from seed_a's first face to seed_b's, plus an animated GIF."""
    seed_a = validation.seed(seed_a, "Seed A")
    seed_b = validation.seed(seed_b, "Seed B")
    frames = validation.in_range(frames, FRAMES, "Frames")
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
    is_example = (seed, truncation) == (SMILE_EXAMPLE["seed"], TRUNCATION.default)
    picks_a, picks_b = (SMILE_EXAMPLE["group_a"], SMILE_EXAMPLE["group_b"]) if is_example else ([], [])
    return grid, picks_a, picks_b, [seed, truncation]


def face_arithmetic(seed, truncation, group_a, group_b, target, strength):
    """Add mean(z of group A) − mean(z of group B) to the target face at several strengths."""
    seed = validation.seed(seed, "Grid seed")
    truncation = _truncation(truncation)
    strength = validation.in_range(strength, STRENGTH, "Strength")
    picks_a, picks_b = validation.feature_groups(group_a, group_b, GRID_SIZE, "face")
    target_index = validation.whole_number(target, "Face to edit", 1, GRID_SIZE) - 1
    strengths = common.strength_ladder(strength)
    images = face_pipeline().attribute_edit(seed, picks_a, picks_b, target_index, strengths, truncation, GRID_SIZE)
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
                    seed = common.seed_row(42)
                    count = common.slider(FACES, "Number of faces")
                    truncation = common.slider(
                        TRUNCATION, "Truncation (lower = more typical faces, higher = more variety)"
                    )
                    sample_button = gr.Button("Sample faces", variant="primary")
                    grid_file = gr.File(label="Download all (PNG grid)")
                with gr.Column(scale=3):
                    gallery = gr.Gallery(
                        label="Generated faces",
                        columns=8,
                        height="auto",
                        object_fit="contain",
                        format="png",
                        elem_id="gan-sample-gallery",
                    )
            gr.Examples(
                [[42, 16, 1.5], [7, 8, 0.5], [2024, 32, 2.5]],
                inputs=[seed, count, truncation],
                label="Try these (compare truncation 0.5 and 2.5)",
            )
            sample_button.click(
                sample_faces,
                [seed, count, truncation],
                [gallery, grid_file],
                api_name="sample_faces",
                **CONCURRENCY,
            )

        with gr.Tab("Interpolate"):
            gr.Markdown(SLERP_NOTE)
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    seed_a = common.seed_row(42, "Seed A")
                    seed_b = common.seed_row(7, "Seed B")
                    frames = common.slider(FRAMES, "Frames")
                    walk_truncation = common.slider(TRUNCATION, "Truncation")
                    interpolate_button = gr.Button("Interpolate", variant="primary")
                with gr.Column(scale=3):
                    frame_strip = gr.Gallery(
                        label="Frames (A → B)",
                        columns=6,
                        height="auto",
                        format="png",
                        elem_id="gan-interpolation-gallery",
                    )
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
                    grid_seed = common.seed_row(SMILE_EXAMPLE["seed"], "Grid seed")
                    grid_truncation = common.slider(TRUNCATION, "Truncation")
                    grid_button = gr.Button("Show 16 faces")
                    group_a = validation.CheckedCheckboxGroup(
                        numbers,
                        value=SMILE_EXAMPLE["group_a"],
                        label="Group A: faces WITH the feature",
                        elem_id="gan-group-a",
                    )
                    group_b = validation.CheckedCheckboxGroup(
                        numbers, value=SMILE_EXAMPLE["group_b"], label="Group B: faces WITHOUT it"
                    )
                    target = gr.Dropdown(numbers, value=SMILE_EXAMPLE["target"], label="Face to edit")
                    strength = common.slider(STRENGTH, "Strength")
                    arithmetic_button = gr.Button("Add A − B to the face", variant="primary")
                with gr.Column(scale=3):
                    grid = gr.Gallery(label="Pick from these", columns=8, height="auto", format="png")
                    edited = gr.Gallery(
                        label="Face + strength × (mean A − mean B)",
                        columns=5,
                        height="auto",
                        format="png",
                        elem_id="gan-edited",
                    )
            # The grid fills in when the tab opens, so there is always something to pick from; the picks
            # above belong to the grid last shown (none yet: the first one drawn is the example's).
            shown_grid = gr.State(None)
            gr.on(
                [arithmetic_tab.select, grid_button.click],
                show_grid,
                [grid_seed, grid_truncation, shown_grid],
                [grid, group_a, group_b, shown_grid],
                api_visibility="private",
                trigger_mode="always_last",  # a click while the tab's first grid is drawn draws the new seed next
                **CONCURRENCY,
            )
            # The grid is brought up to date first, so the picks always name faces on screen (a changed
            # seed clears them, and the refusal then says to pick).
            arithmetic_button.click(
                show_grid,
                [grid_seed, grid_truncation, shown_grid],
                [grid, group_a, group_b, shown_grid],
                api_visibility="private",
                **CONCURRENCY,
            ).success(
                face_arithmetic,
                [grid_seed, grid_truncation, group_a, group_b, target, strength],
                edited,
                api_name="face_arithmetic",
                **CONCURRENCY,
            )
