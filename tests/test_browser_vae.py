"""A person's path through the VAE Interpolation tab in headless Chromium."""

from __future__ import annotations

from tests.conftest import SCREENSHOT_DIR


def open_tab(page):
    page.get_by_role("tab", name="VAE Interpolation").click()
    # The page load fills the example gallery and prefills images A and B with examples #1 and #2.
    page.locator("#vae-examples img").first.wait_for(timeout=120_000)
    page.locator("#vae-image-b img").first.wait_for(timeout=60_000)


def test_interpolating_two_examples_shows_frames_and_reconstructions(page):
    open_tab(page)
    assert page.locator("#vae-examples img").count() >= 24
    page.get_by_role("button", name="Interpolate").click()
    frames = page.locator("#vae-frames")
    frames.locator("img").first.wait_for(timeout=60_000)
    assert frames.locator("img").count() >= 10
    page.locator("#vae-reconstructions img").nth(3).wait_for(timeout=60_000)
    page.screenshot(path=SCREENSHOT_DIR / "vae-interpolate.png", full_page=True)


def test_digits_latent_map_is_drawn_and_a_click_decodes_a_point(page):
    open_tab(page)
    page.locator("#vae-model input").click()
    page.get_by_role("option", name="Digits").click()
    page.get_by_role("tab", name="Latent map").click()
    map_image = page.locator("#vae-latent-map img[src*=file]")
    map_image.first.wait_for(timeout=120_000)
    first_source = map_image.first.get_attribute("src")
    map_image.first.click(position={"x": 120, "y": 140})
    page.wait_for_function(
        "src => { const i = document.querySelector('#vae-latent-map img[src*=file]'); return i && i.src !== src; }",
        arg=first_source,
        timeout=60_000,
    )
    page.screenshot(path=SCREENSHOT_DIR / "vae-latent-map.png", full_page=True)


def test_a_digit_drawn_on_the_sketchpad_becomes_image_a(page):
    open_tab(page)
    page.locator("#vae-model input").click()
    page.get_by_role("option", name="Digits").click()
    # The gallery and image A are filled by the same event: once digits are captioned, A holds digit #1.
    page.locator("#vae-examples").get_by_text("(digit").first.wait_for(timeout=60_000)
    before = page.locator("#vae-image-a img[src*=file]").first.get_attribute("src")
    page.locator("#vae-sketchpad button[aria-label='Brush']").click()
    box = page.locator("#vae-sketchpad canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + 30
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(20):  # a slanted stroke: a "1"
        page.mouse.move(x - step, y + step * 9)
    page.mouse.up()
    page.get_by_role("button", name="Use drawing as A").click()
    page.wait_for_function(
        "src => { const i = document.querySelector('#vae-image-a img[src*=file]'); return i && i.src !== src; }",
        arg=before,
        timeout=60_000,
    )
    page.screenshot(path=SCREENSHOT_DIR / "vae-sketchpad.png", full_page=True)
