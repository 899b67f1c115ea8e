import numpy as np
import pytest

from unlearnbench.forget_sets import class_forget_set, file_forget_set, make_forget_set, random_forget_set, retain_points


def test_random_set_reproduces_the_published_cifar10_set_1():
    expected = [11841, 12363, 19602, 25747, 26128, 30346, 31902, 32490, 42642, 45519]
    assert random_forget_set(50_000, 10, seed=0).tolist() == expected


def test_random_set_is_sorted_unique_int64():
    f = random_forget_set(1200, 100, seed=1)
    assert f.dtype == np.int64 and len(np.unique(f)) == 100 and (np.diff(f) > 0).all() and f.max() < 1200


def test_random_set_larger_than_train_is_refused():
    with pytest.raises(ValueError, match="1..1200"):
        random_forget_set(1200, 1201, seed=0)


def test_class_set_takes_all_or_k_seeded_points_of_the_classes():
    labels = np.array([0, 1, 3, 3, 2, 3, 1, 3])
    assert class_forget_set(labels, [3], None, 0).tolist() == [2, 3, 5, 7]
    some = class_forget_set(labels, [1, 3], 3, 0)
    assert len(some) == 3 and set(some) <= {1, 2, 3, 5, 6, 7}
    assert class_forget_set(labels, [1, 3], 3, 0).tolist() == some.tolist()


def test_file_set_is_validated(tmp_path):
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, np.array([5, 2, 9]))
    np.save(bad, np.array([5, 2, 9999]))
    assert file_forget_set(good, 10).tolist() == [2, 5, 9]
    with pytest.raises(ValueError, match="within"):
        file_forget_set(bad, 10)
    spec = {"id": "x", "kind": "file", "path": str(good)}
    assert make_forget_set(spec, 10).tolist() == [2, 5, 9]


def test_retain_is_train_minus_forget():
    assert retain_points(np.array([1, 3]), 5).tolist() == [0, 2, 4]
