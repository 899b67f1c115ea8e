"""Data sets: the digits split, and CIFAR-10 through torchvision's own loader on a generated folder."""

import pickle

import numpy as np
import pytest
import torch

from unlearnbench.data import get_spec, load_dataset


def test_digits_split_is_fixed_stratified_and_matches_the_registry():
    a, b = load_dataset("digits"), load_dataset("digits")
    spec = get_spec("digits")
    assert (a.n_train, a.n_val) == (spec.n_train, spec.n_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    counts = np.bincount(a.y_train) / a.n_train
    np.testing.assert_allclose(counts, np.bincount(a.y_val) / a.n_val, atol=0.01)
    x = a.inputs()
    assert tuple(x.shape) == (a.n_train + a.n_val, 1, 8, 8)


def write_cifar10_folder(root, n_per_batch=4, seed=0):
    """A tiny CIFAR-10 folder in the real on-disk format (pickled dicts of uint8 rows)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        batches[name] = (data, labels)
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return batches


def test_cifar10_loader_reads_the_real_format(tmp_path):
    batches = write_cifar10_folder(tmp_path)
    splits = load_dataset("cifar10", root=str(tmp_path), download=False, verify_checksums=False)
    assert splits.x_train.shape == (20, 3, 32, 32) and splits.x_val.shape == (4, 3, 32, 32)
    first = batches["data_batch_1"][0][0].reshape(3, 32, 32)
    np.testing.assert_array_equal(splits.x_train[0], first)  # torchvision order, channels first
    assert splits.y_train.tolist()[:4] == batches["data_batch_1"][1]
    x = splits.inputs()
    expected = (first[0, 0, 0] / 255 - 0.4914) / 0.2023
    assert abs(float(x[0, 0, 0, 0]) - expected) < 1e-5


def test_cifar10_missing_folder_says_how_to_fix(tmp_path):
    with pytest.raises(RuntimeError, match="download"):
        load_dataset("cifar10", root=str(tmp_path), download=False)


def test_cifar10_checksums_are_verified_by_default(tmp_path):
    write_cifar10_folder(tmp_path)
    with pytest.raises(RuntimeError, match="not found"):
        load_dataset("cifar10", root=str(tmp_path))


def test_images_stay_in_their_stored_dtype_and_normalise_per_batch():
    splits = load_dataset("digits")
    images, full = splits.images(), splits.inputs()
    assert images.raw.dtype == torch.uint8 and full.dtype == torch.float32
    assert len(images) == len(full) and images.shape == full.shape
    idx = torch.tensor([[0, 5, 1796], [3, 3, 2]])  # per-model batches, as the training loop indexes
    assert torch.equal(images[idx], full[idx]) and images[idx].shape == (2, 3, 1, 8, 8)
    assert torch.equal(images[10:20], full[10:20])
    assert torch.equal(images[np.array([7, 1])], full[[7, 1]])
    raw = torch.from_numpy(np.concatenate([splits.x_train, splits.x_val]))
    np.testing.assert_allclose(full.numpy(), (raw.numpy() / 16 - 0.5) / 0.5, rtol=1e-6)  # digits: 0..16
