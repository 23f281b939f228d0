"""Digits as a mouse draws them: each digit's skeleton redrawn with a round brush of one constant width.

skeletons thins digits to 1-pixel centre lines (Zhang-Suen, vectorised over a batch, at twice MNIST's resolution),
after hollowing out what MNIST filled in (the loop of a bold 9 inked solid), so that it is drawn as a loop again; a
faint digit is taken at a lower ink level (ink_masks), so that it is drawn whole, not as the dots its darkest ink is;
stroke_points samples points densely along those lines; draw_strokes inks every pixel by its distance to the nearest
point, a round brush with an anti-aliased edge, so a stroke is equally wide everywhere and its ends are round.
brush_digits is the training augmentation: skeletons redrawn at a random width, sized and centred as MNIST's digits
were (the longer side 20 px, the centre of mass at the middle), which is what the demo's canvas preprocessing makes
of a drawing. Nothing here knows the demo: lab/demo/redraw.py draws the same strokes on the demo's canvas.
"""

import numpy as np
import torch
import torch.nn.functional as F

SKELETON_SCALE = 2  # skeletons are thinned at 2x MNIST's resolution (56 px), so centre lines sit to half a pixel
INK_LEVELS = (0.5, 0.35, 0.2)  # ink levels of the upscaled digit that count as stroke before thinning: the highest
# that leaves the digit in no more pieces than its faint ink (FAINT) is, so a faint digit is not broken into dots
INK_LEVEL = INK_LEVELS[0]  # the level for most digits
FAINT = 0.1  # ink above this level is part of the digit's drawing: its pieces are the pieces the stroke should have
HOLLOW = 1.5  # ink deeper than HOLLOW x the digit's typical stroke half-width (+ 1 px) is a filled loop: cut out
MAX_DEPTH = 24  # depths are counted to this many 56-px pixels from the edge: more than any MNIST stroke or blob
LINK_STEPS = 4  # points per link between neighbouring skeleton pixels, a quarter of a skeleton pixel apart
TRAIN_LINK_STEPS = 2  # in training, at 28 px, half a skeleton pixel apart (a quarter of an MNIST pixel) is enough
FRAME, BOX, CENTRE = 28, 20, 14  # MNIST: 28 px images, digits sized to a 20 px box, centre of mass at index 14
STROKE_WIDTHS = (1.2, 5.0)  # brush widths in 28-px pixels, uniform: from a fine pen to a fat finger on a 20 px digit
MIN_POINTS = 2  # a skeleton with fewer points (a dot) is no drawing: the digit is kept as it was
NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2..P9, clockwise from north
LINKS = ((0, 1), (1, 0), (1, 1), (1, -1))  # each pair of 8-neighbours counted once


def _neighbours(x: torch.Tensor) -> list[torch.Tensor]:
    """The eight neighbours P2..P9 of every pixel of x (N, H, W) uint8, zero outside the image."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return [padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in NEIGHBOURS]


def _removable(step: int) -> torch.Tensor:
    """Zhang-Suen's rule as a table: (256,) bool, True where a pixel whose neighbours P2..P9 are the bits of the
    index (P2 the lowest) may be removed in sub-step step (0: the south-east side, 1: the north-west side)."""
    table = torch.zeros(256, dtype=torch.bool)
    for code in range(256):
        p2, p3, p4, p5, p6, p7, p8, p9 = ring = [(code >> bit) & 1 for bit in range(8)]
        count = sum(ring)  # inked neighbours, B(P1)
        turns = sum(a == 0 and b == 1 for a, b in zip(ring, ring[1:] + ring[:1]))  # 0 -> 1 round the ring, A(P1)
        side = (p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0) if step == 0 else (p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0)
        table[code] = 2 <= count <= 6 and turns == 1 and side
    return table


REMOVABLE = (_removable(0), _removable(1))


def thin(mask: torch.Tensor, max_rounds: int = 64) -> torch.Tensor:
    """Zhang-Suen thinning of binary images (N, H, W) bool -> their skeletons, 1 pixel wide, same shape."""
    x = mask.to(torch.uint8)
    active = torch.arange(len(x))  # the images still thinning: most are done in a few rounds, some take many
    for _ in range(max_rounds):
        changed = torch.zeros(len(active), dtype=torch.bool)
        part = x[active]
        for table in REMOVABLE:
            code = torch.zeros_like(part)  # each pixel's neighbourhood as 8 bits, P2 the lowest
            for bit, neighbour in enumerate(_neighbours(part)):
                code |= neighbour << bit
            remove = (part == 1) & table[code.long()]
            part = part.masked_fill(remove, 0)
            changed |= remove.flatten(1).any(1)
        x[active] = part
        active = active[changed]
        if not len(active):
            break
    return x.bool()


BATCH_APART = np.zeros((3, 3, 3), dtype=bool)
BATCH_APART[1] = True  # 8-connected within an image, never across images of a batch
PAPER_APART = np.zeros((3, 3, 3), dtype=bool)
PAPER_APART[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # 4-connected: paper between two diagonal ink pixels is cut
MIN_HOLE = 3  # pixels: a smaller hole in an MNIST digit is mostly a pixel or two inside a stroke fading under the ink
# level, not a loop


def pieces(mask: torch.Tensor) -> torch.Tensor:
    """The number of 8-connected pieces of each binary image (N, H, W) bool -> (N,) long."""
    from scipy import ndimage  # here, not at the top: the demo's Space imports this module and has no scipy
    if not len(mask):
        return torch.zeros(0, dtype=torch.long)
    label, _ = ndimage.label(mask.cpu().numpy(), structure=BATCH_APART)
    return torch.from_numpy(np.bincount(_image_of(label)[1:], minlength=len(label))).long()


def _image_of(label: np.ndarray) -> np.ndarray:
    """For ndimage.label's labels of a batch (N, H, W) labelled apart per image: each label's image, (labels + 1,)
    int64 (label 0, the background, gets 0)."""
    from scipy import ndimage
    image = np.zeros(label.max() + 1, dtype=np.int64)
    for found, box in enumerate(ndimage.find_objects(label), start=1):
        image[found] = box[0].start
    return image


def holes(ink: torch.Tensor, level: float = INK_LEVEL, min_area: int = MIN_HOLE) -> torch.Tensor:
    """The loops of digits (N, H, W) in [0, 1], each counted by the hole it closes in: (N,) long, 1 for a 0, 2 for
    an 8, none for a 1. A hole is a piece of paper (ink at or under level, 4-connected, as 8-connected ink leaves
    it) of at least min_area pixels that does not reach the image's edge."""
    from scipy import ndimage  # here, not at the top: the demo's Space imports this module and has no scipy
    if not len(ink):
        return torch.zeros(0, dtype=torch.long)
    paper = F.pad((ink <= level).to(torch.uint8), (1, 1, 1, 1), value=1).cpu().numpy()  # a frame joins the edge's
    label, _ = ndimage.label(paper, structure=PAPER_APART)
    hole = np.bincount(label.ravel()) >= min_area
    hole[0] = False  # ink
    hole[label[:, 0, 0]] = False  # each image's frame and all paper that reaches it
    return torch.from_numpy(np.bincount(_image_of(label)[hole], minlength=len(ink))).long()


def ink_masks(x: torch.Tensor) -> torch.Tensor:
    """Upscaled digits (N, H, W) in [0, 1] -> their strokes (N, H, W) bool: ink above the highest of INK_LEVELS
    that keeps each digit in no more pieces than its ink above FAINT, and in at least one (the lowest level
    otherwise). A faint speck apart from the digit may go, as it did at one level."""
    whole = pieces(x > FAINT)
    chosen = x > INK_LEVELS[-1]
    todo = torch.arange(len(x))  # the digits whose level is still open: after the first level, a few in a hundred
    for level in INK_LEVELS[:-1]:
        mask = x[todo] > level
        count = pieces(mask)
        fits = (count <= whole[todo]) & (count > 0)
        chosen[todo[fits]] = mask[fits]
        todo = todo[~fits]
    return chosen


def depth(mask: torch.Tensor, rounds: int = MAX_DEPTH) -> torch.Tensor:
    """Each inked pixel's distance to the paper, in pixels (chessboard, 1 at the edge; 0 off the ink), of binary
    images (N, H, W) bool -> (N, H, W) float: the times a 3x3 erosion keeps it, counted up to rounds."""
    x = mask.float().unsqueeze(1)
    found = torch.zeros_like(x)
    for _ in range(rounds):
        found += x
        x = -F.max_pool2d(-x, 3, stride=1, padding=1)
        if not x.any():
            break
    return found[:, 0]


def hollow(mask: torch.Tensor) -> torch.Tensor:
    """Binary digits (N, H, W) bool with their filled loops cut open: ink deeper than HOLLOW x the digit's stroke
    half-width (+ 1 px) goes. A stroke's half-width is read off its ridge (the pixels at least as deep as their eight
    neighbours), the median over the digit; a stroke as wide as that is never cut, a solid blob keeps a ring.
    """
    deep = depth(mask)
    ridge = mask & (deep >= F.max_pool2d(deep.unsqueeze(1), 3, stride=1, padding=1)[:, 0])
    half = torch.where(ridge, deep, torch.tensor(float("nan"))).flatten(1).nanmedian(1).values.nan_to_num(1.0)
    return mask & (deep <= HOLLOW * half.view(-1, 1, 1) + 1)


def upscale(images: torch.Tensor) -> torch.Tensor:
    """MNIST digits (N, 28, 28) uint8 -> (N, 56, 56) float in [0, 1], bilinear at SKELETON_SCALE x: what is thinned."""
    x = images.float().div(255.0).unsqueeze(1)
    return F.interpolate(x, scale_factor=SKELETON_SCALE, mode="bilinear", align_corners=False)[:, 0]


def skeletons(images: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """MNIST digits (N, 28, 28) uint8 -> skeletons (N, 56, 56) bool, thinned at SKELETON_SCALE x the resolution:
    the ink of each (ink_masks, at a level that keeps it whole), its filled loops hollowed (hollow), then thinned."""
    side = FRAME * SKELETON_SCALE
    parts = [images.new_zeros((0, side, side), dtype=torch.bool)]
    for part in images.split(chunk):
        parts.append(thin(hollow(ink_masks(upscale(part)))))
    return torch.cat(parts)


def stroke_points(skeleton: torch.Tensor, link_steps: int = LINK_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Points along the lines of skeletons (N, 56, 56) bool: their digit's index (M,) and (y, x) (M, 2) float.

    Coordinates are in MNIST pixels with pixel i covering [i, i + 1); between two neighbouring skeleton pixels
    link_steps - 1 more points fill the link: a brush wider than their spacing draws an unbroken, even line.
    """
    found = [skeleton.nonzero().float()]  # (m, 3): digit, row, column
    ring = dict(zip(NEIGHBOURS, _neighbours(skeleton.to(torch.uint8))))
    for dy, dx in LINKS:
        pairs = (skeleton & (ring[dy, dx] == 1)).nonzero().float()  # (l, 3): links from each pixel to (dy, dx)
        for step in range(1, link_steps):
            found.append(pairs + torch.tensor([0.0, dy * step / link_steps, dx * step / link_steps]))
    points = torch.cat(found)
    return points[:, 0].long(), (points[:, 1:] + 0.5) / SKELETON_SCALE  # pixel centres, in 28-px units


def draw_strokes(index: torch.Tensor, points: torch.Tensor, theta: torch.Tensor, radius: torch.Tensor,
                 size: int) -> torch.Tensor:
    """A round brush of radius[n] along the points of digit n, moved by theta[n]: ink images (N, 1, size, size).

    theta (N, 2, 3) maps a point's (y, x) to output pixels (y, x) = theta[:, :, :2] @ point + theta[:, :, 2], pixel
    i covering [i, i + 1); radius (N,) is in output pixels. A pixel's ink is how far the brush's edge passes beyond
    its centre, clamped to [0, 1]: the edge is anti-aliased and the width the same everywhere.
    """
    count = len(theta)
    placed = torch.einsum("mij,mj->mi", theta[index, :, :2], points) + theta[index, :, 2]  # (M, 2) output pixels
    reach = int(radius.max().item() + 0.5) + 1 if count else 0  # pixels further from every point get no ink
    steps = torch.arange(-reach, reach + 1)
    window = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), -1).view(1, -1, 2)  # (1, K, 2)
    near = placed.floor().long().unsqueeze(1) + window  # (M, K, 2): the pixels around each point
    distance = (near + 0.5 - placed.unsqueeze(1)).norm(dim=2)  # (M, K) from those pixels' centres
    outside = ((near < 0) | (near >= size)).any(2)
    flat = (index.unsqueeze(1) * size + near[..., 0]) * size + near[..., 1]  # (M, K) into (N * size * size)
    flat = flat.masked_fill(outside, count * size * size)  # off the image: into one spare slot past the end
    nearest = torch.full((count * size * size + 1,), float(size + reach))  # beyond every brush
    nearest.scatter_reduce_(0, flat.view(-1), distance.view(-1), "amin")  # each pixel's distance to the line
    nearest = nearest[:-1]
    ink = (radius.view(-1, 1) + 0.5 - nearest.view(count, -1)).clamp(0, 1)
    return ink.view(count, 1, size, size)


def extent(index: torch.Tensor, points: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per digit, the lowest and highest (y, x) of its points: two (N, 2) tensors."""
    spread = index.unsqueeze(1).expand(-1, 2)
    low = torch.full((count, 2), float("inf")).scatter_reduce_(0, spread, points, "amin")
    high = torch.full((count, 2), float("-inf")).scatter_reduce_(0, spread, points, "amax")
    return low, high


def brush_digits(skeleton: torch.Tensor, generator: torch.Generator,
                 widths: tuple[float, float] = STROKE_WIDTHS) -> torch.Tensor:
    """Skeletons (N, 56, 56) bool -> digits (N, 1, 28, 28) in [0, 1], redrawn with a round brush of random width.

    Each is sized as MNIST's (the stroke's longer side 20 px) with its centre of mass at the image's middle. A
    digit whose skeleton is a dot comes back empty (all zero); the caller keeps the original there.
    """
    count = len(skeleton)
    rand = torch.rand(count, generator=generator, device=generator.device).cpu()
    width = widths[0] + rand * (widths[1] - widths[0])  # (N,) brush widths in 28-px pixels
    index, points = stroke_points(skeleton, TRAIN_LINK_STEPS)
    low, high = extent(index, points, count)
    longer = (high - low).amax(1).clamp(min=1.0)  # (N,) the skeleton's longer side
    zoom = (BOX - width) / longer  # the stroke adds half a width at each end
    sums = torch.zeros(count, 2).index_add_(0, index, points)
    mass = torch.bincount(index, minlength=count).float().unsqueeze(1)
    centre = sums / mass.clamp(min=1)  # (N, 2): points lie evenly along the lines, so this is the ink's centre
    shift = (CENTRE + 0.5) - zoom.unsqueeze(1) * centre  # the centre of mass to pixel 14's centre
    theta = torch.cat([torch.diag_embed(zoom.unsqueeze(1).expand(count, 2)), shift.unsqueeze(2)], 2)  # (N, 2, 3)
    ink = draw_strokes(index, points, theta, width / 2, FRAME)  # (N, 1, 28, 28)
    return ink * (mass >= MIN_POINTS).view(count, 1, 1, 1)
