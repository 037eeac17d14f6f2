"""A person's path through the GAN Faces tab in headless Chromium."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.conftest import SCREENSHOT_DIR


def wait_until_every_image_has_loaded(page, selector: str) -> None:
    """The gallery's <img> tags appear before their pictures arrive; a blank tile is a failure."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{selector} img')]"
        ".every(image => image.complete && image.naturalWidth > 0)",
        timeout=60_000,
    )


def test_sampling_faces_in_the_browser_shows_a_gallery(page):
    page.get_by_role("tab", name="GAN Faces").click()
    page.get_by_role("button", name="Sample faces").click()
    gallery = page.locator("#gan-sample-gallery")
    gallery.locator("img").first.wait_for(timeout=60_000)
    assert gallery.locator("img").count() >= 16
    wait_until_every_image_has_loaded(page, "#gan-sample-gallery")
    page.screenshot(path=SCREENSHOT_DIR / "gan-faces-sample.png", full_page=True)


def test_interpolating_in_the_browser_shows_frames(page):
    page.get_by_role("tab", name="GAN Faces").click()
    page.get_by_role("tab", name="Interpolate").click()
    page.get_by_role("button", name="Interpolate").click()
    frames = page.locator("#gan-interpolation-gallery")
    frames.locator("img").first.wait_for(timeout=60_000)
    assert frames.locator("img").count() >= 12
    wait_until_every_image_has_loaded(page, "#gan-interpolation-gallery")
    page.screenshot(path=SCREENSHOT_DIR / "gan-faces-interpolate.png", full_page=True)


def test_latent_arithmetic_works_at_once_and_clears_picks_on_a_new_grid(page):
    page.get_by_role("tab", name="GAN Faces").click()
    page.get_by_role("tab", name="Latent arithmetic").click()
    add = page.get_by_role("button", name="Add A − B to the face")
    add.click()  # the smile vector is already picked
    page.locator("#gan-edited img").nth(4).wait_for(timeout=60_000)
    assert page.locator("#gan-group-a input:checked").count() == 4

    # A new seed, then Add: the grid is redrawn, the old picks (faces of another grid) cleared, and the user told.
    page.get_by_label("Grid seed").fill("8")
    add.click()
    expect(page.locator("[data-testid='toast-body'].error").first).to_contain_text("Pick at least one face")
    assert page.locator("#gan-group-a input:checked").count() == 0
