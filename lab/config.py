"""Frozen, typed configs for data, models, training and whole runs; dotted-key overrides; content hashes."""

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lab.errors import LabError

DATASETS = ("mnist", "fashion_mnist")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "gelu", "silu")
NORMS = ("none", "batch", "layer")
NORM_POSITIONS = ("before", "after")  # the normalisation's place relative to the activation
DOWNSAMPLES = ("stride", "max", "avg")
HEADS = ("fc", "conv")
PADDINGS = ("same", "valid")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "exponential", "onecycle")
TASKS = ("classifier", "autoencoder")
AE_ARCHS = ("conv", "pca")
# how a run computes, not what it is: recorded in metrics.json, never hashed into the run id.
# auto: bf16 autocast where the hardware computes bf16 natively (lab.device.bf16_pays), else fp32
PRECISIONS = ("auto", "fp32", "bf16")
# experiment trackers a run can be copied into (lab/tracking.py): how a run is watched, never part of its id
TRACKERS = ("tensorboard", "wandb", "mlflow")
TRAIN_IMAGES = 60_000
MAX_ELASTIC = 5.0  # px, a bound against typos: 1.5 px already costs accuracy (demo/weights_classifier.toml)


class ConfigError(LabError, ValueError):
    """A config key or value that cannot be used; the message names the key."""


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def _check(key: str, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {what}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"
    train_limit: int = 0  # use the first N training images; 0 = all 60,000 (less the validation images)
    val_size: int = 0  # hold out the last N training images for validation (where choices are made); 0 = none
    augment: bool = False  # random affine per sample, on the batch
    rotate: float = 10.0  # degrees, uniform in [-rotate, rotate]
    scale: float = 0.1  # zoom uniform in [1 - scale, 1 + scale]
    translate: float = 0.1  # shift uniform in [-translate, translate] of the image size
    strokes: float = 0.0  # share of each training batch redrawn along the digits' skeletons with a round brush
    elastic: float = 0.0  # elastic distortion with the affine: rms length (px, over the batch) of a smooth random field

    def __post_init__(self) -> None:
        _one_of("data.dataset", self.dataset, DATASETS)
        _check("data.train_limit", 0 <= self.train_limit <= TRAIN_IMAGES, f"must be in [0, {TRAIN_IMAGES}]")
        _check("data.val_size", 0 <= self.val_size < TRAIN_IMAGES, f"must be in [0, {TRAIN_IMAGES})")
        _check("data.val_size", self.train_limit + self.val_size <= TRAIN_IMAGES,
               f"data.train_limit + data.val_size must be at most {TRAIN_IMAGES:,}: the two sets are disjoint")
        _check("data.rotate", 0 <= self.rotate <= 180, "must be in [0, 180] degrees")
        _check("data.scale", 0 <= self.scale < 1, "must be in [0, 1)")
        _check("data.translate", 0 <= self.translate <= 0.5, "must be in [0, 0.5]")
        _check("data.strokes", 0 <= self.strokes <= 1, "must be in [0, 1]: a share of each batch")
        _check("data.elastic", 0 <= self.elastic <= MAX_ELASTIC, f"must be in [0, {MAX_ELASTIC}] px")
        _check("data.elastic", self.elastic == 0 or self.augment,
               "needs data.augment = true: the distortion is drawn with the random affine")


@dataclass(frozen=True)
class ClassifierConfig:
    preset: str = "fast_cnn"  # the named preset this config started from
    channels: tuple[tuple[int, ...], ...] = ((16,), (32,), (64,))  # conv widths per stage; a downsample ends each
    kernel_sizes: tuple[int, ...] = (3, 3, 3)  # one per stage
    padding: str = "same"
    activation: str = "relu"
    norm: str = "batch"
    norm_position: str = "before"
    downsample: str = "max"
    dropout: float = 0.0  # after each stage and before the last layer
    head: str = "fc"  # fc: flatten + linear; conv: 1x1 convs + global average pool
    head_width: int = 0  # hidden units (fc) or 1x1 channels (conv) before the 10 outputs; 0 = none

    def __post_init__(self) -> None:
        _check("model.channels", len(self.channels) > 0 and all(len(s) > 0 for s in self.channels),
               "needs at least one stage, each with at least one conv")
        _check("model.channels", all(c >= 1 for s in self.channels for c in s), "widths must be >= 1")
        _check("model.kernel_sizes", len(self.kernel_sizes) == len(self.channels),
               f"needs one kernel size per stage ({len(self.channels)}), got {len(self.kernel_sizes)}")
        _check("model.kernel_sizes", all(k >= 1 for k in self.kernel_sizes), "kernel sizes must be >= 1")
        _one_of("model.padding", self.padding, PADDINGS)
        _one_of("model.activation", self.activation, ACTIVATIONS)
        _one_of("model.norm", self.norm, NORMS)
        _one_of("model.norm_position", self.norm_position, NORM_POSITIONS)
        _one_of("model.downsample", self.downsample, DOWNSAMPLES)
        _check("model.dropout", 0 <= self.dropout < 1, "must be in [0, 1)")
        _one_of("model.head", self.head, HEADS)
        _check("model.head_width", self.head_width >= 0, "must be >= 0")


@dataclass(frozen=True)
class AutoencoderConfig:
    preset: str = "conv_ae"
    arch: str = "conv"  # conv: conv encoder + transposed-conv decoder; pca: the linear baseline
    channels: tuple[int, ...] = (32, 64)  # encoder widths, each conv halves the image; the decoder mirrors them
    activation: str = "relu"
    norm: str = "none"
    latent_dim: int = 16

    def __post_init__(self) -> None:
        _one_of("model.arch", self.arch, AE_ARCHS)
        _check("model.channels", len(self.channels) > 0 and all(c >= 1 for c in self.channels),
               "needs at least one encoder width, each >= 1")
        _check("model.channels", len(self.channels) <= 4, "at most 4 stages (28 -> 14 -> 7 -> 4 -> 2)")
        _one_of("model.activation", self.activation, ACTIVATIONS)
        _one_of("model.norm", self.norm, NORMS)
        _check("model.latent_dim", 1 <= self.latent_dim <= 784, "must be in [1, 784]")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    lr_decay: float = 0.9  # exponential schedule: lr *= lr_decay after every epoch
    batch_size: int = 128
    epochs: int = 3

    def __post_init__(self) -> None:
        _one_of("train.optimizer", self.optimizer, OPTIMIZERS)
        _check("train.lr", 0 < self.lr <= 10, "must be in (0, 10]")
        _check("train.momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        _check("train.weight_decay", 0 <= self.weight_decay < 1, "must be in [0, 1)")
        _one_of("train.schedule", self.schedule, SCHEDULES)
        _check("train.lr_decay", 0 < self.lr_decay <= 1, "must be in (0, 1]")
        _check("train.batch_size", 1 <= self.batch_size <= TRAIN_IMAGES, f"must be in [1, {TRAIN_IMAGES}]")
        _check("train.epochs", 1 <= self.epochs <= 1000, "must be in [1, 1000]")


@dataclass(frozen=True)
class RunConfig:
    task: str = "classifier"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ClassifierConfig | AutoencoderConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _one_of("task", self.task, TASKS)
        _check("seed", 0 <= self.seed < 2**31, "must be in [0, 2**31)")
        model_type = ClassifierConfig if self.task == "classifier" else AutoencoderConfig
        _check("model", isinstance(self.model, model_type), f"a {self.task} needs a {model_type.__name__}")


CLASSIFIER_PRESETS = {
    # A compact net for CPUs: three conv-BN-ReLU-maxpool stages and a linear layer.
    "fast_cnn": ClassifierConfig(),
    # Conv(1->36,5) BN ReLU, Conv(36->36,5) BN ReLU, strided Conv(2,s2); Conv(36->64,3) BN ReLU,
    # Conv(64->128,3) BN ReLU, strided Conv(2,s2); Conv(128->256,1) BN ReLU, Conv(256->10,1), avg pool.
    "simple_cnn": ClassifierConfig(
        preset="simple_cnn", channels=((36, 36), (64, 128)), kernel_sizes=(5, 3), padding="valid",
        downsample="stride", head="conv", head_width=256),
}
AUTOENCODER_PRESETS = {
    "conv_ae": AutoencoderConfig(),
    "pca": AutoencoderConfig(preset="pca", arch="pca"),
}
PRESETS = {"classifier": CLASSIFIER_PRESETS, "autoencoder": AUTOENCODER_PRESETS}


def to_dict(cfg: Any) -> dict:
    """A config as nested plain dicts and lists (JSON-ready)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b": value}."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check value against a field's type hint; lists become tuples, ints become floats."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(key, v, item_hint) for v in value)
    else:
        raise TypeError(f"unsupported type {hint}")
    return _type_error(key, value, hint)


def _type_error(key: str, value: Any, hint: Any) -> None:
    name = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")
    raise ConfigError(f"{key}: expected {name}, got {value!r} ({type(value).__name__})")


def _replace_fields(obj: Any, prefix: str, values: dict[str, Any]) -> Any:
    """dataclasses.replace with type checks; values are {field: value} for this object."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    changes = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(prefix + n for n in sorted(names))})")
        changes[name] = _coerce(key, value, hints[name])
    return replace(obj, **changes)


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A new RunConfig with dotted-key overrides applied, e.g. {"train.lr": 0.01, "model.preset": "simple_cnn"}.

    `task` and `model.preset` reset the model to that preset first; other model keys then apply on top.
    """
    overrides = dict(overrides)
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head in nested and rest and "." not in rest:
            nested[head][rest] = value
        elif key in ("task", "seed"):
            top[key] = value
        else:
            raise ConfigError(f"{key}: unknown key (use task, seed, or data.*, model.*, train.*)")
    task = cfg.task
    if "task" in top:
        task = _coerce("task", top["task"], str)
        _one_of("task", task, TASKS)
    model = cfg.model
    if task != cfg.task and "preset" not in nested["model"]:
        model = next(iter(PRESETS[task].values()))
    if "preset" in nested["model"]:
        name = _coerce("model.preset", nested["model"].pop("preset"), str)
        if name not in PRESETS[task]:
            raise ConfigError(f"model.preset: {name!r} is not a {task} preset ({', '.join(PRESETS[task])})")
        model = PRESETS[task][name]
    seed = _coerce("seed", top["seed"], int) if "seed" in top else cfg.seed
    return RunConfig(
        task=task,
        seed=seed,
        data=_replace_fields(cfg.data, "data.", nested["data"]),
        model=_replace_fields(model, "model.", nested["model"]),
        train=_replace_fields(cfg.train, "train.", nested["train"]),
    )


def from_dict(d: dict) -> RunConfig:
    """Rebuild a RunConfig from to_dict's output, checking every key and type."""
    return apply_overrides(RunConfig(), flatten(d))


# fields added after runs were trained: at these values they stay out of the hashed text, so every earlier run keeps
# its id (and its folder) and a config that does not use the new field is the same run it always was
LATER_FIELDS = {("data", "val_size"): 0, ("data", "strokes"): 0.0, ("data", "elastic"): 0.0}


def canonical_json(cfg: RunConfig) -> str:
    """The config as sorted, compact JSON: the text a run id hashes (and config.json holds)."""
    d = to_dict(cfg)
    for (section, key), neutral in LATER_FIELDS.items():
        if d[section].get(key) == neutral:
            del d[section][key]
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def run_id(cfg: RunConfig) -> str:
    """A short name from the config's content: rerunning a config finds its own folder."""
    digest = hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:10]
    return f"{cfg.model.preset}-{digest}"


def default_config(task: str = "classifier") -> RunConfig:
    """The default RunConfig for a task."""
    return apply_overrides(RunConfig(), {"task": task})

