"""Any ``ImageFolder`` tree (``<split>/<class folder>/<image>``) as :class:`Splits` of uint8 images.

Images are read with torchvision's ``ImageFolder`` (PIL), converted to RGB, resized so the shorter
side is ``round(resolution / crop_ratio)`` and centre-cropped to ``resolution`` x ``resolution``
(``crop_ratio = 224/256`` is the usual ImageNet evaluation crop), then stored as uint8 ``[n, 3, H, W]``
and normalised on the fly with the ImageNet mean and std. Validation images may have their own
resolution (``val_resolution``); margins then iterate over the two splits separately
(``data.split_images``).

Order is ImageFolder's: class folders sorted by name, files sorted by name within each folder. A class
folder can map to any label (``classes``: folder -> label, several folders may share a label, e.g. the
ImageNet sub-classes of a BREEDS super-class); folders not listed are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .splits import Splits

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class _ToUint8CHW:
    """PIL image -> RGB -> shorter side ``round(resolution / crop_ratio)`` -> centre crop -> uint8 CHW tensor.

    A module-level class (not a closure) so that DataLoader workers can pickle it on any platform.
    """

    def __init__(self, resolution: int, crop_ratio: float):
        from torchvision import transforms

        self.resize = transforms.Compose([
            transforms.Resize(round(resolution / crop_ratio)),
            transforms.CenterCrop(resolution),
        ])

    def __call__(self, image):
        import torch

        array = np.asarray(self.resize(image.convert("RGB")), dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _dataset(root: str, classes: Mapping[str, int] | None, resolution: int, crop_ratio: float):
    from torchvision.datasets import ImageFolder

    class Folders(ImageFolder):
        def find_classes(self, directory):
            if classes is None:
                return super().find_classes(directory)
            missing = sorted(c for c in classes if not os.path.isdir(os.path.join(directory, c)))
            if missing:
                raise FileNotFoundError(
                    f"{directory}: class folders {missing[:5]}{'...' if len(missing) > 5 else ''} missing "
                    f"({len(missing)} of {len(classes)})"
                )
            return sorted(classes), {c: int(classes[c]) for c in classes}

    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} not found")
    return Folders(root, transform=_ToUint8CHW(resolution, crop_ratio))


class _Samples:
    """(path, label) pairs read with torchvision's default image loader (PIL); picklable for workers."""

    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return self.transform(default_loader(path)), label


def _first_fraction_per_folder(samples: list[tuple[str, int]], fraction: float) -> list[int]:
    """Positions of the first ``floor(fraction * n)`` samples of each class folder (in folder order)."""
    by_folder: dict[str, list[int]] = {}
    for i, (path, _) in enumerate(samples):
        by_folder.setdefault(os.path.dirname(path), []).append(i)
    keep = []
    for positions in by_folder.values():
        keep.extend(positions[: int(len(positions) * fraction)])
    return sorted(keep)


def read_images(samples: list[tuple[str, int]], resolution: int, crop_ratio: float = 224 / 256, workers: int = 0,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [n, 3, resolution, resolution]`` and labels ``int64 [n]`` of ``(path, label)`` pairs, in order."""
    import torch
    from torch.utils.data import DataLoader

    images = np.empty((len(samples), 3, resolution, resolution), dtype=np.uint8)
    labels = np.empty(len(samples), dtype=np.int64)
    loader = DataLoader(_Samples(samples, _ToUint8CHW(resolution, crop_ratio)), batch_size=batch_size,
                        shuffle=False, num_workers=workers)
    start = 0
    with torch.no_grad():
        for x, y in loader:
            images[start:start + len(x)] = x.numpy()
            labels[start:start + len(x)] = y.numpy()
            start += len(x)
    return images, labels


def read_imagefolder(root: str, classes: Mapping[str, int] | None = None, resolution: int = 224,
                     crop_ratio: float = 224 / 256, fraction_per_folder: float = 1.0, workers: int = 0,
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images ``uint8 [n, 3, resolution, resolution]``, labels ``int64 [n]`` and file paths of one split."""
    dataset = _dataset(root, classes, resolution, crop_ratio)
    positions = list(range(len(dataset.samples)))
    if fraction_per_folder < 1.0:
        positions = _first_fraction_per_folder(dataset.samples, fraction_per_folder)
    samples = [dataset.samples[i] for i in positions]
    images, labels = read_images(samples, resolution, crop_ratio, workers, batch_size)
    return images, labels, [path for path, _ in samples]


def load_imagefolder_splits(train_dir: str, val_dir: str, classes: Mapping[str, int] | None = None,
                            resolution: int = 224, crop_ratio: float = 224 / 256,
                            train_fraction_per_folder: float = 1.0, workers: int = 0,
                            mean: np.ndarray = IMAGENET_MEAN, std: np.ndarray = IMAGENET_STD,
                            val_resolution: int | None = None) -> Splits:
    """Train and validation :class:`Splits` from two ImageFolder trees (see the module doc)."""
    x_train, y_train, _ = read_imagefolder(train_dir, classes, resolution, crop_ratio, train_fraction_per_folder,
                                           workers)
    x_val, y_val, _ = read_imagefolder(val_dir, classes, val_resolution or resolution, crop_ratio, 1.0, workers)
    return Splits(x_train, y_train, x_val, y_val, 1 / 255, np.asarray(mean, np.float32), np.asarray(std, np.float32))
