import json

import pandas as pd
import pytest

from lab import paths
from lab.config import (
    AUTOENCODER_PRESETS,
    CLASSIFIER_PRESETS,
    AutoencoderConfig,
    ClassifierConfig,
    ConfigError,
    RunConfig,
    apply_overrides,
    canonical_json,
    default_config,
    flatten,
    from_dict,
    run_id,
    to_dict,
)

ALL_PRESETS = [("classifier", p) for p in CLASSIFIER_PRESETS] + [("autoencoder", p) for p in AUTOENCODER_PRESETS]


@pytest.mark.parametrize("task,preset", ALL_PRESETS)
def test_round_trip_through_json(task, preset):
    cfg = apply_overrides(default_config(task), {"model.preset": preset, "seed": 3, "train.lr": 0.02})
    back = from_dict(json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg
    assert run_id(back) == run_id(cfg)


def test_round_trip_keeps_overridden_model_fields():
    cfg = apply_overrides(default_config(), {"model.preset": "simple_cnn", "model.channels": [[8, 8], [16]],
                                             "model.activation": "gelu", "data.augment": True})
    back = from_dict(to_dict(cfg))
    assert back.model.channels == ((8, 8), (16,))
    assert back.model.activation == "gelu" and back.data.augment is True and back == cfg


def test_run_id_depends_on_content_only():
    a = apply_overrides(default_config(), {"train.lr": 0.01})
    b = apply_overrides(default_config(), {"train.lr": 0.01})
    c = apply_overrides(default_config(), {"train.lr": 0.01, "seed": 1})
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id(c)
    assert run_id(a).startswith("fast_cnn-") and len(run_id(a)) == len("fast_cnn-") + 10
    assert json.loads(canonical_json(a))["train"]["lr"] == 0.01


def test_presets_are_what_they_say():
    simple = CLASSIFIER_PRESETS["simple_cnn"]
    assert simple.channels == ((36, 36), (64, 128)) and simple.kernel_sizes == (5, 3)
    assert (simple.padding, simple.downsample, simple.head, simple.head_width) == ("valid", "stride", "conv", 256)
    assert AUTOENCODER_PRESETS["pca"].arch == "pca"


def test_preset_switch_resets_the_model_then_applies_overrides():
    cfg = apply_overrides(default_config(), {"model.activation": "tanh", "model.preset": "simple_cnn"})
    assert cfg.model.channels == CLASSIFIER_PRESETS["simple_cnn"].channels
    assert cfg.model.activation == "tanh"


def test_task_switch_gives_an_autoencoder():
    cfg = apply_overrides(RunConfig(), {"task": "autoencoder", "model.latent_dim": 8})
    assert isinstance(cfg.model, AutoencoderConfig) and cfg.model.latent_dim == 8


def test_ints_become_floats_and_lists_become_tuples():
    cfg = apply_overrides(default_config(), {"train.lr": 1, "model.kernel_sizes": [5, 5, 5]})
    assert isinstance(cfg.train.lr, float) and cfg.model.kernel_sizes == (5, 5, 5)


@pytest.mark.parametrize("overrides,key", [
    ({"train.lrr": 0.1}, "train.lrr"),
    ({"optimiser": "adam"}, "optimiser"),
    ({"model.depth.x": 1}, "model.depth.x"),
    ({"train.lr": "fast"}, "train.lr"),
    ({"train.epochs": 2.5}, "train.epochs"),
    ({"train.epochs": True}, "train.epochs"),
    ({"data.augment": 1}, "data.augment"),
    ({"model.channels": [16, 32]}, "model.channels"),
    ({"model.activation": "swish"}, "model.activation"),
    ({"model.norm": "instance"}, "model.norm"),
    ({"train.lr": -1.0}, "train.lr"),
    ({"train.epochs": 0}, "train.epochs"),
    ({"model.dropout": 1.0}, "model.dropout"),
    ({"model.kernel_sizes": [3, 3]}, "model.kernel_sizes"),
    ({"data.train_limit": 70000}, "data.train_limit"),
    ({"data.val_size": -1}, "data.val_size"),
    ({"data.val_size": 5000, "data.train_limit": 58000}, "data.val_size"),
    ({"data.dataset": "cifar10"}, "data.dataset"),
    ({"model.preset": "resnet"}, "model.preset"),
    ({"task": "gan"}, "task"),
    ({"model.latent_dim": 0, "task": "autoencoder"}, "model.latent_dim"),
])
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        apply_overrides(default_config(), overrides)
    assert str(error.value).startswith(key)


def test_frozen():
    with pytest.raises(AttributeError):
        default_config().train.lr = 1.0  # type: ignore[misc]


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": 3}) == {"a.b": 1, "a.c.d": [1, 2], "e": 3}


def test_model_type_must_match_task():
    with pytest.raises(ConfigError):
        RunConfig(task="autoencoder", model=ClassifierConfig())


def test_runs_trained_before_the_validation_split_keep_their_ids():
    """A field added later stays out of the hash at its neutral value: the shipped run folders keep their names, and
    their config.json holds exactly the canonical form (a later field only where it is not neutral)."""
    shipped = sorted(p for p in paths.demo_checkpoints().iterdir() if p.is_dir())
    assert shipped
    for folder in shipped:
        config = json.loads((folder / "config.json").read_text())
        assert json.loads(canonical_json(from_dict(config))) == config and run_id(from_dict(config)) == folder.name
    held_out = apply_overrides(default_config(), {"data.val_size": 5000})
    assert run_id(held_out) != run_id(default_config())
    assert from_dict(json.loads(canonical_json(held_out))) == held_out


def _row_config(row: dict) -> RunConfig:
    """The config of a committed results-table row: its task, seed and data/model/train columns."""
    keys = {k: v for k, v in row.items() if k.startswith(("data.", "model.", "train.")) and not pd.isna(v)}
    values = {k: json.loads(v) if isinstance(v, str) and v.startswith("[") else v for k, v in keys.items()}
    values = {k: v.item() if hasattr(v, "item") else v for k, v in values.items()}  # numpy -> Python scalars
    return apply_overrides(default_config(row["task"]), values | {"seed": int(row["seed"])})


def test_the_later_augmentations_leave_every_committed_run_id_as_it_was():
    """data.strokes and data.elastic came later: at 0 each stays out of the hash, so each committed table's run ids
    still come out."""
    tables = sorted((paths.EXPERIMENTS_DIR / "results").glob("*.csv"))  # the committed ones, not LAB_RESULTS_DIR
    checked = 0
    for table in tables:
        frame = pd.read_csv(table)
        if "run_id" not in frame or "data.dataset" not in frame:
            continue
        for row in frame.to_dict("records"):
            cfg = _row_config(row)
            assert cfg.data.strokes == cfg.data.elastic == 0, (table.name, row["run_id"])
            assert run_id(cfg) == row["run_id"], (table.name, row["run_id"])
            checked += 1
    assert checked >= 100
    # each, set, is a new run that round-trips; unset, it is not in the hashed text
    for name, unset in (("strokes", {}), ("elastic", {"data.augment": True})):
        changed = apply_overrides(default_config(), unset | {f"data.{name}": 0.5})
        assert run_id(changed) != run_id(apply_overrides(default_config(), unset))
        assert from_dict(json.loads(canonical_json(changed))) == changed
        assert name not in canonical_json(default_config())


def test_elastic_distortion_needs_the_affine_and_a_bound():
    """data.elastic is drawn with the random affine, so asking for it without data.augment is an error that says so."""
    with pytest.raises(ConfigError, match=r"data\.elastic: needs data\.augment = true"):
        apply_overrides(default_config(), {"data.elastic": 1.5})
    with pytest.raises(ConfigError, match=r"data\.elastic: must be in \[0, 5\.0\] px"):
        apply_overrides(default_config(), {"data.augment": True, "data.elastic": -1.0})
