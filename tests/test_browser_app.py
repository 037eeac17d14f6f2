"""The whole app in headless Chromium: every tab used once as a person would, on a desktop and on a phone.

Screenshots (small palette PNGs) go to artifacts/screenshots/app-desktop-*.png and app-phone-*.png;
`make screenshots` copies them into docs/screenshots/ for the README.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from PIL import Image
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.conftest import SCREENSHOT_DIR

PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=1)
ERROR_TOASTS = "[data-testid='toast-body'].error"
TAB_TIMEOUT_SECONDS = 30
NOTICE_TIMEOUT_MS = 20_000  # gr.Info closes itself after 10 s
RESULT_TIMEOUT_MS = 240_000  # a model's first use loads it; on a busy 2-core machine that takes a while


def open_tab(page: Page, name: str) -> None:
    """Click a top-level tab; on a narrow screen Gradio moves tabs that do not fit into a "More tabs" menu.

    Gradio measures which tabs fit only after its first layout (and again on resize), so a tab can be in
    neither place for a moment: look again until it is in one of them.
    """
    tab = page.get_by_role("tab", name=name, exact=True).first
    more_tabs = page.get_by_role("button", name="More tabs").first
    menu_item = page.locator(".overflow-dropdown button", has_text=name).first
    deadline = time.monotonic() + TAB_TIMEOUT_SECONDS
    while True:
        if tab.is_visible():
            tab.click()
            break
        if more_tabs.is_visible():
            more_tabs.click()
            try:
                menu_item.click(timeout=3_000)
                break
            except PlaywrightTimeoutError:
                if more_tabs.is_visible():
                    more_tabs.click()  # close the menu again before looking once more
        assert time.monotonic() < deadline, f"tab {name!r} is neither in the tab bar nor in the More tabs menu"
        page.wait_for_timeout(250)
    expect(page.get_by_role("tab", name=name, exact=True).first).to_have_attribute("aria-selected", "true")


def wait_for_images(page: Page, selector: str, minimum: int) -> None:
    """At least `minimum` <img> under `selector`, every one with its picture loaded (no blank tiles)."""
    page.wait_for_function(
        "([selector, minimum]) => { const images = [...document.querySelectorAll(selector + ' img')];"
        " return images.length >= minimum && images.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector, minimum],
        timeout=RESULT_TIMEOUT_MS,
    )


def press(page: Page, button) -> None:
    """A person's click: the button must be on screen (scrolled to), visible and not covered."""
    button.scroll_into_view_if_needed()
    expect(button).to_be_visible()
    button.click()  # Playwright refuses to click an element that another element covers


def use_text_to_image(page: Page) -> str:
    open_tab(page, "Text → Image")
    page.locator("#t2i-prompt textarea").fill("a large blue square at the top on a white background")
    press(page, page.get_by_role("button", name="Generate", exact=True))
    wait_for_images(page, "#t2i-gallery", 1)
    wait_for_images(page, "#t2i-strip", 2)
    expect(page.locator("#t2i-note")).to_contain_text("image(s) in")
    return "#t2i-gallery"


def use_diffusion_lab(page: Page) -> str:
    open_tab(page, "Diffusion lab")
    page.locator("#lab-image img").first.wait_for(timeout=RESULT_TIMEOUT_MS)  # the starting picture
    press(page, page.locator("#lab-forward-run"))
    wait_for_images(page, "#lab-forward-strip", 8)
    wait_for_images(page, "#lab-schedule", 1)
    expect(page.locator("#lab-forward-note")).to_contain_text("t = 500")
    return "#lab-forward-strip"


def use_gan_faces(page: Page) -> str:
    open_tab(page, "GAN Faces")
    press(page, page.get_by_role("button", name="Sample faces"))
    wait_for_images(page, "#gan-sample-gallery", 16)
    return "#gan-sample-gallery"


def use_vae_interpolation(page: Page) -> str:
    open_tab(page, "VAE Interpolation")
    # The page load fills the examples and prefills images A and B; a person waits for them, then clicks.
    wait_for_images(page, "#vae-examples", 24)
    page.locator("#vae-image-b img").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    press(page, page.get_by_role("button", name="Interpolate", exact=True))
    wait_for_images(page, "#vae-frames", 10)
    # The frames come first; the reconstructions, animation and path on the map follow in a second step.
    wait_for_images(page, "#vae-reconstructions", 4)
    wait_for_images(page, "#vae-animation", 1)
    wait_for_images(page, "#vae-path-map", 1)
    expect(page.locator("#vae-gif")).to_contain_text(".gif")
    return "#vae-frames"


def use_text_generation(page: Page) -> str:
    open_tab(page, "Text Generation")
    page.get_by_role("tab", name="n-gram model").click()
    press(page, page.locator("#ngram-generate"))
    expect(page.locator("#ngram-info")).to_contain_text("distinct contexts", timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#ngram-output textarea").input_value().strip()

    page.get_by_role("tab", name="Transformer").click()
    page.locator("#text-prompt textarea").fill("Name three colours.")
    page.locator("#text-max-new-tokens").get_by_role("spinbutton").fill("12")
    press(page, page.locator("#text-generate"))
    expect(page.locator("#text-status")).to_contain_text("tokens/s", timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#text-output textarea").input_value().strip()
    return "#text-output"


def use_text_inspection(page: Page) -> str:
    open_tab(page, "Text Generation")
    page.get_by_role("tab", name="Transformer").click()
    page.locator("#attention-head").get_by_role("spinbutton").fill("3")  # the generation showed the mean of heads
    press(page, page.locator("#attention-show"))
    expect(page.locator("#attention-recompute")).to_contain_text("head 3 of layer 2", timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#attention-map").get_by_text("processing")).to_have_count(0, timeout=RESULT_TIMEOUT_MS)
    wait_for_images(page, "#attention-map", 1)
    wait_for_images(page, "#attention-heads", 1)
    return "#attention-note"


def use_evaluation(page: Page) -> str:
    open_tab(page, "Evaluate")
    wait_for_images(page, "#evaluation-fid-plot", 1)  # the shipped plot of the first study
    page.get_by_role("tab", name="Text", exact=True).click()
    press(page, page.locator("#evaluation-score"))
    expect(page.locator("#evaluation-text-json")).to_contain_text("bleu", timeout=RESULT_TIMEOUT_MS)
    page.get_by_role("tab", name="Families", exact=True).click()
    expect(page.locator("#evaluation-families table")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    return "#evaluation-families"


def use_training(page: Page) -> str:
    open_tab(page, "Training")
    page.get_by_role("tab", name="GAN", exact=True).filter(visible=True).first.click()
    page.locator("#gan-steps").get_by_role("spinbutton").fill("200")
    press(page, page.locator("#gan-train"))
    expect(page.locator("#gan-status")).to_contain_text("Done", timeout=RESULT_TIMEOUT_MS)
    wait_for_images(page, "#gan-points", 1)
    return "#gan-points"


TABS: list[tuple[str, Callable[[Page], str]]] = [
    ("text-to-image", use_text_to_image),
    ("diffusion-lab", use_diffusion_lab),
    ("gan-faces", use_gan_faces),
    ("vae-interpolation", use_vae_interpolation),
    ("text-generation", use_text_generation),
    ("text-inspection", use_text_inspection),
    ("training", use_training),
    ("evaluate", use_evaluation),
]


def save_small_screenshot(page: Page, name: str, result_selector: str) -> None:
    """The viewport with the result in it, as a 256-colour PNG (a fraction of a full-colour one's size).

    Notices such as "Loading the model" close by themselves after a few seconds; wait for that so they do not
    hide the page.
    """
    expect(page.locator("[data-testid='toast-body']")).to_have_count(0, timeout=NOTICE_TIMEOUT_MS)
    page.locator(result_selector).first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # let the scroll and lazy images settle
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(SCREENSHOT_DIR / name, optimize=True)


def assert_no_gallery_cut_off(page: Page, tab: str) -> None:
    """Every visible gallery shows all its columns: none wider than its box (Gradio's default 100-px columns were)."""
    too_wide = page.evaluate(
        "() => [...document.querySelectorAll('.gallery-container .grid-wrap')]"
        ".filter(g => g.offsetParent !== null && g.scrollWidth > g.clientWidth + 1)"
        ".map(g => (g.closest('[id]') || g).id + ': ' + g.scrollWidth + ' px in ' + g.clientWidth)"
    )
    assert not too_wide, f"{tab}: galleries cut off at the side: {too_wide}"


def assert_no_error_toast(page: Page, tab: str) -> None:
    toasts = page.locator(ERROR_TOASTS)
    assert toasts.count() == 0, f"{tab}: error shown: {toasts.first.inner_text()}"


def test_every_tab_works_on_a_desktop_screen(page):
    for name, use in TABS:
        result = use(page)
        assert_no_error_toast(page, name)
        assert_no_gallery_cut_off(page, name)
        save_small_screenshot(page, f"app-desktop-{name}.png", result)

    # The toast check above can fail: a refused input shows exactly such a toast, naming the limit.
    open_tab(page, "GAN Faces")
    page.get_by_label("Seed", exact=True).filter(visible=True).first.fill("1.5")
    press(page, page.get_by_role("button", name="Sample faces"))
    expect(page.locator(ERROR_TOASTS).first).to_contain_text("Seed", timeout=30_000)


def test_every_tab_is_usable_on_a_phone(browser, app_url):
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(app_url)
        page.wait_for_selector("text=GenAI Playground", timeout=60_000)
        for name, use in TABS:
            result = use(page)
            assert_no_error_toast(page, name)
            # Nothing wider than the screen: a phone user should never scroll sideways to reach a control.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name}: the page is {overflow} px wider than the phone's screen"
            assert_no_gallery_cut_off(page, name)
            save_small_screenshot(page, f"app-phone-{name}.png", result)
    finally:
        context.close()
