"""Train and validation images at different resolutions, indexed as one data set in margin order.

The published Living-17 benchmark trains (and takes train margins) at 160 px and validates at 224 px
(spec §9; its trainer decodes train images at the training resolution and validation images at the
validation resolution, both centre-cropped with ratio 224/256).  Both splits cannot share one tensor
then: :class:`SplitImages` keeps one :class:`~unlearnbench.data.splits.NormalisedImages` per split and
answers any index whose points all lie in one split.  Training and unlearning index train points only;
whole-data-set passes (margins, logits) iterate over :attr:`SplitImages.segments` so that no batch mixes
resolutions (``ModelStack.eval_batches``).  Data sets whose splits share a resolution never see this
class: ``Splits.images`` returns a single ``NormalisedImages`` for them.
"""

from __future__ import annotations

from collections.abc import Sequence


class SplitImages:
    """Consecutive parts (train, then validation) of one data set, each with its own image size.

    Indexing takes a slice or an index array / tensor (any shape) whose points lie in one part, and
    returns that part's normalised float32 images; an index that spans parts raises ``IndexError``.
    ``shape`` reports the largest part's image size (for memory estimates).
    """

    def __init__(self, parts: Sequence):
        self.parts = list(parts)
        self.offsets = [0]
        for part in self.parts:
            self.offsets.append(self.offsets[-1] + len(part))

    @property
    def segments(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every part in the point order: batches of one resolution lie inside one."""
        return list(zip(self.offsets[:-1], self.offsets[1:]))

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def shape(self):
        largest = max(self.parts, key=lambda p: p.shape[-1] * p.shape[-2])
        return (len(self), *largest.shape[1:])

    @property
    def device(self):
        return self.parts[0].device

    def _part_of(self, low: int, high: int) -> int:
        for k, (start, stop) in enumerate(self.segments):
            if start <= low and high < stop:
                return k
        raise IndexError(f"points {low}..{high} span the train and validation splits, which have different image "
                         f"sizes: index one split at a time (parts start at {self.offsets[:-1]})")

    def __getitem__(self, points):
        import torch

        if isinstance(points, slice):
            start, stop, step = points.indices(len(self))
            if stop <= start:
                return self.parts[0][0:0]
            k = self._part_of(start, stop - 1)
            offset = self.offsets[k]
            return self.parts[k][slice(start - offset, stop - offset, step)]
        index = torch.as_tensor(points)
        if index.numel() == 0:
            return self.parts[0][index]
        low, high = int(index.min()), int(index.max())
        if low < 0:
            raise IndexError("negative point indices are not supported here")
        k = self._part_of(low, high)
        return self.parts[k][index - self.offsets[k]]
