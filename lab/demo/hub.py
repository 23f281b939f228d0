"""The Hugging Face Hub: assemble and push the demo's Space, push a run as a model with its card, fetch runs back.

Only safetensors and JSON travel (and the Space's code and text files). The token comes from HF_TOKEN or the
login cached by `hf auth login` (`huggingface-cli login`); dry runs touch no network.
"""

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lab import paths
from lab.checkpoints import CheckpointError, load_checkpoint
from lab.config import flatten
from lab.errors import LabError
from lab.imports import module_path, reachable
from lab.run_folder import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, is_done

DEMO_DIR, SPACE_DIR = paths.DEMO_DIR, paths.SPACE_DIR
APP_FILE = "app.py"
# what the Space needs from the repository: the app, its text files, the shipped weights and example digits, and
# the lab modules the app imports (space_modules)
SPACE_FILES = (APP_FILE, "README.md", "requirements.txt", paths.EXAMPLES_FILE)
SPACE_FOLDERS = (paths.CHECKPOINTS_FOLDER,)
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE)
CARD_FILE = "README.md"
RUN_PATTERNS = ["*.json", "*.safetensors"]  # nothing else is downloaded from a model repo


class HubError(LabError, RuntimeError):
    """A push or download that cannot go ahead; the message says what to fix."""


def _not_run_files(folder: str, names: list[str]) -> list[str]:
    """copytree's ignore: every file but JSON and safetensors, and hidden entries."""
    return [n for n in names if n.startswith(".") or
            ((Path(folder) / n).is_file() and not n.endswith((".json", ".safetensors")))]


def assemble_space(out: Path = SPACE_DIR, demo_dir: Path = DEMO_DIR) -> Path:
    """Copy the app, its README (Spaces front matter), requirements, weights, examples and its lab modules to out."""
    missing = [name for name in SPACE_FILES + SPACE_FOLDERS if not (demo_dir / name).exists()]
    if missing:
        raise HubError(f"{demo_dir}: missing {', '.join(missing)}; run `make demo-weights` to make the weights "
                       f"and example digits")
    def fill(staging: Path) -> None:
        for name in SPACE_FILES:
            shutil.copy2(demo_dir / name, staging / name)
        for name in SPACE_FOLDERS:  # run folders: their JSON and safetensors only
            shutil.copytree(demo_dir / name, staging / name, ignore=_not_run_files)
        for source in space_modules(demo_dir / APP_FILE):
            target = staging / source.relative_to(paths.ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)

    return write_folder_atomic(Path(out), fill)


def space_modules(app: Path = DEMO_DIR / APP_FILE) -> list[Path]:
    """The source files of the lab modules the app imports, directly or through others (no training code)."""
    return sorted(module_path(name, paths.ROOT) for name in reachable(app, paths.ROOT))


def write_folder_atomic(out: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a staging folder beside out, then swap it in: a reader sees the old folder or the new one, never half."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    try:
        fill(staging)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def ship_runs(run_ids: list[str], runs_dir: Path, out: Path | None = None) -> list[Path]:
    """Copy finished run folders (their JSON and safetensors only) into out (default: the demo's), replacing it."""
    missing = [r for r in run_ids if not is_done(Path(runs_dir) / r)]
    if missing:
        raise HubError(f"{runs_dir}: unfinished or missing runs {', '.join(missing)}; train them first")
    def fill(staging: Path) -> None:
        for rid in run_ids:
            shutil.copytree(Path(runs_dir) / rid, staging / rid, ignore=_not_run_files)
            load_checkpoint(staging / rid)  # what ships must load

    out = write_folder_atomic(Path(out or paths.demo_checkpoints()), fill)
    return [out / rid for rid in run_ids]


def list_files(folder: Path) -> list[tuple[str, int]]:
    """(path relative to folder, size in bytes) of every file under folder, sorted."""
    folder = Path(folder)
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def format_listing(files: list[tuple[str, int]]) -> str:
    """A file listing with sizes and a total, for dry runs."""
    lines = [f"  {size:>10,d}  {name}" for name, size in files]
    return "\n".join(lines + [f"  {sum(s for _, s in files):>10,d}  total, {len(files)} files"])


def _token() -> str:
    from huggingface_hub import get_token
    token = get_token()  # HF_TOKEN, else the cached login
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (huggingface-cli login); "
                       "--dry-run lists the files without one")
    return token


def push_space(repo: str, folder: Path = SPACE_DIR, private: bool = False) -> str:
    """Create the Space (gradio SDK) if needed and upload folder to it; returns the Space's URL."""
    from huggingface_hub import create_repo, upload_folder
    from huggingface_hub.errors import HfHubHTTPError
    token = _token()
    try:
        url = create_repo(repo, token=token, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        upload_folder(repo_id=repo, folder_path=str(folder), repo_type="space", token=token,
                      commit_message="Upload the latent-digits-lab demo")
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise HubError(f"pushing {folder} to the Space {repo} failed: {error}") from None
    return str(url)


def model_card(run_folder: Path) -> str:
    """A model card (README.md) for a run folder: what it is, how to load it, its metrics and full config."""
    checkpoint = load_checkpoint(run_folder)
    config = json.loads((Path(run_folder) / CONFIG_FILE).read_text())
    metrics = checkpoint.metrics
    headline = ("test_accuracy", "train_accuracy", "test_loss", "test_mse", "train_mse", "train_seconds",
                "parameters", "torch", "device", "git_commit")
    rows = [f"| `{k}` | {metrics[k]:.6g} |" if isinstance(metrics[k], float) else f"| `{k}` | {metrics[k]} |"
            for k in headline if k in metrics]
    config_rows = [f"| `{k}` | `{json.dumps(v)}` |" for k, v in flatten(config).items()]
    task_tag = "image-classification" if checkpoint.task == "classifier" else "image-to-image"
    return "\n".join([
        "---",
        "library_name: pytorch",
        "license: mit",
        f"pipeline_tag: {task_tag}",
        "tags: [mnist, latent-digits-lab, safetensors]",
        "datasets: [mnist]",
        "---",
        "",
        f"# {checkpoint.run_id}",
        "",
        f"A {checkpoint.config.model.preset} {checkpoint.task} from latent-digits-lab, trained on MNIST: "
        f"{checkpoint.describe()}.",
        "",
        "The folder is a lab run folder: `config.json` (the full config), `weights.safetensors` and "
        "`metrics.json`. Load it with the lab (no pickle anywhere):",
        "",
        "```python",
        "from lab.checkpoints import load_checkpoint",
        f"checkpoint = load_checkpoint(\"path/to/{checkpoint.run_id}\")",
        "probabilities = checkpoint.probabilities(images)  # images: (N, 28, 28) floats in [0, 1], white on black"
        if checkpoint.task == "classifier" else
        "reconstructions = checkpoint.reconstruct(images)  # images: (N, 28, 28) floats in [0, 1], white on black",
        "```",
        "",
        "or run the demo on it: `python demo/app.py --hub-repo USER/NAME`.",
        "",
        "## Metrics (MNIST test set of 10,000 images)",
        "",
        "| metric | value |",
        "| --- | --- |",
        *rows,
        "",
        "## Config",
        "",
        "| key | value |",
        "| --- | --- |",
        *config_rows,
        "",
    ])


def stage_model(run_folder: Path, out: Path) -> list[tuple[str, int]]:
    """Copy a run's config, weights and metrics into out with a generated model card; returns the file list."""
    run_folder = Path(run_folder)
    try:
        card = model_card(run_folder)  # loads the checkpoint: a broken run is refused before anything uploads
    except CheckpointError as error:
        raise HubError(f"not pushing {run_folder}: {error}") from None
    for name in MODEL_FILES:
        shutil.copy2(run_folder / name, Path(out) / name)
    (Path(out) / CARD_FILE).write_text(card, encoding="utf-8")
    return list_files(out)


def push_model(run_folder: Path, repo: str, private: bool = False, dry_run: bool = False,
               ) -> tuple[list[tuple[str, int]], str | None]:
    """Upload a run folder (config, weights, metrics, model card) to a model repo; (file list, URL or None)."""
    from huggingface_hub import create_repo, upload_folder
    from huggingface_hub.errors import HfHubHTTPError
    with tempfile.TemporaryDirectory(prefix="lab-model-") as staging:
        files = stage_model(run_folder, Path(staging))
        if dry_run:
            return files, None
        token = _token()
        try:
            url = create_repo(repo, token=token, repo_type="model", private=private, exist_ok=True)
            upload_folder(repo_id=repo, folder_path=staging, repo_type="model", token=token,
                          commit_message=f"Upload {Path(run_folder).name}")
        except (HfHubHTTPError, OSError, ValueError) as error:
            raise HubError(f"pushing {run_folder} to {repo} failed: {error}") from None
    return files, str(url)


def download_runs(repo: str, revision: str | None = None) -> Path:
    """Download a model repo's run folders (JSON and safetensors only) into the Hub cache; returns its local path."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=RUN_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as error:
        raise HubError(f"could not download {repo} from the Hugging Face Hub: {error}") from None
