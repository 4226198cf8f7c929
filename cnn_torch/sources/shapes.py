"""The offline ``shapes`` data set: ten classes of shapes in cluttered, CIFAR-like scenes.

It exists so that a learner without a network (CIFAR-10 cannot be downloaded) still sees
what the lesson is about: a model that does better on its training images than on new ones.
A data set a small CNN solves perfectly teaches nothing about overfitting, so these images
are hard on purpose, in the ways photographs are hard:

- the object (one of ``SHAPE_CLASSES``) has a random size, position, rotation and aspect
  ratio, and may be partly cut off by the border;
- it is a plain colour or a texture (stripes, checks, spots, a gradient), sometimes with
  little contrast against what is behind it;
- it stands on a blotchy, often textured background among smaller distractor shapes of other
  classes, and a bar or blob may hide part of it;
- two images in three hold a rival: an object of another class about as large, behind or in
  front of the object. Like a CIFAR-10 photo of a cat next to a dog, such an image is
  ambiguous, and a model can only learn its label by heart;
- colour is a hint, as in CIFAR-10 (green frogs, ships on blue water): some objects and some
  backgrounds have their class's usual colour, most have random ones;
- each image then gets its own lighting (brightness, contrast, colour cast), blur and noise.

Each image draws a difficulty that scales most of these nuisances together, so most images
are easy to name and a tail is very hard (see the constants below). A person names the
shape in most images; the models must learn shapes while ignoring everything else.

With the default 4,000 training images (and 800 test images), the lesson's run
(``cifar_model_small``, 10 epochs, batch 32, Adam) ends at about 0.68-0.71 validation accuracy
and 0.82-0.86 training accuracy, and its validation loss is lowest around epoch 4-7 and then
rises: the overfitting CIFAR-10 shows (there 0.67 and 0.74 after 10 epochs), a bit stronger.

Everything is drawn with vectorised torch operations from a seeded generator, 256 images at a
time: the same seed gives the same bytes, and the default set takes one or two seconds to
make on one CPU core.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnn_torch.errors import UserError
from cnn_torch.sources.lesson_data import LessonData

SHAPE_CLASSES = [
    "circle", "square", "triangle", "plus", "ring",
    "star", "crescent", "heart", "arrow", "hourglass",
]  # fmt: skip

DEFAULT_TRAIN_SIZE = 4000

# Images rendered at a time: bounds the float32 working memory (about 10 MB at 32x32). On one
# CPU thread 256 was faster than 128, 512 or 1024 (1.3 s, against 1.9 s for 1024, for 6,000).
_CHUNK = 256

# Each image gets a difficulty from 0 to 1, and every nuisance grows with it: at 0 a large,
# plain, upright object; at 1 a small, turned, stretched, textured, faint object among
# distractors, half hidden, blurred and noisy. Difficulty is uniform ** 4: most images are
# easy-ish (60% below 0.13), a tail is very hard (10% above 0.66). Pairs below are the values
# at difficulty 0 and at difficulty 1.
_HARD_POWER = 4.0
_RADIUS = (0.40, 0.20)  # the object's radius, a fraction of the image side
_ROTATION = (0.15, 0.6)  # largest turn, radians
_ASPECT = (0.1, 0.35)  # largest |log(width / height)|
_SPREAD = (0.3, 1.0)  # how far off centre the object may sit (1: up to a third cut off)
_CONTRAST = (0.35, 0.08)  # least mean colour difference between the object and what it covers
_SOLID_ODDS = (0.85, 0.25)  # chance of a plain fill; otherwise a texture
_DISTRACTOR_ODDS = (0.7, 0.45, 0.25)  # per slot at difficulty 0.5 (scaled by 0.3 + 1.4 * difficulty)
_OCCLUDER_ODDS = (0.05, 0.75)
_BLUR = (0.0, 1.0)
_NOISE = (0.02, 0.1)  # standard deviation of the pixel noise, at most
# Independent of the difficulty:
_BG_TEXTURE = 0.5  # strongest background texture
_RIVAL_ODDS = 0.65  # chance of a rival: a second object of another class, about as large
_RIVAL_SIZE = (0.85, 1.1)  # its radius, a fraction of the object's
_RIVAL_FRONT = 0.5  # chance that the rival stands in front of the object, rather than behind
_USUAL_COLOUR_ODDS = 0.4  # chance that an object has its class's usual colour
_USUAL_SCENE_ODDS = 0.4  # chance that the background has the class's usual colour
_GAIN = (0.75, 1.2)  # brightness
_LIGHT_CONTRAST = (0.8, 1.2)
# Usual colours of the objects of each class, and of their scenes (another colour, a bit duller).
_USUAL_COLOURS = torch.tensor([
    [0.9, 0.2, 0.2], [0.95, 0.6, 0.1], [0.9, 0.9, 0.2], [0.5, 0.85, 0.2], [0.1, 0.6, 0.3],
    [0.2, 0.85, 0.85], [0.2, 0.45, 0.95], [0.45, 0.2, 0.8], [0.9, 0.3, 0.8], [0.55, 0.35, 0.2],
])  # fmt: skip
_USUAL_SCENES = _USUAL_COLOURS[[6, 4, 9, 1, 7, 2, 0, 5, 3, 8]] * 0.8 + 0.1


def make_shapes(
    n_train: int = DEFAULT_TRAIN_SIZE,
    n_test: int | None = None,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
) -> LessonData:
    """The shapes data set as a :class:`cnn_torch.sources.lesson_data.LessonData`.

    ``n_train`` training images and ``n_test`` test images (default ``n_train // 5``; 0 for
    no test split), uint8 NCHW, with int64 labels indexing ``SHAPE_CLASSES``. Classes are
    balanced (counts differ by at most one) and shuffled. The same ``seed`` gives the same
    images; the test split comes from a seed derived from ``seed``, so it holds different
    images from the training split.
    """
    if n_train < 1:
        raise UserError(f"the shapes data set needs at least 1 training image, got {n_train}: pass a positive --limit")
    n_test = n_train // 5 if n_test is None else n_test
    height, width = int(image_size[0]), int(image_size[1])
    if min(height, width) < 8:
        raise UserError(f"shapes images must be at least 8x8 pixels, got {height}x{width}: pick a larger image size")
    # Two independent seeds from one: the test split must not repeat the training images.
    train_seed, test_seed = torch.randint(0, 2**62, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
    train_images, train_labels = _render_shapes(n_train, train_seed, (height, width))
    test_images = test_labels = None
    if n_test > 0:
        test_images, test_labels = _render_shapes(n_test, test_seed, (height, width))
    return LessonData(
        train_images, train_labels, test_images, test_labels, list(SHAPE_CLASSES), "shapes",
        split_sources={"train": f"generated from seed {seed}", "test": f"generated from seed {seed}"},
    )  # fmt: skip


def _render_shapes(n: int, seed: int, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % len(SHAPE_CLASSES))[torch.randperm(n, generator=generator)]
    images = torch.empty((n, 3, *image_size), dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(start + _CHUNK, n))
        images[part] = _render_chunk(labels[part], generator, image_size)
    return images, labels


class _Canvas:
    """Pixel grids and a seeded sampler for one chunk of ``n`` images."""

    def __init__(self, n: int, generator: torch.Generator, image_size: tuple[int, int]):
        self.n = n
        self.generator = generator
        self.height, self.width = image_size
        self.size = min(image_size)  # lengths below are fractions of this, so any image size works
        self.xs = torch.arange(self.width, dtype=torch.float32) + 0.5
        self.ys = torch.arange(self.height, dtype=torch.float32) + 0.5

    def uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(self.n, *shape, generator=self.generator)

    def chance(self, p: float | torch.Tensor) -> torch.Tensor:
        return torch.rand(self.n, generator=self.generator) < p

    def local(self, cx, cy, radius, angle, aspect) -> tuple[torch.Tensor, torch.Tensor]:
        """Each pixel in a shape's own frame: rotated, stretched, in units of its radius. (n, H, W) each."""
        dx = (self.xs[None, None, :] - cx[:, None, None]) / radius[:, None, None]
        dy = (self.ys[None, :, None] - cy[:, None, None]) / radius[:, None, None]
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        stretch = aspect.sqrt()[:, None, None]
        return (cos * dx + sin * dy) / stretch, (cos * dy - sin * dx) * stretch


def _render_chunk(labels: torch.Tensor, generator: torch.Generator, image_size: tuple[int, int]) -> torch.Tensor:
    canvas = _Canvas(len(labels), generator, image_size)
    n, size = canvas.n, canvas.size
    hard = canvas.uniform(0.0, 1.0) ** _HARD_POWER
    image = _background(canvas, labels)

    # Distractors: smaller shapes of other classes, anywhere (often cut off by the border),
    # some faint, drawn first so the object can cover them.
    for odds in _DISTRACTOR_ODDS:
        classes = (labels + torch.randint(1, len(SHAPE_CLASSES), (n,), generator=generator)) % len(SHAPE_CLASSES)
        radius = (0.1 + 0.12 * hard * canvas.uniform(0.0, 1.0)) * size
        cx, cy = canvas.uniform(-0.05, 1.05) * canvas.width, canvas.uniform(-0.05, 1.05) * canvas.height
        opacity = canvas.uniform(0.3, 1.0) * (0.5 + 0.5 * hard) * canvas.chance(odds * (0.3 + 1.4 * hard))
        _draw_shape(canvas, image, classes, cx, cy, radius, opacity, hard)

    # The object: its centre may sit so close to the border that a third of it is cut off.
    radius = _lerp(_RADIUS, hard) * canvas.uniform(0.9, 1.1) * size
    spread = _lerp(_SPREAD, hard)
    cx = canvas.width / 2 + canvas.uniform(-1.0, 1.0) * spread * (canvas.width / 2 - 0.65 * radius)
    cy = canvas.height / 2 + canvas.uniform(-1.0, 1.0) * spread * (canvas.height / 2 - 0.65 * radius)

    # Often a rival: an object of another class, about as large, behind or in front of the
    # object. Such an image is ambiguous, like a CIFAR-10 photo of a cat next to a dog: a
    # model can only learn its label by heart, and that is what overfitting is.
    rivals = (labels + torch.randint(1, len(SHAPE_CLASSES), (n,), generator=generator)) % len(SHAPE_CLASSES)
    rx, ry = canvas.uniform(0.1, 0.9) * canvas.width, canvas.uniform(0.1, 0.9) * canvas.height
    rival_radius = radius * canvas.uniform(*_RIVAL_SIZE)
    present, front = canvas.chance(_RIVAL_ODDS), canvas.chance(_RIVAL_FRONT)
    _draw_shape(canvas, image, rivals, rx, ry, rival_radius, (present & ~front).float(), hard, object_of=rivals)
    _draw_shape(canvas, image, labels, cx, cy, radius, torch.ones(n), hard, object_of=labels)
    _draw_shape(canvas, image, rivals, rx, ry, rival_radius, (present & front).float(), hard, object_of=rivals)

    # An occluder: a bar or a blob over one side of the object, seldom its centre.
    direction = canvas.uniform(0.0, 2 * math.pi)
    offset = radius * canvas.uniform(0.55, 1.0)
    ox, oy = cx + offset * torch.cos(direction), cy + offset * torch.sin(direction)
    u, v = canvas.local(ox, oy, radius, direction + math.pi / 2, torch.ones(n))
    half_length, half_width = canvas.uniform(1.0, 2.5)[:, None, None], canvas.uniform(0.2, 0.45)[:, None, None]
    bar = torch.maximum(u.abs() - half_length, v.abs() - half_width)
    blob = torch.sqrt(u**2 + v**2) - canvas.uniform(0.35, 0.6)[:, None, None]
    distance = torch.where(canvas.chance(0.5)[:, None, None], bar, blob)
    occluded = canvas.chance(_lerp(_OCCLUDER_ODDS, hard)).float()
    _fill(canvas, image, distance * radius[:, None, None], u, v, occluded, hard)

    return _finish(canvas, image, hard)


def _lerp(ends: tuple[float, float], t: torch.Tensor) -> torch.Tensor:
    return ends[0] + (ends[1] - ends[0]) * t


def _background(canvas: _Canvas, labels: torch.Tensor) -> torch.Tensor:
    """Blotchy colour (a coarse random grid, smoothly upsampled), often overlaid with a texture."""
    n = canvas.n
    base = canvas.uniform(0.0, 1.0, 3)
    # Like CIFAR-10's ships on water and planes in the sky: a scene that suits the class, sometimes.
    usual = canvas.chance(_USUAL_SCENE_ODDS)
    base[usual] = (_USUAL_SCENES[labels] + canvas.uniform(-0.15, 0.15, 3)).clamp(0.0, 1.0)[usual]
    blotchiness = canvas.uniform(0.1, 0.45)[:, None, None, None]
    blotches = base[:, :, None, None] + blotchiness * canvas.uniform(-1.0, 1.0, 3, 3, 3)  # a 3x3 grid of colours
    image = F.interpolate(blotches, size=(canvas.height, canvas.width), mode="bicubic", align_corners=False)
    # A texture in world coordinates: a wall, a floor, a field of grass.
    u = (canvas.xs[None, None, :] / canvas.size).expand(n, canvas.height, canvas.width)
    v = (canvas.ys[None, :, None] / canvas.size).expand(n, canvas.height, canvas.width)
    pattern = _texture(canvas, u * 10, v * 10)
    colour = canvas.uniform(0.0, 1.0, 3)[:, :, None, None]
    strength = canvas.uniform(0.15, _BG_TEXTURE)[:, None, None, None] * canvas.chance(0.6)[:, None, None, None]
    return image + strength * pattern[:, None] * (colour - image)


def _draw_shape(canvas, image, classes, cx, cy, radius, opacity, hard, object_of=None) -> None:
    """Draw a shape of each image's class in ``classes``; ``object_of``: the labels, when it is the object."""
    n = canvas.n
    angle = canvas.uniform(-1.0, 1.0) * _lerp(_ROTATION, hard)
    aspect = torch.exp(canvas.uniform(-1.0, 1.0) * _lerp(_ASPECT, hard))  # width / height
    u, v = canvas.local(cx, cy, radius, angle, aspect)
    distance = torch.empty(n, canvas.height, canvas.width)
    for label, shape_fn in enumerate(_SHAPE_DISTANCES):
        rows = classes == label
        if rows.any():
            distance[rows] = shape_fn(u[rows], v[rows])
    _fill(canvas, image, distance * radius[:, None, None], u, v, opacity, hard, object_of)


def _fill(canvas, image, distance, u, v, opacity, hard, object_of=None) -> None:
    """Paint where ``distance`` (signed, in pixels) is negative, with a colour or a texture in the shape's frame."""
    coverage = ((0.5 - distance).clamp(0.0, 1.0) * opacity[:, None, None])[:, None]
    first, second = canvas.uniform(0.0, 1.0, 3), canvas.uniform(0.0, 1.0, 3)
    if object_of is not None:
        # Like CIFAR-10's green frogs and red fire trucks: some objects have their class's
        # usual colour, a hint the model picks up first (rivals have their own).
        usual = canvas.chance(_USUAL_COLOUR_ODDS)
        first[usual] = (_USUAL_COLOURS[object_of] + canvas.uniform(-0.12, 0.12, 3)).clamp(0.0, 1.0)[usual]
        # Move a colour too close to what the object covers (a hard image, but one a person
        # should still label) across the colour cube, away from it.
        area = coverage.sum(dim=(2, 3)).clamp_min(1e-6)
        behind = (image * coverage).sum(dim=(2, 3)) / area
        faint = ((first + second) / 2 - behind).abs().mean(dim=1) < _lerp(_CONTRAST, hard)
        first[faint] = (behind[faint] + 0.5) % 1.0
        second[faint] = (second[faint] + behind[faint] + 0.5) / 2 % 1.0
    pattern = _texture(canvas, u * 2.5, v * 2.5, _lerp(_SOLID_ODDS, hard))[:, None]
    paint = first[:, :, None, None] + pattern * (second - first)[:, :, None, None]
    image.mul_(1 - coverage).add_(paint * coverage)


# A texture is clamp(c0 + c1 * wave_a + c2 * wave_a * wave_b + c3 * a) with these (c0, c1, c2, c3):
_TEXTURES = torch.tensor([
    [0.5, 2.0, 0.0, 0.0],   # stripes
    [0.5, 0.0, 3.0, 0.0],   # checks
    [-1.2, 0.0, 3.0, 0.0],  # spots
    [0.5, 0.0, 0.0, 0.25],  # a gradient
    [0.0, 0.0, 0.0, 0.0],   # solid: no pattern
])  # fmt: skip


def _texture(canvas: _Canvas, u: torch.Tensor, v: torch.Tensor, solid_odds: float | torch.Tensor = 0.0) -> torch.Tensor:
    """A two-tone pattern in [0, 1] per image (zero for solid ones), at a random scale, angle and phase.

    One formula for every kind, with per-image coefficients: cheaper than drawing all kinds.
    """
    turn = canvas.uniform(0.0, math.pi)[:, None, None]
    scale = canvas.uniform(0.6, 1.6)[:, None, None]
    cos, sin = torch.cos(turn) * scale, torch.sin(turn) * scale
    a = cos * u + sin * v
    b = cos * v - sin * u
    wave_a = torch.sin(a * math.pi + canvas.uniform(0.0, 2 * math.pi)[:, None, None])
    wave_b = torch.sin(b * math.pi + canvas.uniform(0.0, 2 * math.pi)[:, None, None])
    kind = torch.randint(0, 4, (canvas.n,), generator=canvas.generator)
    kind[canvas.chance(solid_odds)] = 4
    c0, c1, c2, c3 = _TEXTURES[kind, :, None, None].unbind(1)
    pattern = (c1 + c2 * wave_b).mul_(wave_a)
    return pattern.add_(c0).addcmul_(a, c3 / scale).clamp_(0.0, 1.0)


def _finish(canvas: _Canvas, image: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Per-image lighting, blur and sensor noise; then uint8."""
    gain = canvas.uniform(*_GAIN)[:, None, None, None] * canvas.uniform(0.8, 1.2, 3)[:, :, None, None]
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    contrast = canvas.uniform(*_LIGHT_CONTRAST)[:, None, None, None]
    image = (mean + contrast * (image - mean)) * gain + canvas.uniform(-0.1, 0.1)[:, None, None, None]
    # Blur: a mix of the sharp image and a binomial blur (sigma of about one pixel).
    blurred = _blur(_blur(image, dim=3), dim=2)
    amount = (canvas.uniform(0.0, 1.0) * _lerp(_BLUR, hard))[:, None, None, None]
    image = image + amount * (blurred - image)
    noise = (canvas.uniform(0.5, 1.0) * _lerp(_NOISE, hard))[:, None, None, None]
    image += noise * torch.randn(image.shape, generator=canvas.generator)
    return (image.clamp(0.0, 1.0) * 255).round().to(torch.uint8)


def _blur(image: torch.Tensor, dim: int) -> torch.Tensor:
    """The binomial filter (1, 4, 6, 4, 1) / 16 along ``dim``, edges repeated.

    Shifted sums: a single-channel conv2d over thousands of small images is about 50x slower.
    """
    length = image.shape[dim]
    padded = torch.cat([image.narrow(dim, 0, 1)] * 2 + [image] + [image.narrow(dim, length - 1, 1)] * 2, dim=dim)
    out = 6 * image
    for shift, weight in ((0, 1), (1, 4), (3, 4), (4, 1)):
        out += weight * padded.narrow(dim, shift, length)
    return out / 16


# Signed distance functions of the ten shapes, in units of the shape's radius (negative
# inside; outside the shape some are only approximate, which just softens their edges).
# Arguments: u, v, the pixel in the shape's frame (v points down).


def _circle(u, v):
    return torch.sqrt(u**2 + v**2) - 0.9


def _square(u, v):
    return torch.maximum(u.abs(), v.abs()) - 0.75


def _polygon(u, v, sides: int, inradius: float):
    # The intersection of half-planes, one per side: the first side at the bottom, a vertex up.
    distance = None
    for k in range(sides):
        theta = math.pi / 2 + 2 * k * math.pi / sides  # the side's outward normal (v points down)
        side = u * math.cos(theta) + v * math.sin(theta) - inradius
        distance = side if distance is None else torch.maximum(distance, side)
    return distance


def _triangle(u, v):
    return _polygon(u, v - 0.25, 3, 0.5)


def _plus(u, v):
    across = torch.maximum(u.abs() - 0.95, v.abs() - 0.3)
    down = torch.maximum(u.abs() - 0.3, v.abs() - 0.95)
    return torch.minimum(across, down)


def _ring(u, v):
    return (torch.sqrt(u**2 + v**2) - 0.68).abs() - 0.27


def _star(u, v):
    # Five points: the radius swings between 1.0 at the tips and 0.42 between them.
    r = torch.sqrt(u**2 + v**2)
    turn = torch.atan2(u, -v) * (5 / (2 * math.pi))  # 0 at the top, one unit per point
    swing = (turn - turn.round()).abs() * 2  # 0 at a tip, 1 halfway between tips
    return (r - (1.0 - 0.58 * swing)) * 0.6


def _crescent(u, v):
    outer = torch.sqrt(u**2 + v**2) - 0.95
    bite = torch.sqrt((u - 0.5) ** 2 + (v + 0.15) ** 2) - 0.78
    return torch.maximum(outer, -bite)


def _heart(u, v):
    # A square turned 45 degrees, pointing down, with a disc on each of its upper sides.
    point = (u.abs() + (v - 0.2).abs() - 0.78) / math.sqrt(2.0)
    lobes = torch.sqrt((u.abs() - 0.39) ** 2 + (v + 0.19) ** 2) - 0.55
    return torch.minimum(point, lobes)


def _arrow(u, v):
    shaft = torch.maximum((u + 0.3).abs() - 0.65, v.abs() - 0.18)
    head = torch.maximum(-(u - 0.15), (v.abs() - 0.75 * (0.95 - u)) / 1.25)
    return torch.minimum(shaft, head)


def _hourglass(u, v):
    # Two triangles meeting tip to tip at the centre.
    box = torch.maximum(u.abs(), v.abs()) - 0.8
    waist = (u.abs() - 0.85 * v.abs() - 0.1) / 1.3
    return torch.maximum(box, waist)


# In the order of SHAPE_CLASSES.
_SHAPE_DISTANCES = [
    _circle, _square, _triangle, _plus, _ring, _star, _crescent, _heart, _arrow, _hourglass,
]  # fmt: skip
