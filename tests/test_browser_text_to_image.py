"""A person's path through the Text → Image tab in headless Chromium."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.conftest import SCREENSHOT_DIR


def test_generating_in_the_browser_shows_images_and_the_look_inside_strip(page):
    page.get_by_role("tab", name="Text → Image").click()
    page.get_by_role("button", name="Generate").click()
    page.locator("#t2i-gallery img").first.wait_for(timeout=120_000)
    strip = page.locator("#t2i-strip img")
    strip.first.wait_for(timeout=30_000)
    assert strip.count() == 6
    assert "image(s) in" in page.locator("#t2i-note").inner_text()
    page.get_by_text("How it works").click()
    page.get_by_text("Forward noising").wait_for(timeout=10_000)
    page.screenshot(path=SCREENSHOT_DIR / "text-to-image.png", full_page=True)


def test_an_example_prompt_fills_the_prompt_box(page):
    page.get_by_role("tab", name="Text → Image").click()
    page.get_by_text("blue square, top right, white background").first.click()
    expect(page.locator("#t2i-prompt textarea")).to_have_value(
        "blue square, top right, white background", timeout=10_000
    )
