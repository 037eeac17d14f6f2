"""Evaluation pipelines: the metrics against their textbook definitions, the FID Inception against the archive it
was converted from, the feature cache, BLEU/ROUGE and their highlighting, and the studies and families on the
app's real models (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from pipelines.core.weights import WEIGHTS_DIR
from pipelines.evaluation import image_metrics, inception, text_metrics
from pipelines.evaluation.families import FamilyRow, FamilyTable, distinct_bigrams
from pipelines.evaluation.image_metrics import SetComparison, compare_features, frechet_distance, precision_recall
from pipelines.evaluation.options import NEIGHBOURS, UPLOADED_IMAGES
from pipelines.evaluation.studies import Study, StudyPoint, short_label, summary
from pipelines.text.sample_texts import SAMPLE_TEXTS

# ----------------------------------------------------------------------------------------------- FID


def textbook_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The usual formula with scipy's matrix square root."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@pytest.mark.parametrize(("n_a", "n_b", "dimensions"), [(80, 60, 8), (300, 200, 32), (20, 30, 64)])
def test_fid_equals_the_textbook_formula(n_a, n_b, dimensions):
    """More images than dimensions (full-rank covariances) and fewer (singular ones, as with 2,048 features)."""
    rng = np.random.default_rng(n_a)
    a = rng.normal(size=(n_a, dimensions))
    b = rng.normal(0.3, 1.4, size=(n_b, dimensions)) @ rng.normal(size=(dimensions, dimensions)) / 3
    expected = textbook_fid(a, b)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    features = np.random.default_rng(0).normal(size=(50, 2048))  # fewer images than features, as in the app
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    shifts = [frechet_distance(features, features + shift) for shift in (0.1, 0.2, 0.4)]
    # Only the means differ: FID is exactly ||shift||^2 = 2048 shift^2.
    assert shifts == pytest.approx([2048 * 0.01, 2048 * 0.04, 2048 * 0.16], rel=1e-6)


def test_fid_refuses_sets_too_small_for_a_covariance():
    with pytest.raises(ValueError, match="at least 2 images"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))


# ----------------------------------------------------------------------------------------------- precision, recall


def test_precision_and_recall_of_a_set_with_itself_are_one():
    features = np.random.default_rng(1).normal(size=(40, 16))
    assert precision_recall(features, features) == (1.0, 1.0)


def test_a_set_far_from_the_reference_has_no_precision_and_no_recall():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(30, 8))
    assert precision_recall(reference, reference + 100.0) == (0.0, 0.0)


def test_a_collapsed_set_is_precise_but_covers_little():
    """Mode collapse: samples from one of two reference clusters all lie on the reference manifold (precision 1)
    but reach only that cluster (recall at most a half)."""
    rng = np.random.default_rng(3)
    reference = np.concatenate([rng.normal(0, 1, (50, 4)), rng.normal(20, 1, (50, 4))])
    collapsed = rng.normal(0, 0.5, (50, 4))
    precision, recall = precision_recall(reference, collapsed)
    assert precision == 1.0
    assert 0 < recall <= 0.5


def test_precision_recall_needs_more_images_than_neighbours():
    with pytest.raises(ValueError, match=f"more than {NEIGHBOURS} images"):
        precision_recall(np.zeros((NEIGHBOURS, 4)), np.ones((10, 4)))


def test_a_comparison_states_its_sizes_and_warns_about_small_sets():
    rng = np.random.default_rng(4)
    result = compare_features(rng.normal(size=(12, 8)), rng.normal(size=(10, 8))).as_json()
    assert {"fid", "precision", "recall", "images_a", "images_b", "neighbours", "note"} <= set(result)
    assert (result["images_a"], result["images_b"], result["neighbours"]) == (12, 10, NEIGHBOURS)
    assert "biased" in result["note"]
    assert SetComparison(1.0, 1.0, 1.0, 5000, 5000).note == ""


def test_uploads_accept_at_least_200_images_and_refuse_fewer_than_the_metrics_need():
    assert UPLOADED_IMAGES.low == NEIGHBOURS + 1
    assert UPLOADED_IMAGES.high >= 200


# ----------------------------------------------------------------------------------------------- the network


def test_tensorflow_resize_samples_source_pixels_at_x_times_in_over_out():
    """TensorFlow 1's resize (no half-pixel centres): 2 -> 4 samples 0, 0.5, 1 and 1.5 (clamped to the edge)."""
    pixels = torch.tensor([[[[0.0, 8.0], [16.0, 24.0]]]])
    resized = inception.resize_like_tensorflow(pixels, 4)
    assert resized[0, 0, 0].tolist() == [0.0, 4.0, 8.0, 8.0]
    assert resized[0, 0, :, 0].tolist() == [0.0, 8.0, 16.0, 16.0]
    same = torch.rand(1, 3, 7, 7)
    assert torch.equal(inception.resize_like_tensorflow(same, 7), same)


def test_images_become_uint8_299_pixels_in_rgb():
    grey_small = Image.new("L", (64, 48), 200)
    pixels = inception.inception_input(grey_small)
    assert pixels.shape == (3, 299, 299) and pixels.dtype == torch.uint8
    assert pixels.unique().tolist() == [200]
    exact = Image.fromarray(np.random.default_rng(5).integers(0, 256, (299, 299, 3), dtype=np.uint8))
    assert torch.equal(inception.inception_input(exact).permute(1, 2, 0), torch.from_numpy(np.array(exact)))
    assert inception.scale_to_inception_range(torch.tensor([0, 128, 255])).tolist() == [-1.0, 0.0, 127 / 128]


def test_the_network_has_the_fid_inception_shapes():
    model = inception.FIDInception()
    state = model.state_dict()
    assert len(state) == 376  # 94 convolutions: weight, beta, mean, var
    assert state["layers.conv.weight"].shape == (32, 3, 3, 3)
    assert state["layers.mixed_10.tower_2_conv.weight"].shape == (192, 2048, 1, 1)
    with pytest.raises(ValueError, match="299"):
        model(torch.zeros(1, 3, 64, 64))


class CountingModel(torch.nn.Module):
    """A stand-in for the Inception: features are the mean colour, repeated; counts the images it sees."""

    def __init__(self):
        super().__init__()
        self.images_seen = 0

    def forward(self, x):
        self.images_seen += len(x)
        return x.mean((2, 3)).repeat(1, inception.FEATURES // 3 + 1)[:, : inception.FEATURES]


def _solid(value: int) -> Image.Image:
    return Image.new("RGB", (16, 16), (value, 0, 0))


def test_features_are_cached_per_image_and_returned_in_order():
    from pipelines.core.device import DeviceChoice

    model = CountingModel()
    features = inception.InceptionFeatures(model, DeviceChoice(torch.device("cpu"), torch.float32))
    set_a = [_solid(v) for v in (10, 20, 30)]
    set_b = [_solid(v) for v in (30, 40, 10, 40)]
    first_a, first_b = features.features_of_sets([set_a, set_b], batch_size=2)
    assert model.images_seen == 4  # 10, 20, 30, 40: each distinct image once
    assert first_a.shape == (3, inception.FEATURES) and first_b.shape == (4, inception.FEATURES)
    assert np.array_equal(first_b[0], first_a[2]) and np.array_equal(first_b[1], first_b[3])
    assert first_a[0, 0] == pytest.approx((10 - 128) / 128)  # the red channel's mean, scaled to [-1, 1)
    progress = []
    again = features.features_of_sets(
        [set_b, [_solid(50)]], on_batch=lambda done, total: progress.append((done, total))
    )
    assert model.images_seen == 5 and progress == [(1, 1)]  # only the new image was computed
    assert np.array_equal(again[0], first_b)


def _archive():
    from pipelines.core.weights import pack_file

    return pack_file(inception.FID_INCEPTION_PACK, inception.TORCHSCRIPT_FILE)


@pytest.mark.slow
def test_the_converted_network_gives_the_archives_features(tmp_path):
    """The conversion's proof: the safetensors written for our FIDInception give the TorchScript's features."""
    from tools import convert_fid_inception as conversion

    folder = conversion.convert(tmp_path / "fid-inception")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    assert json.loads((folder / "config.json").read_text())["check"]["largest_feature_difference"] <= 1e-3
    ours = inception.load_fid_inception(folder).model.float()
    scripted = conversion.load_torchscript(_archive())
    generator = torch.Generator().manual_seed(123)  # other inputs than the conversion's own check
    images = torch.rand(3, 3, 299, 299, generator=generator) * 2 - 1
    images[2] = -1.0  # a black image too
    with torch.inference_mode():
        expected, found = scripted(images), ours(images)
    assert found.shape == (3, 2048)
    assert torch.allclose(found, expected, rtol=1e-4, atol=1e-5)
    assert (found[0] - found[1]).abs().max() > 1e-2  # different images, different features


@pytest.mark.slow
def test_the_app_converts_in_a_child_process_and_never_loads_torchscript_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "weights_folder", lambda: tmp_path / "fid-inception")
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("the app process loaded TorchScript"))
    folder = inception.converted_weights()
    assert (folder / "model.safetensors").is_file() and folder == tmp_path / "fid-inception"
    assert inception.load_fid_inception(folder).model is not None


def test_the_conversion_refuses_an_archive_with_another_checksum(tmp_path):
    from pipelines.core.weights import ModelSourceError
    from tools.convert_fid_inception import load_torchscript

    impostor = tmp_path / "default_1.pt"
    impostor.write_bytes(b"not the FID Inception")
    with pytest.raises(ModelSourceError, match="not the expected FID Inception archive"):
        load_torchscript(impostor)


@pytest.mark.slow
def test_real_features_gan_faces_against_themselves_and_against_truncated_ones():
    from pipelines.core import registry
    from pipelines.evaluation.studies import gan_faces, untruncated_latents
    from pipelines.gan.faces import truncated_latents

    faces = gan_faces(untruncated_latents(0, 12))
    same = image_metrics.compare_images(faces, faces)
    assert same.fid == pytest.approx(0.0, abs=1e-6) and (same.precision, same.recall) == (1.0, 1.0)
    typical = gan_faces(truncated_latents(1, 12, 0.25))
    other = image_metrics.compare_images(faces, typical)
    assert other.fid > 10.0
    features = registry.load("fid-inception").features(faces[:2])
    assert features.shape == (2, 2048) and np.isfinite(features).all() and (features >= 0).all()  # after ReLU


# ----------------------------------------------------------------------------------------------- text


def test_identical_text_gives_bleu_100_and_rouge_1():
    lines = ["The sea is never still.", "Whales cross it without hurry."]
    scores = text_metrics.score_lines(lines, lines)
    assert scores.bleu == 100.0
    assert (scores.rouge1, scores.rouge2, scores.rougeL) == (1.0, 1.0, 1.0)
    assert scores.line_bleu == [100.0, 100.0]


def test_scores_equal_sacrebleu_and_rouge_score_directly():
    import sacrebleu
    from rouge_score import rouge_scorer

    candidates = ["the cat sat on a mat", "a dog barked at night"]
    references = ["the cat sat on the mat", "the dog barked all night"]
    scores = text_metrics.score_lines(candidates, references)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(candidates, [references]).score)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected_l = np.mean([scorer.score(r, c)["rougeL"].fmeasure for c, r in zip(candidates, references)])
    assert scores.rougeL == pytest.approx(expected_l)
    assert 0 < scores.bleu < 100 and 0 < scores.rouge2 < scores.rouge1 < 1


def test_unrelated_text_scores_zero_and_mismatched_lines_are_refused():
    assert text_metrics.score_lines(["quantum chromodynamics"], ["the sea is still"]).bleu == 0.0
    with pytest.raises(ValueError, match="2 candidate lines, 1 reference lines"):
        text_metrics.score_lines(["a", "b"], ["a"])


def test_lines_are_split_and_limits_named():
    assert text_metrics.split_lines("one\ntwo\n\n", "Candidates") == ["one", "two"]
    with pytest.raises(ValueError, match="Candidates is empty"):
        text_metrics.split_lines("  \n", "Candidates")
    with pytest.raises(ValueError, match="over the limit of 1,000"):
        text_metrics.split_lines("x\n" * 1001, "References")


def test_matched_spans_mark_the_longest_shared_ngram_and_clip_repeats():
    spans = text_metrics.matched_spans("the cat sat down", "a cat sat here")
    assert spans == [("the", 0), ("cat", 2), ("sat", 2), ("down", 0)]
    # "the" appears once in the reference: BLEU counts one of the candidate's three.
    assert [length for _, length in text_metrics.matched_spans("the the the", "the cat")] == [1, 0, 0]
    assert text_metrics.matched_spans("Hello, world.", "Hello, world.")[1] == (",", 4)


def test_held_out_sentences_are_never_in_the_counted_text():
    held_out = text_metrics.held_out_sentences(SAMPLE_TEXTS["The sea"])
    assert held_out.prompts and len(held_out.prompts) == len(held_out.references) == len(held_out.contexts)
    for prompt, reference, context in zip(held_out.prompts, held_out.references, held_out.contexts):
        assert f"{prompt} {reference}" in held_out.held_out_text
        assert context.endswith(prompt) and len(prompt.split()) == text_metrics.PROMPT_WORDS
        assert reference not in held_out.training_text
    with pytest.raises(ValueError, match="two paragraphs"):
        text_metrics.held_out_sentences("One paragraph only.")


def test_the_example_shows_bleu_rewarding_a_model_that_copies():
    """Without the transformer (fast): the 4-gram model that counted the held-out paragraph recites it."""
    example = text_metrics.continuation_example(SAMPLE_TEXTS["The sea"], transformer=None)
    copier, counter = example.results
    assert copier.scores.bleu > 50 > counter.scores.bleu
    assert copier.perplexity is None  # it saw the text: its perplexity would mean nothing
    assert counter.perplexity_unit == "word" and 1 < counter.perplexity < math.inf
    assert 0 < counter.bits_per_character < 10
    again = text_metrics.continuation_example(SAMPLE_TEXTS["The sea"], transformer=None)
    assert again.results[1].candidates == counter.candidates  # same seed, same continuations


# ----------------------------------------------------------------------------------------------- studies, families


def _study(axis: str = "truncation") -> Study:
    points = [
        StudyPoint(f"truncation {t}", {"truncation": t}, fid, precision, recall, 10)
        for t, fid, precision, recall in ((0.5, 90.0, 0.9, 0.1), (1.0, 40.0, 0.8, 0.5), (2.0, 60.0, 0.6, 0.9))
    ]
    floor = StudyPoint("untruncated, another seed", {"truncation": None}, 30.0, 0.7, 0.7, 10)
    return Study("gan-truncation", "reference", 10, 0, points, floor, 1.0, axis)


def test_a_study_reads_its_own_numbers_and_survives_json():
    study = _study()
    assert [short_label(study, p) for p in study.points] == ["0.5", "1", "2"]
    text = summary(study)
    assert "0.5: 90% / 10%; 1: 80% / 50%; 2: 60% / 90%" in text and "truncation 1 (40" in text and "give 30" in text
    assert "hardly faces" not in text  # precision at the lowest truncation is high here
    stored = json.loads(json.dumps({"measured": "2026-12-03", "title": "an older title", **study.as_json()}))
    assert Study.from_json(stored) == study
    assert study.title.startswith("GAN faces")


def test_plots_are_drawn_from_a_study_and_a_table(tmp_path):
    from pipelines.evaluation.plots import families_figures, save_figures, study_figures

    row = dict(sample="x", quality_measure="q", diversity_measure="recall", likelihood="l", likelihood_value="v")
    rows = [
        FamilyRow(
            "GAN", "gan-faces", "DCGAN", seconds_per_sample=0.01, quality=50.0, diversity=0.5, training="t", **row
        ),
        FamilyRow(
            "Autoregressive (n-gram)",
            "ngram",
            "n-gram",
            seconds_per_sample=1e-4,
            quality=80.0,
            diversity=0.6,
            training="t",
            bits_per_character=1.4,
            **{**row, "diversity_measure": "distinct word pairs"},
        ),
    ]
    table = FamilyTable(rows, 8, 0, 1.0)
    assert FamilyTable.from_json(json.loads(json.dumps(table.as_json()))) == table
    study_plots = save_figures(study_figures(_study()), tmp_path / "gan-truncation")
    assert [p.name for p in study_plots] == ["gan-truncation-fid.png", "gan-truncation-precision-recall.png"]
    family_plots = save_figures(families_figures(table), tmp_path / "families")
    assert [p.name for p in family_plots] == ["families-speed.png", "families-images.png", "families-text.png"]
    for path in [*study_plots, *family_plots]:
        with Image.open(path) as image:
            assert image.size in ((560, 440), (460, 400))


def test_distinct_bigrams_count_repeats():
    assert distinct_bigrams([["a", "b", "c"], ["x", "y"]]) == 1.0
    assert distinct_bigrams([["a", "b", "a", "b"]]) == pytest.approx(2 / 3)
    assert distinct_bigrams([]) == 0.0


@pytest.mark.slow
def test_the_truncation_study_trades_recall_for_precision_on_the_real_gan():
    from pipelines.evaluation.studies import gan_truncation_study

    steps = []
    study = gan_truncation_study(images=12, seed=0, truncations=(0.25, 3.0), progress=lambda f, w: steps.append(f))
    low, high = study.points
    assert low.recall < high.recall and low.fid > high.fid
    assert study.images_per_set == 12 and low.images == 12
    assert steps == sorted(steps) and steps[-1] == pytest.approx(1.0)


@pytest.mark.slow
def test_the_families_table_is_measured_from_the_real_models():
    from pipelines.evaluation.families import measure_families

    table = measure_families(images=8, seed=0, transformer=False)
    by_id = {row.model_id: row for row in table.rows}
    assert set(by_id) == {"gan-faces", "vae-faces", "shapes-world", "ngram"}
    assert all(row.seconds_per_sample > 0 and math.isfinite(row.quality) for row in table.rows)
    assert by_id["gan-faces"].likelihood == "none" and by_id["ngram"].likelihood == "exact"
    assert "ELBO" in by_id["vae-faces"].likelihood and "nats" in by_id["vae-faces"].likelihood_value
    card = json.loads((WEIGHTS_DIR / "vae-faces" / "config.json").read_text())["training"]
    assert f"{card['steps']} steps" in by_id["vae-faces"].training  # read from its model card
    assert 0 <= by_id["shapes-world"].diversity <= 1
