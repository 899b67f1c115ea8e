"""Per-model, seeded data augmentation applied on the device per batch: flip, translate, cutout.

The operations follow the FFCV pipeline of the published CIFAR-10 pool recipe (MadryLab/datamodels,
``examples/cifar10/train_cifar.py``: ``RandomHorizontalFlip()``, ``RandomTranslate(padding=2)``,
``Cutout(4)``, both filled with the data set's mean colour), in that order:

- flip: each image mirrored left-right with probability 1/2;
- translate ``t``: the image padded by ``t`` pixels on every side and cropped back at a uniformly random
  offset in ``[0, 2t]`` per axis (a shift of up to ``t`` pixels each way);
- cutout ``s``: an ``s x s`` square with its top-left corner uniform in ``[0, H - s)`` x ``[0, W - s)``
  (FFCV's ``randint(h - crop_size)``: the square lies inside the image) set to the fill.

The fill is 0 in normalised space, i.e. the exact mean colour (FFCV fills with the integer mean before
normalising: at most 0.02 standard deviations away).

Randomness: each model draws its own parameters from its own stream (derived from the model's seed, not
shared with the data order), once per phase and epoch for every position of its order, so a model's
augmentation does not depend on which other models share its batch ("batched equals one at a time"),
and all of an epoch's parameters reach the device in one copy together with the orders.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

AUGMENT_STREAM = zlib.crc32(b"augment")  # second entropy word of every model's augmentation generator
N_PARAMS = 5  # flip, translate row / column offset, cutout row / column corner


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    translate: int = 0  # pixels
    cutout: int = 0  # side of the square, pixels

    @classmethod
    def from_config(cls, cfg: dict | None) -> Augment:
        return cls(**(cfg or {}))

    @property
    def active(self) -> bool:
        return bool(self.flip or self.translate or self.cutout)

    def generator(self, seed: int) -> np.random.Generator:
        """The model's own augmentation stream (independent of its data-order stream)."""
        return np.random.default_rng([int(seed), AUGMENT_STREAM])

    def draw(self, rng: np.random.Generator, n: int, image_hw: tuple[int, int]) -> np.ndarray:
        """Parameters for ``n`` consecutive positions of one model's order: int64 ``[n, 5]``."""
        h, w = image_hw
        params = np.zeros((n, N_PARAMS), dtype=np.int64)
        if self.flip:
            params[:, 0] = rng.random(n) < 0.5
        if self.translate:
            params[:, 1:3] = rng.integers(0, 2 * self.translate + 1, size=(n, 2))
        if self.cutout:
            if self.cutout >= min(h, w):
                raise ValueError(f"cutout {self.cutout} does not fit images of {h}x{w} pixels")
            params[:, 3] = rng.integers(0, h - self.cutout, size=n)
            params[:, 4] = rng.integers(0, w - self.cutout, size=n)
        return params

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Augment a batch ``x [M, B, C, H, W]`` with its parameters ``[M, B, 5]`` (on ``x``'s device)."""
        *lead, c, h, w = x.shape
        if self.flip:
            x = torch.where(params[..., 0, None, None, None].bool(), x.flip(-1), x)
        if self.translate:
            t = self.translate
            padded = F.pad(x, (t, t, t, t))  # zeros = the mean colour after normalisation
            rows = params[..., 1, None] + torch.arange(h, device=x.device)  # [M, B, H]
            cols = params[..., 2, None] + torch.arange(w, device=x.device)  # [M, B, W]
            x = padded.gather(-2, rows[..., None, :, None].expand(*lead, c, h, w + 2 * t))
            x = x.gather(-1, cols[..., None, None, :].expand(*lead, c, h, w))
        if self.cutout:
            s = self.cutout
            r, q = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
            in_rows = (r >= params[..., 3, None]) & (r < params[..., 3, None] + s)  # [M, B, H]
            in_cols = (q >= params[..., 4, None]) & (q < params[..., 4, None] + s)  # [M, B, W]
            x = x.masked_fill((in_rows[..., :, None] & in_cols[..., None, :])[..., None, :, :], 0.0)
        return x
