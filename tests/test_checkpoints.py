import json

import pytest
import torch

from lab.checkpoints import CheckpointError, find_checkpoints, load_checkpoint
from lab.run_folder import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE
from lab.runner import run_sweep
from lab.sweep import load_sweep


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """The tiny sweep's three runs, trained once on 500 real images."""
    from tests.conftest import TINY_SWEEP

    root = tmp_path_factory.mktemp("ckpt")
    (root / "tiny.toml").write_text(TINY_SWEEP)
    runs = root / "runs"
    run_sweep(load_sweep(root / "tiny.toml"), runs, {"mnist": mnist}, "cpu", progress=False, log=lambda _: None)
    return runs


def copy_run(src, dst):
    dst.mkdir()
    for name in (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_a_loaded_checkpoint_reproduces_its_test_accuracy(trained, mnist):
    checkpoints, skipped = find_checkpoints(trained, "classifier")
    assert len(checkpoints) == 3 and skipped == []
    for ckpt in checkpoints:
        probs = ckpt.probabilities(mnist.test.images.float() / 255)
        assert probs.shape == (10000, 10) and torch.allclose(probs.sum(1), torch.ones(10000), atol=1e-4)
        accuracy = (probs.argmax(1) == mnist.test.labels).float().mean().item()
        assert accuracy == pytest.approx(ckpt.metrics["test_accuracy"], abs=1e-4)
        assert "test accuracy" in ckpt.describe()


def test_a_classifier_has_no_latent_space(trained):
    ckpt = find_checkpoints(trained)[0][0]
    with pytest.raises(CheckpointError, match="classifier run, not a autoencoder"):
        ckpt.encode(torch.zeros(1, 28, 28))


def test_autoencoder_checkpoint_round_trip(tmp_path, mnist):
    from lab.config import apply_overrides, default_config
    from lab.runner import train_run

    cfg = apply_overrides(default_config("autoencoder"), {"data.train_limit": 300, "train.epochs": 1,
                                                         "model.channels": [4, 8], "model.latent_dim": 3})
    metrics = train_run(cfg, tmp_path, mnist, "cpu", progress=False, log=lambda _: None)
    ckpt = load_checkpoint(tmp_path / metrics["run_id"])
    x = mnist.test.images[:5].float() / 255
    z = ckpt.encode(x)
    assert z.shape == (5, 3) and ckpt.decode(z).shape == (5, 1, 28, 28)
    assert ckpt.reconstruct(x).min() >= 0 and "latent 3" in ckpt.describe()


def edit_config(run, change):
    config = json.loads((run / CONFIG_FILE).read_text())
    (run / CONFIG_FILE).write_text(json.dumps(change(config)))


def strip_run_id(run):
    """Weights without the run id in their header: only the shapes can tell that the config does not fit."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(run / WEIGHTS_FILE), run / WEIGHTS_FILE)


BREAKAGES = {
    "missing weights": lambda run: (run / WEIGHTS_FILE).unlink(),
    "truncated weights": lambda run: (run / WEIGHTS_FILE).write_bytes((run / WEIGHTS_FILE).read_bytes()[:300]),
    "garbage weights": lambda run: (run / WEIGHTS_FILE).write_bytes(b"\x80\x04pickle" * 20),
    "config edited after training": lambda run: edit_config(run, lambda c: c | {"seed": 7}),
    "config of another shape": lambda run: edit_config(run, lambda c: c | {"model": c["model"] | {
        "channels": [[6], [8]]}}),
    "config of another shape, weights without run id": lambda run: (strip_run_id(run), edit_config(
        run, lambda c: c | {"model": c["model"] | {"channels": [[6], [8]]}})),
    "config not json": lambda run: (run / CONFIG_FILE).write_text("{not json"),
    "config with unknown key": lambda run: (run / CONFIG_FILE).write_text(
        json.dumps({**json.loads((run / CONFIG_FILE).read_text()), "colour": "red"})),
    "metrics not an object": lambda run: (run / METRICS_FILE).write_text("[1, 2]"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_a_broken_run_folder_is_named_and_skipped(trained, tmp_path, breakage):
    good = find_checkpoints(trained)[0][0].folder
    runs = tmp_path / "runs"
    runs.mkdir()
    copy_run(good, runs / "a-good")
    broken = copy_run(good, runs / "b-broken")
    BREAKAGES[breakage](broken)
    with pytest.raises(CheckpointError, match="b-broken"):
        load_checkpoint(broken)
    loaded, skipped = find_checkpoints(runs)
    assert [c.folder.name for c in loaded] == ["a-good"]
    assert len(skipped) == 1 and "b-broken" in skipped[0]


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder"):
        load_checkpoint(tmp_path / "nope")
    assert find_checkpoints(tmp_path / "nope") == ([], [])
