"""A person's path through the Diffusion lab tab in headless Chromium, on a desktop and on a phone."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.conftest import SCREENSHOT_DIR
from tests.test_browser_app import (
    ERROR_TOASTS,
    PHONE,
    RESULT_TIMEOUT_MS,
    TAB_TIMEOUT_SECONDS,
    open_tab,
    press,
    wait_for_images,
)


def open_part(page: Page, name: str) -> None:
    """One of the lab's four parts; on a narrow screen the ones that do not fit sit in its "More tabs" menu."""
    parts = page.locator("#lab-parts")
    tab = parts.get_by_role("tab", name=name, exact=True).first
    deadline = time.monotonic() + TAB_TIMEOUT_SECONDS
    while not tab.is_visible():
        more = parts.get_by_role("button", name="More tabs").first
        if more.is_visible():
            more.click()
            item = parts.locator(".overflow-dropdown button", has_text=name).first
            if item.is_visible():
                item.click()
                break
        assert time.monotonic() < deadline, f"part {name!r} is neither in the lab's tab bar nor in its menu"
        page.wait_for_timeout(250)
    else:
        tab.click()
    expect(parts.get_by_role("tab", name=name, exact=True).first).to_have_attribute("aria-selected", "true")


def set_steps(page: Page, part: str, steps: int) -> None:
    """Fewer denoising steps: the result comes sooner on a busy machine (the default is 20)."""
    page.locator(f"#lab-{part}-steps").get_by_role("spinbutton").fill(str(steps))


def image_source(page: Page, selector: str) -> str:
    return page.locator(f"{selector} img").first.get_attribute("src") or ""


def test_the_forward_process_shows_x_t_the_estimates_the_strip_and_the_schedule(page):
    open_tab(page, "Diffusion lab")
    page.locator("#lab-image img").first.wait_for(timeout=RESULT_TIMEOUT_MS)  # the starting picture
    timestep = page.get_by_label("Timestep t (0 = clean, 999 = noise)", exact=False).filter(visible=True).first
    timestep.fill("999")
    timestep.press("Enter")
    press(page, page.locator("#lab-forward-run"))
    wait_for_images(page, "#lab-forward-strip", 8)
    wait_for_images(page, "#lab-estimates", 2)
    wait_for_images(page, "#lab-noisy", 1)
    wait_for_images(page, "#lab-schedule", 1)
    expect(page.locator("#lab-forward-note")).to_contain_text("t = 999")
    page.get_by_text("How it works").last.click()
    page.get_by_text("Forward process.").first.wait_for(timeout=10_000)
    page.screenshot(path=SCREENSHOT_DIR / "diffusion-lab-forward.png", full_page=True)


def test_image_to_image_redraws_climbs_the_strength_ladder_and_feeds_back_its_result(page):
    open_tab(page, "Diffusion lab")
    open_part(page, "Image-to-image")
    set_steps(page, "i2i", 10)
    press(page, page.locator("#lab-i2i-run"))
    wait_for_images(page, "#lab-i2i-result", 1)
    expect(page.locator("#lab-i2i-note")).to_contain_text("Strength 0.2", timeout=RESULT_TIMEOUT_MS)
    wait_for_images(page, "#lab-i2i-strip", 3)  # the input and 2 steps
    press(page, page.locator("#lab-ladder-run"))
    wait_for_images(page, "#lab-ladder", 6)  # the input and 5 strengths
    expect(page.locator("#lab-ladder")).to_contain_text("strength 1")
    page.screenshot(path=SCREENSHOT_DIR / "diffusion-lab-image-to-image.png", full_page=True)

    before = image_source(page, "#lab-image")
    press(page, page.get_by_role("button", name="Use the result as the input picture").filter(visible=True).first)
    page.wait_for_function(
        "([selector, before]) => { const i = document.querySelector(selector + ' img');"
        " return i && i.src !== before; }",
        arg=["#lab-image", before],
        timeout=30_000,
    )


def test_inpainting_with_a_painted_stroke_and_with_grid_cells(page):
    open_tab(page, "Diffusion lab")
    open_part(page, "Inpainting")
    wait_for_images(page, "#lab-mask-preview", 1)  # the starting mask: the right-hand cell
    page.locator("#lab-cells").get_by_label("right", exact=True).uncheck()
    expect(page.locator("#lab-mask-preview img")).to_have_count(0, timeout=30_000)  # nothing picked, no mask
    press(page, page.locator("#lab-inpaint-run"))
    expect(page.locator(ERROR_TOASTS).first).to_contain_text("The mask is missing", timeout=30_000)

    # Paint over the right-hand side of the picture with the brush, in three strokes.
    canvas = page.locator("#lab-editor canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for row in (0.42, 0.5, 0.58):
        y = box["y"] + box["height"] * row
        page.mouse.move(box["x"] + box["width"] * 0.52, y)
        page.mouse.down()
        for step in range(1, 9):
            page.mouse.move(box["x"] + box["width"] * (0.52 + 0.02 * step), y)
        page.mouse.up()
    wait_for_images(page, "#lab-mask-preview", 1)

    # A cell picked just before the click is part of the mask the click uses.
    page.locator("#lab-cells").get_by_label("top", exact=True).check()
    set_steps(page, "inpaint", 8)
    press(page, page.locator("#lab-inpaint-run"))
    wait_for_images(page, "#lab-inpaint-result", 1)
    expect(page.locator("#lab-inpaint-note")).to_contain_text("Repainted", timeout=RESULT_TIMEOUT_MS)
    wait_for_images(page, "#lab-inpaint-strip", 3)
    note = page.locator("#lab-inpaint-note").inner_text()
    assert int(note.split("Repainted ")[1].split("%")[0]) > 25, note  # the top cell (25%) and the strokes
    page.screenshot(path=SCREENSHOT_DIR / "diffusion-lab-inpainting.png", full_page=True)


def test_cross_attention_shows_one_map_per_word_at_every_level(page):
    open_tab(page, "Diffusion lab")
    open_part(page, "Cross-attention")
    set_steps(page, "attention", 8)
    press(page, page.locator("#lab-attention-run"))
    wait_for_images(page, "#lab-heatmaps", 11)  # "a large red circle on the left on a white background"
    expect(page.locator("#lab-heatmaps")).to_contain_text("circle")
    first = image_source(page, "#lab-heatmaps")
    page.get_by_label("8x8", exact=True).check()
    page.wait_for_function(
        "([selector, before]) => { const i = document.querySelector(selector + ' img');"
        " return i && i.src !== before; }",
        arg=["#lab-heatmaps", first],
        timeout=30_000,
    )
    wait_for_images(page, "#lab-heatmaps", 11)
    page.screenshot(path=SCREENSHOT_DIR / "diffusion-lab-cross-attention.png", full_page=True)


def test_a_drawn_scene_becomes_the_input_with_its_caption(page):
    open_tab(page, "Diffusion lab")
    before = image_source(page, "#lab-image")
    page.get_by_label("Scene seed").fill("7")
    press(page, page.get_by_role("button", name="Draw a shapes-world scene"))
    expect(page.get_by_label("The scene's caption")).not_to_have_value("", timeout=30_000)
    assert image_source(page, "#lab-image") != before


def test_every_part_fits_a_phone_screen(browser, app_url):
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("text=GenAI Playground", timeout=60_000)
        open_tab(page, "Diffusion lab")
        for part in ("Forward process", "Image-to-image", "Inpainting", "Cross-attention"):
            open_part(page, part)
            page.wait_for_timeout(300)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{part}: the page is {overflow} px wider than the phone's screen"
        press(page, page.locator("#lab-attention-run"))
        wait_for_images(page, "#lab-heatmaps", 11)
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        page.screenshot(path=SCREENSHOT_DIR / "diffusion-lab-phone.png", full_page=True)
    finally:
        context.close()
