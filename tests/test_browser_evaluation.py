"""A person's path through the Evaluate tab in headless Chromium: the shipped plots, FID of two uploaded sets, text
scores with their matches, and the families table whose names open the other tabs."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.conftest import SCREENSHOT_DIR
from tests.test_browser_app import PHONE, RESULT_TIMEOUT_MS, open_tab, press, wait_for_images


def open_evaluate(page, section: str | None = None) -> None:
    open_tab(page, "Evaluate")
    if section:
        page.get_by_role("tab", name=section, exact=True).click()


def test_the_tab_opens_on_the_shipped_plots_and_switches_study(page):
    open_evaluate(page)
    wait_for_images(page, "#evaluation-fid-plot", 1)
    summary = page.locator("#evaluation-summary")
    expect(summary).to_contain_text("Precomputed")
    expect(summary).to_contain_text("truncation")
    page.locator("#evaluation-study").get_by_text("VAE vs GAN").click()
    expect(summary).to_contain_text("reconstructions")
    wait_for_images(page, "#evaluation-fid-plot", 1)
    page.locator("#evaluation-fid-plot").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "evaluation-images.png")


def test_fid_of_the_example_faces(page):
    open_evaluate(page)
    press(page, page.get_by_role("button", name="Fill with example faces"))
    # The sets must have arrived before Compute reads them (the GAN's first use loads it).
    expect(page.locator("#evaluation-set-a").get_by_text("untruncated-24")).to_be_attached(timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#evaluation-set-b").get_by_text("truncation-1-24")).to_be_attached()
    press(page, page.locator("#evaluation-fid"))
    summary = page.locator("#evaluation-fid-summary")
    expect(summary).to_contain_text("FID", timeout=RESULT_TIMEOUT_MS)
    expect(summary).to_contain_text("24 and 24 images")
    expect(page.locator("#evaluation-fid-json")).to_contain_text("precision")
    summary.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "evaluation-fid.png")


def test_text_scores_highlight_the_shared_ngrams(page):
    open_evaluate(page, "Text")
    expect(page.locator("#evaluation-example-lesson")).to_contain_text("BLEU rewards copying")
    page.locator("#evaluation-references textarea").fill("the cat sat on the mat")
    page.locator("#evaluation-candidates textarea").fill("the cat sat on a rug")
    press(page, page.locator("#evaluation-score"))
    matches = page.locator("#evaluation-matches")
    expect(matches).to_contain_text("4-gram", timeout=30_000)  # "the cat sat on" is a shared 4-gram
    expect(page.locator("#evaluation-text-json")).to_contain_text("rougeL")
    matches.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "evaluation-text.png")


def test_a_family_name_opens_its_tab(page):
    open_evaluate(page, "Families")
    table = page.locator("#evaluation-families table")
    expect(table).to_be_visible(timeout=30_000)
    assert table.locator("tbody tr").count() == 5
    table.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "evaluation-families.png")
    table.get_by_role("link", name="VAE", exact=True).click()
    expect(page.get_by_role("tab", name="VAE Interpolation", exact=True).first).to_have_attribute(
        "aria-selected", "true"
    )


def test_the_tab_fits_a_phone(browser, app_url):
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("text=GenAI Playground", timeout=60_000)
        open_evaluate(page)
        wait_for_images(page, "#evaluation-fid-plot", 1)
        for section in ("Text", "Families"):
            page.get_by_role("tab", name=section, exact=True).click()
            page.wait_for_timeout(500)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{section}: the page is {overflow} px wider than the phone's screen"
        page.locator("#evaluation-families table").get_by_role("link", name="GAN", exact=True).click()
        expect(page.get_by_role("tab", name="GAN Faces", exact=True).first).to_have_attribute("aria-selected", "true")
    finally:
        context.close()
