"""Explore the latent space: a 2-D map of test digits' codes, a drawing placed on it, and any point of it decoded.

The shipped autoencoder's code has more than two numbers, so the map is the plane of its two principal directions
(PCA of the codes of the shipped test digits). A point of the map stands for many codes, so code() picks the one
the nearby digits suggest: the point on the plane, plus the mean of what the NEIGHBOURS nearest digits' codes hold
off the plane. (The plane alone decodes to blurs that are no digit for most of the map.) A latent-2 autoencoder
is drawn on its own two axes and decoded exactly. The map is drawn with Pillow (no plotting library in the Space),
so a pixel of the image maps to a point exactly, both ways.
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

SIDE = 480  # px: the map image is square
MARGIN = 28  # px between the image's edge and the plotted area: room for the axis names
PAD = 0.05  # share of the codes' range left empty around them
DOT = 3  # px: a test digit's dot radius
MARK = 9  # px: the radius of the drawing's and the click's markers
NEIGHBOURS = 8  # test digits nearest a clicked point whose codes fill in what the map's plane leaves out
# matplotlib's tab10, one colour per digit, as the report's latent maps
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass(frozen=True)
class LatentMap:
    mean: torch.Tensor  # (latent_dim,): the codes' mean, the map's origin
    axes: torch.Tensor  # (2, latent_dim): the map's two directions in latent space (orthonormal)
    low: np.ndarray  # (2,): the smallest x and y shown
    high: np.ndarray  # (2,): the largest x and y shown
    image: np.ndarray  # (SIDE, SIDE, 3) uint8: the dots of the test digits, without markers
    points: np.ndarray  # (N, 2): the test digits on the map
    off_plane: torch.Tensor  # (N, latent_dim): what each test digit's code holds off the map's plane

    def to_pixel(self, point: np.ndarray) -> tuple[float, float]:
        """A map point (x, y) -> its pixel (column, row) in the image; y grows upwards."""
        span = SIDE - 2 * MARGIN
        u = (np.asarray(point, float) - self.low) / (self.high - self.low)  # (2,) in [0, 1] inside the plot
        return MARGIN + u[0] * span, SIDE - MARGIN - u[1] * span

    def to_point(self, column: float, row: float) -> np.ndarray:
        """A pixel (column, row) of the image -> the map point (x, y) it shows."""
        span = SIDE - 2 * MARGIN
        u = np.array([(column - MARGIN) / span, (SIDE - MARGIN - row) / span])
        return self.low + u * (self.high - self.low)

    def code(self, point: np.ndarray) -> torch.Tensor:
        """A map point (x, y) -> a latent code (latent_dim,) that lies on it: the plane's point plus the mean
        off-plane part of the nearest test digits' codes (zero for a latent-2 map)."""
        nearest = np.argsort(((self.points - np.asarray(point)) ** 2).sum(1))[:NEIGHBOURS]
        on_plane = self.mean + torch.as_tensor(np.asarray(point), dtype=torch.float32) @ self.axes
        return on_plane + self.off_plane[torch.as_tensor(nearest)].mean(0)

    def place(self, code: torch.Tensor) -> np.ndarray:
        """A latent code (latent_dim,) -> its point (x, y) on the map (its projection onto the map's plane)."""
        return ((code.float().cpu() - self.mean) @ self.axes.T).numpy()


def build_map(autoencoder, images: torch.Tensor, labels: torch.Tensor) -> LatentMap:
    """Test digits (N, 28, 28) uint8 and their labels -> the map of their codes under the autoencoder."""
    codes = autoencoder.encode(images.float() / 255.0).float().cpu()  # (N, latent_dim)
    mean = codes.mean(0)
    if codes.shape[1] == 2:
        axes = torch.eye(2)  # a latent-2 code is its own map
    else:
        _, _, vh = torch.linalg.svd(codes - mean, full_matrices=False)
        axes = vh[:2]  # (2, latent_dim): the two directions of largest variance
    on_plane = (codes - mean) @ axes.T  # (N, 2)
    off_plane = codes - mean - on_plane @ axes  # (N, latent_dim), orthogonal to the plane
    points = on_plane.numpy()
    low, high = points.min(0), points.max(0)
    low, high = low - PAD * (high - low), high + PAD * (high - low)
    blank = LatentMap(mean, axes, low, high, np.zeros((SIDE, SIDE, 3), np.uint8), points, off_plane)
    return LatentMap(mean, axes, low, high, _draw(blank, points, labels.numpy(), codes.shape[1]), points, off_plane)


def _draw(latent_map: LatentMap, points: np.ndarray, labels: np.ndarray, latent_dim: int) -> np.ndarray:
    """The dots, coloured by digit, each digit's name at its dots' centre, and the axis names."""
    image = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([MARGIN, MARGIN, SIDE - MARGIN, SIDE - MARGIN], outline="#999999")
    for point, label in zip(points, labels):
        x, y = latent_map.to_pixel(point)
        draw.ellipse([x - DOT, y - DOT, x + DOT, y + DOT], fill=COLOURS[label])
    font = ImageFont.load_default(size=30)
    for digit in np.unique(labels):  # the digit's name where its dots gather (their median), outlined to read
        x, y = latent_map.to_pixel(np.median(points[labels == digit], 0))
        draw.text((x, y), str(digit), fill=COLOURS[digit], font=font, anchor="mm", stroke_width=3,
                  stroke_fill="black")
    small = ImageFont.load_default(size=15)
    names = ("latent 1", "latent 2") if latent_dim == 2 else ("principal direction 1", "principal direction 2")
    draw.text((SIDE / 2, SIDE - MARGIN / 2), names[0], fill="#333333", font=small, anchor="mm")
    side = Image.new("RGB", (SIDE - 2 * MARGIN, MARGIN), "white")  # the y axis's name, written then turned
    ImageDraw.Draw(side).text(((SIDE - 2 * MARGIN) / 2, MARGIN / 2), names[1], fill="#333333", font=small,
                              anchor="mm")
    image.paste(side.rotate(90, expand=True), (0, MARGIN))
    return np.asarray(image)


def with_markers(latent_map: LatentMap, drawing: np.ndarray | None = None, click: np.ndarray | None = None,
                 ) -> np.ndarray:
    """The map with the user's drawing (a black ring) and the clicked point (a black cross) marked."""
    image = Image.fromarray(latent_map.image)
    draw = ImageDraw.Draw(image)
    if drawing is not None:
        x, y = latent_map.to_pixel(drawing)
        draw.ellipse([x - MARK, y - MARK, x + MARK, y + MARK], outline="black", width=4)
        draw.text((x + MARK + 2, y), "your drawing", fill="black", font=ImageFont.load_default(size=15),
                  anchor="lm", stroke_width=2, stroke_fill="white")
    if click is not None:
        x, y = latent_map.to_pixel(click)
        draw.line([x - MARK, y - MARK, x + MARK, y + MARK], fill="black", width=4)
        draw.line([x - MARK, y + MARK, x + MARK, y - MARK], fill="black", width=4)
    return np.asarray(image)
