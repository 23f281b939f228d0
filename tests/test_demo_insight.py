"""The demo's insight views on the shipped checkpoints: why this digit (saliency), the unsure rule, the latent map,
and the cost of the live classify path."""

import copy
import json
import os
import sys
import threading
from dataclasses import replace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from demo_server import APP, SHIPPED  # noqa: E402

from lab.__main__ import main  # noqa: E402
from lab.checkpoints import find_checkpoints, load_checkpoint  # noqa: E402
from lab.demo import explain  # noqa: E402
from lab.demo.canvas import canvas_to_mnist  # noqa: E402
from lab.demo.explain import folded, overlay, saliency  # noqa: E402
from lab.demo.latent_map import SIDE, build_map, with_markers  # noqa: E402
from lab.demo.redraw import redraw_digits  # noqa: E402
from lab.demo.unsure import (  # noqa: E402
    TARGET_FALSE_ALARM,
    UNSURE_FILE,
    VAL_DIGITS,
    held_out_digits,
    is_unsure,
    letters,
    read_measurement,
    scribbles,
    two_digits,
)

sys.path.insert(0, str(APP.parent))
import app as demo_app  # noqa: E402

# a scribble the shipped classifier reads with at most 84% (at pen widths 10-24 px, shifted about), below its
# threshold of 92%: points on the 280 px canvas, shared with the browser test
SCRIBBLE = [(181, 151), (226, 125), (227, 124), (82, 190), (98, 151), (166, 85)]


@pytest.fixture(scope="module")
def models():
    return demo_app.load_models(SHIPPED)


@pytest.fixture(scope="module")
def classifier(models):
    return next(iter(models.classifiers.values()))


@pytest.fixture(scope="module")
def canvases(mnist):
    return redraw_digits(mnist.test.images[:100], torch.Generator().manual_seed(0)).numpy()


def drawn(points: list[tuple[int, int]], width: int = 18) -> np.ndarray:
    from PIL import Image, ImageDraw
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line(points, fill=0, width=width, joint="curve")
    return np.asarray(image)


# ------------------------------------------------------------------------------------------------ why this digit

def test_saliency_lies_on_the_digit(classifier, canvases):
    """The map of a real digit is brighter on its ink than on the blank paper around it, for nearly every digit."""
    ratios = []
    for canvas in canvases[:50]:
        image = canvas_to_mnist(canvas)
        probabilities, heat = saliency(classifier, image)
        assert torch.allclose(probabilities, classifier.probabilities(image[None])[0], atol=1e-5)  # the same pass
        assert heat.shape == (28, 28) and heat.min() >= 0 and heat.max() == pytest.approx(1)
        ink = image > 0.2
        ratios.append(float(heat[ink].mean() / heat[~ink].mean()))
    assert np.median(ratios) > 1.5 and np.mean(np.array(ratios) > 1) >= 0.9, ratios
    assert all(p.grad is None for p in classifier.model.parameters())  # nothing accumulates in shared weights


def test_the_live_path_folds_batch_norm_into_the_same_function(classifier, monkeypatch):
    """saliency runs a copy of the model with each batch norm folded into its convolution: no norm left, the same
    logits, made once per model, and no gradient left in its weights; a model with a part in training mode (its
    norms still learning) is used as it is, and folded once it is put in eval mode."""
    model = classifier.model
    fast = folded(model)
    assert fast is not model and folded(model) is fast
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the checkpoint's own model untouched
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)
    used = []
    monkeypatch.setattr(explain, "folded", lambda m: used.append(m) or fast)
    saliency(classifier, x[0, 0])
    assert used == [model] and all(p.grad is None for p in fast.parameters())
    learning = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Sequential(torch.nn.BatchNorm2d(2)))
    learning.eval()
    learning[1].train()  # one part still learning
    assert folded(learning) is learning
    learning.eval()
    assert folded(learning) is not learning


def test_folding_leaves_requests_running_other_models_alone(classifier):
    """Folding traces nothing: a request running a model meanwhile never fails (torch.fx's tracing swaps
    nn.Module's call for the whole process while it runs, which broke such requests)."""
    errors, stop = [], threading.Event()

    def serve():
        x = torch.rand(1, 1, 28, 28)
        while not stop.is_set():
            try:
                classifier.model(x)
            except Exception as error:  # any failure is the finding
                errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns often: torch.fx's tracing here failed such requests 30,000 times
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        for _ in range(50):
            folded(copy.deepcopy(classifier.model))  # a model folded for the first time, each time
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert not errors


def test_overlay_is_the_digit_with_the_map_in_colour():
    image, heat = torch.zeros(28, 28), torch.zeros(28, 28)
    image[10:18, 10:18], heat[0, 0] = 1.0, 1.0
    pixels = overlay(image, heat, 8)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert pixels[100, 100, 0] == pixels[100, 100, 2] > 0  # the digit: grey
    assert pixels[0, 0, 0] > 200 and pixels[0, 0, 2] < 50  # the map: orange-red
    assert (pixels[200, 200] == 0).all()  # blank paper with no map: black


# ------------------------------------------------------------------------------------------------ not a digit

def test_the_shipped_rule_belongs_to_the_shipped_classifier():
    """Each shipped classifier has its measured rule beside it, made for its run id: `make demo-weights` (and
    `python -m lab demo-unsure`) remake it when the classifier is retrained."""
    found, _ = find_checkpoints(SHIPPED, task="classifier")
    assert found
    for checkpoint in found:
        measured = json.loads((checkpoint.folder / UNSURE_FILE).read_text())
        assert measured["checkpoint"] == checkpoint.run_id == checkpoint.folder.name, \
            "unsure.json is stale: run `python -m lab demo-unsure`"
        assert read_measurement(checkpoint.folder, checkpoint.run_id) == measured
        assert measured["held_out"] and checkpoint.config.data.val_size >= VAL_DIGITS  # chosen on unseen digits
        rates = measured["rates"]
        assert rates["validation_digits"]["rate"] == pytest.approx(measured["target_false_alarm"], abs=0.005)
        assert rates["test_digits"]["rate"] < 0.05  # few false alarms on real digits drawn on the canvas ...
        for kind in ("fashion_mnist", "scribbles", "two_digits"):  # ... and many more on what is not a digit
            assert rates[kind]["rate"] > 5 * rates["test_digits"]["rate"]


def test_a_rule_for_another_run_is_not_used(tmp_path):
    (tmp_path / UNSURE_FILE).write_text(json.dumps({"checkpoint": "fast_cnn-0000000000", "threshold": 0.8}))
    assert read_measurement(tmp_path, "fast_cnn-0000000000")["threshold"] == 0.8
    assert read_measurement(tmp_path, "fast_cnn-1111111111") is None  # retrained: measure again
    (tmp_path / UNSURE_FILE).write_text(json.dumps({"checkpoint": "fast_cnn-0000000000", "threshold": 7}))
    assert read_measurement(tmp_path, "fast_cnn-0000000000") is None
    (tmp_path / UNSURE_FILE).write_text("{not json")
    assert read_measurement(tmp_path, "fast_cnn-0000000000") is None
    assert read_measurement(tmp_path / "missing", "fast_cnn-0000000000") is None


def test_the_rule_and_the_verdict():
    assert is_unsure([0.5, 0.3, 0.2], 0.6) and not is_unsure([0.7, 0.3], 0.6)
    line, unsure = demo_app.verdict([0.05] * 8 + [0.2, 0.4], {"threshold": 0.6})
    assert unsure and "Not sure: this may not be a digit" in line and "9" in line
    line, unsure = demo_app.verdict([0.01] * 9 + [0.91], {"threshold": 0.6})
    assert not unsure and line.startswith("Reads as **9**")
    assert "demo-unsure" in demo_app.verdict([0.01] * 9 + [0.91], None)[0]  # no measured rule: said so


def test_a_scribble_is_unsure_and_a_digit_is_not(models):
    threshold = next(iter(models.unsure.values()))["threshold"]
    for width in (10, 18, 24):
        seen, top, bars, why, line = demo_app.classify(models, drawn(SCRIBBLE, width), None)
        assert max(top.values()) < threshold and line.startswith("⚠️ **Not sure")
        assert set(bars["reading"]) == {demo_app.UNSURE}  # the bars turn grey
    seven = demo_app.mnist_to_canvas(demo_app.load_examples()[7][0])
    line = demo_app.classify(models, seven, None)[4]
    assert line.startswith("Reads as **7**")


def test_non_digits_are_drawn_on_the_canvas(mnist):
    generator = torch.Generator().manual_seed(0)
    for made in (scribbles(3, generator), letters(3, generator), two_digits(mnist.test.images[:6], generator)):
        assert made.shape == (3, 280, 280) and made.dtype == np.uint8
        assert (made < 128).any(axis=(1, 2)).all() and (made.mean(axis=(1, 2)) > 128).all()  # ink on paper


@pytest.mark.slow
def test_demo_unsure_measures_and_writes_the_rule(tmp_path, data_root, capsys):
    out = tmp_path / "unsure.json"
    assert main(["demo-unsure", "--digits", "200", "--non-digits", "50", "--data-dir", str(data_root),
                 "--out", str(out)]) == 0
    measured = json.loads(out.read_text())
    assert measured["target_false_alarm"] == TARGET_FALSE_ALARM and 0 < measured["threshold"] < 1
    assert set(measured["rates"]) == {"validation_digits", "test_digits", "fashion_mnist", "scribbles", "letters",
                                      "two_digits"}
    assert measured["rates"]["fashion_mnist"]["n"] == 50
    printed = capsys.readouterr().out
    assert "fashion mnist" in printed
    assert measured["held_out"] == ("warning:" not in printed)  # the shipped classifier held its digits out
    assert measured["held_out"]


def test_the_rule_knows_whether_its_validation_digits_were_held_out():
    checkpoint = load_checkpoint(next(SHIPPED.glob("fast_cnn-*")))
    assert held_out_digits(checkpoint)
    data = checkpoint.config.data
    for val_size, dataset, held in ((0, "mnist", False), (VAL_DIGITS - 1, "mnist", False),
                                    (2 * VAL_DIGITS, "mnist", True), (VAL_DIGITS, "fashion_mnist", False)):
        other = replace(checkpoint, config=replace(checkpoint.config, data=replace(data, val_size=val_size,
                                                                                   dataset=dataset)))
        assert held_out_digits(other) == held, (val_size, dataset)


# ------------------------------------------------------------------------------------------------ latent map

def test_the_map_places_codes_and_decodes_points(models):
    """Every shipped autoencoder gives a map whose pixels and points and codes agree, both ways."""
    images, labels = demo_app.map_digits(demo_app.load_examples())
    assert len(labels) >= 500 and set(labels.tolist()) == set(range(10))  # enough shipped digits for a map
    for autoencoder in models.autoencoders.values():
        found = build_map(autoencoder, images, labels)
        assert found.image.shape == (SIDE, SIDE, 3)
        points = np.stack([found.place(c) for c in autoencoder.encode(images.float() / 255)])  # (N, 2)
        assert np.allclose(points, found.points, atol=1e-3)
        pixels = np.array([found.to_pixel(p) for p in points])
        assert ((pixels > 0) & (pixels < SIDE)).all()  # every digit lies inside the picture
        assert np.allclose(found.to_point(*found.to_pixel(points[0])), points[0], atol=1e-4)
        assert np.allclose(found.place(found.code(points[0])), points[0], atol=1e-3)  # a point's code is on it
        marked = with_markers(found, points[0], points[1])
        assert (marked != found.image).any() and marked.shape == found.image.shape


def test_the_map_shows_a_latent_2_code_and_a_click_decodes_exactly_that_code(models):
    """The demo ships a latent-2 autoencoder for the map: a click on a digit's dot decodes that digit's own code
    (its reconstruction), and where a digit's dots gather the decoded image reads as that digit for the digits
    the map keeps apart (a latent-2 map crowds 3, 4, 5, 6, 8 and 9 in its middle, where decodes are blends)."""
    examples = demo_app.load_examples()
    autoencoder, found = demo_app.latent_map(models, examples)
    assert autoencoder.config.model.latent_dim == 2
    images, labels = demo_app.map_digits(examples)
    clicked = autoencoder.decode(found.code(found.points[0])[None])
    assert torch.allclose(clicked, autoencoder.reconstruct(images[:1].float() / 255), atol=1e-4)
    classifier = next(iter(models.classifiers.values()))
    read = {}
    for digit in range(10):
        centre = np.median(found.points[labels.numpy() == digit], 0)
        decoded = autoencoder.decode(found.code(centre)[None])[0, 0]
        read[digit] = int(classifier.probabilities(decoded[None])[0].argmax())
    assert all(read[d] == d for d in (0, 1, 2)) and sum(r == d for d, r in read.items()) >= 4, read


def test_a_click_on_the_map_decodes_that_point(models):
    examples = demo_app.load_examples()
    seven = demo_app.mnist_to_canvas(examples[7][0])
    shown_map, marks = demo_app.place(models, examples, seven, {})
    assert shown_map.shape == (SIDE, SIDE, 3) and len(marks["drawing"]) == 2

    class Click:
        index = [SIDE // 2, SIDE // 2]

    shown_map, decoded, marks = demo_app.decode_click(models, examples, marks, Click())
    assert decoded.shape == (224, 224) and decoded.max() > 128  # a digit-like image, not a blank
    assert len(marks["click"]) == 2 and len(marks["drawing"]) == 2  # both marks stay on the map


def test_test_digits_chosen_as_ends_are_shown_on_their_canvases():
    examples = demo_app.load_examples()
    value = demo_app.pad_value(examples, demo_app.TEST_DIGIT.format(3))
    assert value["composite"].shape == (280, 280)
    assert np.array_equal(value["composite"], demo_app.mnist_to_canvas(examples[3][0]))
    assert demo_app.pad_value(examples, demo_app.DRAWING) is None  # 'my drawing': a blank canvas to draw on


# ------------------------------------------------------------------------------------------------ live classify
