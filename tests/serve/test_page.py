"""The web page, driven by Playwright in Debian's Chromium: generation streams with its heat map; classify, tag
and translate draw their pictures. Screenshots go to $RNNLAB_SCREENSHOTS (default: the test's tmp folder)."""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("the page tests need Chromium at /usr/bin/chromium: apt-get install chromium "
                    "(and pip install playwright; Playwright's own browser download is not needed)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the page tests need the playwright package: pip install playwright")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("RNNLAB_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _page(browser, live, model: str):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live.url}/?model={model}")
    page.wait_for_function("document.getElementById('model').options.length > 0")
    return page, errors


def test_generation_streams_with_a_heat_map(browser, live, shots):
    page, errors = _page(browser, live, "poems")
    page.fill("#prompt", "def ")
    page.fill("#max-tokens", "60")
    page.click("#generate")
    page.wait_for_function("document.getElementById('output').dataset.done === '1'", timeout=15000)
    text = page.text_content("#output")
    assert text.startswith("def ") and len(text) > len("def ") + 20
    width = page.evaluate("document.getElementById('heat').width")
    assert width > 60 + 8 * 50  # one column per generated character
    page.screenshot(path=str(shots / "page-textgen.png"), full_page=True)
    assert not errors and page.text_content("#error") == ""


def test_classify_tag_translate_draw_their_pictures(browser, live, shots):
    page, errors = _page(browser, live, "sentiment")
    page.fill("#classify-text", "the film was great")
    page.click("#classify")
    page.wait_for_selector("#bars .bar")
    assert page.locator("#bars .bar").count() == 3 and page.locator("#bars .bar.top").count() == 1
    page.screenshot(path=str(shots / "page-classify.png"), full_page=True)

    page.select_option("#model", "ner")
    page.fill("#tag-text", "John Smith flew to Paris")
    page.click("#tag")
    page.wait_for_selector("#spans .token")
    assert page.locator("#spans .token").count() == 5
    page.screenshot(path=str(shots / "page-tag.png"), full_page=True)

    page.select_option("#model", "dates")
    page.fill("#translate-text", "12 March 2001")
    page.click("#translate")
    page.wait_for_function("document.getElementById('attention').width > 100")
    assert page.text_content("#translation") != ""
    page.screenshot(path=str(shots / "page-translate.png"), full_page=True)
    assert not errors


def test_an_error_is_shown_on_the_page(browser, live):
    page, _ = _page(browser, live, "poems")
    page.fill("#max-tokens", "-5")
    page.click("#generate")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "max_new_tokens" in page.text_content("#error")
