"""scikit-learn's bundled 8x8 digits (1,797 images, no download): the embedded default.

Split: a stratified 300 / 1,497 train / validation split with ``random_state=0`` (fixed, so every run
and every machine sees the same points). Pixel values 0..16 are kept as uint8 and scaled to [0, 1].

Why only 300 train points: on a 1,200-point split the small CNN generalises so well (97-98% val
accuracy) that a trained-on point's margin barely differs from a never-seen one, and "do nothing" is
already near the oracle on random forget sets (measured: forget KLOM P95 2.1 vs an oracle draw's 1.5,
N = 50). On 300 points models memorise individual points, as ResNet-9 does on CIFAR-10.
"""

from __future__ import annotations

import numpy as np

from .splits import Splits

N_TRAIN = 300


def load_digits_splits(**_options) -> Splits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # [n, 1, 8, 8], values 0..16
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target.astype(np.int64), train_size=N_TRAIN, stratify=digits.target, random_state=0
    )
    mean = np.array([0.5], dtype=np.float32)  # roughly centre [0, 1] inputs; exact values don't matter
    std = np.array([0.5], dtype=np.float32)
    return Splits(x_train, y_train, x_val, y_val, 1 / 16, mean, std)
