"""The explorer in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright. Skipped where Chromium is missing, unless ``CNN_REQUIRE_BROWSER=1`` (CI sets it
and installs the package)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from compare.serve.process import serving
from tests.compare.serve.conftest import FRAMEWORKS

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("CNN_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def address(served: Path, data_dir: Path) -> Iterator[str]:
    with serving(served, data_dir) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - Playwright's Browser
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, address: str) -> Iterator[Page]:  # noqa: ANN001
    made = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    made.on("pageerror", lambda error: errors.append(str(error)))
    made.goto(address)
    expect(made.locator(".framework .guess")).to_have_count(len(FRAMEWORKS), timeout=120_000)
    yield made
    made.close()
    assert not errors, errors


def draw(page: Page, points: list[tuple[float, float]]) -> None:
    """A stroke through ``points`` (fractions of the pad's width and height)."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    at = [(box["x"] + px * box["width"], box["y"] + py * box["height"]) for px, py in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def input_ink(page: Page) -> float:
    return page.evaluate(
        "() => { const d = document.getElementById('input').getContext('2d')"
        ".getImageData(0, 0, 168, 168).data; let s = 0;"
        " for (let i = 0; i < d.length; i += 4) s += d[i]; return s / 255; }"
    )


def test_drawing_shows_every_frameworks_prediction(page: Page, tmp_path: Path) -> None:
    page.click("#clear")
    expect(page.locator("#input-caption")).to_contain_text("what the frameworks see")
    blank = input_ink(page)
    draw(page, [(0.5, 0.15), (0.5, 0.5), (0.52, 0.85)])  # a one
    page.wait_for_function(
        "() => !document.querySelector('#notice').textContent.includes('starting')"
    )
    expect(page.locator(".framework")).to_have_count(len(FRAMEWORKS))
    page.wait_for_timeout(500)
    assert input_ink(page) > blank + 10  # the preprocessed digit is shown
    for name in FRAMEWORKS:
        card = page.locator(f".framework[data-framework='{name}']")
        assert card.locator(".guess").inner_text() in [str(k) for k in range(10)]
        assert card.locator(".bar").count() == 10
    maps = page.locator(".layer[data-layer='conv1'] canvas")
    expect(maps).to_have_count(len(FRAMEWORKS))
    page.screenshot(path=str(tmp_path / "drawn.png"), full_page=True)


def test_a_clicked_pixel_opens_the_kernel_view_in_every_framework(page: Page) -> None:
    canvas = page.locator(".layer[data-layer='conv2'] canvas").first
    canvas.click(position={"x": 6, "y": 6})
    results = page.locator("#kernel .kernel-result")
    expect(results).to_have_count(len(FRAMEWORKS), timeout=60_000)
    expect(page.locator("#kernel-title")).to_contain_text("Inside conv2 (conv)")
    for name in FRAMEWORKS:
        text = page.locator(f"#kernel .kernel-result[data-framework='{name}']").inner_text()
        assert "dot product" in text and "own output" in text
    expect(page.locator("#sources details").first).to_be_attached(timeout=60_000)
    assert (
        page.locator("#sources summary").filter(has_text="numpy_cnn.ops:conv2d_forward").count()
        == 1
    )


def test_the_keyboard_steps_through_the_layers(page: Page) -> None:
    page.locator(".layer[data-layer='conv1'] canvas").first.click(position={"x": 3, "y": 3})
    expect(page.locator(".layer.selected")).to_have_attribute("data-layer", "conv1")
    page.locator("body").press("ArrowDown")
    expect(page.locator(".layer.selected")).to_have_attribute("data-layer", "pool1")
    expect(page.locator("#kernel-title")).to_contain_text("Inside pool1 (pool)", timeout=60_000)
    page.locator("body").press("j")
    expect(page.locator(".layer.selected")).to_have_attribute("data-layer", "conv2")
    page.locator("body").press("ArrowUp")
    expect(page.locator(".layer.selected")).to_have_attribute("data-layer", "pool1")


def test_a_killed_worker_comes_back_and_the_page_says_so(page: Page, address: str) -> None:
    status_url = address.split("?")[0].rstrip("/") + "/api/status"
    with urllib.request.urlopen(status_url, timeout=30) as answer:
        pid = json.load(answer)["pytorch"]["pid"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)  # dead before the next request
    draw(page, [(0.3, 0.3), (0.7, 0.3), (0.4, 0.8)])  # a seven
    expect(page.locator("#notice")).to_contain_text(
        "pytorch: its worker had stopped", timeout=60_000
    )
    expect(page.locator(".framework[data-framework='pytorch'] .guess")).to_be_visible()
    expect(page.locator(".framework[data-framework='pytorch'] .restarted")).to_be_visible()


def test_a_test_image_and_the_lists_can_be_picked(page: Page) -> None:
    page.fill("#index", "5")
    page.click("#pick button")
    expect(page.locator("#input-caption")).to_contain_text("test image 5")
    options = page.locator("#missed option")
    assert options.count() >= 1
    expect(page.locator("#confusion tr")).to_have_count(11)
    expect(page.locator("#curves .uplot")).to_have_count(3)
