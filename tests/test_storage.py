import numpy as np
import pytest
import torch

from unlearnbench.storage import ArtefactError, atomic_path, load_arrays, load_tensors, save_arrays, save_tensors


def test_arrays_round_trip(tmp_path):
    save_arrays(tmp_path / "a.npz", margins=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert load_arrays(tmp_path / "a.npz")["margins"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_truncated_file_names_the_file_and_how_to_rebuild(tmp_path):
    path = tmp_path / "m.npz"
    save_arrays(path, margins=np.ones((50, 50), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtefactError) as err:
        load_arrays(path)
    assert str(path) in str(err.value) and "rebuild" in str(err.value)


def test_corrupt_weights_name_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"w": torch.ones(3)})
    assert load_tensors(path)[0]["w"].tolist() == [1, 1, 1]
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(ArtefactError, match="w.safetensors"):
        load_tensors(path)


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtefactError):
        load_arrays(path)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
