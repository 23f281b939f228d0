"""The report's pages without Quarto: a .qmd page parsed into a notebook, run in a fresh Jupyter kernel as Quarto
runs it, checked as a reader would check it, and exported to one standalone HTML file that looks like the site.

The single implementation shared by the screenshot tool (python -m lab.tools.screenshots) and the tests of the pages
(tests/test_report_pages.py, tests/test_report_output.py). What it mimics of Quarto, and only that: the front
matter's title as the heading; `#|` cell options (label, fig-cap, tbl-cap, include, output); figures and tables
numbered per page when labelled `fig-`/`tbl-`, captions under a figure and above a table; `@fig-...` references;
links to .qmd pages as links to their .html; Markdown outputs rendered as Markdown, with `::: {.callout-...}`
boxes and ```{=html} raw blocks; code folded away.
"""

import copy
import html
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat import NotebookNode

from lab import paths

REPORT_DIR = paths.ROOT / "report"
CELL = re.compile(r"^```\{python\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*\n", re.S | re.M)
OPTION = re.compile(r"^#\|\s?(.*)$")
LABEL = re.compile(r"^#\|\s*label:\s*(\S+)", re.M)
FIG_CAP = re.compile(r"^#\|\s*fig-cap:", re.M)
KERNEL_CHECK = "import sys; print(sys.executable, end='')"
KERNEL = "python3"  # the kernel a page names with `jupyter: python3`
CELL_TIMEOUT = 600  # seconds one cell may run

IMAGES = ("image/png", "image/svg+xml", "image/jpeg")
CALLOUT = re.compile(r"^:::+[ \t]*\{\.callout-(\w+)([^}\n]*)\}[ \t]*\n(.*?)^:::+[ \t]*$", re.S | re.M)
RAW_HTML = re.compile(r"^```\{=html\}[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
CROSSREF = re.compile(r"(?<![\w.@])@((?:fig|tbl)-[\w-]+)")
QMD_LINK = re.compile(r'href="([^":#]+)\.qmd(?=[#"])')
BLOCK = "LABPAGEBLOCK{}X"  # stands in for an HTML block while mistune renders the Markdown around it

# what no reader may meet: a machine path, a Python repr (checked in the text a page shows)
ABSOLUTE_PATH = re.compile("|".join([r"/home/", r"/work/", r"/tmp/", r"/root/", r"/Users/", r"\b[A-Za-z]:\\",
                                     re.escape(str(paths.ROOT))]))
REPR = re.compile(r"<[\w.]+ object(?: at 0x[0-9a-fA-F]+)?>|<Figure size|<matplotlib\.|<Axes"
                  r"|^(?:(?:Name|Length): .*, )?dtype: \w+[ \t]*$", re.M)
MACHINE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[_.][A-Za-z0-9]+)*_[A-Za-z0-9]+(?:[_.][A-Za-z0-9]+)*$")
CHECKS = ("paths", "reprs", "errors", "figures", "tables")


class PageError(RuntimeError):
    """A page cannot be run as Quarto would run it: no python3 kernel, or one of another environment."""


# ---------------------------------------------------------------- reading a page

def pages(names: list[str] | None = None, report_dir: Path = REPORT_DIR) -> list[Path]:
    """report/*.qmd in name order, or the named ones (by stem); an unknown name raises ValueError."""
    found = {p.stem: p for p in sorted(report_dir.glob("*.qmd"))}
    unknown = sorted(set(names or ()) - set(found))
    if unknown:
        raise ValueError(f"no page {', '.join(unknown)} in {report_dir.name}/ (pages: {', '.join(found)})")
    return [found[n] for n in names] if names else list(found.values())


def options(source: str) -> dict[str, Any]:
    """A cell's Quarto options: the `#|` lines at its top read as YAML (where YAML refuses, as `key: text` lines)."""
    lines = []
    for line in source.splitlines():
        found = OPTION.match(line)
        if not found:
            break
        lines.append(found.group(1))
    try:
        read = yaml.safe_load("\n".join(lines)) if lines else {}
    except yaml.YAMLError:
        read = None
    if isinstance(read, dict):
        return read
    pairs = (line.partition(":") for line in lines)
    return {key.strip(): value.strip().strip("\"'") for key, _, value in pairs if value}


def _add_prose(cells: list[NotebookNode], text: str) -> None:
    if text.strip():
        cells.append(nbformat.v4.new_markdown_cell(text.strip("\n")))


def parse(text: str) -> NotebookNode:
    """A .qmd page -> a notebook: the front matter's title (and subtitle) as a top heading, the prose between the
    python cells as markdown cells, each ```{python} cell as a code cell with its `#|` option lines kept."""
    front = FRONT_MATTER.match(text)
    meta = (yaml.safe_load(front.group(1)) or {}) if front else {}
    body = text[front.end():] if front else text
    cells = []
    if meta.get("title"):
        subtitle = f"\n\n*{meta['subtitle']}*" if meta.get("subtitle") else ""
        cells.append(nbformat.v4.new_markdown_cell(f"# {meta['title']}{subtitle}"))
    start = 0
    for found in CELL.finditer(body):
        _add_prose(cells, body[start:found.start()])
        cells.append(nbformat.v4.new_code_cell(found.group(1).rstrip("\n")))
        start = found.end()
    _add_prose(cells, body[start:])
    kernelspec = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    return nbformat.v4.new_notebook(cells=cells, metadata={"title": str(meta.get("title", "")),
                                                           "kernelspec": kernelspec})


def read_page(page: Path) -> NotebookNode:
    return parse(page.read_text(encoding="utf-8"))


def code_cells(notebook: NotebookNode) -> list[NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code"]


def page_cells(page: Path) -> list[str]:
    """The ```{python} cells of a .qmd page, in order (their #| options stay in as comments, as Quarto leaves them)."""
    return [c.source for c in code_cells(read_page(page))]


# ---------------------------------------------------------------- running a page

def kernel_name() -> str:
    """The Jupyter kernel Quarto uses for `jupyter: python3`: ipykernel's, launched with this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel as error:
        raise PageError("no python3 Jupyter kernel: install the report extra (pip install -e '.[report]') "
                        "for ipykernel") from error
    # jupyter_client swaps a bare "python" for sys.executable; any other interpreter would not see this lab
    if spec.argv[0] not in ("python", "python3", sys.executable):
        raise PageError(f"the python3 kernel runs {spec.argv[0]}, not {sys.executable}")
    return KERNEL


def run(notebook: NotebookNode, cwd: Path, env: dict[str, str]) -> NotebookNode:
    """Run a notebook's code cells in place in a fresh kernel with cwd `cwd` (report/, as Quarto does), errors kept
    as outputs, this checkout first on PYTHONPATH and `env` over os.environ; returns the notebook."""
    from nbclient import NotebookClient

    notebook.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_CHECK))
    client = NotebookClient(notebook, kernel_name=kernel_name(), timeout=CELL_TIMEOUT, allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    # PYTHONPATH: the kernel imports this checkout's lab, whichever checkout the environment was installed from
    path = os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH")]))
    try:
        client.execute(env=os.environ | {"PYTHONWARNINGS": "ignore", "PYTHONPATH": path} | env)
    finally:
        check = notebook.cells.pop(0)
    ran_in = "".join(o.get("text", "") for o in check.outputs)
    if ran_in != sys.executable:
        raise PageError(f"the python3 kernel runs {ran_in!r}, not this environment's {sys.executable}")
    return notebook


def run_page(page: Path, env: dict[str, str]) -> NotebookNode:
    """A page parsed and run (see run): prose and code cells, the code cells with their outputs."""
    return run(read_page(page), page.parent, env)


def execute(page: Path, env: dict[str, str]) -> list[NotebookNode]:
    """Run a page's cells in a fresh kernel with cwd report/ (as Quarto does); the code cells come back with outputs."""
    return code_cells(run_page(page, env))


# ---------------------------------------------------------------- reading a cell's outputs

def label(cell: NotebookNode) -> str:
    found = LABEL.search(cell.source)
    return found.group(1) if found else ""


def caption(cell: NotebookNode, kind: str) -> str:
    """The cell's fig-cap or tbl-cap (kind "fig" or "tbl") as text; "" when it has none."""
    text = options(cell.source).get(f"{kind}-cap") or ""
    return " ".join(map(str, text)) if isinstance(text, list) else str(text).strip()


def errors(cells: list[NotebookNode]) -> list[str]:
    return [f"{label(c) or c.source[:60]}: {o.ename}: {o.evalue}" for c in cells for o in c.outputs
            if o.output_type == "error"]


def markdown(cell: NotebookNode) -> str:
    return "\n".join(o.get("data", {}).get("text/markdown", "") for o in cell.outputs)


def is_note(cell: NotebookNode) -> bool:
    """The cell shows a Quarto callout (the pages' note where a figure or table cannot be drawn)."""
    return ".callout-" in markdown(cell)


def notes(cell: NotebookNode) -> int:
    return len(CALLOUT.findall(markdown(cell)))


def images(cell: NotebookNode) -> list[NotebookNode]:
    return [o for o in cell.outputs if any(m in o.get("data", {}) for m in IMAGES)]


def pngs(cell: NotebookNode) -> list[bytes]:
    import base64

    return [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]


def figure_cells(cells: list[NotebookNode]) -> list[NotebookNode]:
    """Cells that draw a figure: they carry a caption (fig-cap) or a figure label (fig-...)."""
    return [c for c in cells if FIG_CAP.search(c.source) or label(c).startswith("fig-")]


def shown_texts(cell: NotebookNode) -> list[str]:
    """The text a reader meets in a cell's outputs: its streams (stdout and stderr) and, of each display, the
    Markdown or HTML, or its plain text where nothing richer (Markdown, HTML, an image) came with it."""
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            data = output.get("data", {})
            rich = [data[m] for m in ("text/markdown", "text/html") if m in data]
            plain = [data["text/plain"]] if "text/plain" in data and not any(m in data for m in IMAGES) else []
            texts += rich or plain
    return texts


# ---------------------------------------------------------------- tables in outputs

class TableReader(HTMLParser):
    """The tables of an HTML text: each one's header cells, and whether a body row starts with a header cell (the
    row labels pandas writes for an index)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self.section = ""  # "thead", "tbody" or "" (a table without either)
        self.row_start = False
        self.text: list[str] | None = None  # the text of the header cell being read

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append({"header": [], "index": False, "rows": 0})
            self.section = ""
        elif not self.tables:
            return
        elif tag in ("thead", "tbody"):
            self.section = tag
        elif tag == "tr":
            self.row_start = True
            self.tables[-1]["rows"] += 1
        elif tag in ("th", "td"):
            table = self.tables[-1]
            header = self.section == "thead" or (self.section == "" and table["rows"] == 1)
            table["index"] |= tag == "th" and not header and self.row_start
            self.text = [] if tag == "th" and header else None
            self.row_start = False

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self.text is not None and self.tables:
            self.tables[-1]["header"].append("".join(self.text).strip())
            self.text = None


PIPE_TABLE = re.compile(r"^\|.*\|[ \t]*\n\|[ \t:|-]+\|[ \t]*$", re.M)


def output_tables(output: NotebookNode) -> list[dict[str, Any]]:
    """The tables one output shows (HTML tables, or Markdown pipe tables and raw HTML): header cells and index."""
    data = output.get("data", {})
    text = data.get("text/html", "")
    if not text and (PIPE_TABLE.search(data.get("text/markdown", "")) or "<table" in data.get("text/markdown", "")):
        text = markdown_html(data["text/markdown"])
    if "<table" not in text:
        return []
    reader = TableReader()
    reader.feed(text)
    return reader.tables


def tables(cell: NotebookNode) -> list[dict[str, Any]]:
    return [t for o in cell.outputs for t in output_tables(o)]


# ---------------------------------------------------------------- the checks

def _name(cell: NotebookNode, number: int) -> str:
    return label(cell) or f"cell {number} ({cell.source.strip().splitlines()[-1][:40] if cell.source.strip() else ''})"


def _around(text: str, hit: re.Match) -> str:
    return repr(text[max(0, hit.start() - 30):hit.end() + 50].replace("\n", " "))


def _text_problems(cells: list[NotebookNode], pattern: re.Pattern, what: str) -> list[str]:
    found = []
    for number, cell in enumerate(cells, 1):
        hits = {_around(text, hit) for text in shown_texts(cell) for hit in pattern.finditer(text)}
        found += [f"{_name(cell, number)}: {what}: {hit}" for hit in sorted(hits)]
    return found


def check_paths(cells: list[NotebookNode]) -> list[str]:
    """A machine's absolute path (or this checkout's) in any text a page shows."""
    return _text_problems(cells, ABSOLUTE_PATH, "absolute path")


def check_reprs(cells: list[NotebookNode]) -> list[str]:
    """A Python repr in any text a page shows: `<... object at 0x...>`, a figure or axes, a raw pandas Series."""
    return _text_problems(cells, REPR, "Python repr")


def check_errors(cells: list[NotebookNode]) -> list[str]:
    """Errors a cell raised, and anything written to stderr (a warning, a traceback)."""
    found = []
    for number, cell in enumerate(cells, 1):
        for output in cell.outputs:
            if output.output_type == "error":
                found.append(f"{_name(cell, number)}: error: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr" and output.text.strip():
                found.append(f"{_name(cell, number)}: stderr: {output.text.strip().splitlines()[0][:100]!r}")
        if "Traceback (most recent call last)" in "".join(shown_texts(cell)):
            found.append(f"{_name(cell, number)}: a traceback in the output")
    return list(dict.fromkeys(found))


def check_figures(cells: list[NotebookNode]) -> list[str]:
    """Each figure cell (fig-cap or a fig- label) draws one image; where its inputs are missing it draws nothing at
    all (or a note) and a note on the page says what is missing. Each cell that draws an image is labelled fig-...
    and has a non-empty fig-cap."""
    found = []
    figures = {id(c) for c in figure_cells(cells)}
    page_notes = any(is_note(c) for c in cells)
    for number, cell in enumerate(cells, 1):
        name, drawn = _name(cell, number), len(images(cell))
        missing = drawn == 0 and (is_note(cell) or (page_notes and not [o for o in cell.outputs
                                                                         if o.output_type != "stream"]))
        if id(cell) in figures and drawn != 1 and not missing:
            found.append(f"{name}: a figure cell with {drawn} images" + (" and no note" if not drawn else ""))
        if drawn and not label(cell).startswith("fig-"):
            found.append(f"{name}: draws a figure but its label is not fig-...")
        if drawn and not caption(cell, "fig"):
            found.append(f"{name}: draws a figure without a fig-cap")
    return found


def check_tables(cells: list[NotebookNode]) -> list[str]:
    """Each cell that shows a table is labelled tbl-... with a tbl-cap; no table has an index column or a
    snake_case (or dotted) machine name as a column header."""
    found = []
    for number, cell in enumerate(cells, 1):
        name, shown = _name(cell, number), tables(cell)
        if shown and not label(cell).startswith("tbl-"):
            found.append(f"{name}: shows a table but its label is not tbl-...")
        if shown and not caption(cell, "tbl"):
            found.append(f"{name}: shows a table without a tbl-cap")
        for table in shown:
            if table["index"] or (len(table["header"]) > 1 and table["header"][0] == ""):
                found.append(f"{name}: a table with an index column")
            machine = [h for h in table["header"] if MACHINE_NAME.match(h)]
            if machine:
                found.append(f"{name}: column headers in snake_case: {', '.join(machine)}")
    return found


def check_page(cells: list[NotebookNode]) -> dict[str, list[str]]:
    """Every check on a page's executed code cells: {check: problems}, an empty list where it passes."""
    checks = {"paths": check_paths, "reprs": check_reprs, "errors": check_errors, "figures": check_figures,
              "tables": check_tables}
    return {name: checks[name](cells) for name in CHECKS}


def counts(cells: list[NotebookNode]) -> dict[str, int]:
    """What a page shows: images, tables, notes (callouts) and error outputs."""
    return {"figures": sum(len(images(c)) for c in cells), "tables": sum(len(tables(c)) for c in cells),
            "notes": sum(notes(c) for c in cells),
            "errors": sum(o.output_type == "error" for c in cells for o in c.outputs)}


# ---------------------------------------------------------------- HTML as the site shows it

def numbering(cells: list[NotebookNode]) -> dict[str, str]:
    """Quarto's numbers on a page: each fig-... label 'Figure N' and each tbl-... label 'Table N', in order."""
    numbers, seen = {}, {"fig": 0, "tbl": 0}
    for cell in cells:
        kind = label(cell).split("-", 1)[0]
        if kind in seen and label(cell) not in numbers:
            seen[kind] += 1
            numbers[label(cell)] = f"{'Figure' if kind == 'fig' else 'Table'} {seen[kind]}"
    return numbers


_tokens = iter(range(sys.maxsize))


def callout_html(kind: str, attributes: str, body: str, refs: dict[str, str] | None = None) -> str:
    """A Quarto callout as a boxed block: its title from title="..." or a leading heading, else its kind."""
    heading = re.match(r"[ \t]*#+[ \t]+(.+)\n?", body)
    named = re.search(r'title="([^"]*)"', attributes)
    title = named.group(1) if named else heading.group(1).strip() if heading else kind.capitalize()
    body = body[heading.end():] if heading and not named else body
    return (f'<div class="callout callout-{kind}"><div class="callout-title">{html.escape(title)}</div>'
            f'<div class="callout-body">{markdown_html(body, refs)}</div></div>')


def markdown_html(text: str, refs: dict[str, str] | None = None) -> str:
    """Markdown as Quarto renders it, in HTML: pipe tables, raw ```{=html} blocks, callouts as boxes, and @fig-...
    or @tbl-... references as their numbers (an unknown one as ?@fig-..., as Quarto writes it)."""
    import mistune

    held = {}

    def hold(block: str) -> str:
        token = BLOCK.format(next(_tokens))
        held[token] = block
        return f"\n\n{token}\n\n"

    text = RAW_HTML.sub(lambda m: hold(m.group(1)), text)
    text = CALLOUT.sub(lambda m: hold(callout_html(m.group(1), m.group(2), m.group(3), refs)), text)
    text = CROSSREF.sub(lambda m: (refs or {}).get(m.group(1), f"?@{m.group(1)}"), text)
    rendered = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])(text)
    for token, block in held.items():
        rendered = rendered.replace(f"<p>{token}</p>", block).replace(token, block)
    return QMD_LINK.sub(r'href="\1.html', rendered)  # a link to a page goes to its HTML, as on the site


def _caption(number: str | None, text: str, refs: dict[str, str]) -> NotebookNode:
    inline = re.sub(r"^<p>|</p>\s*$", "", markdown_html(text, refs).strip())
    prefix = f"{number}: " if number else ""
    return nbformat.v4.new_output("display_data", data={"text/html": f'<div class="quarto-caption">{prefix}{inline}'
                                                                      "</div>"})


def quarto_outputs(cell: NotebookNode, refs: dict[str, str]) -> list[NotebookNode]:
    """A cell's outputs as Quarto shows them: none for include/output false, `output: asis` text as Markdown, a
    figure's caption under its (last) image and a table's above its first table, numbered when labelled."""
    chosen = options(cell.source)
    if chosen.get("include") is False or chosen.get("output") is False:
        return []
    outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": o.text})
               if chosen.get("output") == "asis" and o.output_type == "stream" else o for o in cell.outputs]
    name = label(cell)
    drawn = [i for i, o in enumerate(outputs) if any(m in o.get("data", {}) for m in IMAGES)]
    if drawn and caption(cell, "fig"):
        number = refs.get(name) if name.startswith("fig-") else None
        outputs.insert(drawn[-1] + 1, _caption(number, caption(cell, "fig"), refs))
    shown = [i for i, o in enumerate(outputs) if output_tables(o)]
    if shown and caption(cell, "tbl"):
        number = refs.get(name) if name.startswith("tbl-") else None
        outputs.insert(shown[0], _caption(number, caption(cell, "tbl"), refs))
    return outputs


# nbconvert's JupyterLab template, less its CDN scripts (require.js, MathJax, mermaid), with the site's look
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style>
:root { --jp-content-font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --jp-content-font-size1: 16px; --jp-ui-font-family: var(--jp-content-font-family);
  --jp-content-font-color1: #373a3c; }
body.jp-Notebook { padding: 0; background: #fff; }
main { max-width: 980px; margin: 0 auto; padding: 24px 40px 60px; }
.jp-Cell, .jp-MarkdownCell > .jp-RenderedMarkdown { width: 100%; box-sizing: border-box; padding: 0; }
.jp-RenderedHTMLCommon { padding-left: 0; padding-right: 0; }
.jp-RenderedHTMLCommon h1 { font-size: 2.2em; font-weight: 500; margin-top: .6em; }
.jp-RenderedHTMLCommon h2 { border-bottom: 1px solid #dee2e6; padding-bottom: .3em; margin-top: 1.4em; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
.quarto-caption { color: #5a6570; margin: .3em 0 1.4em; font-size: .95em; }
.callout { border: 1px solid #dee2e6; border-left: 5px solid #2780e3; border-radius: 4px; margin: 1em 0; }
.callout-title { background: #e9f2fc; padding: .45em .9em; font-weight: 600; }
.callout-body { padding: .2em .9em; }
.callout-warning { border-left-color: #ff7518; } .callout-warning .callout-title { background: #fff1e8; }
.callout-important { border-left-color: #ff0039; } .callout-important .callout-title { background: #ffe6eb; }
.callout-tip { border-left-color: #3fb618; } .callout-tip .callout-title { background: #ecf8e8; }
.callout-caution { border-left-color: #f0ad4e; } .callout-caution .callout-title { background: #fdf5ea; }
</style>{% endblock extra_css %}
{% block markdowncell scoped -%}
<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell"><div class="jp-RenderedHTMLCommon jp-RenderedMarkdown
 jp-MarkdownOutput" data-mime-type="text/markdown">{{ cell.source | qmd2html }}</div></div>
{%- endblock markdowncell %}
{% block data_markdown scoped -%}
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-OutputArea-output {{ extra_class }}"
 data-mime-type="text/markdown">{{ output.data['text/markdown'] | qmd2html }}</div>
{%- endblock data_markdown %}
"""


def to_html(notebook: NotebookNode) -> str:
    """An executed page as one standalone HTML file: code hidden (the site folds it), outputs and captions as
    Quarto shows them, images embedded, no script or style fetched from anywhere."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    shown = copy.deepcopy(notebook)
    refs = numbering(code_cells(shown))
    for cell in code_cells(shown):
        cell.outputs = quarto_outputs(cell, refs)
    exporter = HTMLExporter(template_name="lab", template_file="lab_page.html.j2",
                            extra_loaders=[DictLoader({"lab_page.html.j2": TEMPLATE})],
                            filters={"qmd2html": lambda text: markdown_html(text, refs)},
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(shown, resources={"metadata": {"name": shown.metadata.get("title", "")}})
    return body
