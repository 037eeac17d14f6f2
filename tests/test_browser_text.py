"""A person's path through the Text Generation tab in headless Chromium."""

from __future__ import annotations

import time

from playwright.sync_api import expect

from tests.conftest import SCREENSHOT_DIR


def _open_tab(page, sub_tab: str = "Transformer") -> None:
    page.get_by_role("tab", name="Text Generation").click()
    page.get_by_role("tab", name=sub_tab).click()


def _output_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def test_generating_streams_text_and_looks_inside(page):
    _open_tab(page)
    page.locator("#text-max-new-tokens").get_by_role("spinbutton").fill("24")
    page.locator("#text-generate").click()
    page.locator("#text-status").get_by_text("tokens/s").wait_for(timeout=240_000)
    output = _output_text(page, "text-output")
    assert output.strip()
    # The generated tokens are shown (coloured) in Look inside; the table marks the chosen token.
    expect(page.locator("#text-look-inside span.token").first).to_be_visible()  # rendered after the status
    shown = "".join(page.locator("#text-look-inside").inner_text().split())
    assert "".join(output.split())[:12] in shown
    assert page.locator("#text-alternatives").get_by_text("chosen").count() >= 1
    # Clicking a token shows its alternatives.
    tokens = page.locator("#text-look-inside span.token")
    assert tokens.count() >= 2
    tokens.nth(1).click()
    expect(page.locator("#text-position").get_by_role("spinbutton")).to_have_value("2")
    page.locator("#text-look-inside").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_DIR / "text-generation-look-inside.png", full_page=True)


def test_stop_ends_a_long_generation_and_the_model_serves_again(page):
    _open_tab(page)
    page.locator("#text-max-new-tokens").get_by_role("spinbutton").fill("1024")
    page.locator("#text-mode").get_by_label("Completion").check()
    page.locator("#text-prompt textarea").fill("Here is a very long story about a lighthouse keeper.")
    page.locator("#text-generate").click()
    deadline = time.monotonic() + 240
    while not _output_text(page, "text-output").strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    page.locator("#text-stop").click()
    page.locator("#text-status").get_by_text("Stopped").wait_for(timeout=10_000)
    time.sleep(1.5)
    stopped = _output_text(page, "text-output")
    time.sleep(3)
    assert stopped.strip() and _output_text(page, "text-output") == stopped  # no more tokens arrive
    page.locator("#text-max-new-tokens").get_by_role("spinbutton").fill("8")
    # Another prompt: with the same one and seed, 8 tokens can be exactly the stopped text (digits are a token each).
    page.locator("#text-prompt textarea").fill("The recipe for a good soup starts with")
    page.locator("#text-generate").click()
    page.locator("#text-status").get_by_text("tokens/s").wait_for(timeout=60_000)  # the model was freed
    assert _output_text(page, "text-output").strip() and _output_text(page, "text-output") != stopped


def test_ngram_tab_generates_and_shows_candidates(page):
    _open_tab(page, "n-gram model")
    page.locator("#ngram-sample").get_by_role("combobox").click()
    page.get_by_role("option", name="A fairy tale").click()
    page.locator("#ngram-generate").click()
    page.locator("#ngram-info").get_by_text("distinct contexts").first.wait_for(timeout=60_000)
    assert _output_text(page, "ngram-output").strip()
    page.screenshot(path=SCREENSHOT_DIR / "text-generation-ngram.png", full_page=True)


def test_the_page_loads_nothing_from_outside(page):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.reload()
    page.wait_for_selector("text=GenAI Playground", timeout=60_000)
    _open_tab(page)
    page.wait_for_timeout(1000)
    outside = [url for url in requests if not url.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert requests and not outside
