"""Pictures that are none of the ten classes, for the "none of the ten" benchmark (evaluation/outliers.py).

Two kinds, kept apart on purpose:
- GENERATED groups (noise, flat colours, rendered text, shapes, fractals, CIFAR pictures cut into shuffled patches):
  made here from a seed, numpy and Pillow only. Methods and thresholds may be chosen on them (with in-distribution
  validation pictures); a different seed gives the pictures they are reported on.
- PACKAGE groups (photos, faces, handwritten digits that scikit-image, scikit-learn and matplotlib ship as sample
  data): real pictures nobody here made. They are only ever reported, never tuned on.

Every picture is returned at its own size as RGB uint8; evaluation/outliers.py sends it through the service's decoding
and resize policy, so the model sees what it would see had a person uploaded it.
"""

from __future__ import annotations

import string
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Picture = np.ndarray  # uint8 [H, W, 3]

# ---- generated groups


def noise(rng: np.random.Generator) -> Picture:
    """Uniform or Gaussian RGB noise, at full resolution or smoothed into blobs (noise drawn small, enlarged)."""
    side = int(rng.integers(32, 257))
    cells = side if rng.random() < 0.5 else int(rng.integers(2, 17))
    if rng.random() < 0.5:
        small = rng.integers(0, 256, (cells, cells, 3))
    else:
        small = np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (cells, cells, 3)), 0, 255)
    return np.asarray(Image.fromarray(small.astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR))


def flat_colour(rng: np.random.Generator) -> Picture:
    """One flat colour, or a soft two-colour gradient."""
    side = int(rng.integers(32, 257))
    first = rng.integers(0, 256, 3)
    second = first if rng.random() < 0.5 else rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, side)[None, :, None]
    picture = first * (1 - ramp) + second * ramp
    return np.broadcast_to(picture, (side, side, 3)).astype(np.uint8).copy()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def text(rng: np.random.Generator) -> Picture:
    """Words, numbers or a short line in Pillow's own font, dark on light or the other way round."""
    side = int(rng.integers(64, 257))
    background = rng.integers(0, 256, 3)
    ink = 255 - background if rng.random() < 0.8 else rng.integers(0, 256, 3)
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(canvas)
    alphabet = string.ascii_letters + string.digits if rng.random() < 0.7 else string.digits
    lines = int(rng.integers(1, 5))
    size = int(side / (lines + 1) * rng.uniform(0.5, 1.0))
    for line in range(lines):
        word = "".join(rng.choice(list(alphabet), int(rng.integers(1, 9))))
        where = (int(rng.integers(0, max(1, side // 4))), int(side * line / lines))
        draw.text(where, word, fill=tuple(int(v) for v in ink), font=_font(max(8, size)))
    return np.asarray(canvas)


def shapes(rng: np.random.Generator) -> Picture:
    """Rectangles, ellipses, polygons and lines in random colours on a flat background."""
    side = int(rng.integers(64, 257))
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 8))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0, x1, y1 = sorted(rng.integers(0, side, 2)) + sorted(rng.integers(0, side, 2))
        box = (int(x0), int(x1), int(y0) + 1, int(y1) + 1)
        box = (box[0], box[1], max(box[0] + 1, box[2]), max(box[1] + 1, box[3]))
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.rectangle(box, fill=colour)
        elif kind == 1:
            draw.ellipse(box, fill=colour)
        elif kind == 2:
            points = [tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=colour)
        else:
            draw.line(box, fill=colour, width=int(rng.integers(1, max(2, side // 10))))
    return np.asarray(canvas)


def fractal(rng: np.random.Generator) -> Picture:
    """A Julia set at a random constant and zoom, in a random smooth colour map."""
    side = int(rng.integers(64, 193))
    angle = rng.uniform(0, 2 * np.pi)
    constant = complex(0.7885 * np.cos(angle), 0.7885 * np.sin(angle)) * rng.uniform(0.9, 1.05)
    zoom = rng.uniform(0.6, 3.0)
    centre = complex(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
    axis = np.linspace(-1.5, 1.5, side) / zoom
    z = axis[None, :] + 1j * axis[:, None] + centre
    escaped = np.zeros(z.shape)
    alive = np.ones(z.shape, dtype=bool)
    for step in range(48):
        z[alive] = z[alive] ** 2 + constant
        out = alive & (np.abs(z) > 2)
        escaped[out] = step
        alive &= ~out
    value = escaped / 48.0
    phases = rng.uniform(0, 2 * np.pi, 3)
    frequency = rng.uniform(2, 9)
    colours = 127.5 * (1 + np.sin(frequency * value[..., None] * 2 * np.pi + phases))
    return colours.astype(np.uint8)


def shuffled_patches(picture: Picture, rng: np.random.Generator, patch: int = 4) -> Picture:
    """A CIFAR picture cut into patch x patch squares put back in random order: its colours, none of its object."""
    height, width, _ = picture.shape
    rows, cols = height // patch, width // patch
    tiles = picture[: rows * patch, : cols * patch].reshape(rows, patch, cols, patch, 3).swapaxes(1, 2)
    tiles = tiles.reshape(rows * cols, patch, patch, 3)[rng.permutation(rows * cols)]
    return tiles.reshape(rows, cols, patch, patch, 3).swapaxes(1, 2).reshape(rows * patch, cols * patch, 3)


GENERATORS: dict[str, Callable[[np.random.Generator], Picture]] = {
    "noise": noise,
    "flat_colour": flat_colour,
    "text": text,
    "shapes": shapes,
    "fractal": fractal,
}
SHUFFLED = "shuffled_cifar"  # needs CIFAR pictures: made by `generated` from the ones it is given
GENERATED_GROUPS = (*GENERATORS, SHUFFLED)


def generated(count: int, seed: int, cifar: np.ndarray | None = None) -> dict[str, list[Picture]]:
    """`count` pictures of every generated group (the shuffled group only when `cifar` pictures are given)."""
    groups: dict[str, list[Picture]] = {}
    for offset, (name, make) in enumerate(GENERATORS.items()):
        rng = np.random.default_rng([seed, offset])
        groups[name] = [make(rng) for _ in range(count)]
    if cifar is not None:
        rng = np.random.default_rng([seed, len(GENERATORS)])
        chosen = rng.choice(len(cifar), size=min(count, len(cifar)), replace=False)
        groups[SHUFFLED] = [shuffled_patches(cifar[i], rng) for i in chosen]
    return groups


# ---- package groups: real pictures other projects ship. Never tuned on.

# scikit-image's bundled sample pictures that are none of the ten classes (its cat `chelsea` and its horse silhouette
# are left out: they are CIFAR classes).
SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cell", "coffee", "coins", "colorwheel", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
CROPS_PER_PHOTO = 12  # square crops of each photo, a fifth to four fifths of its shorter side


def _rgb(picture: np.ndarray) -> Picture:
    picture = np.asarray(picture)
    if picture.dtype != np.uint8:
        low, high = float(picture.min()), float(picture.max())
        picture = ((picture - low) / max(high - low, 1e-9) * 255).round().astype(np.uint8)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    return np.ascontiguousarray(picture[..., :3])


def package_photos() -> list[tuple[str, Picture]]:
    """(name, picture) for every sample photo that is none of the ten, from scikit-image, scikit-learn, matplotlib."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            photos.append((f"skimage:{name}", _rgb(loader())))
        except (OSError, ValueError, ImportError):  # a picture this release would download: not bundled
            continue
    sample = load_sample_images()
    photos += [(f"sklearn:{file.rsplit('/', 1)[-1]}", _rgb(image)) for file, image in zip(
        sample.filenames, sample.images, strict=True)]  # fmt: skip
    for name in MATPLOTLIB_PHOTOS:
        with matplotlib.cbook.get_sample_data(name) as handle:
            photos.append((f"matplotlib:{name}", _rgb(np.asarray(Image.open(handle).convert("RGB")))))
    return photos


def crops(picture: Picture, rng: np.random.Generator, count: int = CROPS_PER_PHOTO) -> list[Picture]:
    height, width, _ = picture.shape
    out = []
    for _ in range(count):
        side = int(min(height, width) * rng.uniform(0.2, 0.8))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        out.append(picture[top : top + side, left : left + side])
    return out


def package_groups(seed: int = 0, count: int = 100) -> dict[str, list[Picture]]:
    """photos (whole), photo_crops, faces (Labeled Faces in the Wild, as scikit-image ships 100 of them) and
    handwritten digits (scikit-learn's, dark ink on white paper and white on black, enlarged from 8 x 8)."""
    import skimage.data
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    photos = [picture for _, picture in package_photos()]
    faces = skimage.data.lfw_subset()[:100]  # the first 100 of its 200 are faces, the rest are not
    digits = load_digits().images
    chosen = rng.choice(len(digits), size=count, replace=False)
    ink = [(digits[i] / 16.0 * 255).astype(np.uint8) for i in chosen]
    return {
        "photos": photos,
        "photo_crops": [crop for picture in photos for crop in crops(picture, rng)],
        "faces": [_rgb(face) for face in faces[:count]],
        "digits": [_rgb(255 - d if k % 2 == 0 else d) for k, d in enumerate(ink)],
    }
