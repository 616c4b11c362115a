"""Real photos that are none of the ten classes, for outlier exposure during training.

The generated outliers (train/outlier_exposure.py) keep noise and shuffled tiles apart but not real photos of other
things, which a fine-tune on corrupted pictures learns to answer confidently (benchmarks/finetune/README.md, round
four). These are everyday photos (landscapes, flowers, leaves, rooms, still lifes) from Debian's wallpaper packages,
pinned by version and checksum, none showing a plane, car, bird, cat, deer, dog, frog, horse, ship or truck (the
wallpapers that do, a dog and rowing boats, are left out by name). They are not the outlier benchmark's photos
(evaluation/outlier_pictures.py: scikit-image, scikit-learn and matplotlib's samples), which stay unseen.

    python -m train.outlier_photos build/outlier-photos.npy     # apt-get download, checksums, crops (a minute)

writes uint8 [N, 32, 32, 3]: per photo, square crops of a fifth to the whole of its shorter side, downsampled.
Licences: each package's debian/copyright (CC BY-SA, GPL, LGPL); the crops are built where they are used and kept out
of the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Debian 12 (bookworm) packages: version and the .deb's sha256.
PACKAGES = {
    "lomiri-wallpapers-16.04": ("20.04.0-2", "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab"),
    "mate-backgrounds": ("1.26.0-1", "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
    "plasma-workspace-wallpapers": ("4:5.27.5-2", "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
}
LOMIRI = "usr/share/backgrounds"
MATE = "usr/share/backgrounds/mate/nature"
PLASMA = "usr/share/wallpapers"
# fmt: off
PHOTOS = [
    *(("lomiri-wallpapers-16.04", f"{LOMIRI}/{name}.jpg") for name in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
        "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
        "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
        "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
    )),  # left out: friends_by_Aitzol_Berasategi (dogs)
    *(("mate-backgrounds", f"{MATE}/{name}.jpg") for name in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower",
    )),
    *(("plasma-workspace-wallpapers", f"{PLASMA}/{name}/contents/images/2560x1600.jpg") for name in (
        "BytheWater", "ColdRipple", "DarkestHour", "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am",
    )),  # left out: EveningGlow (rowing boats), Kite (a kite in the sky)
]
# fmt: on
SIDE = 32  # the network's input side
CROPS_PER_PHOTO = 400
SMALLEST_CROP = 0.2  # of the photo's shorter side


def crops(photo: Image.Image, rng: np.random.Generator, count: int = CROPS_PER_PHOTO) -> np.ndarray:
    """uint8 [count, SIDE, SIDE, 3]: square crops at random places, a fifth to the whole of the shorter side, each
    averaged down to SIDE x SIDE (a box filter, as a camera's sensor would), a random half of them mirrored."""
    width, height = photo.size
    shorter = min(width, height)
    out = np.empty((count, SIDE, SIDE, 3), np.uint8)
    for index in range(count):
        side = int(shorter * rng.uniform(SMALLEST_CROP, 1.0))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((SIDE, SIDE), Image.Resampling.BOX)
        out[index] = np.asarray(crop)[:, ::-1] if rng.random() < 0.5 else np.asarray(crop)
    return out


def download(packages: dict[str, tuple[str, str]], into: Path) -> dict[str, Path]:
    """Each pinned package's .deb, fetched with apt-get and checked against its sha256; its files unpacked."""
    trees = {}
    for name, (version, sha256) in packages.items():
        subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=into, check=True, capture_output=True)
        (deb,) = into.glob(f"{name}_*.deb")
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        if digest != sha256:
            raise RuntimeError(f"{deb.name}: sha256 {digest}, expected {sha256}")
        trees[name] = into / name
        subprocess.run(["dpkg-deb", "-x", str(deb), str(trees[name])], check=True)
    return trees


def build(out: Path, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as work:
        trees = download(PACKAGES, Path(work))
        bank = []
        for package, path in PHOTOS:
            with Image.open(trees[package] / path) as photo:
                # Decode at about a quarter of the size: the smallest crop still has several pixels per output one.
                photo.draft("RGB", (photo.width // 4, photo.height // 4))
                bank.append(crops(photo.convert("RGB"), rng))
    bank = np.concatenate(bank)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, bank)
    return bank


def load(path: str | Path) -> torch.Tensor:
    """The bank as a uint8 NHWC tensor, checked for its shape."""
    bank = torch.from_numpy(np.load(path))
    if bank.dtype != torch.uint8 or bank.ndim != 4 or bank.shape[1:] != (SIDE, SIDE, 3):
        raise ValueError(f"{path}: expected uint8 [N, {SIDE}, {SIDE}, 3], got {bank.dtype} {list(bank.shape)}")
    return bank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the .npy to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bank = build(args.out, args.seed)
    print(f"{args.out}: {len(bank)} crops of {len(PHOTOS)} photos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
