"""A real browser (Playwright driving Debian's chromium) draws a digit on the demo's canvas and sees the answer."""

import re
from pathlib import Path

import pytest
from demo_server import start_app, stop_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


def stroke(page, points: list[tuple[float, float]], steps: int = 20) -> None:
    """Press the mouse at the first point and drag through the others, as a hand would."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for i in range(1, steps + 1):
            page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
    page.mouse.up()


def test_drawing_a_seven_shows_a_seven(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    proc, url = start_app(tmp_path / "app.log")
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                canvas = page.locator("canvas").first
                canvas.wait_for(timeout=60_000)
                brush = page.locator('button[aria-label="Brush"]').first
                # the brush is picked on load: the canvas is ready to draw at once
                sync_api.expect(brush).to_have_class(re.compile(r"\bhighlight\b"), timeout=15_000)
                box = canvas.bounding_box()
                x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the 280 px paper is centred
                stroke(page, [(x - 70, y - 90), (x + 70, y - 90), (x - 20, y + 100)])  # a 7: bar, then slant
                answer = page.locator("[data-testid=label-output-value]").first
                answer.wait_for(timeout=60_000)  # classified as the strokes arrive, no button
                sync_api.expect(answer).to_have_text("7", timeout=30_000)
                page.screenshot(path=str(tmp_path / "drawn.png"))
            finally:
                browser.close()
    finally:
        stop_app(proc)
