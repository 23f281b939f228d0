"""The catalogue of bad inputs: each goes through the real command line and must get exit status 2, a message
that names the file or field, no traceback, and leave every file as it was. Plus: nothing is ever unpickled."""

import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from lab import paths
from lab.__main__ import main
from lab.checkpoints import CheckpointError, find_checkpoints, load_checkpoint
from lab.config import from_dict, run_id
from lab.data import IDX_FILES, load_dataset

SHIPPED = paths.ROOT / "demo" / "checkpoints"
CLASSIFIER = next(p for p in sorted(SHIPPED.iterdir()) if p.name.startswith("fast_cnn"))
AUTOENCODER = next(p for p in sorted(SHIPPED.iterdir()) if p.name.startswith("conv_ae"))


# --- what every case must show ---------------------------------------------------------------------------------

def snapshot(*folders: Path) -> dict[str, tuple]:
    """path -> (sha256, mtime) of every file under folders (a link -> its target), and every folder's name."""
    state: dict[str, tuple] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_symlink():
                state[str(p)] = ("link", os.readlink(p))
            elif p.is_file():
                state[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            else:
                state[str(p)] = ("dir",)
    return state


def refused(argv: list[str], capsys, watched: list[Path], must_name: list[str], absent: tuple[Path, ...] = ()) -> str:
    """Run the CLI in-process; assert exit 2, a one-message error naming must_name, nothing changed; the error."""
    before = snapshot(*watched)
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, f"exit {status}\n{out}\n{err}"
    assert "Traceback" not in err + out
    assert "error:" in err
    for name in must_name:
        assert name in err + out, f"{name!r} not named in:\n{err}{out}"
    assert snapshot(*watched) == before, "a bad input changed files"
    for path in absent:
        assert not path.exists(), f"{path} was written"
    return err + out


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network anywhere: torchvision's mirrors refuse at once, the Hub is offline without a token."""
    for dataset_class in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
        monkeypatch.setattr(dataset_class, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def outputs(tmp_path) -> tuple[Path, Path]:
    """A runs dir holding a finished run and a results dir holding a table: what a bad input must not touch."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(CLASSIFIER, runs / CLASSIFIER.name)
    results.mkdir()
    (results / "bad.csv").write_text("run_id,test_accuracy\nx,0.5\n")
    return runs, results


# --- sweep files -------------------------------------------------------------------------------------------------

HEAD = 'name = "bad"\ntask = "classifier"\n'
# case -> (files {name: text or bytes}, extra arguments, what the message must say besides the file)
SWEEP_CASES: dict[str, tuple[dict[str, str | bytes], list[str], str]] = {
    "toml syntax: unclosed table": ({"bad.toml": HEAD + "[base\n"}, [], "TOML syntax error"),
    "toml syntax: bad number": ({"bad.toml": HEAD + "[base]\ntrain.lr = 0.1.2\n"}, [], "TOML syntax error"),
    "toml syntax: duplicate key": ({"bad.toml": HEAD + 'name = "again"\n'}, [], "TOML syntax error"),
    "not utf-8": ({"bad.toml": HEAD.encode() + b"description = '\xff\xfe'\n"}, [], "cannot read"),
    "missing file": ({}, ["nowhere.toml"], "no such sweep file"),
    "unknown key: top level": ({"bad.toml": HEAD + "sweep = 1\n"}, [], "sweep: unknown key"),
    "unknown key: base": ({"bad.toml": HEAD + "[base]\ntrain.learning_rate = 0.1\n"}, [],
                          "base: train.learning_rate: unknown key"),
    "unknown key: base section": ({"bad.toml": HEAD + "[base]\noptimiser.lr = 0.1\n"}, [],
                                  "base: optimiser.lr: unknown key"),
    "unknown key: grid": ({"bad.toml": HEAD + '[grid]\nmodel.colour = ["red"]\n'}, [],
                          "grid: model.colour: unknown key"),
    "unknown key: grid array": ({"bad.toml": HEAD + '[[grid]]\ntrain.epoch = [1, 2]\n'}, [],
                                "grid[0]: train.epoch: unknown key"),
    "unknown key: profile": ({"bad.toml": HEAD + "[profiles.full]\ngrids = 1\n"}, [],
                             "profiles.full.grids: unknown key"),
    "unknown key: profile base": ({"bad.toml": HEAD + "[profiles.full.base]\ntrain.epoch = 3\n"}, [],
                                  "profiles.full.base: train.epoch: unknown key"),
    "unknown key: profile grid": ({"bad.toml": HEAD + "[profiles.full.grid]\nmodel.width = [3]\n"}, [],
                                  "profiles.full.grid: model.width: unknown key"),
    "wrong type: name": ({"bad.toml": 'name = 3\ntask = "classifier"\n'}, [], "name: needs a name"),
    "wrong type: description": ({"bad.toml": HEAD + "description = 5\n"}, [], "description: expected a string"),
    "wrong type: base": ({"bad.toml": HEAD + "base = 3\n"}, [], "base: must be a table"),
    "wrong type: grid": ({"bad.toml": HEAD + 'grid = "all"\n'}, [], "grid: must be a table"),
    "wrong type: base value": ({"bad.toml": HEAD + '[base]\ntrain.lr = "fast"\n'}, [],
                               "base: train.lr: expected float"),
    "wrong type: bool for int": ({"bad.toml": HEAD + "[base]\ntrain.epochs = true\n"}, [],
                                 "base: train.epochs: expected int"),
    "wrong type: grid value": ({"bad.toml": HEAD + '[grid]\ntrain.epochs = ["two"]\n'}, [],
                               "grid: train.epochs: expected int"),
    "wrong type: nested channels": ({"bad.toml": HEAD + '[base]\nmodel.channels = [["a"]]\n'}, [],
                                    "base: model.channels: expected int"),
    "wrong type: grid not a list": ({"bad.toml": HEAD + "[grid]\ntrain.lr = 0.1\n"}, [], "expected a list"),
    "wrong type: group": ({"bad.toml": HEAD + "[[grid]]\ngroup = 3\nseed = [0]\n"}, [],
                          "grid[0]: group: expected a string"),
    "out of range: batch size 0": ({"bad.toml": HEAD + "[grid]\ntrain.batch_size = [0]\n"}, [],
                                   "train.batch_size: must be"),
    "out of range: negative lr": ({"bad.toml": HEAD + "[base]\ntrain.lr = -1.0\n"}, [], "train.lr: must be in"),
    "out of range: train_limit": ({"bad.toml": HEAD + "[base]\ndata.train_limit = 70000\n"}, [],
                                  "data.train_limit: must be in"),
    "out of range: dropout": ({"bad.toml": HEAD + "[profiles.full.base]\nmodel.dropout = 1.5\n"}, [],
                              "profiles.full.base: model.dropout: must be in"),
    "out of range: activation": ({"bad.toml": HEAD + '[[grid]]\nmodel.activation = ["relu", "swish"]\n'}, [],
                                 "grid[0]: model.activation: 'swish' is not one of"),
    "out of range: task": ({"bad.toml": 'name = "bad"\ntask = "regressor"\n'}, [], "task: expected one of"),
    "out of range: name": ({"bad.toml": 'name = "My Sweep"\ntask = "classifier"\n'}, [], "name: needs a name"),
    "out of range: kernel per stage": ({"bad.toml": HEAD + "[base]\nmodel.kernel_sizes = [3]\n"}, [],
                                       "model.kernel_sizes: needs one kernel size per stage"),
    "out of range: net shrinks to nothing": ({"bad.toml": HEAD + '[base]\nmodel.padding = "valid"\n'
                                              'model.channels = [[4],[4],[4],[4]]\nmodel.kernel_sizes = [5,5,5,5]\n'},
                                             [], "shrinks to nothing"),
    "task in base": ({"bad.toml": HEAD + '[base]\ntask = "autoencoder"\n'}, [], "base.task: the task is set once"),
    "task in grid": ({"bad.toml": HEAD + '[grid]\ntask = ["autoencoder"]\n'}, [], "task: the task is set once"),
    "empty grid: value list": ({"bad.toml": HEAD + "[grid]\ntrain.lr = []\n"}, [], "grid: train.lr: empty list"),
    "empty grid: no tables": ({"bad.toml": HEAD + "grid = []\n"}, [], "grid: empty grid list"),
    "empty grid: profile": ({"bad.toml": HEAD + "[profiles.full.grid]\nseed = []\n"}, [],
                            "profiles.full.grid: seed: empty list"),
    "profile named default": ({"bad.toml": HEAD + "[profiles.default.base]\nseed = 1\n"}, [],
                              "profiles.default: the top-level base and grid are the default profile"),
    "profile name not lowercase": ({"bad.toml": HEAD + "[profiles.Full.base]\nseed = 1\n"}, [],
                                   "profiles.Full: profile names use lowercase"),
    "unknown profile": ({"bad.toml": HEAD}, ["--profile", "gpu"], "no profile 'gpu'"),
    "two sweeps with one name": ({"bad.toml": HEAD, "twin.toml": HEAD}, [], "'bad' is also the name of"),
}


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_bad_sweep_file(case, tmp_path, outputs, capsys):
    files, extra, expected = SWEEP_CASES[case]
    written = []
    for name, text in files.items():
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        written.append(path)
    named = [str(p) for p in written[-1:]] or [str(tmp_path / extra[0])]
    args = [str(p) for p in written] + [str(tmp_path / a) if a.endswith(".toml") else a for a in extra]
    runs, results = outputs
    for command in ("sweep", "results"):  # training and rebuilding tables both check every file first
        refused([command, *args, "--runs-dir", str(runs), "--results-dir", str(results)], capsys,
                [runs, results, tmp_path], [*named, expected])


# --- data --------------------------------------------------------------------------------------------------------

def original(data_root: Path, name: str) -> bytes:
    """The real IDX file's bytes, from a folder that has it plain or gzipped."""
    plain = data_root / "MNIST" / "raw" / name
    return plain.read_bytes() if plain.is_file() else gzip.decompress((plain.parent / f"{name}.gz").read_bytes())


def idx_header(magic: int, *sizes: int) -> bytes:
    return struct.pack(f">{1 + len(sizes)}I", magic, *sizes)


def put(raw: Path, name: str, data: bytes) -> None:
    """Replace one file of the copy (a link to the real file is removed first: /work/shared is never written)."""
    for old in (raw / name, raw / f"{name}.gz"):
        if old.is_symlink() or old.exists():
            old.unlink()
    (raw / name).write_bytes(data)


def put_gz(raw: Path, name: str, data: bytes) -> None:
    put(raw, name, b"")
    (raw / name).unlink()
    (raw / f"{name}.gz").write_bytes(data)


def half_test_split(raw: Path, real: Callable[[str], bytes]) -> None:
    """A consistent test split of 5,000 images and labels: well formed, but not MNIST's."""
    put(raw, TEST_LABELS, idx_header(0x0801, 5000) + real(TEST_LABELS)[8:8 + 5000])
    put(raw, TEST_IMAGES, idx_header(0x0803, 5000, 28, 28) + real(TEST_IMAGES)[16:16 + 5000 * 784])


def flip_middle(data: bytes) -> bytes:
    """Invert 40 bytes in the middle of a compressed stream."""
    return data[:40] + bytes(b ^ 0xFF for b in data[40:80]) + data[80:]


TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = IDX_FILES
Corrupt = Callable[[Path, Callable[[str], bytes]], None]  # (raw folder, name -> real bytes)
# case -> (how to spoil the copy, the file the message must name ("" = the folder), what it must say)
DATA_CASES: dict[str, tuple[Corrupt, str, str]] = {
    "missing folder": (lambda raw, real: shutil.rmtree(raw.parent.parent), "", "could not load mnist"),
    "one file missing": (lambda raw, real: (raw / TEST_LABELS).unlink(), "", "could not load mnist"),
    **{f"truncated {name}": ((lambda n: lambda raw, real: put(raw, n, real(n)[:len(real(n)) // 2]))(name), name,
                             "truncated") for name in IDX_FILES},
    "truncated inside the header": (lambda raw, real: put(raw, TEST_LABELS, real(TEST_LABELS)[:6]), TEST_LABELS,
                                    "too short for an IDX header"),
    "empty file": (lambda raw, real: put(raw, TRAIN_LABELS, b""), TRAIN_LABELS, "too short for an IDX header"),
    "trailing bytes": (lambda raw, real: put(raw, TEST_IMAGES, real(TEST_IMAGES) + b"\0" * 784), TEST_IMAGES,
                       "has trailing bytes"),
    "wrong magic: labels as images": (lambda raw, real: put(raw, TRAIN_IMAGES, real(TRAIN_LABELS)), TRAIN_IMAGES,
                                      "magic number 0x00000801 (a labels file)"),
    "wrong magic: images as labels": (lambda raw, real: put(raw, TEST_LABELS, real(TEST_IMAGES)), TEST_LABELS,
                                      "magic number 0x00000803 (an images file)"),
    "wrong magic: a png": (lambda raw, real: put(raw, TEST_IMAGES, b"\x89PNG\r\n\x1a\n" + b"\0" * 100), TEST_IMAGES,
                           "magic number 0x89504e47"),
    "wrong magic: int32 data": (lambda raw, real: put(raw, TEST_LABELS, idx_header(0x0C01, 10000) + b"\0" * 40000),
                                TEST_LABELS, "magic number 0x00000c01"),
    "wrong dims: 32x32": (lambda raw, real: put(raw, TEST_IMAGES, idx_header(0x0803, 10000, 32, 32)
                                                + bytes(10000 * 32 * 32)), TEST_IMAGES, "images of 32x32"),
    "label out of range": (lambda raw, real: put(raw, TEST_LABELS, real(TEST_LABELS)[:8 + 5] + b"\x0a"
                                                 + real(TEST_LABELS)[8 + 6:]), TEST_LABELS, "label 10 out of range"),
    "count mismatch": (lambda raw, real: put(raw, TEST_LABELS, idx_header(0x0801, 9999)
                                             + real(TEST_LABELS)[8:-1]), TEST_LABELS, "9,999 labels, but"),
    "not the MNIST size": (lambda raw, real: half_test_split(raw, real), TEST_LABELS, "5,000 labels, expected 10,000"),
    "gz: not gzip": (lambda raw, real: put_gz(raw, TEST_IMAGES, b"this is not gzip" * 10), f"{TEST_IMAGES}.gz",
                     "not a valid gzip file"),
    "gz: truncated": (lambda raw, real: put_gz(raw, TRAIN_LABELS, gzip.compress(real(TRAIN_LABELS))[:300]),
                      f"{TRAIN_LABELS}.gz", "not a valid gzip file"),
    "gz: corrupt stream": (lambda raw, real: put_gz(raw, TEST_LABELS, flip_middle(gzip.compress(real(TEST_LABELS)))),
                           f"{TEST_LABELS}.gz", "not a valid gzip file"),
    "gz: a bomb": (lambda raw, real: put_gz(raw, TEST_LABELS, gzip.compress(real(TEST_LABELS) + bytes(60_000_000))),
                   f"{TEST_LABELS}.gz", "has trailing bytes"),
    "header promises 4 billion": (lambda raw, real: put(raw, TEST_LABELS, idx_header(0x0801, 2**32 - 1)
                                                        + real(TEST_LABELS)[8:]), TEST_LABELS,
                                  "its header promises 4,294,967,295 labels"),
    "gz: holds a truncated file": (lambda raw, real: put_gz(raw, TEST_IMAGES, gzip.compress(real(TEST_IMAGES)[:5000])),
                                   f"{TEST_IMAGES}.gz", "truncated"),
}


@pytest.fixture
def data_copy(tmp_path, data_root) -> Path:
    """A data folder whose MNIST/raw links to the real files; cases replace the links they spoil."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES:
        source = data_root / "MNIST" / "raw" / name
        source = source if source.exists() else source.with_name(f"{name}.gz")
        (raw / source.name).symlink_to(source)
    return tmp_path / "data"


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data(case, data_copy, data_root, outputs, capsys):
    corrupt, name, expected = DATA_CASES[case]
    raw = data_copy / "MNIST" / "raw"
    corrupt(raw, lambda n: original(data_root, n))
    named = str(raw / name) if name else str(raw)
    runs, results = outputs
    example = data_copy.parent / "examples.safetensors"
    message = refused(["train", "data.train_limit=100", "train.epochs=1", "--data-dir", str(data_copy),
                       "--runs-dir", str(runs), "--no-progress"], capsys, [runs, results, data_copy], [named, expected])
    if name:
        assert "delete it to download it again, or replace it" in message
    else:
        assert "LAB_DATA_DIR" in message and "--data-dir" in message
    refused(["demo-examples", "--out", str(example), "--data-dir", str(data_copy)], capsys, [data_copy], [named],
            absent=(example,))


def test_missing_data_leaves_no_folders_behind(tmp_path, capsys):
    """A failed download removes the folders it made: the disk is as it was."""
    refused(["train", "--data-dir", str(tmp_path / "nodata"), "--runs-dir", str(tmp_path / "runs")], capsys,
            [tmp_path], [str(tmp_path / "nodata" / "MNIST" / "raw"), "could not load mnist"],
            absent=(tmp_path / "nodata", tmp_path / "runs"))
    refused(["train", "data.dataset=fashion_mnist", "--data-dir", str(tmp_path / "nodata")], capsys, [tmp_path],
            [str(tmp_path / "nodata" / "FashionMNIST" / "raw")], absent=(tmp_path / "nodata",))


# --- checkpoints -------------------------------------------------------------------------------------------------

def edit_json(path: Path, change: Callable[[dict], dict]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def read_state(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors, copied out of the file's memory map (rewriting a mapped file under them would crash)."""
    return {k: v.clone() for k, v in load_file(weights).items()}


def edit_weights(run: Path, change: Callable[[dict], dict], metadata: dict | None = None) -> None:
    """Re-save the weights with change applied to the tensors, keeping the header's run id (or metadata)."""
    weights = run / "weights.safetensors"
    save_file(change(read_state(weights)), weights, metadata=metadata or {"run_id": run_id(from_dict(
        json.loads((run / "config.json").read_text())))})


def edit_header(run: Path, change: Callable[[bytes], bytes], same_length: bool = True) -> None:
    """Rewrite the JSON header of the weights file in place (the 8-byte length follows it)."""
    weights = run / "weights.safetensors"
    data = weights.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = change(data[8:8 + n])
    assert not same_length or len(header) == n
    weights.write_bytes(struct.pack("<Q", len(header)) + header + data[8 + n:])


def first_float(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point())


def set_first(value: float) -> Callable[[dict], dict]:
    def change(state: dict) -> dict:
        state[first_float(state)].view(-1)[0] = value
        return state
    return change


class Evil:
    """Unpickling this would create a file: proof that a pickle in place of the weights is never unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def nan_bytes_in_data(run: Path) -> None:
    """Overwrite 4 bytes of tensor data with a float32 NaN, as a flipped exponent might."""
    weights = run / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    start = 8 + n + header[name]["data_offsets"][0]
    data[start:start + 4] = struct.pack("<f", float("nan"))
    weights.write_bytes(bytes(data))


def shrink_first(state: dict) -> dict:
    key = first_float(state)
    state[key] = state[key][:1].clone()
    return state


def forge_channels(run: Path) -> None:
    """Config of another width, with weights and metrics that claim that config: only the shapes can tell."""
    edit_json(run / "config.json", lambda c: c | {"model": c["model"] | {"channels": [[6], [32], [64]]}})
    edit_weights(run, lambda s: s)
    forged = run_id(from_dict(json.loads((run / "config.json").read_text())))
    edit_json(run / "metrics.json", lambda m: m | {"run_id": forged})


Breakage = Callable[[Path], object]
W, C, M = "weights.safetensors", "config.json", "metrics.json"
# case -> (how to break a copy of the shipped classifier ("ae:" prefix: the autoencoder), file named, message)
CHECKPOINT_CASES: dict[str, tuple[Breakage, str, str]] = {
    "missing folder": (lambda run: shutil.rmtree(run), "", "no such run folder"),
    "missing config": (lambda run: (run / C).unlink(), C, "missing"),
    "missing weights": (lambda run: (run / W).unlink(), W, "missing"),
    "weights is a folder": (lambda run: ((run / W).unlink(), (run / W).mkdir()), W, "missing"),
    "truncated weights": (lambda run: (run / W).write_bytes((run / W).read_bytes()[:2000]), W,
                          "not a readable safetensors file"),
    "truncated in the length prefix": (lambda run: (run / W).write_bytes((run / W).read_bytes()[:5]), W,
                                       "not a readable safetensors file"),
    "empty weights": (lambda run: (run / W).write_bytes(b""), W, "not a readable safetensors file"),
    "garbage weights": (lambda run: (run / W).write_bytes(os.urandom(4096)), W, "not a readable safetensors file"),
    "a pickle as weights": (lambda run: (run / W).write_bytes(pickle.dumps(Evil(run.parent / "pwned"))), W,
                            "not a readable safetensors file"),
    "torch.save file as weights": (lambda run: torch.save(read_state(run / W), run / W), W,
                                   "not a readable safetensors file"),
    "header length too big": (lambda run: (run / W).write_bytes(struct.pack("<Q", 2**40) + (run / W).read_bytes()[8:]),
                              W, "not a readable safetensors file"),
    "header: flipped byte breaks the JSON": (lambda run: edit_header(run, lambda h: b"[" + h[1:]), W,
                                             "not a readable safetensors file"),
    "header: offsets changed": (lambda run: edit_header(run, lambda h: h.replace(b'"data_offsets":[0,',
                                                                                 b'"data_offsets":[4,', 1)),
                                W, "not a readable safetensors file"),
    "header: dtype F32 -> I32": (lambda run: edit_header(run, lambda h: h.replace(b'"F32"', b'"I32"', 1)), W,
                                 "expected torch.float32"),
    "header: tensor renamed": (lambda run: edit_header(run, lambda h: h.replace(b"features.0.0.weight",
                                                                                b"features.0.0.wEight")), W,
                               "unexpected features.0.0.wEight"),
    "header: run id of another run": (lambda run: edit_header(run, lambda h: re.sub(
        rb'fast_cnn-[0-9a-f]{10}', b"fast_cnn-0123456789", h)), W, "trained as fast_cnn-0123456789"),
    "header: run id removed": (lambda run: edit_header(run, lambda h: h.replace(b'"run_id"', b'"ruN_id"')), W,
                               "has no run_id"),
    "tensor NaN": (lambda run: edit_weights(run, set_first(float("nan"))), W, "non-finite values"),
    "tensor inf": (lambda run: edit_weights(run, set_first(float("inf"))), W, "non-finite values"),
    "tensor data bytes made NaN": (nan_bytes_in_data, W, "non-finite values"),
    "tensor of the wrong shape": (lambda run: edit_weights(run, shrink_first), W, "has shape (1,"),
    "tensor of the wrong dtype": (lambda run: edit_weights(run, lambda s: {k: v.double() if v.is_floating_point()
                                                                           else v for k, v in s.items()}), W,
                                  "is torch.float64, expected torch.float32"),
    "tensor missing": (lambda run: edit_weights(run, lambda s: {k: v for k, v in s.items() if k != first_float(s)}), W,
                       "missing features."),
    "tensor extra": (lambda run: edit_weights(run, lambda s: s | {"backdoor": torch.zeros(3)}), W,
                     "unexpected backdoor"),
    "weights of another run": (lambda run: shutil.copy(AUTOENCODER / W, run / W), W, "trained as conv_ae-"),
    "config: channels changed": (lambda run: edit_json(run / C, lambda c: c | {"model": c["model"] | {
        "channels": [[32], [64], [256]]}}), W, "the config was edited after training"),
    "ae: config latent_dim changed": (lambda run: edit_json(run / C, lambda c: c | {"model": c["model"] | {
        "latent_dim": 8}}), W, "the config was edited after training"),
    "config channels changed, header forged": (forge_channels, W, "has shape"),
    "config: not json": (lambda run: (run / C).write_text("{not json"), C, "not readable JSON"),
    "config: not utf-8": (lambda run: (run / C).write_bytes(b'{"seed": "\xff"}'), C, "not readable JSON"),
    "config: a list": (lambda run: (run / C).write_text("[1, 2]"), C, "expected a JSON object"),
    "config: a folder": (lambda run: ((run / C).unlink(), (run / C).mkdir()), C, "not readable JSON"),
    "config: wrong type": (lambda run: edit_json(run / C, lambda c: c | {"train": c["train"] | {"lr": "fast"}}), C,
                           "train.lr: expected float"),
    "config: out of range": (lambda run: edit_json(run / C, lambda c: c | {"model": c["model"] | {"dropout": 2}}), C,
                             "model.dropout: must be in"),
    "config: unknown key": (lambda run: edit_json(run / C, lambda c: c | {"colour": "red"}), C, "colour: unknown key"),
    "config: unknown task": (lambda run: edit_json(run / C, lambda c: c | {"task": "regressor"}), C,
                             "task: 'regressor' is not one of"),
    "metrics: not json": (lambda run: (run / M).write_text("{"), M, "not readable JSON"),
    "metrics: headline missing": (lambda run: edit_json(run / M, lambda m: {k: v for k, v in m.items()
                                                                              if k != "test_accuracy"}), M,
                                  "test_accuracy: expected a finite number"),
    "metrics: headline NaN": (lambda run: edit_json(run / M, lambda m: m | {"test_accuracy": float("nan")}), M,
                              "test_accuracy: expected a finite number"),
    "metrics: headline a string": (lambda run: edit_json(run / M, lambda m: m | {"test_accuracy": "99%"}), M,
                                   "test_accuracy: expected a finite number"),
    "metrics: of another run": (lambda run: edit_json(run / M, lambda m: m | {"run_id": "fast_cnn-0000000000"}), M,
                                "the files come from different runs"),
}


@pytest.fixture
def run_copy(tmp_path) -> Callable[[str], Path]:
    def copy(case: str) -> Path:
        source = AUTOENCODER if case.startswith("ae:") else CLASSIFIER
        run = tmp_path / "runs" / source.name
        shutil.copytree(source, run)
        return run
    return copy


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint(case, tmp_path, run_copy, capsys):
    breakage, name, expected = CHECKPOINT_CASES[case]
    run = run_copy(case)
    breakage(run)
    runs = run.parent
    named = str(run / name) if name else str(run)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(run)
    assert named in str(error.value) and expected in str(error.value)
    figure, report = tmp_path / "out" / "accuracy.png", tmp_path / "out" / "accuracy.json"
    commands = [["verify", str(run)], ["verify", "--runs-dir", str(runs)],
                ["push-model", str(run), "--repo", "someone/model", "--dry-run"],
                ["demo-accuracy", "--checkpoint", str(run), "--digits", "10", "--figure", str(figure),
                 "--json", str(report), "--threads", str(torch.get_num_threads())]]
    if not run.exists():  # a scan of the runs dir cannot miss a folder that is not there
        commands.remove(["verify", "--runs-dir", str(runs)])
    for argv in commands:
        refused(argv, capsys, [tmp_path], [named, expected], absent=(figure, report))
    assert not (tmp_path / "pwned").exists()


def test_verify_lists_good_unfinished_and_broken_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    good, broken, unfinished = runs / "a-good", runs / "b-broken", runs / "c-unfinished"
    for folder in (good, broken, unfinished):
        shutil.copytree(CLASSIFIER, folder)
    (broken / W).write_bytes(b"\0" * 10)
    (unfinished / M).unlink()
    (runs / ".staging").mkdir()  # a hidden folder (a write in progress) is no run
    text = refused(["verify", "--runs-dir", str(runs)], capsys, [runs], [str(broken / W)])
    lines = [line for line in text.splitlines() if line.startswith(("ok", "unfinished", "BROKEN"))]
    assert [line.split()[0] for line in lines] == ["ok", "BROKEN", "unfinished"]
    accuracy = json.loads((good / M).read_text())["test_accuracy"]
    assert f"test_accuracy {accuracy:.4f}" in lines[0] and "1 ok, 1 unfinished, 1 broken" in text
    shutil.rmtree(broken)
    assert main(["verify", "--runs-dir", str(runs)]) == 0
    assert "1 ok, 1 unfinished, 0 broken" in capsys.readouterr().out
    assert main(["verify", str(good), str(unfinished)]) == 0
    refused(["verify", "--runs-dir", str(tmp_path / "none")], capsys, [tmp_path], [str(tmp_path / "none")])


def test_every_header_byte_flipped_is_refused_or_harmless(tmp_path):
    """Flip each byte of the weights' header in turn: the load fails with a CheckpointError, or (where the flip
    changed nothing that matters) gives back exactly the original tensors. No other exception ever escapes."""
    run = tmp_path / AUTOENCODER.name
    shutil.copytree(AUTOENCODER, run)
    weights = run / W
    data = weights.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    reference = load_checkpoint(AUTOENCODER).model.state_dict()
    refused_count = 0
    for i in range(8 + n):
        spoiled = bytearray(data)
        spoiled[i] ^= 0x01
        weights.write_bytes(bytes(spoiled))
        try:
            state = load_checkpoint(run).model.state_dict()
        except CheckpointError as error:
            assert str(weights) in str(error) or str(run / C) in str(error)
            refused_count += 1
            continue
        assert all(torch.equal(state[k], reference[k]) for k in reference), f"byte {i} changed the model silently"
    assert refused_count >= (8 + n) * 0.95  # nearly every flip is caught, not merely survived


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["verify", "{run}"],
    ["sweep", "{sweep}"],
    ["train", "--data-dir", "{data}"],
])
def test_a_real_process_exits_2_without_a_traceback(argv, tmp_path):
    """The same, as a user meets it: a fresh `python -m lab` process, its exit status and its stderr."""
    run = tmp_path / "run"
    shutil.copytree(CLASSIFIER, run)
    (run / W).write_bytes((run / W).read_bytes()[:100])
    (tmp_path / "bad.toml").write_text(HEAD + "[grid]\ntrain.lr = []\n")
    places = {"run": str(run), "sweep": str(tmp_path / "bad.toml"), "data": str(tmp_path / "nodata")}
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT), "LAB_RUNS_DIR": str(tmp_path / "runs"),
           "LAB_RESULTS_DIR": str(tmp_path / "results")}
    before = snapshot(tmp_path)
    # offline for torchvision: an unroutable proxy makes any download fail fast
    env |= {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    done = subprocess.run([sys.executable, "-m", "lab", *(a.format(**places) for a in argv)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert any(p in done.stderr for p in places.values())
    assert snapshot(tmp_path) == before


# --- no pickle, ever ---------------------------------------------------------------------------------------------

@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way into pickle raises: anything that loads through pickle fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)


def test_nothing_loads_through_pickle(no_unpickling, data_root, tmp_path):
    with pytest.raises(AssertionError, match="unpickle"):
        torch.load(tmp_path / "x.pt")  # the trap is set
    load_dataset.cache_clear()
    mnist = load_dataset("mnist", data_root)
    assert mnist.train.images.shape == (60000, 28, 28)
    load_dataset.cache_clear()
    run = tmp_path / "run"
    shutil.copytree(CLASSIFIER, run)
    assert load_checkpoint(run).probabilities(mnist.test.images[:8].float() / 255).shape == (8, 10)
    shipped, skipped = find_checkpoints(SHIPPED)
    assert {c.task for c in shipped} == {"classifier", "autoencoder"} and skipped == []
    assert load_file(paths.ROOT / "demo" / "examples.safetensors")["labels"].numel() > 0  # the demo's examples


UNSAFE = re.compile(r"torch\.load\b|\bpickle\b|\bjoblib\b|allow_pickle\s*=\s*True|\bdill\b|torch\.jit\.load|"
                    r"_load_legacy_data|np\.load\(")


def test_no_source_can_unpickle():
    """No module of the lab or the demo mentions a pickle-based loader."""
    sources = sorted((paths.ROOT / "lab").rglob("*.py")) + sorted((paths.ROOT / "demo").rglob("*.py"))
    assert len(sources) > 10
    hits = [f"{p.relative_to(paths.ROOT)}:{i}: {line.strip()}" for p in sources
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if UNSAFE.search(line) and "no pickle" not in line and "never pickle" not in line
            and "allow_pickle=False" not in line]  # numpy refuses object arrays then: plain numbers only
    assert hits == []


def test_the_benchmarks_tutorial_baseline_refuses_legacy_pickles(tmp_path, no_unpickling):
    """The baseline uses torchvision's MNIST class, as the tutorial does; that class would unpickle processed/*.pt."""
    from lab.tools.bench import _child_baseline

    (tmp_path / "MNIST" / "processed").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="legacy .pt files are pickles"):
        _child_baseline({"data_dir": str(tmp_path), "seed": 0, "device": "cpu"})


@pytest.fixture
def mirror(tmp_path, data_root, monkeypatch):
    """A local MNIST mirror (http.server on 127.0.0.1) serving the real files gzipped, with their md5s."""
    import functools
    import http.server
    import threading

    served = tmp_path / "mirror"
    served.mkdir()
    resources = []
    for name in IDX_FILES:
        packed = gzip.compress(original(data_root, name), 1)
        (served / f"{name}.gz").write_bytes(packed)
        resources.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # a client that hangs up mid-file (its checksum failed) is no error of the lab's

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield resources
    server.shutdown()


def test_a_missing_file_is_downloaded_alone_and_whole(data_copy, mirror, data_root, capsys):
    raw = data_copy / "MNIST" / "raw"
    (raw / TEST_LABELS).unlink()
    loaded = load_dataset("mnist", data_copy)
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)  # no staging folder or .gz left behind
    assert not (raw / TEST_LABELS).is_symlink() and (raw / TRAIN_LABELS).is_symlink()  # only the missing one
    assert torch.equal(loaded.test.labels, load_dataset("mnist", data_root).test.labels)


def test_a_download_that_fails_its_checksum_leaves_nothing(data_copy, mirror, monkeypatch, capsys):
    raw = data_copy / "MNIST" / "raw"
    (raw / TEST_IMAGES).unlink()
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", [(n, "0" * 32) for n, _ in mirror])
    refused(["train", "--data-dir", str(data_copy)], capsys, [data_copy], [str(raw), "could not load mnist"])
    assert sorted(p.name for p in raw.iterdir()) == sorted(set(IDX_FILES) - {TEST_IMAGES})
