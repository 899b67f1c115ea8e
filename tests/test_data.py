"""Data sets: the digits split, and CIFAR-10's batch format (parsed without running pickled code)."""

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnbench.data import get_spec, load_dataset
from unlearnbench.storage import UserInputError


def test_digits_split_is_fixed_stratified_and_matches_the_registry():
    a, b = load_dataset("digits"), load_dataset("digits")
    spec = get_spec("digits")
    assert (a.n_train, a.n_val) == (spec.n_train, spec.n_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    counts = np.bincount(a.y_train) / a.n_train
    np.testing.assert_allclose(counts, np.bincount(a.y_val) / a.n_val, atol=0.01)
    x = a.inputs()
    assert tuple(x.shape) == (a.n_train + a.n_val, 1, 8, 8)


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the real batches: text and bytes as ``str`` (BINSTRING), numpy arrays
    through ``numpy.core.multiarray._reconstruct`` with their raw bytes."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_binstring(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<I", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_binstring


def dump(obj, fh, fmt):
    if fmt == "py2":
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(obj)
        fh.write(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    else:  # Python 3's pickle, protocol 2 (bytes through _codecs.encode), 4 (the default) or 5 (_frombuffer)
        pickle.dump(obj, fh, protocol=int(fmt[-1]))


def write_cifar10_folder(root, n_per_batch=4, seed=0, fmt="py2"):
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
            dump({"batch_label": f"training batch {name}", "data": data, "labels": labels,
                  "filenames": [f"img_{i}.png" for i in range(n_per_batch)]}, fh, fmt)
    with open(folder / "batches.meta", "wb") as fh:
        dump({"label_names": [f"class{i}" for i in range(10)]}, fh, fmt)
    return batches


@pytest.mark.parametrize("fmt", ["py2", "py3-2", "py3-4", "py3-5"])
def test_cifar10_loader_reads_the_real_format(tmp_path, fmt):
    batches = write_cifar10_folder(tmp_path, fmt=fmt)
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
    with pytest.raises(UserInputError, match="differs from the official CIFAR-10 release") as err:
        load_dataset("cifar10", root=str(tmp_path))
    assert "data_batch_1" in str(err.value) and "never rebuilds or deletes it" in str(err.value)


class _Payload:
    """Unpickling this creates a file: proof that the loader executed pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("where", ["data", "labels", "top"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_a_booby_trapped_cifar10_batch_is_refused_and_never_runs(tmp_path, where, protocol):
    write_cifar10_folder(tmp_path)
    marker = tmp_path / "payload-ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    entry = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]}
    if where == "top":
        entry = _Payload(marker)
    else:
        entry[where] = [_Payload(marker)] if where == "labels" else _Payload(marker)
    batch.write_bytes(pickle.dumps(entry, protocol=protocol))
    with pytest.raises(UserInputError) as err:
        load_dataset("cifar10", root=str(tmp_path), download=False, verify_checksums=False)
    assert not marker.exists()
    message = str(err.value)
    assert "data_batch_3" in message and "not a CIFAR-10 batch, refused: it asks for" in message
    assert "an input you supplied" in message


@pytest.mark.parametrize(
    "entry, needle",
    [
        ({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}, "'data' must be uint8"),
        ({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, "'data' must be uint8 [n, 3072]"),
        ({"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 3}, "'labels' must be 4 integers"),
        ({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]}, "'labels' must be 4 integers in 0..9"),
        ({"images": np.zeros((4, 3072), np.uint8)}, "expected a dict with 'data' and 'labels'"),
        ([1, 2, 3], "expected a dict with 'data' and 'labels', found list"),
        (np.zeros((4, 3072), np.dtype("O")), "expected a dict"),
    ],
)
def test_a_malformed_cifar10_batch_says_what_is_wrong(tmp_path, entry, needle):
    write_cifar10_folder(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(entry))
    with pytest.raises(UserInputError) as err:
        load_dataset("cifar10", root=str(tmp_path), verify_checksums=False)
    assert needle in str(err.value) and "test_batch" in str(err.value)


def test_a_truncated_cifar10_batch_is_named(tmp_path):
    write_cifar10_folder(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    batch.write_bytes(batch.read_bytes()[:200])
    with pytest.raises(UserInputError, match="data_batch_5"):
        load_dataset("cifar10", root=str(tmp_path), verify_checksums=False)


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
