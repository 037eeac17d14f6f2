"""A person's path through the Training tab in headless Chromium: runs drawn live, Stop, a closed page, every
sub-tab on a desktop and a phone."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.conftest import SCREENSHOT_DIR
from tests.test_browser_app import PHONE, RESULT_TIMEOUT_MS, open_tab

RUN_TIMEOUT_MS = 300_000  # a run on a busy 2-core machine, and the first one imports its libraries


def open_training(page: Page, sub_tab: str) -> None:
    open_tab(page, "Training")
    page.get_by_role("tab", name=sub_tab, exact=True).filter(visible=True).first.click()


def set_number(page: Page, elem_id: str, value: int | float) -> None:
    page.locator(f"#{elem_id} input[type=number]").first.fill(str(value))


def plot_source(page: Page, elem_id: str) -> str:
    """The data URL of the figure a gr.Plot shows ('' before the first)."""
    images = page.locator(f"#{elem_id} img")
    return (images.first.get_attribute("src") or "") if images.count() else ""


def test_a_gan_run_is_drawn_live_and_ends_with_its_data(page):
    open_training(page, "GAN")
    set_number(page, "gan-steps", 400)
    page.locator("#gan-train").click()
    frames: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while "Done" not in page.locator("#gan-status").inner_text():
        assert time.monotonic() < deadline, "the run did not finish"
        frames.add(plot_source(page, "gan-points"))
        page.wait_for_timeout(150)
    frames.discard("")
    assert len(frames) >= 3, "the plots were not redrawn while the run went on"
    expect(page.locator("#gan-status")).to_contain_text("of 8 modes")
    page.get_by_text("Run data (the JSON the API returns)").first.click()
    expect(page.locator("#gan-json")).to_contain_text("samples")
    page.locator("#gan-points").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "training-gan.png", full_page=True)


def test_the_mode_collapse_preset_changes_the_learning_rates_and_says_why(page):
    open_training(page, "GAN")
    page.locator("#gan-preset").get_by_text("Mode collapse").click()
    expect(page.locator("#gan-preset-note")).to_contain_text("10×")
    assert page.get_by_label("G learning rate").input_value() == "0.002"
    assert page.get_by_label("D learning rate").input_value() == "0.0002"


def test_stop_ends_a_run_and_the_trainer_serves_again(page):
    open_training(page, "GAN")
    set_number(page, "gan-steps", 5000)
    page.locator("#gan-train").click()
    expect(page.locator("#gan-status")).to_contain_text("Training", timeout=RUN_TIMEOUT_MS)
    page.locator("#gan-stop").click()
    expect(page.locator("#gan-status")).to_contain_text("Stopped", timeout=10_000)
    page.wait_for_timeout(1_500)
    stopped = plot_source(page, "gan-points")
    page.wait_for_timeout(4_000)
    assert plot_source(page, "gan-points") == stopped, "the plot kept changing after Stop"
    set_number(page, "gan-steps", 20)
    page.locator("#gan-train").click()
    expect(page.locator("#gan-status")).to_contain_text("Done", timeout=RUN_TIMEOUT_MS)


def test_closing_the_page_stops_its_runs(browser, app_url, client):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        for _ in range(2):  # as many runs as the app takes at once
            page = context.new_page()
            page.goto(app_url)
            page.wait_for_selector("text=GenAI Playground", timeout=60_000)
            open_training(page, "GAN")
            set_number(page, "gan-steps", 5000)
            page.locator("#gan-train").click()
            expect(page.locator("#gan-status")).to_contain_text("Training", timeout=RUN_TIMEOUT_MS)
        try:
            client.predict(steps=10, api_name="/train_gan")
            raise AssertionError("a third run was accepted while two ran")
        except Exception as error:
            assert "Busy" in str(error), error
    finally:
        context.close()  # both pages close mid-run
    deadline = time.monotonic() + 60
    while True:
        try:
            assert "Done" in client.predict(steps=10, api_name="/train_gan")[2]
            return
        except Exception as error:
            assert "Busy" in str(error) and time.monotonic() < deadline, f"the runs went on: {error}"
            time.sleep(1)


def test_the_vae_character_model_and_ar_sub_tabs_work(page):
    open_training(page, "VAE")
    set_number(page, "vae-steps", 100)
    page.locator("#vae-train").click()
    expect(page.locator("#vae-status")).to_contain_text("Done", timeout=RUN_TIMEOUT_MS)
    assert plot_source(page, "vae-live-latent").startswith("data:image")
    page.screenshot(path=SCREENSHOT_DIR / "training-vae.png", full_page=True)

    open_training(page, "Character model")
    set_number(page, "char-steps", 60)
    page.locator("#char-train").click()
    expect(page.locator("#char-status")).to_contain_text("Done", timeout=RUN_TIMEOUT_MS)
    for index in range(3):
        assert page.locator(f"#char-sample-{index} textarea").input_value().startswith("The ")
    assert "step 60" in page.locator("#char-history textarea").input_value()
    page.screenshot(path=SCREENSHOT_DIR / "training-char.png", full_page=True)

    open_training(page, "AR(p)")
    expect(page.locator("#ar-notes")).to_contain_text("one step at a time", timeout=RESULT_TIMEOUT_MS)
    page.locator("#ar-preset").get_by_role("combobox").click()
    page.get_by_role("option", name="Seed 000 §8 (an MA(1))").click()
    expect(page.locator("#ar-notes")).to_contain_text("not 0.6", timeout=RESULT_TIMEOUT_MS)
    page.locator("#ar-series textarea").fill("1, 2, x")
    page.locator("#ar-fit").click()
    expect(page.locator("[data-testid='toast-body'].error").first).to_contain_text("'x'", timeout=30_000)
    page.screenshot(path=SCREENSHOT_DIR / "training-ar.png", full_page=True)


def test_every_training_sub_tab_fits_a_phone(browser, app_url):
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("text=GenAI Playground", timeout=60_000)
        for sub_tab in ("GAN", "VAE", "Character model", "AR(p)"):
            open_training(page, sub_tab)
            page.wait_for_timeout(500)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{sub_tab}: the page is {overflow} px wider than the phone's screen"
        expect(page.locator("#ar-notes")).to_contain_text("one step at a time", timeout=RESULT_TIMEOUT_MS)
        page.locator("#ar-series-plot").scroll_into_view_if_needed()
        page.screenshot(path=SCREENSHOT_DIR / "training-ar-phone.png")
    finally:
        context.close()


def test_side_by_side_puts_the_character_model_between_the_n_gram_model_and_the_transformer(page):
    open_tab(page, "Text Generation")
    page.get_by_role("tab", name="Side by side", exact=True).click()
    page.get_by_role("button", name="Compare", exact=True).click()
    column = page.locator("#compare-char textarea")
    expect(column).to_have_value(re.compile(r"^At night the sea\S*\s?\S"), timeout=RUN_TIMEOUT_MS)
    columns = [page.get_by_label(name, exact=True) for name in ("n-gram model", "Character LSTM", "Transformer")]
    lefts = [column.bounding_box()["x"] for column in columns]
    assert lefts == sorted(lefts), "counting, memory, attention: left to right"
    page.screenshot(path=SCREENSHOT_DIR / "training-side-by-side.png", full_page=True)
