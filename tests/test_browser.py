"""A real browser (Playwright driving Debian's chromium) uses the demo as a person does: draws a digit and sees it
read with no button pressed, draws a scribble and sees the demo unsure, clicks the latent map and sees a digit."""

import os
import re
from pathlib import Path

import pytest
from demo_server import start_app, stop_app
from test_demo_insight import SCRIBBLE

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
SHOTS = Path(os.environ.get("DEMO_SHOTS", "")) if os.environ.get("DEMO_SHOTS") else None  # screenshots, if asked


def stroke(page, points: list[tuple[float, float]], steps: int = 20) -> None:
    """Press the mouse at the first point and drag through the others, as a hand would."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for i in range(1, steps + 1):
            page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
    page.mouse.up()


def paper(page) -> tuple[float, float]:
    """The top-left corner of the visible canvas's 280 px paper (centred in its canvas), once the brush is picked."""
    from playwright.sync_api import expect
    canvas = page.locator("canvas:visible").first
    canvas.wait_for(timeout=60_000)
    brush = page.locator('button[aria-label="Brush"]:visible').first
    # the brush is picked on load (and on each tab): the canvas is ready to draw at once
    expect(brush).to_have_class(re.compile(r"\bhighlight\b"), timeout=15_000)
    box = canvas.bounding_box()
    return box["x"] + box["width"] / 2 - 140, box["y"] + box["height"] / 2 - 140


def shot(page, name: str, tmp_path: Path) -> None:
    folder = SHOTS or tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    proc, url = start_app(tmp_path_factory.mktemp("app") / "app.log")
    try:
        yield url
    finally:
        stop_app(proc)


@pytest.fixture
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(app_url)
            yield page
        finally:
            browser.close()


@pytest.mark.slow
def test_drawing_a_seven_shows_a_seven_as_it_is_drawn(page, tmp_path):
    from playwright.sync_api import expect
    x, y = paper(page)
    stroke(page, [(x + 70, y + 50), (x + 210, y + 50), (x + 120, y + 240)])  # a 7: bar, then slant
    answer = page.locator("[data-testid=label-output-value]").first
    answer.wait_for(timeout=60_000)  # classified as the strokes arrive, no button
    expect(answer).to_have_text("7", timeout=30_000)
    expect(page.locator("#verdict")).to_contain_text("Reads as 7", timeout=30_000)
    expect(page.locator("#why img")).to_be_visible(timeout=30_000)  # the saliency map
    shot(page, "classify-seven", tmp_path)


@pytest.mark.slow
def test_a_scribble_is_shown_as_unsure(page, tmp_path):
    from playwright.sync_api import expect
    x, y = paper(page)
    stroke(page, [(x + px, y + py) for px, py in SCRIBBLE])
    expect(page.locator("#verdict")).to_contain_text("Not sure: this may not be a digit", timeout=60_000)
    shot(page, "classify-scribble", tmp_path)


@pytest.mark.slow
def test_a_click_on_the_latent_map_decodes_a_digit(page, tmp_path):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Explore").click()
    x, y = paper(page)
    picture = page.locator("#latent-map img")
    expect(picture).to_be_visible(timeout=30_000)
    blank_map = picture.get_attribute("src")
    stroke(page, [(x + 70, y + 50), (x + 210, y + 50), (x + 120, y + 240)])  # a 7, placed on the map
    expect(picture).not_to_have_attribute("src", blank_map, timeout=30_000)  # the map now marks the drawing
    page.wait_for_timeout(1000)  # the last stroke's update lands before the click, so the screenshot shows both
    decoded = page.locator("#decoded img")
    expect(decoded).to_have_count(0)  # nothing decoded before a click
    box = picture.bounding_box()
    picture.click(position={"x": box["width"] * 0.4, "y": box["height"] * 0.45})
    expect(decoded).to_be_visible(timeout=30_000)
    shot(page, "explore-click", tmp_path)
