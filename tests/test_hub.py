"""The Hub side, offline: the Space folder, dry runs of push-space and push-model, the model card, shipping runs."""

import json
import re
import shutil

import pytest
import yaml
from demo_server import SHIPPED

from lab.__main__ import main
from lab.checkpoints import load_checkpoint
from lab.demo.hub import HubError, assemble_space, download_runs, model_card, ship_runs


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network and no token: HF_HUB_OFFLINE, an empty HF_HOME, HF_TOKEN unset."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


def shipped(task_prefix: str):
    return next(p for p in sorted(SHIPPED.iterdir()) if p.name.startswith(task_prefix))


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "no front matter"
    return yaml.safe_load(match.group(1))


def test_space_readme_and_requirements_agree(tmp_path):
    space = assemble_space(tmp_path / "space")
    meta = front_matter((space / "README.md").read_text())
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (space / meta["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+", str(meta["python_version"]))
    requirements = (space / "requirements.txt").read_text()
    assert f"gradio=={meta['sdk_version']}" in requirements  # the Space runs the gradio it was tested with
    assert "download.pytorch.org/whl/cpu" in requirements and re.search(r"^torch==", requirements, re.M)


def test_space_folder_holds_the_app_the_lab_and_the_weights_only(tmp_path):
    space = assemble_space(tmp_path / "space")
    files = {p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file()}
    assert {"app.py", "README.md", "requirements.txt", "examples.safetensors", "lab/demo/canvas.py",
            "lab/checkpoints.py", "lab/run_folder.py"} <= files
    # the app loads run folders and never trains: no training code travels, and the Space installs no tqdm
    assert not files & {"lab/train.py", "lab/runner.py", "lab/resume.py", "lab/sweep.py", "lab/tools/bench.py"}
    assert "tqdm" not in (space / "requirements.txt").read_text()
    for run in SHIPPED.iterdir():
        assert {f"checkpoints/{run.name}/{name}" for name in ("config.json", "weights.safetensors",
                                                              "metrics.json")} <= files
    assert all(name.endswith((".py", ".json", ".safetensors", ".md", ".txt")) for name in files), files
    assert not any("__pycache__" in name for name in files)
    assemble_space(tmp_path / "space")  # rebuilding replaces it in one step
    assert {p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file()} == files


def test_push_space_dry_run_lists_files_and_sizes(tmp_path, capsys):
    space = assemble_space(tmp_path / "space")
    assert main(["push-space", "--repo", "someone/digits", "--folder", str(space), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload" in out and "someone/digits" in out
    size = (space / "app.py").stat().st_size
    assert re.search(rf"{size:,d}\s+app\.py", out)
    assert re.search(r"[\d,]+\s+total, \d+ files", out)


def test_push_space_without_a_token_says_how_to_log_in(tmp_path, capsys):
    space = assemble_space(tmp_path / "space")
    assert main(["push-space", "--repo", "someone/digits", "--folder", str(space)]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err


def test_model_card_holds_config_and_metrics():
    run = shipped("fast_cnn")
    card = model_card(run)
    checkpoint = load_checkpoint(run)
    meta = front_matter(card)
    assert meta["library_name"] == "pytorch" and "mnist" in meta["tags"]
    assert checkpoint.run_id in card
    assert f"| `test_accuracy` | {checkpoint.metrics['test_accuracy']:.6g} |" in card
    config = json.loads((run / "config.json").read_text())
    assert f"| `model.channels` | `{json.dumps(config['model']['channels'])}` |" in card
    assert f"| `train.epochs` | `{config['train']['epochs']}` |" in card
    autoencoder_card = model_card(shipped("conv_ae"))
    assert "test_mse" in autoencoder_card and "reconstruct" in autoencoder_card


def test_push_model_dry_run_lists_the_run_and_its_card(capsys):
    run = shipped("conv_ae")
    assert main(["push-model", str(run), "--repo", "someone/ae", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in ("config.json", "weights.safetensors", "metrics.json", "README.md"):
        assert re.search(rf"[\d,]+\s+{re.escape(name)}", out), name
    size = (run / "weights.safetensors").stat().st_size
    assert f"{size:,d}  weights.safetensors" in out


def test_push_model_refuses_a_broken_run(tmp_path, capsys):
    run = tmp_path / "broken"
    shutil.copytree(shipped("fast_cnn"), run)
    (run / "weights.safetensors").write_bytes(b"not safetensors")
    assert main(["push-model", str(run), "--repo", "someone/x", "--dry-run"]) == 2
    assert "weights.safetensors" in capsys.readouterr().err


def test_download_offline_is_a_clear_error():
    with pytest.raises(HubError, match="could not download someone/nothing"):
        download_runs("someone/nothing")


def test_ship_runs_copies_finished_runs_only(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(SHIPPED, runs)
    run_ids = sorted(p.name for p in runs.iterdir())
    (runs / run_ids[0] / "notes.txt").write_text("not shipped")
    out = tmp_path / "checkpoints"
    out.mkdir()
    (out / "stale-run").mkdir()
    ship_runs(run_ids, runs, out)
    assert sorted(p.name for p in out.iterdir()) == run_ids  # the old content is gone
    assert not (out / run_ids[0] / "notes.txt").exists()
    (runs / run_ids[0] / "metrics.json").unlink()  # unfinished
    with pytest.raises(HubError, match="unfinished or missing"):
        ship_runs(run_ids, runs, out)
    assert sorted(p.name for p in out.iterdir()) == run_ids  # left as it was
