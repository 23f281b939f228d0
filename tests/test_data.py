import pytest
import torch
import torchvision

from lab import data as data_module
from lab.__main__ import main
from lab.data import (
    DataError,
    SkeletonStore,
    elastic_field,
    load_dataset,
    ordered_batches,
    random_affine,
    shuffled_batches,
    stroke_augment,
    to_float,
)


def test_random_affine_with_no_range_is_the_identity():
    x = torch.rand(5, 1, 28, 28)
    out = random_affine(x, torch.Generator().manual_seed(0), rotate=0, scale=0, translate=0)
    assert torch.allclose(out, x, atol=1e-5)


def test_random_affine_moves_each_image_its_own_way_and_is_seeded():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # the same square in every image
    a = random_affine(x, torch.Generator().manual_seed(1), rotate=15, scale=0.1, translate=0.1)
    b = random_affine(x, torch.Generator().manual_seed(1), rotate=15, scale=0.1, translate=0.1)
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    distinct = {tuple(img.flatten().round(decimals=3).tolist()) for img in a}
    assert len(distinct) == 64
    ink = a.sum(dim=(1, 2, 3))
    assert (ink > 0.6 * 64).all() and (ink < 1.4 * 64).all()  # zoom +-10% keeps the area within ~+-21%


def test_an_elastic_field_is_smooth_and_as_long_as_asked():
    field = elastic_field(256, 28, 28, torch.Generator().manual_seed(0), rms=1.5)  # grid units: 2 / 28 per px
    px = field * 14
    assert field.shape == (256, 28, 28, 2)
    assert px.pow(2).sum(-1).mean().sqrt().item() == pytest.approx(1.5, rel=1e-4)
    # smooth: neighbouring pixels move almost alike (white noise of this size would differ by about 2 px)
    step = (px[:, 1:] - px[:, :-1]).pow(2).sum(-1).mean().sqrt().item()
    assert step < 0.4
    # random: each image its own field, and the batch's mean displacement near zero
    assert not torch.allclose(px[0], px[1]) and px.mean((0, 1, 2)).abs().max() < 0.2


def test_elastic_distortion_bends_strokes_and_is_seeded(mnist):
    x = to_float(mnist.train.images[:64])
    a = random_affine(x, torch.Generator().manual_seed(3), rotate=0, scale=0, translate=0, elastic=1.5)
    b = random_affine(x, torch.Generator().manual_seed(3), rotate=0, scale=0, translate=0, elastic=1.5)
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    # at elastic 0 the affine draws what it always drew and nothing more, so earlier runs' augmentations are unchanged
    unbent, alone = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    random_affine(x, unbent, rotate=15, scale=0.1, translate=0.1, elastic=0.0)
    torch.rand(x.shape[0], 4, generator=alone)
    assert torch.equal(unbent.get_state(), alone.get_state())
    moved = (a - x).abs().flatten(1).sum(1) / x.flatten(1).sum(1)  # how much ink moved, per digit
    assert (moved > 0.05).all()  # every digit bent
    ink = a.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ((ink > 0.5) & (ink < 1.5)).all()  # the field stretches and squeezes strokes (up to about +-30% of the ink)


def test_stroke_augment_redraws_its_share_of_a_batch_and_is_seeded(mnist):
    images = mnist.train.images[:128]
    x = to_float(images)
    generator = torch.Generator().manual_seed(0)
    assert stroke_augment(x, images, generator, share=0.0) is x
    a = stroke_augment(x, images, torch.Generator().manual_seed(1), share=0.5)
    b = stroke_augment(x, images, torch.Generator().manual_seed(1), share=0.5)
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    redrawn = (a != x).flatten(1).any(1)
    assert 0.3 < redrawn.float().mean() < 0.7  # about half of the batch
    assert torch.equal(a[~redrawn], x[~redrawn])
    whole = stroke_augment(x, images, torch.Generator().manual_seed(1), share=1.0)
    assert (whole != x).flatten(1).any(1).all()


def test_kept_skeletons_redraw_a_batch_as_made_ones_do(mnist, monkeypatch):
    """A SkeletonStore gives the skeletons stroke_augment would make, and makes each digit's once."""
    images = mnist.train.images[:256]
    batches = [torch.tensor(b) for b in torch.arange(256).view(4, 64).tolist()] * 2  # two epochs of four batches

    def redraw(idx: torch.Tensor, skeletons_of=None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(idx[0]))
        return stroke_augment(to_float(images[idx]), images[idx], generator, 0.5, skeletons_of)

    made_here = [redraw(idx) for idx in batches]
    store, made = SkeletonStore(images), []
    real = data_module.skeletons
    monkeypatch.setattr(data_module, "skeletons", lambda digits: made.append(len(digits)) or real(digits))
    kept = [redraw(idx, lambda picked, idx=idx: store(idx[picked])) for idx in batches]
    assert all(torch.equal(a, b) for a, b in zip(kept, made_here))  # the same redraws
    assert sum(made) == int(store.made.sum()) <= 256 and len(made) == 4  # made in the first epoch only, once each
    assert torch.equal(store.kept[store.made], real(images[store.made]))


def test_shuffled_batches_cover_every_index_once():
    batches = shuffled_batches(1000, 128, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [128] * 7 + [104]
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    again = shuffled_batches(1000, 128, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert torch.equal(torch.cat(ordered_batches(10, 4)), torch.arange(10))


def test_real_mnist_loads_as_uint8_tensors(mnist):
    assert mnist.train.images.shape == (60000, 28, 28) and mnist.train.images.dtype == torch.uint8
    assert mnist.test.images.shape == (10000, 28, 28)
    assert mnist.train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    x = to_float(mnist.train.images)
    assert abs(x.mean().item() - 0.1307) < 1e-3 and abs(x.std().item() - 0.3081) < 1e-3
    assert mnist.train.head(100).images.shape[0] == 100


@pytest.fixture
def offline(monkeypatch):
    """No network: torchvision's download fails at once, as it does on these machines."""
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])


def test_missing_data_is_a_clear_error(tmp_path, offline):
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path / "empty")
    message = str(error.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message and "LAB_DATA_DIR" in message


def test_cli_without_data_exits_2_with_a_message(tmp_path, offline, capsys):
    status = main(["train", "train.epochs=1", "--data-dir", str(tmp_path / "nodata"),
                   "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: could not load mnist") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_fashion_mnist_loads_too(data_root):
    try:
        fashion = load_dataset("fashion_mnist", data_root)
    except DataError as error:
        pytest.skip(str(error))
    assert fashion.train.images.shape == (60000, 28, 28) and fashion.test.labels.shape == (10000,)
    assert sorted(fashion.test.labels.unique().tolist()) == list(range(10))
    assert abs(to_float(fashion.train.images[:10000]).mean().item() - fashion.mean) < 0.01


def test_idx_reader_matches_torchvision(data_root):
    """The lab's own IDX reader gives exactly torchvision's tensors (read without downloading)."""
    if not (data_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip("torchvision reads unpacked IDX files only; this data folder has .gz files")
    load_dataset.cache_clear()
    mnist = load_dataset("mnist", data_root)
    for split, train in ((mnist.train, True), (mnist.test, False)):
        reference = torchvision.datasets.MNIST(str(data_root), train=train, download=False)
        assert torch.equal(split.images, reference.data) and torch.equal(split.labels, reference.targets)
        assert split.images.is_contiguous() and split.labels.dtype == torch.int64


def test_gzipped_idx_files_load_the_same(data_root, tmp_path):
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        source = data_root / "MNIST" / "raw" / name
        data = source.read_bytes() if source.is_file() else gzip.decompress(source.with_suffix(".gz").read_bytes())
        (raw / f"{name}.gz").write_bytes(gzip.compress(data, 1))
    packed, plain = load_dataset("mnist", tmp_path), load_dataset("mnist", data_root)
    assert torch.equal(packed.test.images, plain.test.images) and torch.equal(packed.train.labels, plain.train.labels)
    assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in raw.glob("*.gz"))  # nothing unpacked
