from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from lab.config import apply_overrides, default_config
from lab.data import Split, train_val_split
from lab.device import pick_device
from lab.models import build_model
from lab.runner import train_run
from lab.train import fit, make_scheduler


def small(task="classifier", **overrides):
    base = {"data.train_limit": 600, "train.epochs": 2, "train.batch_size": 50, "train.lr": 0.01}
    if task == "classifier":
        base |= {"model.channels": [[4], [8]], "model.kernel_sizes": [3, 3]}
    else:
        base |= {"model.channels": [4, 8], "model.latent_dim": 4}
    return apply_overrides(default_config(task), base | overrides)


def test_history_and_metrics_shape(mnist):
    result = fit(small(), mnist, "cpu", progress=False, log=lambda s: None)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert set(result.history[0]) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                                      "epoch_seconds"}
    m = result.metrics
    assert m["train_images"] == 600 and m["epochs"] == 2
    assert 0 < m["train_seconds"] <= m["total_seconds"]
    assert m["parameters"] == sum(p.numel() for p in result.model.parameters())
    assert m["test_accuracy"] == result.history[-1]["test_accuracy"]


def test_fixed_seed_is_deterministic_on_cpu(mnist):
    cfg = small(**{"data.augment": True, "model.dropout": 0.2})
    a = fit(cfg, mnist, "cpu", progress=False, log=lambda s: None)
    b = fit(cfg, mnist, "cpu", progress=False, log=lambda s: None)
    c = fit(small(**{"data.augment": True, "model.dropout": 0.2, "seed": 1}), mnist, "cpu", progress=False,
            log=lambda s: None)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.history[-1]["train_loss"] != c.history[-1]["train_loss"]


@pytest.mark.parametrize("optimizer,schedule", [("adam", "none"), ("adamw", "exponential"), ("sgd", "onecycle")])
def test_every_optimizer_and_schedule_learns(mnist, optimizer, schedule):
    lr = 0.05 if optimizer == "sgd" else 0.003
    result = fit(small(**{"train.optimizer": optimizer, "train.schedule": schedule, "train.lr": lr,
                          "train.weight_decay": 1e-4}), mnist, "cpu", progress=False, log=lambda s: None)
    assert result.metrics["test_accuracy"] > 0.5  # 10% is chance


def test_schedules_move_the_learning_rate():
    cfg = small(**{"train.schedule": "exponential", "train.lr_decay": 0.5})
    opt = torch.optim.SGD(build_model(cfg).parameters(), lr=cfg.train.lr)
    scheduler, per_batch = make_scheduler(opt, cfg.train, steps_per_epoch=6)
    assert not per_batch
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.train.lr * 0.5)
    cfg = small(**{"train.schedule": "onecycle"})
    opt = torch.optim.SGD(build_model(cfg).parameters(), lr=cfg.train.lr)
    scheduler, per_batch = make_scheduler(opt, cfg.train, steps_per_epoch=6)
    assert per_batch and opt.param_groups[0]["lr"] < cfg.train.lr / 10


def test_train_run_writes_a_loadable_checkpoint(mnist, tmp_path):
    cfg = small("autoencoder")
    metrics = train_run(cfg, tmp_path, mnist, "cpu", progress=False, log=lambda s: None)
    assert metrics["test_mse"] < 0.12 and metrics["torch_version"] == torch.__version__
    assert metrics["device"] == "cpu" and metrics["threads"] >= 1
    model = build_model(cfg)
    model.load_state_dict(load_file(tmp_path / metrics["run_id"] / "weights.safetensors"))
    x = torch.rand(2, 1, 28, 28)
    assert model(x).shape == x.shape


def test_pick_device_honours_an_override():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type in {"cpu", "cuda", "mps"}


@pytest.mark.slow
def test_fast_net_learns_mnist_in_one_epoch(mnist):
    """The compact CPU net reaches at least 97% test accuracy after one epoch on the real 60,000 images."""
    cfg = apply_overrides(default_config(), {"train.epochs": 1, "train.lr": 0.005})
    result = fit(cfg, mnist, "cpu", progress=False, log=lambda s: None)
    assert result.metrics["test_accuracy"] >= 0.97
    assert result.metrics["train_accuracy"] >= 0.97


@pytest.mark.slow
def test_autoencoder_beats_pca_at_the_same_latent_size(mnist):
    """One epoch of the conv autoencoder with 32 latents reconstructs the test set better than 32 PCA components."""
    ae = fit(apply_overrides(default_config("autoencoder"), {"model.latent_dim": 32, "train.epochs": 1,
                                                              "train.lr": 0.003}),
             mnist, "cpu", progress=False, log=lambda s: None)
    pca = fit(apply_overrides(default_config("autoencoder"), {"model.preset": "pca", "model.latent_dim": 32}),
              mnist, "cpu", progress=False, log=lambda s: None)
    assert 0.01 < pca.metrics["test_mse"] < 0.03  # about 0.015 for MNIST
    assert ae.metrics["test_mse"] < pca.metrics["test_mse"]


def test_a_validation_split_is_recorded_every_epoch_and_at_the_end(mnist):
    result = fit(small(**{"data.val_size": 300}), mnist, "cpu", progress=False, log=lambda s: None)
    assert list(result.history[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                       "test_loss", "test_accuracy", "lr", "epoch_seconds"]
    m = result.metrics
    assert m["train_images"] == 600 and m["val_images"] == 300
    assert m["val_accuracy"] == result.history[-1]["val_accuracy"] and 0.5 < m["val_accuracy"] <= 1
    autoencoder = fit(small("autoencoder", **{"data.val_size": 300, "train.epochs": 1}), mnist, "cpu",
                      progress=False, log=lambda s: None)
    assert {"val_mse", "test_mse"} <= set(autoencoder.history[0]) and autoencoder.metrics["val_images"] == 300


def test_validation_images_never_take_a_gradient_step(mnist):
    """Scramble every held-out image and label: the trained weights are the same to the bit, the validation numbers
    are not. (The last 300 training images are held out; the first 600 train.)"""
    cfg = small(**{"data.val_size": 300, "data.augment": True, "model.dropout": 0.2}, seed=3)
    scrambled_images = mnist.train.images.clone()
    scrambled_labels = mnist.train.labels.clone()
    scrambled_images[-300:] = scrambled_images[-300:].flip(1)
    scrambled_labels[-300:] = (scrambled_labels[-300:] + 1) % 10
    scrambled = replace(mnist, train=Split(scrambled_images, scrambled_labels))
    a = fit(cfg, mnist, "cpu", progress=False, log=lambda s: None, precision="fp32")
    b = fit(cfg, scrambled, "cpu", progress=False, log=lambda s: None, precision="fp32")
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.metrics["train_loss"] == b.metrics["train_loss"] and a.metrics["test_loss"] == b.metrics["test_loss"]
    assert b.metrics["val_accuracy"] < a.metrics["val_accuracy"] - 0.3  # it does see the images it is shown


def test_the_split_is_disjoint_and_takes_the_last_images():
    split = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1).expand(100, 28, 28), torch.arange(100) % 10)
    train, val = train_val_split(split, train_limit=0, val_size=30)
    assert len(train) == 70 and len(val) == 30 and int(val.images[0, 0, 0]) == 70
    limited, val2 = train_val_split(split, train_limit=40, val_size=30)
    assert len(limited) == 40 and torch.equal(val2.images, val.images)
    assert not set(limited.images[:, 0, 0].tolist()) & set(val.images[:, 0, 0].tolist())
    assert train_val_split(split, 0, 0) == (split, None)
