import re
from dataclasses import replace

import pytest

from lab import paths
from lab.__main__ import main
from lab.config import run_id
from lab.sweep import SweepError, load_sweep

SWEEP_FILES = sorted(paths.EXPERIMENTS_DIR.glob("*.toml"))


def test_make_experiments_trains_the_sweeps_the_lab_names():
    """The Makefile's SWEEPS and lab.paths.EXPERIMENT_SWEEPS (what the README block and the benchmark read) agree."""
    makefile = (paths.ROOT / "Makefile").read_text()
    listed = re.search(r"^SWEEPS \?= (.*)$", makefile, re.M).group(1).split()
    assert listed == [f"experiments/{name}.toml" for name in paths.EXPERIMENT_SWEEPS]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_committed_sweeps_expand_in_every_profile(path):
    default = load_sweep(path)
    assert default.name == path.stem
    assert "full" in default.profiles or path.stem not in paths.EXPERIMENT_SWEEPS  # make experiments PROFILE=full
    for profile in default.profiles:
        sweep = load_sweep(path, profile)
        assert sweep.runs and len({r.run_id for r in sweep.unique_runs()}) == len(sweep.unique_runs())
        assert all(r.config.task == sweep.task for r in sweep.runs)


@pytest.mark.parametrize(("name", "profile", "groups"), [
    ("cnn_ablations", "default", {"norm", "downsample", "augment", "schedule", "weight_decay", "dropout"}),
    ("cnn_ablations", "full", {"norm", "norm_position", "downsample", "augment", "schedule", "weight_decay",
                               "dropout"}),
    ("reference_findings", "default", {"downsample", "norm", "norm_position", "augment"}),
])
def test_ablations_train_every_cell_on_the_same_five_seeds(name, profile, groups):
    """Paired seeds: every setting of a group is trained on one seed list of at least five (docs/statistics.md)."""
    sweep = load_sweep(paths.EXPERIMENTS_DIR / f"{name}.toml", profile)
    assert {r.group for r in sweep.runs} == groups
    for group in groups:
        seeds: dict[str, set] = {}
        for r in (r for r in sweep.runs if r.group == group):
            cell = run_id(replace(r.config, seed=0))
            seeds.setdefault(cell, set()).add(r.config.seed)
        assert len(seeds) >= 2 and len({frozenset(s) for s in seeds.values()}) == 1, group
        assert all(len(s) >= 5 for s in seeds.values()), group


@pytest.mark.parametrize("name", paths.EXPERIMENT_SWEEPS)
def test_the_default_sweeps_hold_out_a_validation_split(name):
    """What the report calls the best run is chosen on validation images, never on test."""
    sweep = load_sweep(paths.EXPERIMENTS_DIR / f"{name}.toml")
    assert all(r.config.data.val_size == 5000 for r in sweep.runs)


def test_full_profile_of_simple_cnn_is_the_seed_recipe():
    sweep = load_sweep(paths.EXPERIMENTS_DIR / "cnn_hparams.toml", "full")
    cfg = next(r.config for r in sweep.runs if r.group == "seed")
    assert cfg.model.preset == "simple_cnn" and cfg.data.augment
    t = cfg.train
    assert (t.batch_size, t.lr, t.weight_decay, t.schedule, t.lr_decay, t.epochs) == \
        (2048, 0.003, 5e-5, "exponential", 0.99, 20)


def test_autoencoder_sweep_spans_latent_sizes_with_pca():
    sweep = load_sweep(paths.EXPERIMENTS_DIR / "autoencoder.toml")
    conv = {r.config.model.latent_dim for r in sweep.runs if r.config.model.arch == "conv"}
    pca = {r.config.model.latent_dim for r in sweep.runs if r.config.model.arch == "pca"}
    assert min(conv) == 2 and max(conv) == 64 and pca == {2, 4, 8, 16, 32, 64}


def test_expansion_groups_and_dedup(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    assert [r.group for r in sweep.runs] == ["norm", "norm", "seed", "seed"]
    assert [r.label for r in sweep.runs] == ["model.norm=batch", "model.norm=none", "seed=0", "seed=1"]
    assert len(sweep.unique_runs()) == 3  # norm=batch and seed=0 are the same run
    assert sweep.runs[0].config.data.train_limit == 500


BAD_SWEEPS = {
    "syntax": ('name = "x"\ntask = "classifier"\n[base\n', "TOML syntax error"),
    "unknown_top_key": ('name = "x"\ntask = "classifier"\nsweep = 1\n', "sweep: unknown key"),
    "unknown_config_key": ('name = "x"\ntask = "classifier"\n[base]\ntrain.learning_rate = 0.1\n',
                           "base: train.learning_rate: unknown key"),
    "wrong_type": ('name = "x"\ntask = "classifier"\n[grid]\ntrain.epochs = ["two"]\n',
                   "grid: train.epochs: expected int"),
    "impossible_value": ('name = "x"\ntask = "classifier"\n[grid]\ntrain.batch_size = [0]\n',
                         "train.batch_size: must be"),
    "empty_grid": ('name = "x"\ntask = "classifier"\n[grid]\ntrain.lr = []\n', "grid: train.lr: empty list"),
    "grid_not_list": ('name = "x"\ntask = "classifier"\n[grid]\ntrain.lr = 0.1\n', "expected a list"),
    "bad_task": ('name = "x"\ntask = "regressor"\n', "task: expected one of"),
    "bad_name": ('name = "My Sweep"\ntask = "classifier"\n', "name: needs a name"),
    "shrinking_net": ('name = "x"\ntask = "classifier"\n[base]\nmodel.padding = "valid"\n'
                      'model.channels = [[4],[4],[4],[4]]\nmodel.kernel_sizes = [5,5,5,5]\n', "shrinks to nothing"),
    "bad_profile_key": ('name = "x"\ntask = "classifier"\n[profiles.full.base]\ntrain.epoch = 3\n',
                        "profiles.full.base: train.epoch: unknown key"),
    "bad_activation": ('name = "x"\ntask = "classifier"\n[[grid]]\nmodel.activation = ["relu", "swish"]\n',
                       "grid[0]: model.activation: 'swish' is not one of"),
}


@pytest.mark.parametrize("case", BAD_SWEEPS, ids=str)
def test_bad_sweep_files_stop_before_training(case, tmp_path, capsys):
    text, expected = BAD_SWEEPS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(SweepError) as error:
        load_sweep(path)
    assert str(error.value).startswith(str(path)) and expected in str(error.value)
    runs, results = tmp_path / "runs", tmp_path / "results"
    status = main(["sweep", str(path), "--runs-dir", str(runs), "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert status == 2 and expected in err and "Traceback" not in err
    assert not runs.exists() and not results.exists()


def test_unknown_profile_and_duplicate_names(tiny_sweep, tmp_path, capsys):
    with pytest.raises(SweepError, match="no profile 'gpu'"):
        load_sweep(tiny_sweep, "gpu")
    twin = tmp_path / "twin.toml"
    twin.write_text(tiny_sweep.read_text())
    assert main(["sweep", str(tiny_sweep), str(twin), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "is also the name of" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


