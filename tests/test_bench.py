"""The benchmark: its pieces on tiny inputs, and `--quick` end to end (structure only, never speed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lab import device as device_module
from lab import paths
from lab.config import ConfigError, apply_overrides, default_config
from lab.demo import REQUEST_THREADS
from lab.device import autocast_dtype
from lab.report import benchmark
from lab.report.benchmark import earlier_runs, measured_by
from lab.tools import bench
from lab.train import fit


def test_the_baseline_is_the_tutorial_network():
    net = bench.Net()
    out = net(torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(3))  # log-probabilities, as the tutorial's nll_loss wants
    assert [m.out_channels for m in (net.conv1, net.conv2)] == [32, 64] and net.fc1.out_features == 128
    assert (net.dropout1.p, net.dropout2.p) == (0.25, 0.5)


def test_throughput_covers_every_preset_at_each_swept_batch_size():
    labels = [label for label, _ in bench.throughput_configs()]
    for preset in ("fast_cnn", "simple_cnn", "conv_ae", "pca"):
        assert any(label.startswith(f"{preset} @") for label in labels), preset
    assert "simple_cnn @ 2048" in labels and "fast_cnn @ 128" in labels  # full and default profiles


def test_ratio_is_baseline_over_ours_and_nan_when_one_side_fell_short():
    rows = [bench._spread("accuracy", "ours", "train_seconds_to_99", [2.0, 3.0, 4.0], "s"),
            bench._spread("baseline", "base", "train_seconds_to_99", [60.0], "s"),
            bench._spread("accuracy", "ours", "process_seconds_to_99", [5.0], "s"),
            bench._spread("baseline", "base", "process_seconds_to_99", [], "s")]
    train, process = bench.ratio_rows(rows)
    assert train["value"] == pytest.approx(20.0) and train["measure"] == "train_seconds_ratio"
    assert np.isnan(process["value"]) and "did not reach" in process["note"]


def test_results_round_trip_and_a_missing_file_reads_as_none(tmp_path):
    assert benchmark.load_results(tmp_path / "none.csv") == (None, None, None)
    rows = [bench._spread("accuracy", "ours", "train_seconds_to_99", [2.0, 3.0], "s"),
            bench._row("latency", "demo classify", "classify_ms", float("nan"), "ms",
                       note="skipped: no lab.demo.canvas")]
    trials = [{"section": "accuracy", "name": "ours", "seed": 0, "reached": True, "epochs": 1, "train_seconds": 2.0,
               "process_seconds": 5.0, "test_accuracy": 0.991, "reached_at": 123.0}]
    bench.write_results(tmp_path / "b.csv", rows, trials, {"cpu": "x"})
    summary, trial_table, env = benchmark.load_results(tmp_path / "b.csv")
    assert list(summary.columns) == benchmark.SUMMARY_COLUMNS and len(summary) == 2
    assert list(trial_table.columns) == benchmark.TRIAL_COLUMNS and env == {"cpu": "x"}
    text = benchmark.format_table(summary)
    assert "train seconds to 99" in text and "2.0 to 3.0" in text and "skipped" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "b_env.json", "b_trials.csv"]  # no temp files


def test_bad_arguments_are_refused_before_any_work(capsys):
    assert bench.main(["--sections", "accuracy,speed"]) == 2
    assert "unknown speed" in capsys.readouterr().err
    assert bench.main(["--seeds", "0"]) == 2


def test_quick_shortens_the_defaults_and_given_options_win():
    def settings(*argv):
        s = bench.settings_from(bench.build_parser().parse_args(["--device", "cpu", *argv]))
        return (s.seeds, s.baseline_epochs, s.baseline_batches, s.latency_calls, s.load_clients, s.load_requests)

    assert settings() == (5, 14, 0, 1000, 20, 50)
    assert settings("--quick") == (1, 1, 200, 200, 4, 10)
    assert settings("--quick", "--seeds", "3", "--baseline-batches", "0") == (3, 1, 0, 200, 4, 10)
    assert bench.settings_from(bench.build_parser().parse_args(["--device", "cpu"])).out == benchmark.default_out()


def test_precision_setting_resolves_and_is_checked():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("auto", torch.device("mps")) is None
    assert autocast_dtype("auto", cpu, "autoencoder") is None  # measured slower in bf16 on a CPU
    assert autocast_dtype("bf16", cpu, "autoencoder") is torch.bfloat16
    with pytest.raises(ConfigError, match="precision: 'fp8'"):
        autocast_dtype("fp8", cpu)


@pytest.mark.parametrize(("features", "classifier", "autoencoder"), [
    (set(), None, None),  # no native bf16: emulated bf16 would be slower
    ({"_is_avx512_bf16_supported"}, torch.bfloat16, None),  # AVX-512 BF16: classifiers in bf16, autoencoders fp32
    ({"_is_amx_tile_supported"}, torch.bfloat16, None),  # AMX alone counts as native bf16 too
])
def test_auto_precision_follows_the_cpu_features(monkeypatch, features, classifier, autoencoder):
    monkeypatch.setattr(device_module, "cpu_flag", lambda name: name in features)
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu, "classifier") is classifier
    assert autocast_dtype("auto", cpu, "autoencoder") is autoencoder
    assert autocast_dtype("bf16", cpu, "classifier") is torch.bfloat16  # asked for, always given


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_tiny_fit_in_each_precision_learns(mnist, precision):
    cfg = apply_overrides(default_config(), {"data.train_limit": 2048, "train.epochs": 1, "train.batch_size": 64})
    result = fit(cfg, mnist, "cpu", progress=False, log=lambda _: None, precision=precision)
    assert result.metrics["precision"] == precision
    assert result.metrics["test_accuracy"] > 0.7  # far above chance (0.1) after 2,048 images
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # autocast leaves weights in fp32


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(data_root, tmp_path):
    out = tmp_path / "benchmark.csv"
    env = os.environ | {"LAB_DATA_DIR": str(data_root), "PYTHONPATH": str(paths.ROOT)}
    proc = subprocess.run([sys.executable, "-m", "lab.tools.bench", "--quick", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary, trials, environment = benchmark.load_results(out)
    assert list(summary.columns) == benchmark.SUMMARY_COLUMNS
    assert set(summary["section"]) == {"accuracy", "baseline", "ratio", "throughput", "latency", "load",
                                       "experiments", "tracking"}
    tracking = summary[summary["section"] == "tracking"]
    assert set(tracking["name"]) == {"tensorboard", "wandb", "mlflow"} and (tracking["value"] > 0).all()
    measures = set(summary["measure"])
    assert {"train_seconds_to_99", "process_seconds_to_99", "train_images_per_s", "infer_images_per_s",
            "peak_memory_mb", "wall_seconds"} <= measures
    throughput = summary[summary["section"] == "throughput"]
    assert {"fast_cnn @ 128", "conv_ae @ 128", "pca @ 128"} <= set(throughput["name"])  # quick: no batch 2048
    assert (throughput["value"] > 0).all()
    experiments = summary[summary["section"] == "experiments"]
    assert set(experiments["name"]) == {*bench.SWEEP_FILES, "make experiments (default)"}
    assert list(trials["section"]) == ["accuracy", "baseline"] and trials["train_seconds"].gt(0).all()
    assert trials.loc[trials["section"] == "accuracy", "test_accuracy"].iloc[0] > 0.9
    assert {"cpu", "torch_version", "threads", "device", "precision"} <= set(environment)
    assert json.loads((tmp_path / "benchmark_env.json").read_text())["quick"] is True
    assert "train seconds to 99" in proc.stdout  # the printed table


@pytest.mark.slow
def test_experiments_section_trains_each_sweep_into_a_temp_folder_and_times_it(tiny_sweep, data_root, monkeypatch):
    monkeypatch.setattr(paths, "EXPERIMENTS_DIR", tiny_sweep.parent)
    monkeypatch.setattr(bench, "SWEEP_FILES", ("tiny",))
    lines: list[str] = []
    rows = bench.bench_experiments(True, torch.device("cpu"), data_root, lines.append)
    assert [r["name"] for r in rows] == ["tiny", "make experiments (default)"]
    assert rows[0]["n"] == 3 and rows[0]["value"] > 0 and rows[1]["value"] == rows[0]["value"]
    assert "best: test_accuracy" in rows[0]["note"]  # the tiny sweep holds out no validation split
    assert not (tiny_sweep.parent / "runs").exists()  # nothing left behind: the runs went to a temp folder
    assert any("trained 3 runs in" in line for line in lines)  # the sweep runner logs its wall time


def test_experiments_section_reads_the_committed_tables():
    rows = bench.bench_experiments(False, torch.device("cpu"), paths.data_dir(), lambda _: None)
    committed = [r for r in rows if r["name"] in bench.SWEEP_FILES]
    assert len(committed) == 3 and all(r["value"] > 0 and r["n"] > 0 for r in committed)
    assert rows[-1]["value"] == pytest.approx(sum(r["value"] for r in committed))


def test_bench_keeps_the_sections_it_did_not_run(tmp_path):
    out = tmp_path / "benchmark.csv"
    old = [bench._row("latency", "fast_cnn", "classify_ms_p50", 2.0, "ms"),
           bench._row("load", "demo app", "latency_ms_p50", 900.0, "ms")]
    bench.write_results(out, old, [{"section": "accuracy", "name": "x", "seed": 0}], {"date": "then"})
    env = {"date": "now"}
    rows, trials = bench.keep_other_sections(out, [bench._row("load", "demo app", "latency_ms_p50", 80.0, "ms")],
                                             [], ["load"], env)
    assert [(r["section"], r["value"]) for r in rows] == [("latency", 2.0), ("load", 80.0)]  # old load row replaced
    assert [t["section"] for t in trials] == ["accuracy"] and env["kept_sections"] == ["latency"]


def test_bench_names_the_run_each_kept_section_came_from(tmp_path):
    out = tmp_path / "benchmark.csv"
    rows = [bench._row("latency", "x", "classify_ms_p50", 2.0, "ms"), bench._row("accuracy", "z", "s", 9.0, "s")]
    bench.write_results(out, rows, [], {"date": "first", "cpu": "A", "sections": ["latency", "accuracy"]})
    runs = [("second", ["load"]), ("third", ["load"]), ("fourth", ["latency"]), ("fifth", ["tracking"])]
    for date, sections in runs:  # partial runs after a full one
        env = {"date": date, "cpu": "B", "sections": sections}
        new = [bench._row(sections[0], "y", "m", 0, "s")]
        rows, trials = bench.keep_other_sections(out, new, [], sections, env)
        bench.write_results(out, rows, trials, env)
    assert {section: source["date"] for section, source in env["kept_from"].items()} == {
        "accuracy": "first", "latency": "fourth", "load": "third"}
    assert env["kept_from"]["accuracy"]["cpu"] == "A" and env["kept_from"]["latency"]["cpu"] == "B"


def test_bench_reads_the_older_one_run_provenance():
    """Files written before provenance was kept per section named one run for all the kept sections."""
    old = {"date": "third", "sections": ["latency"], "kept_sections": ["accuracy"], "kept_from": {"date": "first"}}
    assert measured_by(old, "accuracy")["date"] == "first" and measured_by(old, "latency")["date"] == "third"
    assert earlier_runs(old) == "accuracy on None (first)"


def test_latency_times_the_live_classify_with_its_saliency(monkeypatch):
    """The latency section times the shipped classifiers' plain and live (saliency) paths, on one torch thread as
    the app serves a request, and gives the caller's threads back: rows, not speed."""
    lines, threads, timed_on = [], torch.get_num_threads(), []
    live = bench._time_live
    monkeypatch.setattr(bench, "_time_live", lambda *args: timed_on.append(torch.get_num_threads()) or live(*args))
    torch.set_num_threads(2)  # more than the app's one, so a bench that kept the caller's would show
    try:
        rows = bench.bench_latency(5, torch.device("cpu"), paths.data_dir(None), lines.append)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert timed_on and set(timed_on) == {REQUEST_THREADS}
    measures = {(r["name"], r["measure"]): r for r in rows}
    names = {name for name, _ in measures}
    assert names and all(name.startswith("fast_cnn") for name in names)
    for name in names:
        live50, live95 = measures[name, "live_ms_p50"], measures[name, "live_ms_p95"]
        assert 0 < live50["value"] <= live95["value"] and live50["n"] == 5
        assert live50["low"] <= live50["value"] <= live50["high"]
    assert any("live (with saliency)" in line and "p95" in line for line in lines)
    assert all("1 torch thread, as the app serves" in measures[name, m]["note"]
               for name in names for m in ("classify_ms_p50", "live_ms_p50"))
