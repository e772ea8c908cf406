"""Generated JPEG trees in the ImageNet-LT layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG + the two split lists).

Each class has its own mean colour plus noise, so a tiny network learns something in a few steps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_COUNTS = (12, 7, 4, 2)   # long-tailed: 25 train images
TEST_PER_CLASS = (3, 3, 3, 4)  # 13 test images: not divisible by 2 ranks


def _image(rng: np.random.Generator, c: int, size: tuple[int, int]) -> Image.Image:
    w, h = size
    base = np.array([(c * 67) % 256, (c * 131 + 40) % 256, (255 - c * 53) % 256], dtype=np.float64)
    arr = base + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_tree(root: Path, train_counts=TRAIN_COUNTS, test_per_class=TEST_PER_CLASS, size=(48, 40), seed: int = 0,
              quality: int = 90) -> dict[str, list[str]]:
    """Write the images and ``ImageNet_LT_{train,test}.txt`` under ``root``; returns the relative paths per split."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {"train": [], "test": []}
    for split, counts, folder in (("train", train_counts, "train"), ("test", test_per_class, "val")):
        lines = []
        for c, k in enumerate(counts):
            wnid = f"n{c:08d}"
            (root / folder / wnid).mkdir(parents=True, exist_ok=True)
            for j in range(k):
                rel = f"{folder}/{wnid}/{wnid}_{j}.JPEG"
                _image(rng, c, size).save(root / rel, quality=quality)
                lines.append(f"{rel} {c}")
                out[split].append(rel)
        name = "ImageNet_LT_train.txt" if split == "train" else "ImageNet_LT_test.txt"
        (root / name).write_text("\n".join(lines) + "\n")
    return out
