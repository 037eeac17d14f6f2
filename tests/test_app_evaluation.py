"""The Evaluate tab's endpoints through gradio_client against a real `python app.py` process."""

from __future__ import annotations

import pytest
from gradio_client import handle_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.evaluation.options import NEIGHBOURS, UPLOADED_IMAGES
from pipelines.evaluation.studies import gan_faces, untruncated_latents
from pipelines.gan.faces import truncated_latents
from tests.test_properties import assert_clear_refusal
from tests.test_properties_api import sendable


def _save(faces, folder, prefix: str) -> list[str]:
    paths = []
    for index, face in enumerate(faces):
        path = folder / f"{prefix}-{index:03d}.png"
        face.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def face_sets(tmp_path_factory) -> dict[str, list[str]]:
    """PNG files of untruncated GAN faces and of faces at truncation 0.25, as a script would upload them."""
    folder = tmp_path_factory.mktemp("evaluation-faces")
    return {
        "untruncated": _save(gan_faces(untruncated_latents(0, 16)), folder, "untruncated"),
        "typical": _save(gan_faces(truncated_latents(1, 16, 0.25)), folder, "typical"),
    }


def fid(client, images_a, images_b) -> dict:
    return client.predict(
        images_a=[handle_file(path) for path in images_a],
        images_b=[handle_file(path) for path in images_b],
        api_name="/fid",
    )


def test_a_set_against_itself_gives_fid_zero_and_full_precision_and_recall(client, face_sets):
    result = fid(client, face_sets["untruncated"], face_sets["untruncated"])
    assert result["fid"] == pytest.approx(0.0, abs=1e-6)
    assert (result["precision"], result["recall"]) == (1.0, 1.0)
    assert (result["images_a"], result["images_b"], result["neighbours"]) == (16, 16, NEIGHBOURS)
    assert "biased" in result["note"]


def test_typical_faces_are_far_from_the_generators_own_distribution(client, face_sets):
    result = fid(client, face_sets["untruncated"], face_sets["typical"])
    assert result["fid"] > 10.0
    assert 0.0 <= result["precision"] <= 1.0 and result["recall"] < 0.5  # 16 near-identical faces cover little
    again = fid(client, face_sets["untruncated"], face_sets["typical"])
    assert again == result


def test_fid_refuses_too_few_images_naming_the_minimum(client, face_sets):
    too_few = face_sets["untruncated"][:NEIGHBOURS]
    with pytest.raises(Exception, match=f"Set B has {NEIGHBOURS} image\\(s\\): at least {NEIGHBOURS + 1}"):
        fid(client, face_sets["untruncated"], too_few)


def test_fid_refuses_a_file_that_is_not_an_image_naming_it(client, face_sets, tmp_path):
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture")
    with pytest.raises(Exception, match="Set A, image 5 \\(holiday.png\\) is not an image file"):
        fid(client, [*face_sets["typical"][:4], str(fake)], face_sets["typical"])


def test_fid_refuses_more_images_than_the_stated_maximum(client, tmp_path):
    from PIL import Image

    path = tmp_path / "dot.png"
    Image.new("RGB", (2, 2), "white").save(path)
    too_many = [str(path)] * (int(UPLOADED_IMAGES.high) + 1)
    with pytest.raises(Exception, match=f"at most {int(UPLOADED_IMAGES.high)} a set"):
        fid(client, too_many, [str(path)] * 5)


@pytest.mark.slow
def test_fid_accepts_200_images_a_set(client, tmp_path):
    faces = _save(gan_faces(untruncated_latents(7, 200)), tmp_path, "face")
    result = fid(client, faces, faces[:100])
    assert (result["images_a"], result["images_b"]) == (200, 100)
    assert result["precision"] == 1.0  # B is part of A


def test_identical_text_gives_bleu_100(client):
    lines = "The sea is never still.\nWhales cross it without hurry."
    result = client.predict(candidates=lines, references=lines, api_name="/text_metrics")
    assert result["bleu"] == 100.0
    assert (result["rouge1"], result["rouge2"], result["rougeL"]) == (1.0, 1.0, 1.0)


def test_text_metrics_defaults_show_a_copy_and_a_paraphrase(client):
    result = client.predict(api_name="/text_metrics")
    assert result["line_bleu"][0] == 100.0 and result["line_bleu"][1] < 30
    assert 0 < result["bleu"] < 100 and 0 < result["rougeL"] < 1


def test_text_metrics_refuse_lines_that_do_not_pair_up(client):
    with pytest.raises(Exception, match="2 candidate lines, 1 reference lines"):
        client.predict(candidates="one\ntwo", references="one", api_name="/text_metrics")
    with pytest.raises(Exception, match="References is empty"):
        client.predict(candidates="one", references="", api_name="/text_metrics")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(candidates=st.one_of(st.text(max_size=60), sendable), references=st.one_of(st.text(max_size=60), sendable))
def test_text_metrics_answer_any_input_with_scores_or_a_clear_refusal(client, candidates, references):
    try:
        result = client.predict(candidates=candidates, references=references, api_name="/text_metrics")
    except Exception as error:  # gradio_client raises with the server's message
        assert_clear_refusal(error)
    else:
        assert 0 <= result["bleu"] <= 100 and all(0 <= result[k] <= 1 for k in ("rouge1", "rouge2", "rougeL"))


def test_a_live_study_refuses_sizes_beyond_its_range(client):
    with pytest.raises(Exception, match="Images a set must be from 8 to 64"):
        client.predict(study="vae-vs-gan", images=500, seed=0, api_name="/evaluation_study")
    with pytest.raises(Exception, match="is not in the list of choices.*gan-truncation"):
        client.predict(study="nonsense", images=8, seed=0, api_name="/evaluation_study")


@pytest.mark.slow
def test_a_live_vae_study_measures_reconstructions_and_prior_samples(client):
    fid_plot, precision_recall_plot, summary, table, data = client.predict(
        study="vae-vs-gan", images=8, seed=0, api_name="/evaluation_study"
    )
    assert fid_plot.endswith("-fid.png") and precision_recall_plot.endswith("-precision-recall.png")
    assert "reconstructions" in summary and "8 images a set" in summary
    assert [row[0] for row in table["data"]][:3] == [
        "GAN faces (another seed)",
        "VAE reconstructions",
        "VAE prior samples",
    ]
    assert data["images_per_set"] == 8 and data["floor"]["images"] == 8


@pytest.mark.slow
def test_the_text_example_runs_with_every_model(client):
    lesson, scores, continuations = client.predict(sample_text="Making soup", api_name="/text_example")
    models = [row[0] for row in scores["data"]]
    assert len(models) == 3 and models[2].startswith("transformer")
    assert "BLEU rewards copying" in lesson
    assert len(continuations["headers"]) == 5
