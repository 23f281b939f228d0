"""Experiment tracking (lab/tracking.py): each tracker holds a copy of the run folder, read back with its own reader;
a resumed run logs each epoch once in one tracked run; a failing tracker costs one warning and changes nothing."""

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sweep_files import SMALL_AUTOENCODER, SMALL_CLASSIFIER, sweep_toml
from tracker_readers import READERS

from lab import paths
from lab.__main__ import main, sweep_trackers
from lab.config import ConfigError, default_config, from_dict, run_id
from lab.results import table_paths
from lab.run_folder import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, TRACKING_FOLDER
from lab.sweep import SweepError, load_sweep
from lab.trackers import FACTORIES, final_numbers
from lab.tracking import Tracking, check_trackers, tracked_config

TRACKERS = tuple(READERS)
TIME_KEYS = {"train_seconds", "total_seconds", "epoch_seconds", "finished_at"}
OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
CLASSIFIER = sweep_toml("tracked_cls", "classifier", SMALL_CLASSIFIER | {
    "data.train_limit": 1500, "data.val_size": 500, "train.epochs": 2, "train.batch_size": 100, "train.lr": 0.01})
AUTOENCODER = sweep_toml("tracked_ae", "autoencoder", SMALL_AUTOENCODER | {
    "data.train_limit": 1000, "model.latent_dim": 4, "train.epochs": 2, "train.batch_size": 100})


# ------------------------------------------------------------------------------------------------ fast: the plumbing

class Recorder:
    """A tracker that records its calls: the shape every adapter in lab/trackers.py has."""

    calls: list = []

    def __init__(self, run):
        self.calls.append(("open", run.run_id, run.group))

    def log_epoch(self, row):
        self.calls.append(("epoch", row["epoch"]))

    def log_final(self, metrics):
        self.calls.append(("final", metrics["epochs"]))

    def log_image(self, tag, image, caption, step):
        self.calls.append(("image", tag, step))

    def close(self, finished=True):
        self.calls.append(("close", finished))


class Raising:
    """A tracker that raises on every call, opening included (no network, bad credentials)."""

    def __init__(self, run):
        raise ConnectionError("no network")


class RaisingLater(Recorder):
    """A tracker that opens, then raises on every call."""

    def log_epoch(self, row):
        raise ConnectionError("connection reset")

    log_final = log_image = log_epoch


def test_tracker_names_are_checked_with_what_to_do(monkeypatch):
    assert check_trackers(None) == () and check_trackers(["none"]) == ()
    assert check_trackers(["tensorboard", "mlflow", "tensorboard"]) == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match="unknown tracker 'comet'"):
        check_trackers(["comet"])
    with pytest.raises(ConfigError, match="none turns tracking off"):
        check_trackers(["none", "wandb"])
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"wandb is not installed here; install it with .*\[wandb\]"):
        check_trackers(["wandb"])


def test_a_sweep_file_profile_sets_trackers_and_track_on_the_command_line_wins(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('track = ["tensorboard"]\n' + sweep_toml("t", "classifier", {"train.epochs": 1}) +
                    '[profiles.full]\ntrack = ["mlflow", "wandb"]\n[profiles.quiet]\ntrack = []\n'
                    '[profiles.same]\ndescription = "inherits"\n')
    assert load_sweep(path).track == ("tensorboard",)
    assert load_sweep(path, "full").track == ("mlflow", "wandb")
    assert load_sweep(path, "quiet").track == () and load_sweep(path, "same").track == ("tensorboard",)
    sweep = load_sweep(path, "full")
    assert sweep_trackers(sweep, None) == ("mlflow", "wandb")
    assert sweep_trackers(sweep, ["none"]) == () and sweep_trackers(sweep, ["tensorboard"]) == ("tensorboard",)
    path.write_text('track = ["tensorbord"]\n' + sweep_toml("t", "classifier", {}))
    with pytest.raises(SweepError, match=r"t.toml: track: unknown tracker 'tensorbord'"):
        load_sweep(path)
    path.write_text(sweep_toml("t", "classifier", {}) + '[profiles.full]\ntrack = "mlflow"\n')
    with pytest.raises(SweepError, match=r"profiles.full.track: expected a list of tracker names"):
        load_sweep(path)


def test_the_config_is_logged_as_flat_scalar_hyperparameters():
    flat = tracked_config(default_config("classifier"))
    assert all(isinstance(v, str | int | float | bool) for v in flat.values())
    assert flat["train.lr"] == default_config().train.lr and json.loads(flat["model.channels"])
    assert all("." in k for k in flat if k not in ("task", "seed"))


def _run_through(tracking: Tracking, cfg, epochs: int, restored: int = 0) -> None:
    """What train_run does with a Tracking: open, the hook for restored then new epochs, finish."""
    tracking.start(cfg)
    for epoch in range(1, epochs + 1):
        tracking.epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "epoch_seconds": 0.1})
    tracking._picture = lambda folder, test: ("test_mistakes", None, "caption")  # no checkpoint in this test
    tracking.finish({"epochs": epochs}, Path("unused"), None)


def test_restored_epochs_reach_only_trackers_that_lack_them(tmp_path):
    Recorder.calls = []
    cfg = default_config()
    first = Tracking(("tensorboard",), tmp_path, "g", factories={"tensorboard": Recorder})
    first.start(cfg)
    first.epoch({"epoch": 1, "train_loss": 1.0})  # then the process dies: no finish
    Recorder.calls = []
    log: list[str] = []
    second = Tracking(("tensorboard", "mlflow"), tmp_path, "g", log.append,
                      factories={"tensorboard": Recorder, "mlflow": Recorder})
    _run_through(second, cfg, 3)  # the resumed run replays epoch 1, then trains 2 and 3
    epochs = [c[1] for c in Recorder.calls if c[0] == "epoch"]
    assert sorted(epochs) == [1, 2, 2, 3, 3]  # epoch 1 once (mlflow, which lacked it), 2 and 3 in both
    assert json.loads((tmp_path / TRACKING_FOLDER / "epochs" / f"{run_id(cfg)}.json").read_text()) == \
        {"tensorboard": 3, "mlflow": 3}
    assert not log and re.fullmatch(r"tracking over 3 epochs of 1 runs: tensorboard .* per run", second.summary())


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_an_epoch_the_tracker_holds_but_the_ledger_missed_is_not_logged_again(tmp_path, tracker):
    """The process is killed after a tracker flushed an epoch and before the ledger counted it: on resume the
    tracker's own files say what it holds, and the epoch is not logged twice."""
    cfg = default_config()
    log: list[str] = []
    second = _resumed_after_a_kill_past_the_flush(tracker, tmp_path, "g", cfg, log.append)
    second.finish({"epochs": 3, "test_accuracy": 0.5}, tmp_path / "no-run-folder", None)
    got = READERS[tracker](tmp_path, "g", run_id(cfg))
    assert len(got["runs"]) == 1
    for key in ("train_loss", "epoch_seconds"):
        assert [step for step, _ in got["epochs"][key]] == [1, 2, 3], (tracker, key, got["epochs"][key])
    assert [line for line in log if "tracking failed" in line] == []


def _resumed_after_a_kill_past_the_flush(tracker: str, runs: Path, group: str, cfg, log=print) -> Tracking:
    """A run tracked by tracker through epoch 2, killed after the tracker flushed epoch 2 and before the ledger
    counted it (the ledger rewound to 1), then resumed: the second Tracking, through epoch 3, still open."""
    rows = [{"epoch": epoch, "train_loss": 1.0 / epoch, "epoch_seconds": 0.1} for epoch in (1, 2, 3)]
    first = Tracking((tracker,), runs, group)
    first.start(cfg)
    first.epoch(rows[0])
    first.epoch(rows[1])
    (runs / TRACKING_FOLDER / "epochs" / f"{run_id(cfg)}.json").write_text(json.dumps({tracker: 1}))
    second = Tracking((tracker,), runs, group, log)
    second.start(cfg)
    for row in rows:  # the resumed run replays epochs 1 and 2, then trains 3
        second.epoch(row)
    return second


def test_a_tensorboard_epoch_cut_short_by_a_kill_is_not_counted(tmp_path):
    """An epoch's scalars are one event: an event file cut inside the last one holds the epochs before it, whole."""
    from lab.trackers import TensorBoardTracker, TrackedRun, tensorboard_epochs
    run = TrackedRun("fast_cnn-0123456789", "g", "classifier", {"train.lr": 0.1}, tmp_path)
    tracker = TensorBoardTracker(run)
    for epoch in (1, 2, 3):
        tracker.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.9, "epoch_seconds": 0.1})
    tracker.close()
    folder = tmp_path / "tensorboard" / "g" / run.run_id
    assert tensorboard_epochs(folder) == 3
    (events,) = folder.glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-10])  # the kill: epoch 3's event half written
    assert tensorboard_epochs(folder) == 2
    assert TensorBoardTracker(run).last_epoch == 2  # so the resumed run logs epoch 3 again, all of it


@pytest.mark.parametrize("broken", [Raising, RaisingLater])
def test_a_failing_tracker_warns_once_and_the_others_go_on(tmp_path, broken):
    Recorder.calls = []
    log: list[str] = []
    tracking = Tracking(("wandb", "tensorboard"), tmp_path, "g", log.append,
                        factories={"wandb": broken, "tensorboard": Recorder})
    for seed in (0, 1):
        _run_through(tracking, replace(default_config(), seed=seed), 2)
    assert len(log) == 1 and log[0].startswith("warning: wandb tracking failed (ConnectionError: ")
    assert "wandb is off for the rest of this sweep, which goes on" in log[0]
    recorded = [c[0] for c in Recorder.calls]  # the working tracker's calls (RaisingLater adds only an "open")
    assert recorded.count("final") == recorded.count("image") == 2 and recorded.count("epoch") == 4
    assert "(failed)" in tracking.summary()


# ------------------------------------------------------------------------------------------------ slow: real runs

@pytest.fixture(scope="module")
def tracked(tmp_path_factory, data_root):
    """A classifier sweep and an autoencoder sweep on real MNIST, tracked by all three trackers, offline."""
    out = tmp_path_factory.mktemp("tracked")
    files = []
    for name, text in (("tracked_cls", CLASSIFIER), ("tracked_ae", AUTOENCODER)):
        files.append(out / f"{name}.toml")
        files[-1].write_text(text)
    with pytest.MonkeyPatch.context() as patch:  # module-scoped, so not the function-scoped monkeypatch fixture
        for key, value in OFFLINE.items():
            patch.setenv(key, value)
        code = main(["sweep", *map(str, files), "--runs-dir", str(out / "runs"), "--results-dir", str(out / "results"),
                     "--data-dir", str(data_root), "--no-progress", "--threads", "1", "--track", *TRACKERS])
    assert code == 0
    return out, [(load_sweep(f).name, r.run_id) for f in files for r in load_sweep(f).unique_runs()]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))  # TensorBoard keeps float32


@pytest.mark.slow
@pytest.mark.parametrize("tracker", TRACKERS)
def test_each_tracker_holds_the_run_folder(tracked, tracker):
    out, runs = tracked
    for group, rid in runs:
        folder = out / "runs" / rid
        config = tracked_config(from_dict(json.loads((folder / CONFIG_FILE).read_text())))
        history = json.loads((folder / HISTORY_FILE).read_text())
        metrics = json.loads((folder / METRICS_FILE).read_text())
        got = READERS[tracker](out / "runs", group, rid)
        assert len(got["runs"]) == 1, f"{tracker}: {rid} tracked as {got['runs']}"
        assert set(got["config"]) == set(config)
        for key, value in config.items():  # MLflow keeps text, TensorBoard numbers as floats
            assert str(got["config"][key]) == str(value) or _close(float(got["config"][key]), float(value)), key
        numbers = sorted(k for k in history[0] if k != "epoch")
        assert sorted(got["epochs"]) == numbers, f"{tracker}: {sorted(got['epochs'])}"
        for key in numbers:
            assert [s for s, _ in got["epochs"][key]] == [row["epoch"] for row in history], (tracker, key)
            assert all(_close(v, row[key]) for (_, v), row in zip(got["epochs"][key], history)), (tracker, key)
        final = final_numbers(metrics)
        assert set(got["final"]) == set(final) and all(_close(got["final"][k], v) for k, v in final.items())
        assert got["images"] == ["test_mistakes" if group == "tracked_cls" else "test_reconstructions"]


@pytest.mark.slow
def test_runs_are_grouped_by_sweep_and_verify_skips_the_tracking_folder(tracked, capsys):
    out, runs = tracked
    for group, rid in runs:
        assert (out / "runs" / TRACKING_FOLDER / "tensorboard" / group / rid).is_dir()
        assert READERS["wandb"](out / "runs", group, rid)["groups"] == {group}
        assert READERS["mlflow"](out / "runs", group, rid)["status"] == "FINISHED"
    assert main(["verify", "--runs-dir", str(out / "runs")]) == 0
    printed = capsys.readouterr().out
    assert f"{len(runs)} ok, 0 unfinished, 0 broken" in printed and TRACKING_FOLDER not in printed


def _own_environment() -> dict[str, str]:
    """This process's environment without WANDB_SERVICE: W&B sets it when a test here used W&B in-process, and a
    child would then share this process's W&B service, where a killed child's run stays open."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


def _train(runs: Path, data_root: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "lab", "train", "model.preset=fast_cnn", "model.channels=[[4],[8]]",
            "model.kernel_sizes=[3,3]", "data.train_limit=3000", "data.val_size=500", "train.epochs=3",
            "train.batch_size=100", "--runs-dir", str(runs), "--data-dir", str(data_root), "--device", "cpu",
            "--no-progress", *options]


@pytest.mark.slow
def test_a_killed_and_resumed_run_logs_each_epoch_once_in_one_tracked_run(tmp_path, data_root):
    runs = tmp_path / "runs"
    env = {**_own_environment(), **OFFLINE, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = _train(runs, data_root, "--track", *TRACKERS)
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=paths.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = 0
        while "epoch 1/3" not in (tmp_path / "first.log").read_text():
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            deadline += 1
            assert deadline < 12000, "no epoch 1 line after 120 s"
            subprocess.run(["sleep", "0.01"])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    rid = re.search(r"run (\S+) ->", (tmp_path / "first.log").read_text()).group(1)
    assert not (runs / rid / METRICS_FILE).exists()  # killed mid-run
    second = subprocess.run(command, cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming {rid} from epoch 1/3" in second.stdout and "warning" not in second.stdout, second.stdout
    history = json.loads((runs / rid / HISTORY_FILE).read_text())
    for tracker in TRACKERS:
        got = READERS[tracker](runs, "train", rid)
        assert set(got["runs"]) == {got["runs"][0]}, f"{tracker}: more than one tracked run: {got['runs']}"
        for key, values in got["epochs"].items():
            assert [s for s, _ in values] == [1, 2, 3], f"{tracker} {key}: {values}"
            assert all(_close(v, row[key]) for (_, v), row in zip(values, history)), (tracker, key)
    assert len(READERS["mlflow"](runs, "train", rid)["runs"]) == 1


def _sweep_tables(out: Path, data_root: Path, text: str, *options: str) -> pd.DataFrame:
    path = out / "tracked_cls.toml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert main(["sweep", str(path), "--runs-dir", str(out / "runs"), "--results-dir", str(out / "results"),
                 "--data-dir", str(data_root), "--no-progress", "--threads", "1", *options]) == 0
    table = pd.read_csv(table_paths(out / "results", "tracked_cls")[0])
    return table[[c for c in table.columns if c not in TIME_KEYS | {"git_commit"}]]


@pytest.mark.slow
def test_a_tracker_that_raises_on_every_call_leaves_the_same_tables(tmp_path, data_root, monkeypatch, capsys):
    text = sweep_toml("tracked_cls", "classifier", SMALL_CLASSIFIER | {
        "data.train_limit": 600, "train.epochs": 1, "train.batch_size": 100}, grids=({"seed": [0, 1]},))
    plain = _sweep_tables(tmp_path / "plain", data_root, text)
    capsys.readouterr()
    monkeypatch.setitem(FACTORIES, "tensorboard", Raising)
    tracked = _sweep_tables(tmp_path / "tracked", data_root, text, "--track", "tensorboard")
    printed = capsys.readouterr().out
    assert printed.count("warning:") == 1 and "warning: tensorboard tracking failed (ConnectionError" in printed
    pd.testing.assert_frame_equal(plain, tracked)


@pytest.mark.slow
def test_without_track_no_tracker_is_imported_and_nothing_is_written(tmp_path, data_root):
    code = ("import sys; from lab.__main__ import main; main(sys.argv[1:]); "
            "print('imported:', sorted(m for m in ('tensorboard', 'wandb', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *_train(tmp_path / "runs", data_root)[3:]], cwd=paths.ROOT,
                          env={**_own_environment(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout and "tracking" not in done.stdout
    assert not (tmp_path / "runs" / TRACKING_FOLDER).exists()


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """An MLflow tracking server on 127.0.0.1 (its own SQLite store and artifact folder); MLFLOW_TRACKING_URI at it."""
    from lab.tools.loadtest import LoadError, free_port, wait_for_app
    port, store, artifacts = free_port(), tmp_path / "server" / "mlflow.db", tmp_path / "server" / "artifacts"
    store.parent.mkdir()
    url, log_path = f"http://127.0.0.1:{port}", tmp_path / "server.log"
    # no job runner: without it the server is 2 processes and about 500 MB rather than 9 and 2 GB, and leaves no
    # folder in /dev/shm; tracking needs none of it
    env = {**_own_environment(), "OMP_NUM_THREADS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                   str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{store}",
                                   "--artifacts-destination", str(artifacts)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for_app(server, f"{url}/health", log_path, timeout=60)
        except LoadError as error:
            pytest.fail(f"no MLflow server at {url}: {str(error)[-3000:]}")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url, artifacts
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_mlflow_through_a_tracking_server_holds_the_run_folder_and_resumes_there(tmp_path, data_root, mlflow_server):
    """MLFLOW_TRACKING_URI at a server: the run, its epochs, final numbers and picture go there over HTTP (the
    picture into the server's artifact store), nothing into a local store; a resumed run continues there."""
    url, artifacts = mlflow_server
    runs = tmp_path / "runs"
    done = subprocess.run(_train(runs, data_root, "--track", "mlflow"), cwd=paths.ROOT, capture_output=True, text=True,
                          env={**_own_environment(), "MLFLOW_TRACKING_URI": url, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0 and "warning" not in done.stdout, done.stdout + done.stderr
    rid = re.search(r"run (\S+) ->", done.stdout).group(1)
    history = json.loads((runs / rid / HISTORY_FILE).read_text())
    final = final_numbers(json.loads((runs / rid / METRICS_FILE).read_text()))
    got = READERS["mlflow"](runs, "train", rid)  # read from the server: MLFLOW_TRACKING_URI is set here too
    assert len(got["runs"]) == 1 and got["status"] == "FINISHED"
    for key, values in got["epochs"].items():
        assert [step for step, _ in values] == [row["epoch"] for row in history], key
        assert all(_close(v, row[key]) for (_, v), row in zip(values, history)), key
    assert set(got["final"]) == set(final) and got["images"] == ["test_mistakes"]
    assert list(artifacts.rglob("test_mistakes.png")), "the picture is not in the server's artifact store"
    assert not (runs / TRACKING_FOLDER / "mlflow").exists()  # no local store beside the server

    cfg = replace(default_config(), seed=7)  # a second run, killed after epoch 2's flush and before the ledger's
    _resumed_after_a_kill_past_the_flush("mlflow", runs, "resumed", cfg).close()
    got = READERS["mlflow"](runs, "resumed", run_id(cfg))
    assert len(got["runs"]) == 1 and [step for step, _ in got["epochs"]["train_loss"]] == [1, 2, 3]
