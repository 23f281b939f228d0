"""What a reader of the report sees: every report/*.qmd page executed once against the committed tables, and its
outputs held to the house style: no machine path, no Python repr, no error; every figure one labelled, captioned
image (or a note where its data is missing); every table labelled and captioned, without an index column or
snake_case headers. The checks live in lab/tools/pages.py (the screenshot tool writes the same ones per page); the
fast tests below show they catch what they should, and that the page machinery reads and renders a page as Quarto
would."""

import base64
import shutil
import subprocess

import nbformat
import pandas as pd
import pytest

from lab import paths
from lab.tools import pages as P

REPORT = paths.ROOT / "report"
PAGES = P.pages()
COMMITTED = paths.ROOT / "experiments" / "results"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()  # stands in for a drawn figure
NOTE = "::: {.callout-note}\n## Not shown\n\nNo run folders: `make experiments` trains them.\n:::\n"


@pytest.fixture(scope="module")
def executed(data_root) -> dict[str, list[nbformat.NotebookNode]]:
    """Every page run once, in a fresh kernel with cwd report/, against the committed tables."""
    env = {"LAB_RESULTS_DIR": str(COMMITTED), "LAB_DATA_DIR": str(data_root)}
    return {page.stem: P.execute(page, env) for page in PAGES}


def report(page: str, found: list[str]) -> str:
    return f"{page}.qmd:\n  " + "\n  ".join(found)


@pytest.mark.slow
@pytest.mark.parametrize("check", P.CHECKS)
@pytest.mark.parametrize("page", [p.stem for p in PAGES])
def test_every_page_passes_every_check(executed, page, check):
    """paths: no absolute path reaches the page; reprs, errors: no Python repr, traceback or error; figures: every
    figure is one labelled, captioned image (or, with its inputs missing, a note); tables: every table is labelled,
    captioned and readable (lab/tools/pages.py, check_<name>)."""
    found = getattr(P, f"check_{check}")(executed[page])
    assert not found, report(page, found)


# ---------------------------------------------------------------- fast: the machinery itself

def test_report_gitignore_ignores_what_quarto_and_the_screenshots_write():
    lines = {line.strip().strip("/") for line in (REPORT / ".gitignore").read_text().splitlines()}
    assert {"_site", "_freeze", ".quarto", "_screens"} <= lines
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for written in ("_site/index.html", "_freeze/index/execute-results/html.json", ".quarto/idx/index.qmd.json",
                    "_screens/index.png"):
        done = subprocess.run(["git", "check-ignore", "-v", "--no-index", f"report/{written}"], cwd=paths.ROOT,
                              capture_output=True, text=True)
        assert done.stdout.startswith("report/.gitignore:"), f"report/{written}: {done.stdout or done.stderr}"


QMD = '''---
title: "A page"
subtitle: "its subtitle"
jupyter: python3
---

Some prose with `code`, drawn in @fig-first.

Next: [the classifier](classifier.qmd).

```{python}
#| label: setup
x = 1
```

## A section

```bash
make report
```

```{python}
#| label: fig-first
#| fig-cap: "The first figure: a line."
draw()
```

```{python}
#| label: tbl-numbers
#| tbl-cap: Numbers, as a table
table()
```

```{python}
#| label: fig-second
#| fig-cap: "The second figure."
draw()
```
'''


def test_a_qmd_becomes_markdown_and_code_cells_with_its_options(tmp_path):
    notebook = P.parse(QMD)
    assert [c.cell_type for c in notebook.cells] == ["markdown", "markdown", "code", "markdown", "code", "code",
                                                     "code"]
    assert notebook.cells[0].source == "# A page\n\n*its subtitle*" and notebook.metadata["title"] == "A page"
    assert notebook.cells[3].source == "## A section\n\n```bash\nmake report\n```"  # other code blocks stay prose
    cells = P.code_cells(notebook)
    assert [P.label(c) for c in cells] == ["setup", "fig-first", "tbl-numbers", "fig-second"]
    assert cells[1].source == '#| label: fig-first\n#| fig-cap: "The first figure: a line."\ndraw()'
    assert P.options(cells[1].source) == {"label": "fig-first", "fig-cap": "The first figure: a line."}
    assert P.caption(cells[2], "tbl") == "Numbers, as a table" and P.caption(cells[0], "fig") == ""
    assert P.numbering(cells) == {"fig-first": "Figure 1", "tbl-numbers": "Table 1", "fig-second": "Figure 2"}
    assert [c.source for c in P.figure_cells(cells)] == [cells[1].source, cells[3].source]
    page = tmp_path / "a.qmd"
    page.write_text(QMD)
    assert P.page_cells(page) == [c.source for c in cells]


def output(kind: str = "display_data", **data) -> nbformat.NotebookNode:
    return nbformat.v4.new_output(kind, data={key.replace("_", "/"): value for key, value in data.items()})


def with_outputs() -> nbformat.NotebookNode:
    """The QMD page as if run: a figure, a table, and a note where the second figure could not be drawn."""
    notebook = P.parse(QMD)
    setup, first, numbers, second = P.code_cells(notebook)
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ready\n")]
    first.outputs = [output(image_png=PNG, text_plain="<Figure size 640x480 with 1 Axes>")]
    table = pd.DataFrame({"setting": ["relu"], "test accuracy (%)": [99.1]}).to_html(index=False)
    numbers.outputs = [output("execute_result", text_html=table, text_plain="...")]
    second.outputs = [output(text_markdown=NOTE, text_plain="<IPython.core.display.Markdown object>")]
    return notebook


def test_the_html_shows_numbered_captions_callouts_and_no_code_or_cdn_script():
    html = P.to_html(with_outputs())
    assert "<h1" in html and "A page" in html and "<em>its subtitle</em>" in html
    assert "Some prose with <code>code</code>, drawn in Figure 1." in html  # @fig-first resolved
    assert '<a href="classifier.html">the classifier</a>' in html  # as the site links its pages
    assert html.index("data:image/png;base64,") < html.index("Figure 1: The first figure: a line.")
    assert html.index("Table 1: Numbers, as a table") < html.index("<table")
    assert "Figure 2" not in html  # no image, no figure caption: the note stands in its place
    assert '<div class="callout callout-note"><div class="callout-title">Not shown</div>' in html
    assert "<code>make experiments</code>" in html and ":::" not in html
    assert "draw()" not in html and "#| label" not in html  # code is hidden, as the site folds it
    assert "<script src=" not in html and "cdnjs" not in html and "<link" not in html


def test_the_checks_pass_a_clean_page_and_count_what_it_shows():
    cells = P.code_cells(with_outputs())
    assert P.check_page(cells) == {name: [] for name in P.CHECKS}
    assert P.counts(cells) == {"figures": 1, "tables": 1, "notes": 1, "errors": 0}


def code(source: str, *outputs: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = list(outputs)
    return cell


def test_the_checks_find_paths_reprs_errors_bare_figures_and_raw_tables():
    stream = nbformat.v4.new_output("stream", name="stdout", text=f"read {paths.ROOT}/experiments/results\n")
    series = output("execute_result", text_plain="0    1\nName: test_accuracy, dtype: int64")
    error = nbformat.v4.new_output("error", ename="KeyError", evalue="'run_id'", traceback=[])
    warning = nbformat.v4.new_output("stream", name="stderr", text="UserWarning: tight_layout\n")
    raw = pd.DataFrame({"test_accuracy": [0.99]}).to_html()  # an index column and a snake_case header
    cells = [code("#| label: where", stream), code("#| label: numbers", series, error, warning),
             code("#| label: plot-a", output(image_png=PNG)),
             code("#| label: fig-b\n#| fig-cap: two", output(image_png=PNG), output(image_png=PNG)),
             code("#| label: fig-c\n#| fig-cap: nothing"), code("#| label: sweep", output(text_html=raw))]
    found = P.check_page(cells)
    assert found["paths"] and all(f.startswith("where: absolute path") for f in found["paths"])
    assert [f.split(": ")[0] for f in found["reprs"]] == ["numbers"]
    assert found["errors"] == ["numbers: error: KeyError: 'run_id'", "numbers: stderr: 'UserWarning: tight_layout'"]
    assert found["figures"] == ["plot-a: draws a figure but its label is not fig-...",
                                "plot-a: draws a figure without a fig-cap", "fig-b: a figure cell with 2 images",
                                "fig-c: a figure cell with 0 images and no note"]
    assert found["tables"] == ["sweep: shows a table but its label is not tbl-...",
                               "sweep: shows a table without a tbl-cap", "sweep: a table with an index column",
                               "sweep: column headers in snake_case: test_accuracy"]
