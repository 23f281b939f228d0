"""Screenshots of the report's pages as a reader sees them, without Quarto, and the checks a reader would make.

    python -m lab.tools.screenshots [--out DIR] [--pages index classifier ...] [--no-screenshots]   (make screenshots)

Each report/*.qmd page runs in a fresh Jupyter kernel against the tables in LAB_RESULTS_DIR (default the committed
experiments/results/), MNIST from LAB_DATA_DIR and checkpoints from LAB_RUNS_DIR, as `quarto render` would; it is
exported to DIR/PAGE.html (standalone: images embedded, nothing fetched from a CDN, code hidden as the site folds it,
figure and table captions numbered as Quarto numbers them) and photographed full-page at 1280 px wide by
Playwright's Chromium (Debian's /usr/bin/chromium where it exists: apt-get install -y chromium) into DIR/PAGE.png.
DIR/PAGE.json holds the page's counts and the problems lab.tools.pages finds (machine paths, Python reprs, errors,
figures or tables without label and caption, index columns, snake_case headers). One line per page is printed.
DIR defaults to report/_screens/, which git ignores.
"""

import argparse
import json
import sys
from pathlib import Path

from lab import paths
from lab.tools import pages as P

SCREENS_DIR = P.REPORT_DIR / "_screens"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own download needs a network this lab may lack
VIEWPORT = {"width": 1280, "height": 900}  # pixels; the page's full height is captured


def shown_path(path: Path) -> str:
    """A path relative to the working directory where it lies below it (what the printed lines show)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def page_env() -> dict[str, str]:
    """Where the pages read from: the tables, the data and the runs as the lab resolves them (env or defaults)."""
    return {"LAB_RESULTS_DIR": str(paths.results_dir()), "LAB_DATA_DIR": str(paths.data_dir()),
            "LAB_RUNS_DIR": str(paths.runs_dir())}


def export_page(page: Path, out: Path, env: dict[str, str]) -> dict:
    """Run one page, write its HTML and its JSON of checks into out/; returns the JSON's content."""
    notebook = P.run_page(page, env)
    cells = P.code_cells(notebook)
    html = out / f"{page.stem}.html"
    html.write_text(P.to_html(notebook), encoding="utf-8")
    problems = P.check_page(cells)
    summary = {"page": page.name, "html": html.name, "png": f"{page.stem}.png", "counts": P.counts(cells),
               "passed": not any(problems.values()), "problems": problems,
               "read_from": {k: shown_path(Path(v)) for k, v in env.items()}}
    (out / f"{page.stem}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def screenshot(htmls: list[Path]) -> None:
    """Each HTML file photographed full-page at VIEWPORT's width into a PNG beside it, in one headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = str(CHROMIUM) if CHROMIUM.exists() else None
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as error:  # Playwright's own error names what is missing; say how to get a browser
            raise SystemExit(f"no Chromium to take screenshots with ({error.__class__.__name__}): "
                             "apt-get install -y chromium (or rerun with --no-screenshots)") from error
        page = browser.new_page(viewport=VIEWPORT)
        for html in htmls:
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(html.with_suffix(".png")), full_page=True)
        browser.close()


def line(summary: dict, out: Path, photographed: bool) -> str:
    counts, problems = summary["counts"], sum(len(p) for p in summary["problems"].values())
    shown = out / summary["png" if photographed else "html"]
    return (f"{shown_path(shown)}: {counts['figures']} figures, {counts['tables']} tables, {counts['notes']} notes, "
            f"{counts['errors']} errors; {problems} problems "
            f"(see {shown_path(out / (Path(summary['png']).stem + '.json'))})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.tools.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=SCREENS_DIR, help="folder for PAGE.html/.png/.json "
                        "(default report/_screens/)")
    parser.add_argument("--pages", nargs="+", metavar="PAGE", help="page names (default: every report/*.qmd)")
    parser.add_argument("--no-screenshots", action="store_true", help="write the HTML and JSON only")
    args = parser.parse_args(argv)
    try:
        chosen = P.pages(args.pages)
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    env = page_env()
    summaries = [export_page(page, args.out, env) for page in chosen]
    if not args.no_screenshots:
        screenshot([args.out / s["html"] for s in summaries])
    for summary in summaries:
        print(line(summary, args.out, not args.no_screenshots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
