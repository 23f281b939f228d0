"""Digits redrawn as on the demo's canvas (the pen and the brush), and the demo's accuracy on them with the shipped
weights; the skeletons and constant-width strokes the brush redraw is made of."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from demo_server import SHIPPED

from lab.checkpoints import find_checkpoints
from lab.demo.canvas import CANVAS_SIDE, canvas_to_mnist
from lab.demo.redraw import (
    BRUSH_WIDTHS,
    DIGIT_SIDE,
    PEN_STEPS,
    THRESHOLDS,
    TILT,
    brush_canvases,
    brush_draws,
    brush_redraw,
    canvas_accuracy,
    described_draws,
    example_digits,
    hole_rates,
    miss_rates,
    mistakes_figure,
    pen_draws,
    redraw_digits,
    sample_indices,
)
from lab.errors import LabError
from lab.strokes import (
    FAINT,
    INK_LEVEL,
    INK_LEVELS,
    SKELETON_SCALE,
    brush_digits,
    draw_strokes,
    holes,
    hollow,
    ink_masks,
    pieces,
    skeletons,
    stroke_points,
    thin,
    upscale,
)

BRUSH_FLOOR = 0.98  # the shipped classifier's reading of all 10,000 is in demo/weights_classifier.toml


def shipped_classifier():
    classifiers, skipped = find_checkpoints(SHIPPED, task="classifier")
    assert classifiers and not skipped
    return max(classifiers, key=lambda c: c.metrics["test_accuracy"])


def test_redrawn_digits_look_drawn(mnist):
    canvases = redraw_digits(mnist.test.images[:64], torch.Generator().manual_seed(0))
    assert canvases.shape == (64, CANVAS_SIDE, CANVAS_SIDE) and canvases.dtype == torch.uint8
    ink = canvases < 128  # black on white
    assert ink.any(2).any(1).all()  # every canvas has a digit
    assert not ink[:, :, :5].any() and not ink[:, :5, :].any()  # kept inside the margins
    rows = ink.any(2).float().sum(1)
    assert rows.min() < 0.5 * CANVAS_SIDE < rows.max()  # some drawn small, some large
    centres = (ink.float() * torch.arange(CANVAS_SIDE)).sum((1, 2)) / ink.sum((1, 2))
    assert centres.std() > 10  # and not all in the middle
    again = redraw_digits(mnist.test.images[:64], torch.Generator().manual_seed(0))
    assert torch.equal(canvases, again)  # seeded


def test_example_digits_are_the_first_of_each_class(mnist):
    picked = example_digits(mnist.test.images, mnist.test.labels, per_class=2)
    assert picked["labels"].tolist() == [d for d in range(10) for _ in range(2)]
    first_seven = int(torch.nonzero(mnist.test.labels == 7)[0, 0])
    assert torch.equal(picked["images"][14], mnist.test.images[first_seven])


@pytest.mark.slow
def test_shipped_classifier_reads_redrawn_digits(mnist):
    """The issue's bar: at least 98% right on MNIST test digits redrawn as a user draws them."""
    best = shipped_classifier()
    # 1,000 digits: on a few hundred, the count of hard digits alone moves the figure by half a point
    picked = sample_indices(len(mnist.test), 1000, seed=1)
    images, labels = mnist.test.images[picked], mnist.test.labels[picked]
    result = canvas_accuracy(best, images, labels, seed=1)
    assert result["digits"] == 1000
    assert result["accuracy"] >= 0.98, result["wrong"]


def test_skeletons_are_thin_connected_centre_lines(mnist):
    digits = mnist.test.images[:200]
    found = skeletons(digits)
    assert found.shape == (200, 28 * SKELETON_SCALE, 28 * SKELETON_SCALE) and found.dtype == torch.bool
    assert torch.equal(thin(found), found)  # a skeleton thins no further
    blocks = F.avg_pool2d(found.float().unsqueeze(1), 2, stride=1)  # share of each 2x2 block inked
    assert (blocks == 1).sum() <= 0.01 * found.sum()  # 1 px wide: hardly a 2x2 block fully inked
    upscaled = upscale(digits)
    assert not (found & (upscaled <= INK_LEVELS[-1])).any()  # inside the digit's own ink
    assert (pieces(found) == pieces(ink_masks(upscaled))).float().mean() >= 0.95  # thinning keeps the pieces
    assert (found.flatten(1).sum(1) > 20).all()  # and leaves a line, not a dot


def test_pieces_counts_each_image_apart():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, 1, 1] = masks[0, 5, 5] = masks[0, 8, 2] = True  # three dots
    masks[1, 2:8, 4] = True
    masks[1, 8, 5] = True  # a bar and a diagonal step: one piece
    masks[3, 0, :] = masks[3, 9, :] = True  # two bars; image 2 is blank
    assert pieces(masks).tolist() == [3, 1, 0, 2]
    assert pieces(masks[:0]).tolist() == []


def test_holes_counts_the_loops_each_image_closes(mnist):
    ink = torch.zeros(7, 10, 10)
    ink[0, 2:7, 2:7] = 0.9
    ink[0, 3:6, 3:6] = 0.0  # a ring round 9 px of paper: one hole
    ink[1, 1:8, 2:6] = 0.9
    ink[1, 2:4, 3:5] = ink[1, 5:7, 3:5] = 0.0  # an 8, its two loops sharing a stroke: two
    ink[2, 2, 2:8] = 0.9  # a bar: none
    ink[3, 1:8, 1:8] = 0.9
    ink[3, 2:7, 2:7] = 0.0
    ink[3, 1, 4] = 0.0  # a ring open at the top: none
    ink[4, 0, :] = ink[4, -1, :] = ink[4, :, 0] = ink[4, :, -1] = 0.9  # the image's own edge as a ring: one
    ink[5, 2:7, 2:7] = 0.9
    ink[5, 4, 4:6] = 0.4  # ink under the level inside a stroke: a 2 px pinhole, no loop
    ink[6, 1, 3] = ink[6, 2, 2] = ink[6, 2, 4] = ink[6, 3, 3] = 0.9  # a diamond of diagonal steps round 1 px
    assert holes(ink).tolist() == [1, 2, 0, 0, 1, 0, 0]
    assert holes(ink, min_area=1).tolist() == [1, 2, 0, 0, 1, 1, 1]  # paper is 4-connected: the diamond closes
    assert holes(ink[:0]).tolist() == []
    images, labels = mnist.test.images[:2000], mnist.test.labels[:2000]
    found = holes(images.float().div(255.0))
    assert (found[labels == 0] == 1).float().mean() > 0.7  # most 0s close their loop; MNIST's writers leave some open
    assert (found[labels == 1] == 0).float().mean() > 0.95
    assert found[labels == 8].mode().values == 2  # the commonest 8 closes both loops


def test_a_faint_digit_is_not_broken_into_dots(mnist):
    """A stroke that fades in its middle is drawn whole (its ink level lowered), a real gap stays a gap, a digit inked
    firmly keeps the usual level, and one inked faintly all along is drawn; on real digits thinning then breaks hardly
    any."""
    bar = torch.zeros(4, 40, 40)
    bar[:, 18:22, 5:35] = 0.9
    bar[0, 18:22, 18:22] = 0.3  # faint in the middle: one stroke
    bar[1, 18:22, 18:22] = 0.0  # a gap: two strokes
    bar[3, 18:22, 5:35] = 0.4  # faint all along: drawn, not lost
    masks = ink_masks(bar)
    assert pieces(masks).tolist() == [1, 2, 1, 1]
    assert torch.equal(masks[3], bar[3] > 0)
    assert torch.equal(masks[1], bar[1] > INK_LEVEL) and torch.equal(masks[2], bar[2] > INK_LEVEL)
    upscaled = upscale(mnist.test.images[:2000])
    whole = pieces(upscaled > FAINT)
    broken = pieces(skeletons(mnist.test.images[:2000])) > whole
    at_one_level = torch.cat([thin(hollow(part > INK_LEVEL)) for part in upscaled.split(500)])
    was_broken = pieces(at_one_level) > whole
    assert was_broken.sum() >= 20 and broken.sum() <= was_broken.sum() / 4  # measured: 245 -> 32 of 10,000


def disc(centre: tuple[float, float], radius: float, side: int = 56) -> torch.Tensor:
    """A filled disc (side, side) bool."""
    y, x = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius ** 2


def reaches(mask: torch.Tensor, start: tuple[int, int], free: torch.Tensor) -> bool:
    """Whether a walk over free pixels (H, W) bool (4-connected) gets from start to the image's border."""
    seen = torch.zeros_like(free)
    seen[start] = True
    while True:
        padded = F.pad(seen, (1, 1, 1, 1))
        grown = (seen | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]) & free
        if grown[0].any() or grown[-1].any() or grown[:, 0].any() or grown[:, -1].any():
            return True
        if torch.equal(grown, seen):
            return False
        seen = grown


def test_hollow_cuts_a_filled_loop_open_and_leaves_even_strokes_alone():
    """A 9 whose loop is inked solid (a disc on a stem 5 px wide) is cut open and thins to a loop round the disc's
    middle; a ring and a bar as wide as the stem lose nothing."""
    stem = torch.zeros(56, 56, dtype=torch.bool)
    stem[20:52, 34:39] = True  # 5 px wide
    nine = disc((18, 28), 11) | stem
    ring = disc((28, 28), 16) & ~disc((28, 28), 11)  # 5 px wide
    cut = hollow(torch.stack([nine, ring, stem]))
    assert not cut[0, 18, 28] and cut[0, 18, 18]  # the disc's middle goes, its rim stays
    assert torch.equal(cut[1], ring) and torch.equal(cut[2], stem)
    line = thin(cut[:1])[0]
    assert not reaches(line, (18, 28), ~line)  # the skeleton goes round the middle: a loop
    assert reaches(thin(nine[None])[0], (18, 28), ~thin(nine[None])[0])  # unhollowed, it would not


def test_hollow_touches_only_the_digits_mnist_filled_in(mnist):
    """On real digits hollowing is rare and mostly 8s, whose loops MNIST's thick pens fill, never a plain 1."""
    upscaled = upscale(mnist.test.images[:1000]) > INK_LEVEL
    changed = (hollow(upscaled) != upscaled).flatten(1).any(1)
    labels = mnist.test.labels[:1000]
    assert 0.01 <= changed.float().mean() <= 0.1
    assert changed[labels == 8].float().mean() > 2 * changed.float().mean()
    assert not changed[labels == 1].any()


@pytest.mark.parametrize("direction", [(0, 1), (1, 1)])
@pytest.mark.parametrize("width", [1.5, 3.0, 5.0])
def test_a_brush_stroke_is_as_wide_as_the_brush_everywhere(direction, width):
    """A straight skeleton, across or diagonal, drawn with a round brush: the ink across it adds up to the width."""
    line = torch.zeros(1, 56, 56, dtype=torch.bool)
    for step in range(8, 48):
        line[0, 28 + (step - 28) * direction[0], step] = True
    index, points = stroke_points(line)
    ink = draw_strokes(index, points, torch.eye(2, 3).unsqueeze(0), torch.tensor([width / 2]), 28)[0, 0]
    assert ink.max() == 1 and ink.min() == 0
    if direction == (0, 1):  # columns across a horizontal line, away from its round ends
        across = ink[:, 8:20].sum(0)
    else:  # anti-diagonals i + j = 16..31 cross the diagonal line, pixels sqrt(2) apart; odd and even ones sample
        # the profile at interleaved offsets, so a pair of neighbours measures it
        across = torch.stack([ink.flip(1).diagonal(27 - s).sum() for s in range(16, 32)]) * 2 ** 0.5
        across = across.view(-1, 2).mean(1)
    assert torch.allclose(across, torch.full_like(across, width), atol=0.15), across


def test_brushed_digits_have_one_width_and_mnist_size(mnist):
    """Each training redraw is sized as MNIST's (longer side 20 px, centre of mass at the middle) and its ink per
    unit of skeleton length is the brush width."""
    found = skeletons(mnist.test.images[:64])
    drawn = brush_digits(found, torch.Generator().manual_seed(0))[:, 0]  # (64, 28, 28)
    assert drawn.shape == (64, 28, 28) and 0 <= drawn.min() and drawn.max() == 1
    inked = drawn > 0.2
    rows, cols = inked.any(2).float().sum(1), inked.any(1).float().sum(1)
    assert ((torch.maximum(rows, cols) - 20).abs() <= 1.5).float().mean() >= 0.9
    mass = drawn.sum((1, 2))
    centre_y = (drawn.sum(2) * torch.arange(28)).sum(1) / mass
    centre_x = (drawn.sum(1) * torch.arange(28)).sum(1) / mass
    off = torch.stack([centre_y - 14, centre_x - 14]).abs()  # the skeleton's centre stands in for the ink's
    assert off.mean() < 0.5 and off.max() < 1.5
    again = brush_digits(found, torch.Generator().manual_seed(0))[:, 0]
    assert torch.equal(drawn, again)  # seeded


def test_brush_redraws_look_drawn(mnist):
    canvases = brush_redraw(mnist.test.images[:64], torch.Generator().manual_seed(0))
    assert canvases.shape == (64, CANVAS_SIDE, CANVAS_SIDE) and canvases.dtype == torch.uint8
    ink = canvases < 128
    assert ink.any(2).any(1).all()
    assert not ink[:, :, :5].any() and not ink[:, :5, :].any() and not ink[:, -5:].any()  # inside the margins
    sides = torch.maximum(ink.any(2).float().sum(1), ink.any(1).float().sum(1))
    low, high = (share * CANVAS_SIDE for share in DIGIT_SIDE)
    assert ((sides >= low - 4) & (sides <= high + 4)).all() and sides.std() > 20  # at many sizes, within the range
    assert (canvases == 0).any(2).any(1).all()  # a solid brush: full black along every stroke
    # a constant width: ink area over the skeleton's length on the canvas lies within the brush's range
    thinned = thin(ink)
    widths = ink.flatten(1).sum(1) / thinned.flatten(1).sum(1)
    assert (widths > BRUSH_WIDTHS[0] * 0.7).all() and (widths < BRUSH_WIDTHS[1] * 1.3).all(), widths
    again = brush_redraw(mnist.test.images[:64], torch.Generator().manual_seed(0))
    assert torch.equal(canvases, again)


def test_brush_redraws_are_read_as_the_digits_they_were(mnist):
    """The redraw keeps what a digit is: the shipped classifier reads nearly all of 200 of them."""
    picked = sample_indices(len(mnist.test), 200, seed=2)
    images, labels = mnist.test.images[picked], mnist.test.labels[picked]
    result = canvas_accuracy(shipped_classifier(), images, labels, seed=2, style="brush")
    assert result["digits"] == 200 and result["accuracy"] >= 0.97, result["wrong"]
    seen = canvas_to_mnist(brush_redraw(images[:1], torch.Generator().manual_seed(0))[0].numpy())
    assert seen.shape == (28, 28)


@pytest.mark.slow
def test_shipped_classifier_reads_brush_redrawn_digits(mnist):
    """MNIST test digits drawn again with a round brush along their skeletons, as a mouse draws: the shipped
    classifier's floor (the issue asks 99.5%; what it reaches is in demo/weights_classifier.toml's header)."""
    picked = sample_indices(len(mnist.test), 2000, seed=1)
    images, labels = mnist.test.images[picked], mnist.test.labels[picked]
    result = canvas_accuracy(shipped_classifier(), images, labels, seed=1, style="brush")
    assert result["digits"] == 2000
    assert result["accuracy"] >= BRUSH_FLOOR, result["wrong"]


class AlwaysZero:
    """A stand-in classifier that answers 0 to everything: which digits it gets wrong is known."""

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.zeros(len(images), dtype=torch.long), 10).float() * 0.9 + 0.01


def test_the_wrong_digits_are_kept_with_what_the_classifier_saw(mnist, tmp_path):
    images, labels = mnist.test.images[:30], mnist.test.labels[:30]
    result = canvas_accuracy(AlwaysZero(), images, labels, style="brush", keep_wrong=True)
    assert [w[0] for w in result["wrong"]] == [i for i in range(30) if labels[i] != 0]
    assert all(w[1] == labels[w[0]] and w[2] == 0 and w[3] == pytest.approx(0.91) for w in result["wrong"])
    assert result["wrong_seen"].shape == (len(result["wrong"]), 28, 28)
    again = canvas_accuracy(shipped_classifier(), images, labels, style="brush", keep_wrong=True)
    assert again["wrong_seen"].shape == (len(again["wrong"]), 28, 28)  # none wrong keeps the shape
    first = brush_redraw(images[:1], torch.Generator().manual_seed(0))[0].numpy()
    assert torch.allclose(result["wrong_seen"][0], torch.as_tensor(canvas_to_mnist(first)))  # digit 0 is a 7
    path = tmp_path / "mistakes.png"
    mistakes_figure(images, result, path, "test")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no wrong digits"):
        mistakes_figure(images, {"wrong": [], "wrong_seen": torch.zeros(0, 28, 28)}, path, "test")


def test_miss_rates_follow_the_choice_the_misses_follow():
    """Misses made to happen on the smallest third of one value: its rates read 100/0/0; an unrelated value's
    thirds hold the same misses spread out; a value of two levels gives two ranges, ties kept together."""
    n = 300
    width = torch.arange(n, dtype=torch.float)
    missed = width < 100
    shuffled = width[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    level = (torch.arange(n) % 2).float()
    rows = miss_rates({"width": width, "other": shuffled, "level": level}, missed)
    by = {name: [r for r in rows if r["draw"] == name] for name in ("width", "other", "level")}
    assert [(r["from"], r["to"], r["digits"], r["wrong"]) for r in by["width"]] == [
        (0, 99, 100, 100), (100, 199, 100, 0), (200, 299, 100, 0)]
    assert by["width"][0]["low"] > 0.95 and by["width"][1]["high"] < 0.05
    assert sum(r["wrong"] for r in by["other"]) == 100 and all(20 < r["wrong"] < 50 for r in by["other"])
    assert [(r["from"], r["to"], r["digits"]) for r in by["level"]] == [(0, 0, 150), (1, 1, 150)]
    assert all(r["low"] <= r["rate"] <= r["high"] for r in rows)
    # both cuts fall on the middle level (its values at the 1/3 and 2/3 quantiles): it opens the upper range
    three = torch.tensor([0.0] * 3 + [1.0] * 4 + [2.0] * 3)
    rows = miss_rates({"three": three}, three == 0)
    assert [(r["from"], r["to"], r["digits"], r["wrong"]) for r in rows] == [(0, 0, 3, 3), (1, 2, 7, 0)]


def test_hole_rates_split_the_misses_by_the_redraws_loops():
    changed = torch.tensor([-1, 0, 0, 0, 2, 1])
    missed = torch.tensor([True, False, True, False, True, True])
    rows = {row["holes"]: row for row in hole_rates(changed, missed)}
    assert [(r["digits"], r["wrong"]) for r in rows.values()] == [(1, 1), (3, 1), (2, 2)]
    assert rows["kept"]["rate"] == pytest.approx(1 / 3) and rows["kept"]["low"] < 1 / 3 < rows["kept"]["high"]
    fewer = hole_rates(torch.zeros(3, dtype=torch.long), missed[:3])[0]  # no redraw lost a loop
    assert (fewer["digits"], fewer["rate"], fewer["low"], fewer["high"]) == (0, 0.0, 0.0, 1.0)


def test_canvas_accuracy_counts_its_misses_by_the_redraws_random_choices_and_holes(mnist):
    """Over several batches, each range of each random choice, and each way a redraw keeps or changes its digit's
    holes, holds the misses of exactly its digits (a stand-in that answers 0 misses every digit that is not a 0)."""
    images, labels = mnist.test.images[:300], mnist.test.labels[:300]
    result = canvas_accuracy(AlwaysZero(), images, labels, seed=5, batch_size=100, style="brush")
    generator = torch.Generator().manual_seed(5)
    draws = [described_draws("brush", brush_draws(100, generator)) for _ in range(3)]
    draws = {name: torch.cat([d[name] for d in draws]) for name in draws[0]}
    assert {r["draw"] for r in result["by_draw"]} == set(draws)
    for row in result["by_draw"]:
        value = draws[row["draw"]].double()
        inside = (value >= row["from"]) & (value <= row["to"])
        assert row["digits"] == int(inside.sum()) and row["wrong"] == int((labels[inside] != 0).sum())
    width, longer = draws["brush width (canvas px)"], draws["longer side (canvas px)"]
    assert BRUSH_WIDTHS[0] <= width.min() and width.max() <= BRUSH_WIDTHS[1]
    assert DIGIT_SIDE[0] * CANVAS_SIDE <= longer.min() and longer.max() <= DIGIT_SIDE[1] * CANVAS_SIDE
    assert draws["tilt (degrees)"].abs().max() <= 10
    generator = torch.Generator().manual_seed(5)
    seen = torch.stack([torch.as_tensor(canvas_to_mnist(canvas)) for start in range(0, 300, 100)
                        for canvas in brush_canvases(images[start:start + 100], brush_draws(100, generator)).numpy()])
    changed = holes(seen) - holes(images.float().div(255.0))
    wrong = labels != 0
    rows = {row["holes"]: row for row in result["by_holes"]}
    for name, inside in (("fewer", changed < 0), ("kept", changed == 0), ("more", changed > 0)):
        assert (rows[name]["digits"], rows[name]["wrong"]) == (int(inside.sum()), int(wrong[inside].sum()))
    assert 0 < rows["fewer"]["digits"] < rows["kept"]["digits"]  # real redraws: most keep their holes, some lose one
    pen = canvas_accuracy(AlwaysZero(), images[:40], labels[:40], seed=5)
    assert {r["draw"] for r in pen["by_draw"]} == {"ink level", "pen steps (1/4 px)", "longer side (canvas px)"}


def test_the_redraws_random_choices_keep_their_order():
    """The published figures were measured with these uniforms in these places: a reordering redraws other canvases
    under the same seed, so it must show here."""
    rand = torch.rand(7, 5, generator=torch.Generator().manual_seed(3))
    brush = brush_draws(7, torch.Generator().manual_seed(3))
    assert torch.equal(brush["width"], BRUSH_WIDTHS[0] + rand[:, 0] * (BRUSH_WIDTHS[1] - BRUSH_WIDTHS[0]))
    assert torch.equal(brush["longer"], DIGIT_SIDE[0] + rand[:, 1] * (DIGIT_SIDE[1] - DIGIT_SIDE[0]))
    assert torch.equal(brush["tilt"], (rand[:, 2] * 2 - 1) * math.radians(TILT))
    assert torch.equal(brush["place"], rand[:, 3:5])
    rand = torch.rand(7, 6, generator=torch.Generator().manual_seed(3))
    pen = pen_draws(7, torch.Generator().manual_seed(3))
    assert torch.equal(pen["threshold"], THRESHOLDS[0] + rand[:, 0] * (THRESHOLDS[1] - THRESHOLDS[0]))
    steps = (PEN_STEPS[0] + rand[:, 1] * (PEN_STEPS[1] - PEN_STEPS[0] + 1)).floor().clamp(max=PEN_STEPS[1])
    assert torch.equal(pen["steps"], steps.long())
    assert torch.equal(pen["longer"], DIGIT_SIDE[0] + rand[:, 2] * (DIGIT_SIDE[1] - DIGIT_SIDE[0]))
    assert torch.equal(pen["place"], rand[:, 3:5])


def test_demo_accuracy_also_finds_the_digits_both_classifiers_miss(tmp_path):
    """The same classifier twice, on the same seeded redraws: both miss exactly the digits it misses."""
    from lab.__main__ import main
    shipped = shipped_classifier().folder
    report = tmp_path / "accuracy.json"
    assert main(["demo-accuracy", "--checkpoint", str(shipped), "--also", str(shipped), "--digits", "60",
                 "--style", "brush", "--seed", "3", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["also"]["both_wrong"] == [w[0] for w in result["wrong"]]
    assert result["also"]["accuracy"] == result["accuracy"]


def test_demo_accuracy_reads_the_digits_a_classifier_held_out(mnist, tmp_path, capsys):
    """--split val redraws the training digits the classifier never trained on (its data.val_size), so classifiers
    are chosen without the test set; a classifier that held none out, or other ones than the one beside it, is
    refused, and so is a --digits beyond the split."""
    from types import SimpleNamespace

    from lab.__main__ import main
    from lab.config import DataConfig
    from lab.demo.commands import held_out_split
    shipped = shipped_classifier()
    held = held_out_split([shipped], mnist)
    assert torch.equal(held.images, mnist.train.images[-5000:]) and torch.equal(held.labels, mnist.train.labels[-5000:])
    report = tmp_path / "val.json"
    assert main(["demo-accuracy", "--checkpoint", str(shipped.folder), "--split", "val", "--digits", "40",
                 "--style", "brush", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["split"] == "val" and result["digits"] == 40
    assert "40 MNIST val digits" in capsys.readouterr().out
    # beside itself: the same held-out digits, the same misses; each named by its index among the held-out digits
    assert main(["demo-accuracy", "--checkpoint", str(shipped.folder), "--also", str(shipped.folder), "--split", "val",
                 "--digits", "300", "--style", "brush", "--seed", "4", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["wrong"] and result["also"]["both_wrong"] == [w[0] for w in result["wrong"]]
    picked = sample_indices(5000, 300, 4)
    assert result["wrong_digits"] == [int(picked[w[0]]) for w in result["wrong"]]
    assert [int(held.labels[i]) for i in result["wrong_digits"]] == [w[1] for w in result["wrong"]]

    def run(folder: str, **data) -> SimpleNamespace:
        return SimpleNamespace(folder=Path(folder), config=SimpleNamespace(data=DataConfig(**data)))
    with pytest.raises(LabError, match="all-in.*data.val_size = 0.*--split test"):
        held_out_split([run("all-in")], mnist)
    with pytest.raises(LabError, match="fashion.*data.dataset = fashion_mnist"):
        held_out_split([run("fashion", dataset="fashion_mnist", val_size=5000)], mnist)
    with pytest.raises(LabError, match="other-split.*data.val_size = 1000 digits, the other 5000"):
        held_out_split([shipped, run("other-split", val_size=1000)], mnist)
    assert main(["demo-accuracy", "--checkpoint", str(shipped.folder), "--split", "val", "--digits", "6000"]) == 2
    assert "--digits: the val split has 5,000 digits" in capsys.readouterr().err
