"""The demo as a user meets it: the app started on 127.0.0.1 and each endpoint called through gradio_client."""

import os
import shutil
import sys

# before gradio is imported: no analytics calls and no Hub downloads from the tests' own process
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from demo_server import APP, SHIPPED, start_app, stop_app
from PIL import Image

from lab.demo.canvas import mnist_to_canvas
from lab.demo.hub import assemble_space
from lab.demo.redraw import redraw_digits

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

sys.path.insert(0, str(APP.parent))
import app as demo_app  # noqa: E402


def pad(path) -> dict:
    """A Sketchpad value for gradio_client: the drawing as background and composite."""
    return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}


def save(tmp_path, name: str, pixels: np.ndarray) -> dict:
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels).save(path)
    return pad(path)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    proc, url = start_app(log)  # the shipped weights, as on a fresh clone
    try:
        yield Client(url, verbose=False)
    finally:
        stop_app(proc)


def test_shipped_weights_load():
    models = demo_app.load_models(SHIPPED)
    assert models.skipped == []
    assert len(models.classifiers) >= 1 and len(models.autoencoders) >= 1
    for label, checkpoint in models.classifiers.items():
        assert "test accuracy" in label and checkpoint.metrics["test_accuracy"] > 0.99
    for label, checkpoint in models.autoencoders.items():
        assert f"latent {checkpoint.config.model.latent_dim}" in label


def test_output_images_are_written_once_and_whole(tmp_path, monkeypatch):
    """Gradio's cache rewrites an answer's image in place, so two identical answers at once could cut a download
    short (a CI failure of the load test). The app's images go in once, by content, through a rename: a second
    identical answer leaves the file as it is, and no half-written file is ever at the path."""
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    path = demo_app.cache_png(pixels, tmp_path)
    assert np.array_equal(read(path), pixels)  # PNG: the exact pixels
    inode, content = os.stat(path).st_ino, open(path, "rb").read()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["image.png"]  # no temp file left behind
    written = []
    monkeypatch.setattr(demo_app, "write_atomic", lambda *args, **kwargs: written.append(args))
    assert demo_app.cache_png(pixels.copy(), tmp_path) == path  # the same picture, the same file, not rewritten
    assert not written and os.stat(path).st_ino == inode and open(path, "rb").read() == content
    other = demo_app.cache_png(255 - pixels, tmp_path)
    assert other != path and len(written) == 1  # a new picture goes through write_atomic (temp file, then rename)
    picture = demo_app.picture()
    monkeypatch.setattr(picture, "GRADIO_CACHE", str(tmp_path))
    assert picture.postprocess(pixels).path == path  # a component's answer is that file, served as it is


@pytest.mark.slow
def test_endpoints_are_named(client):
    assert {"/classify", "/interpolate", "/reconstruct"} <= set(client.view_api(print_info=False,
                                                                                return_format="dict")["named_endpoints"])


@pytest.mark.slow
def test_classify_reads_digits_drawn_on_the_canvas(client, mnist, tmp_path):
    canvases = redraw_digits(mnist.test.images[:20], torch.Generator().manual_seed(0)).numpy()
    right = sure = 0
    for i, canvas in enumerate(canvases):
        seen, label, bars, why, line = client.predict(save(tmp_path, f"d{i}", canvas), None, api_name="/classify")
        assert read(seen).shape == (224, 224)  # the 28x28 input, shown 8x larger
        assert np.asarray(Image.open(why)).shape == (224, 224, 3)  # the saliency map over it, in colour
        probabilities = [row[1] for row in bars["data"]]
        assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-4)
        assert len(label["confidences"]) == 3  # the top 3
        assert label["label"] == str(int(np.argmax(probabilities)))
        right += label["label"] == str(int(mnist.test.labels[i]))
        sure += line.startswith("Reads as")
    assert right >= 19 and sure >= 18  # the unsure rule fires on about 2% of test digits


@pytest.mark.slow
def test_classify_takes_the_picked_checkpoint_by_label_only(client, tmp_path):
    seven = save(tmp_path, "seven", mnist_to_canvas(demo_app.load_examples()[7][0]))
    label = next(iter(demo_app.load_models(SHIPPED).classifiers))
    assert client.predict(seven, label, api_name="/classify")[1]["label"] == "7"
    with pytest.raises(AppError, match="not in the list of choices"):  # gradio checks it before the app does
        client.predict(seven, "../../etc/passwd", api_name="/classify")


@pytest.mark.slow
def test_interpolate_decodes_the_line_between_two_codes(client, tmp_path):
    blank = save(tmp_path, "blank", np.full((280, 280), 255, np.uint8))
    latent, fade = client.predict(blank, blank, "test digit 3", "test digit 8", 6, None, api_name="/interpolate")
    latent, fade = read(latent), read(fade)
    assert latent.shape == fade.shape == (224, (6 * 30 - 2) * 8)
    examples = demo_app.load_examples()
    first, last = fade[:, :224:8][::8], fade[:, -224:][::8, ::8]  # the cross-fade's ends are the digits
    assert np.abs(first.astype(int) - examples[3][0].numpy()).max() <= 1
    assert np.abs(last.astype(int) - examples[8][0].numpy()).max() <= 1
    middle = latent[:, 2 * 240:2 * 240 + 224]
    assert middle.max() > 128  # the decoded path draws digits, not a blank


@pytest.mark.slow
def test_interpolate_uses_drawings(client, tmp_path):
    one = save(tmp_path, "one", mnist_to_canvas(demo_app.load_examples()[1][0]))
    latent, fade = client.predict(one, one, "my drawing", "my drawing", 2, None, api_name="/interpolate")
    assert read(latent).shape == (224, (2 * 30 - 2) * 8)


@pytest.mark.slow
def test_reconstruct_returns_both_images_and_the_mse(client, tmp_path):
    four = save(tmp_path, "four", mnist_to_canvas(demo_app.load_examples()[4][0]))
    digit, reconstruction, mse = client.predict(four, None, api_name="/reconstruct")
    assert read(digit).shape == read(reconstruction).shape == (224, 224)
    assert 0 < mse < 0.05
    ours = ((read(digit)[::8, ::8] / 255.0 - read(reconstruction)[::8, ::8] / 255.0) ** 2).mean()
    assert mse == pytest.approx(ours, abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("pixels, message", [
    (np.full((280, 280), 255, np.uint8), "empty"),
    (np.zeros((280, 280), np.uint8), "ink"),
    (np.full((3000, 40), 255, np.uint8), "pixels"),
])
def test_bad_drawings_get_a_message_not_a_traceback(client, tmp_path, pixels, message):
    for api_name, args in [("/classify", (None,)), ("/reconstruct", (None,))]:
        with pytest.raises(AppError, match=message) as caught:
            client.predict(save(tmp_path, "bad", pixels), *args, api_name=api_name)
        assert "Traceback" not in str(caught.value)


def test_importing_the_app_writes_nothing_beside_it():
    assert not APP.with_suffix(".pyi").exists()  # Gradio writes stubs beside Component subclasses: there are none


@pytest.mark.slow
def test_uploads_that_are_not_drawings_get_a_message(client, tmp_path):
    """Whatever is uploaded in place of a drawing: a sentence that says what to send, and the app carries on."""
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(10_000))  # a PNG signature only
    text = tmp_path / "digit.txt"
    text.write_text("seven")
    huge = tmp_path / "huge.png"  # 12,000 px a side, 200 kB: decoding it would take 144 MB
    Image.new("L", (12_000, 12_000), 255).save(huge, optimize=True)
    bomb = tmp_path / "bomb.png"  # past Pillow's decompression-bomb limit
    Image.new("1", (20_000, 20_000), 1).save(bomb)
    cases = [(garbage, "not an image"), (text, "not an image"), (huge, "12000x12000 pixels"), (bomb, "far too large")]
    for path, message in cases:
        assert path.stat().st_size < 2 * 1024 * 1024  # under the upload limit: the app itself must refuse it
        with pytest.raises(AppError, match=message) as caught:
            client.predict(pad(path), None, api_name="/classify")
        assert "Traceback" not in str(caught.value)
    seven = save(tmp_path, "seven", mnist_to_canvas(demo_app.load_examples()[7][0]))
    assert client.predict(seven, None, api_name="/classify")[1]["label"] == "7"  # still serving


@pytest.mark.slow
def test_bad_steps_are_refused(client, tmp_path):
    blank = save(tmp_path, "blank", np.full((280, 280), 255, np.uint8))
    with pytest.raises(AppError, match="greater than maximum value 16"):
        client.predict(blank, blank, "test digit 1", "test digit 2", 500, None, api_name="/interpolate")
    with pytest.raises(AppError, match="Start digit: the canvas is empty"):
        client.predict(blank, blank, "my drawing", "test digit 2", 4, None, api_name="/interpolate")


def test_a_corrupt_checkpoint_is_named_and_skipped(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(SHIPPED, runs)
    classifier = next(p for p in runs.iterdir() if p.name.startswith("fast_cnn"))
    weights = classifier / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by an interrupted copy
    models = demo_app.load_models(runs)
    shown = str(weights.relative_to(tmp_path))  # runs/fast_cnn-.../weights.safetensors: no machine path
    assert len(models.skipped) == 1 and shown in models.skipped[0] and str(tmp_path) not in models.skipped[0]
    assert models.classifiers == {} and len(models.autoencoders) == len(demo_app.load_models(SHIPPED).autoencoders)
    demo = demo_app.build_demo(models)
    texts = page_texts(demo)
    assert any(shown in text and "Skipped" in text for text in texts)  # shown in the page
    assert not any(str(tmp_path) in text for text in texts)


def page_texts(demo) -> list[str]:
    """Every text the page shows: Markdown, labels and dropdown entries."""
    texts = []
    for block in demo.blocks.values():
        props = block.get_config() if hasattr(block, "get_config") else {}
        for key in ("value", "label", "info", "placeholder"):
            if isinstance(props.get(key), str):
                texts.append(props[key])
        texts += [str(c[0]) for c in props.get("choices") or []]
    return texts


def test_the_page_shows_no_machine_path():
    """The shipped app names its checkpoints relative to itself: no folder of the machine it runs on."""
    demo = demo_app.build_demo(demo_app.load_models(SHIPPED))
    texts = page_texts(demo)
    assert any("Checkpoints from `checkpoints`" in text for text in texts)
    assert not any(str(APP.parent.parent) in text for text in texts)


def test_no_checkpoints_means_a_message_in_the_ui(tmp_path):
    models = demo_app.load_models(tmp_path / "nothing-here")
    demo = demo_app.build_demo(models)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        one = save(tmp_path, "one", mnist_to_canvas(demo_app.load_examples()[1][0]))
        with pytest.raises(AppError, match="No classifier checkpoint is loaded"):
            client.predict(one, None, api_name="/classify")
        with pytest.raises(AppError, match="No autoencoder checkpoint is loaded"):
            client.predict(one, None, api_name="/reconstruct")
    finally:
        demo.close()


@pytest.mark.slow
def test_the_space_folder_runs_on_its_own(tmp_path):
    space = assemble_space(tmp_path / "space")
    proc, url = start_app(tmp_path / "space.log", app=space / "app.py", cwd=tmp_path)
    try:
        client = Client(url, verbose=False)
        seven = save(tmp_path, "seven", mnist_to_canvas(demo_app.load_examples()[7][0]))
        assert client.predict(seven, None, api_name="/classify")[1]["label"] == "7"
    finally:
        stop_app(proc)
    assert f"checkpoints from {space / 'checkpoints'}" in (tmp_path / "space.log").read_text()


def test_hub_repo_offline_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert demo_app.main(["--hub-repo", "someone/no-such-runs"]) == 2
    assert "could not download someone/no-such-runs" in capsys.readouterr().err
