"""Epoch checkpoints: a run stopped after an epoch resumes to exactly the uninterrupted run; bad files are not fatal."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lab.config import apply_overrides, default_config, run_id
from lab.data import Dataset
from lab.resume import META_KEY
from lab.run_folder import RESUME_FILE, TEMP_FILE_PATTERN, remove_stale_temp_files, write_atomic
from lab.runner import run_sweep, train_run
from lab.sweep import load_sweep
from lab.train import fit

TIME_FIELDS = {"train_seconds", "total_seconds", "epoch_seconds"}


class Stop(Exception):
    """Stands in for a kill: raised from the log callback right after an epoch's line."""


@pytest.fixture
def one_thread():
    """One torch thread: the thread count changes the last digits of a CPU result, so both runs must share it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_mnist(mnist) -> Dataset:
    """Real MNIST, cut to 600 training and 1,000 test images so that each epoch takes a fraction of a second."""
    return Dataset(mnist.name, mnist.train.head(600), mnist.test.head(1000), mnist.mean, mnist.std)


def config(task: str = "classifier", **overrides):
    base = {"data.train_limit": 600, "train.epochs": 3, "train.batch_size": 50, "train.lr": 0.01}
    if task == "classifier":
        base |= {"model.channels": [[4], [8]], "model.kernel_sizes": [3, 3]}
    else:
        base |= {"model.channels": [4, 8], "model.latent_dim": 4}
    return apply_overrides(default_config(task), base | overrides)


CASES = {
    "augment_dropout_onecycle_auto": ("classifier", {"data.augment": True, "model.dropout": 0.2,
                                                     "train.optimizer": "adamw", "train.schedule": "onecycle",
                                                     "train.weight_decay": 1e-4}, "auto", 1),
    "augment_dropout_onecycle_fp32": ("classifier", {"data.augment": True, "model.dropout": 0.2,
                                                     "train.schedule": "onecycle"}, "fp32", 2),
    "sgd_exponential": ("classifier", {"train.optimizer": "sgd", "train.schedule": "exponential",
                                       "train.lr_decay": 0.7, "train.lr": 0.05}, "auto", 2),
    "conv_autoencoder": ("autoencoder", {"train.lr": 0.003}, "auto", 1),
    "after_the_last_epoch": ("classifier", {"model.dropout": 0.2}, "auto", 3),  # killed before its weights were written
}


def stop_after(epoch: int, lines: list[str]):
    """A log callback that records lines and raises Stop after the given epoch's line."""
    def log(line: str) -> None:
        lines.append(line)
        if line.startswith(f"  epoch {epoch}/"):
            raise Stop
    return log


def without(rows, keys=TIME_FIELDS):
    return [{k: v for k, v in row.items() if k not in keys} for row in rows]


def assert_same_run(a, b) -> None:
    """Same weights bit for bit, same history and metrics but for the seconds."""
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert list(state_a) == list(state_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), \
        [k for k in state_a if not torch.equal(state_a[k], state_b[k])]
    assert without(a.history) == without(b.history)
    assert without([a.metrics]) == without([b.metrics])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_run_stopped_after_an_epoch_resumes_to_the_uninterrupted_result(case, small_mnist, tmp_path, one_thread):
    task, overrides, precision, stop_epoch = CASES[case]
    cfg = config(task, **overrides)
    reference = fit(cfg, small_mnist, "cpu", progress=False, log=lambda s: None, precision=precision)  # no folder
    lines: list[str] = []
    with pytest.raises(Stop):
        fit(cfg, small_mnist, "cpu", progress=False, log=stop_after(stop_epoch, lines), precision=precision,
            folder=tmp_path)
    assert (tmp_path / RESUME_FILE).is_file()
    lines.clear()
    resumed = fit(cfg, small_mnist, "cpu", progress=False, log=lines.append, precision=precision, folder=tmp_path)
    assert lines[0].startswith(f"  resuming {run_id(cfg)} from epoch {stop_epoch}/3 (saved ")
    assert [line.split("/")[0] for line in lines[1:]] == [f"  epoch {e}" for e in range(stop_epoch + 1, 4)]
    assert_same_run(reference, resumed)
    # the seconds of the epochs before the stop still count
    assert resumed.metrics["train_seconds"] == pytest.approx(sum(row["epoch_seconds"] for row in resumed.history))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


def test_the_resume_file_holds_the_whole_state_as_safetensors_and_json(small_mnist, tmp_path, one_thread):
    cfg = config(**{"data.augment": True, "model.dropout": 0.2, "train.schedule": "onecycle"})
    with pytest.raises(Stop):
        fit(cfg, small_mnist, "cpu", progress=False, log=stop_after(2, []), folder=tmp_path)
    with safe_open(str(tmp_path / RESUME_FILE), framework="pt") as f:
        info, keys = json.loads(f.metadata()[META_KEY]), set(f.keys())
    assert info["run_id"] == run_id(cfg) and info["epoch"] == 2 and [r["epoch"] for r in info["history"]] == [1, 2]
    assert info["scheduler"]["last_epoch"] == 2 * 12  # onecycle steps per batch: 600 / 50 = 12 batches an epoch
    assert 0 < info["train_seconds"] <= info["elapsed_seconds"]
    assert {"rng/generator", "rng/torch"} <= keys
    assert any(k.startswith("model/") and k.endswith("running_mean") for k in keys)  # BatchNorm buffers too
    assert {k.rsplit("/", 1)[1] for k in keys if k.startswith("optimizer/")} == {"step", "exp_avg", "exp_avg_sq"}


def test_train_run_removes_the_resume_file_and_stale_temp_files(small_mnist, tmp_path, one_thread):
    cfg = config("autoencoder", **{"train.epochs": 2})
    folder = tmp_path / run_id(cfg)
    with pytest.raises(Stop):
        train_run(cfg, tmp_path, small_mnist, "cpu", progress=False, log=stop_after(1, []))
    stale = [folder / ".weights.safetensors.ab_cd123.tmp", folder / ".metrics.json.x1y2z3w4.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    lines: list[str] = []
    train_run(cfg, tmp_path, small_mnist, "cpu", progress=False, log=lines.append)
    assert lines[0].startswith("  removed 2 half-written temp file(s) of a killed write: ")
    assert lines[1].startswith(f"  resuming {run_id(cfg)} from epoch 1/2")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.json", "metrics.json",
                                                         "weights.safetensors"]
    assert [row["epoch"] for row in json.loads((folder / "history.json").read_text())] == [1, 2]


def test_only_write_atomic_temp_files_count_as_stale(tmp_path):
    names = []
    write_atomic(tmp_path / "weights.safetensors", lambda p: (names.append(p.name), p.write_bytes(b"x")))
    assert TEMP_FILE_PATTERN.match(names[0])  # the pattern matches the names write_atomic really makes
    stale = [tmp_path / names[0], tmp_path / ".history.json.k2_9abcd.tmp"]
    kept = [tmp_path / n for n in ("notes.tmp", ".hidden", ".history.json.tmp", "history.json", "resume.safetensors",
                                   ".a.toolongname.tmp", "x.json.abcdefgh.tmp")]
    for path in stale + kept:
        path.write_bytes(b"x")
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()  # a folder is never one of them
    assert remove_stale_temp_files(tmp_path, {"history.json"}) == [stale[1]]  # a results table's own temp files
    assert remove_stale_temp_files(tmp_path) == [stale[0]]
    assert all(p.exists() for p in kept) and (tmp_path / ".dir.abcdefgh.tmp").is_dir()


def _edit(path, edit_info=None, edit_tensors=None) -> None:
    """Rewrite a resume file with its JSON part and/or tensors changed."""
    with safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()[META_KEY])
    tensors = load_file(str(path))
    if edit_info:
        edit_info(info)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(info)})


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _nan_weight(tensors) -> None:
    key = next(k for k in tensors if k.startswith("model/") and k.endswith("weight"))
    tensors[key][0] = float("nan")


BAD_FILES = {
    "truncated": (_truncate, "not a readable safetensors file"),
    "garbage": (lambda p: p.write_bytes(b"\x00" * 64), "not a readable safetensors file"),
    "no_metadata": (lambda p: save_file(load_file(str(p)), str(p)), "no readable training state"),
    "other_run": (lambda p: _edit(p, lambda i: i.update(run_id="fast_cnn-0123456789")), "saved by run"),
    "epoch_out_of_range": (lambda p: _edit(p, lambda i: i.update(epoch=7)), "epoch 7 is not in 1..2"),
    "history_short": (lambda p: _edit(p, lambda i: i.update(history=[])), "history does not list"),
    "other_precision": (lambda p: _edit(p, lambda i: i.update(precision="bf16")), "trained in bf16"),
    "nan_weight": (lambda p: _edit(p, edit_tensors=_nan_weight), "non-finite values in model/"),
    "missing_key": (lambda p: _edit(p, edit_tensors=lambda t: t.pop(next(k for k in t if k.startswith("model/")))),
                    "model keys do not match"),
    "optimizer_shape": (lambda p: _edit(p, edit_tensors=lambda t: t.update(
        {next(k for k in t if k.endswith("exp_avg")): torch.zeros(3)})), "the parameter has"),
    "other_optimizer": (lambda p: _edit(p, lambda i: i["optimizer"]["param_groups"][0].pop("betas")),
                        "optimiser parameter groups do not match"),
    # passes every check but fails while loading, after the model and optimiser took their state: rolled back
    "bad_scheduler_state": (lambda p: _edit(p, lambda i: i.update(scheduler=[1, 2])), "does not fit this run"),
}


@pytest.fixture(scope="module")
def reference_and_resume_file(small_mnist, tmp_path_factory):
    """A 2-epoch run trained from scratch, and the resume file of the same run stopped after epoch 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = config(**{"train.epochs": 2, "train.schedule": "exponential", "train.lr_decay": 0.5})
    reference = fit(cfg, small_mnist, "cpu", progress=False, log=lambda s: None, precision="fp32")
    folder = tmp_path_factory.mktemp("resume")
    with pytest.raises(Stop):
        fit(cfg, small_mnist, "cpu", progress=False, log=stop_after(1, []), precision="fp32", folder=folder)
    torch.set_num_threads(threads)
    return cfg, reference, folder / RESUME_FILE


@pytest.mark.parametrize("case", BAD_FILES, ids=str)
def test_a_bad_resume_file_is_named_deleted_and_the_run_trains_from_scratch(case, small_mnist, tmp_path, one_thread,
                                                                           reference_and_resume_file):
    cfg, reference, good = reference_and_resume_file
    spoil, reason = BAD_FILES[case]
    path = tmp_path / RESUME_FILE
    shutil.copy(good, path)
    spoil(path)
    saved_at = path.stat().st_mtime_ns
    lines: list[str] = []
    result = fit(cfg, small_mnist, "cpu", progress=False, log=lines.append, precision="fp32", folder=tmp_path)
    warning = lines[0]
    assert warning.startswith(f"  warning: {path}: ") and reason in warning, warning
    assert warning.endswith(f"training {run_id(cfg)} from scratch")
    assert not any("resuming" in line for line in lines)
    assert [line.split("/")[0] for line in lines[1:]] == ["  epoch 1", "  epoch 2"]
    assert_same_run(reference, result)  # nothing of the bad file leaked into the model, optimiser or generators
    assert path.stat().st_mtime_ns != saved_at  # replaced by this run's own checkpoint


def test_an_untouched_copy_of_the_resume_file_resumes(small_mnist, tmp_path, one_thread, reference_and_resume_file):
    """The fixture's file is good: the failures above come from the spoiling, not from the file."""
    cfg, reference, good = reference_and_resume_file
    shutil.copy(good, tmp_path / RESUME_FILE)
    lines: list[str] = []
    result = fit(cfg, small_mnist, "cpu", progress=False, log=lines.append, precision="fp32", folder=tmp_path)
    assert lines[0].startswith("  resuming") and len(lines) == 2
    assert_same_run(reference, result)


def test_a_sweep_counts_the_runs_it_resumes_and_tidies_finished_ones(tiny_sweep, tmp_path, mnist):
    sweep = load_sweep(tiny_sweep)
    finished, stopped, _ = sweep.unique_runs()
    train_run(finished.config, tmp_path, mnist, "cpu", progress=False, log=lambda s: None)
    (tmp_path / finished.run_id / RESUME_FILE).write_bytes(b"left by a kill between metrics.json and its deletion")
    with pytest.raises(Stop):
        train_run(stopped.config, tmp_path, mnist, "cpu", progress=False, log=stop_after(1, []))
    lines: list[str] = []
    assert run_sweep(sweep, tmp_path, {"mnist": mnist}, "cpu", progress=False, log=lines.append) == \
        {"trained": 2, "skipped": 1}
    assert "1 already done, 2 to train (1 from an epoch checkpoint)" in lines[0]
    assert f"  resuming {stopped.run_id} from epoch 1/1" in "\n".join(lines)
    assert not list(tmp_path.glob(f"*/{RESUME_FILE}"))
