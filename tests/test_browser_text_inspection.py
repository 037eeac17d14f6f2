"""Inside the transformer in headless Chromium: attention after a generation (click a token, a heat-map row, a head),
branching from an alternative, and the Perplexity sub-tab, on a desktop and a phone."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.conftest import SCREENSHOT_DIR
from tests.test_browser_app import PHONE, RESULT_TIMEOUT_MS, open_tab, press


def _open_sub_tab(page: Page, name: str) -> None:
    """A sub-tab of Text Generation; on a phone the ones that do not fit sit in the sub-tab bar's "More tabs" menu."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.is_visible():
        tab.click()
        return
    menus = page.get_by_role("button", name="More tabs")
    for index in range(menus.count()):
        menu = menus.nth(index)
        if not menu.is_visible():
            continue
        menu.click()
        item = page.locator(".overflow-dropdown button", has_text=name).first
        if item.is_visible():
            item.click()
            return
        menu.click()  # not this menu: close it again
    raise AssertionError(f"sub-tab {name!r} not found")


def _row_note(page: Page) -> str:
    return page.locator("#attention-row-note").inner_text()


def test_attention_after_generating_and_clicking_tokens_rows_and_heads(page):
    open_tab(page, "Text Generation")
    page.locator("#text-max-new-tokens").get_by_role("spinbutton").fill("16")
    press(page, page.locator("#text-generate"))
    # The attention view follows the generation by itself.
    expect(page.locator("#attention-recompute")).to_contain_text("Largest difference", timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#attention-note")).to_contain_text("layer 2 of 30, mean of all 9 heads")
    total = len(page.locator("#attention-tokens span.token").all())
    assert total > 16
    expect(page.locator("#attention-row-note")).to_contain_text(f"Token {total} of {total}")

    # Click a token of the text: its row is drawn over the text (it is purple, earlier tokens red).
    poem = page.locator("#attention-tokens span.token").filter(has_text="poem").first
    poem.click()
    expect(page.locator("#attention-row-note")).to_contain_text("“␣poem”")
    expect(poem).to_have_css("background-color", "rgb(128, 90, 213)")

    # Click the top row of the heat-map: the same view for the first token shown.
    heat_map = page.locator("#attention-map img")
    heat_map.scroll_into_view_if_needed()
    before = _row_note(page)
    box = heat_map.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.12)
    expect(page.locator("#attention-row-note")).not_to_have_text(before)

    # Click the middle head of the grid: head 5, which shares key/value head 2.
    grid = page.locator("#attention-heads img")
    box = grid.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    expect(page.locator("#attention-note")).to_contain_text("head 5 (it reads key/value head 2 of 3)", timeout=60_000)
    expect(page.locator("#attention-head").get_by_role("spinbutton")).to_have_value("5")
    expect(page.locator("#attention-recompute")).to_contain_text("query heads 4–6")
    page.locator("#attention-note").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "text-inspection-attention.png", full_page=False)


def test_branching_from_an_alternative_keeps_the_original_beside_it(page):
    open_tab(page, "Text Generation")
    page.locator("#text-max-new-tokens").get_by_role("spinbutton").fill("12")
    press(page, page.locator("#text-generate"))
    expect(page.locator("#text-alternatives")).to_contain_text("chosen", timeout=RESULT_TIMEOUT_MS)
    output = page.locator("#text-output textarea").input_value()
    # The second-ranked token of the most surprising position (the table opens there).
    alternative = page.locator("#text-alternatives").get_by_test_id("cell-1-1")
    press(page, alternative)
    expect(page.locator("#text-branch-status")).to_contain_text("The branch wrote", timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#text-branch-status")).to_contain_text("Branching at token")
    original = page.locator("#text-branch-original").inner_text()
    branch = page.locator("#text-branch").inner_text()
    assert "".join(output.split())[:8] in "".join(original.split())
    assert "new continuation" in branch and branch != original
    page.locator("#text-branch-status").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "text-inspection-branch.png", full_page=False)


def _score(page: Page, example: str | None = None) -> None:
    _open_sub_tab(page, "Perplexity")
    if example:
        page.get_by_text(example, exact=True).first.click()
        expect(page.locator("#perplexity-text textarea")).to_have_value(example)
    summary = page.locator("#perplexity-summary")
    before = summary.inner_text()
    press(page, page.locator("#perplexity-score"))
    expect(summary).not_to_have_text(before, timeout=RESULT_TIMEOUT_MS)  # the new result, not the last one
    expect(summary).to_contain_text("bits a character", timeout=RESULT_TIMEOUT_MS)
    expect(summary).not_to_contain_text("processing", timeout=RESULT_TIMEOUT_MS)


def test_perplexity_colours_each_token_and_shuffled_words_score_worse(page):
    open_tab(page, "Text Generation")
    _score(page)
    natural = page.locator("#perplexity-summary").inner_text()
    assert page.locator("#perplexity-transformer span.token").count() >= 10
    assert page.locator("#perplexity-ngram span.token").count() >= 10
    page.locator("#perplexity-summary").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "text-inspection-perplexity.png", full_page=False)
    _score(page, "tide harbour the come boats to for in wait the in The.")
    shuffled = page.locator("#perplexity-summary").inner_text()
    assert shuffled != natural

    def transformer_perplexity(summary: str) -> float:
        return float(summary.split("perplexity ", 1)[1].split(" ", 1)[0].replace(",", ""))

    assert transformer_perplexity(shuffled) > 3 * transformer_perplexity(natural)


def test_the_views_fit_a_phone(browser, app_url):
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("text=GenAI Playground", timeout=60_000)
        open_tab(page, "Text Generation")
        press(page, page.locator("#attention-show"))
        expect(page.locator("#attention-recompute")).to_contain_text("Largest difference", timeout=RESULT_TIMEOUT_MS)
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        _score(page)
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        page.locator("#perplexity-summary").scroll_into_view_if_needed()
        page.screenshot(path=SCREENSHOT_DIR / "text-inspection-phone.png", full_page=False)
    finally:
        context.close()
