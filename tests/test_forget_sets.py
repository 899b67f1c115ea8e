import numpy as np
import pytest

from unlearnbench.forget_sets import class_forget_set, file_forget_set, build_forget_set, random_forget_set, retain_points
from unlearnbench.storage import UserInputError


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
    assert build_forget_set(spec, 10).tolist() == [2, 5, 9]


def test_retain_is_train_minus_forget():
    assert retain_points(np.array([1, 3]), 5).tolist() == [0, 2, 4]


@pytest.mark.parametrize(
    "content, needle",
    [
        (np.array([1.5, 2.7, 3.9]), "integer indices, got dtype float64"),
        (np.array([1.0, 2.0, 3.0]), "integer indices, got dtype float64"),  # whole floats are still not indices
        (np.array([[1, 2], [3, 4]]), "1-D array of train indices, got shape (2, 2)"),
        (np.array(["1", "2"]), "integer indices, got dtype <U1"),
        (np.array(5), "1-D array of train indices, got shape ()"),
        (np.zeros(10, dtype=bool) | (np.arange(10) < 3), "save np.flatnonzero(mask) instead"),
        (np.array([], dtype=np.int64), "no indices"),
        (np.array([1, 1, 2]), "indices repeat"),
        (np.array([-1, 2]), "within 0..9"),
        (np.arange(10), "nothing would be retained"),
    ],
)
def test_a_file_set_must_be_distinct_integer_indices_and_is_never_coerced(tmp_path, content, needle):
    path = tmp_path / "set.npy"
    np.save(path, content)
    with pytest.raises(UserInputError) as err:
        build_forget_set({"id": "mine", "kind": "file", "path": str(path)}, 10)
    message = str(err.value)
    assert needle in message and str(path) in message
    # the file is the user's: say so, never advise deleting or rebuilding it
    assert "forget set mine" in message and "input you supplied" in message
    assert "rebuild it" not in message.replace("never rebuilds", "") and "Delete" not in message


def test_an_unreadable_file_set_is_reported_as_the_users_input(tmp_path):
    path = tmp_path / "set.npy"
    path.write_bytes(b"\x93NUMPY not really")
    with pytest.raises(UserInputError) as err:
        file_forget_set(path, 10)
    assert "cannot read array" in str(err.value) and "never rebuilds or deletes it" in str(err.value)
    with pytest.raises(UserInputError, match="missing file"):
        file_forget_set(tmp_path / "absent.npy", 10)


def test_integer_dtypes_of_any_width_are_indices(tmp_path):
    for dtype in (np.int32, np.uint16, np.int64):
        np.save(tmp_path / "set.npy", np.array([7, 1], dtype=dtype))
        got = file_forget_set(tmp_path / "set.npy", 10)
        assert got.dtype == np.int64 and got.tolist() == [1, 7]
