"""The architecture, enforced: the core imports nothing from the report, demo or tools packages; no import circle;
functions that fit a screen; `python -m lab --help` and `python demo/app.py --help` load no training code."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lab import paths
from lab.imports import import_graph

PACKAGES = ("lab.report", "lab.demo", "lab.tools")  # everything else under lab/ is the core
# who may import whom: the core only itself; report and demo the core; tools anything. lab.__main__ is the
# command line's entry point: it registers the demo's commands (lab.demo.commands) and nothing else from above.
ALLOWED = {"core": {"core"}, "lab.report": {"core", "lab.report"}, "lab.demo": {"core", "lab.demo"},
           "lab.tools": {"core", "lab.report", "lab.demo", "lab.tools"}}
ENTRY_POINT = {"lab.__main__": {"lab.demo.commands"}}
MAX_FUNCTION_LINES = 60
TRAINING_CODE = ("lab.train", "lab.runner", "lab.resume", "lab.ray_runner", "tqdm", "ray")


def layer(module: str) -> str:
    return next((p for p in PACKAGES if module == p or module.startswith(p + ".")), "core")


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import that goes against ALLOWED (less the entry point's named exceptions)."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer(b) not in ALLOWED[layer(a)] and b not in ENTRY_POINT.get(a, set()))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the modules along it (depth-first search; each circle reported once)."""
    found, state = [], {}  # state: 1 on the current path, 2 finished

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_the_core_imports_nothing_from_the_report_demo_or_tools():
    graph = import_graph(paths.ROOT)
    assert {"lab.config", "lab.train", "lab.report.analysis", "lab.demo.canvas", "lab.tools.bench"} <= set(graph)
    assert layering_violations(graph) == []


def test_there_is_no_import_circle_in_lab():
    assert cycles(import_graph(paths.ROOT)) == []


def _package(root: Path, modules: dict[str, str]) -> Path:
    for name, source in modules.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_the_checks_catch_a_circle_and_a_core_module_reaching_up(tmp_path):
    """A lazy import inside a function counts too: that is how the old resume -> sweep -> train circle hid."""
    root = _package(tmp_path, {
        "lab.__init__": "", "lab.a": "from lab import b\n", "lab.b": "def f():\n    from lab.a import x\n",
        "lab.report.__init__": "", "lab.report.figures": "import lab.a\n",
        "lab.c": "from lab.report import figures\n"})
    graph = import_graph(root)
    assert cycles(graph) == [["lab.a", "lab.b", "lab.a"]]
    assert layering_violations(graph) == ["lab.c -> lab.report", "lab.c -> lab.report.figures"]


def long_functions(folders: list[Path]) -> list[str]:
    """'file:line name (N lines)' for every function longer than MAX_FUNCTION_LINES."""
    found = []
    for path in sorted(p for folder in folders for p in folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(paths.ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_lab_or_demo_is_longer_than_a_screen():
    assert long_functions([paths.ROOT / "lab", paths.ROOT / "demo"]) == []


def imported_at_startup(*argv: str) -> set[str]:
    """The modules a command imports (python -X importtime), run with --help."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv, "--help"], capture_output=True, text=True,
                          cwd=paths.ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def test_the_cli_help_imports_no_training_code_and_no_torch():
    modules = imported_at_startup("-m", "lab")
    assert "lab.cli" in modules  # the check reads the import log it thinks it reads
    assert not modules & {*TRAINING_CODE, "torch", "pandas", "lab.demo.hub", "lab.checkpoints"}


@pytest.mark.slow
def test_the_app_help_imports_no_training_code():
    modules = imported_at_startup(str(paths.DEMO_DIR / "app.py"))
    assert {"gradio", "lab.checkpoints", "lab.demo.canvas"} <= modules
    # the lab's own training code only: gradio imports tqdm itself (through huggingface_hub)
    assert not modules & {m for m in TRAINING_CODE if m.startswith("lab.")}
