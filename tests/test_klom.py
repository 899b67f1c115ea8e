"""KLOM: the vectorised estimator must equal the literal per-point reference (spec §2) wherever that is finite."""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unlearnbench import cli
from unlearnbench.metrics.klom import DIRECTIONS, _linspace_edges, klom, saturation
from unlearnbench.metrics.klom_reference import klom_reference

SRC = Path(__file__).resolve().parents[1] / "src"
klom_module = importlib.import_module("unlearnbench.metrics.klom")
SAT = saturation(1e-5)


def assert_matches_reference(u: np.ndarray, o: np.ndarray, **kw) -> np.ndarray:
    """klom == klom_reference to 1e-9 where the reference is finite, and the saturation value where it is NaN."""
    fast = klom(u, o, **kw)
    ref = klom_reference(u, o, **kw)
    assert fast.dtype == np.float64 and fast.shape == (u.shape[1],)
    assert np.isfinite(fast).all()
    finite = np.isfinite(ref)
    np.testing.assert_allclose(fast[finite], ref[finite], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast[~finite], saturation(kw.get("eps", 1e-5)))
    return ref


def realistic(rng: np.random.Generator, n_u: int, n_o: int, n: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Unlearned ~ N(2, 1.5); the oracle is shifted on a fifth of the points; a few extreme margins."""
    u = rng.normal(2.0, 1.5, (n_u, n))
    shift = np.where(rng.random(n) < 0.2, rng.normal(-3.0, 2.0, n), 0.0)
    o = rng.normal(2.0, 1.5, (n_o, n)) + shift
    u[rng.random(u.shape) < 1e-3] *= 80  # some beyond the clip range
    return u.astype(dtype), o.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("inclusive", [False, True])
def test_random_matches_reference(dtype: type, direction: str, inclusive: bool) -> None:
    rng = np.random.default_rng(0)
    u, o = realistic(rng, 100, 100, 5000, dtype)  # several chunks, so the threaded path runs too
    ref = assert_matches_reference(u, o, direction=direction, inclusive_last_bin=inclusive)
    assert np.isfinite(ref).all() and ref.max() > 1.0 and np.median(ref) < 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("inclusive", [False, True])
def test_unequal_n_ties_constant_and_clip(dtype: type, direction: str, inclusive: bool) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    u = rng.integers(-3, 4, (37, n)).astype(dtype) * dtype(0.5)  # heavy ties, many values on edges
    o = rng.normal(0.0, 1.0, (64, n)).round(1).astype(dtype)
    u[:, :50] = 7.0  # constant points: lo >= hi -> hi = lo + 1
    o[:, :50] = 7.0
    u[:, 50:100] = rng.choice([-1e6, 1e6, np.inf, -np.inf, 150.0], (37, 50))  # beyond the clip range
    o[:, 100:150] = 100.0  # oracle saturates at the upper clip
    ref = assert_matches_reference(u, o, direction=direction, inclusive_last_bin=inclusive)
    np.testing.assert_array_equal(ref[:50], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inclusive", [False, True])
def test_values_exactly_on_and_next_to_edges(dtype: type, inclusive: bool) -> None:
    """Every value is a linspace edge or its neighbouring float: any off-by-one bin changes the result."""
    rng = np.random.default_rng(2)
    n, bins = 2000, 20
    lo = rng.uniform(-100, 90, n).astype(dtype)
    hi = (lo + rng.choice([1e-3, 0.37, 5.0, 60.0], n)).astype(dtype)
    edges = np.stack([np.linspace(lo[j], hi[j], bins + 1) for j in range(n)], axis=1)
    pick = rng.integers(0, bins + 1, (60, n))
    vals = np.take_along_axis(edges, pick, axis=0)
    toward = np.choose(rng.integers(0, 3, vals.shape), [dtype(-np.inf), vals, dtype(np.inf)])
    vals = np.nextafter(vals, toward)  # the edge itself or one of its neighbouring floats
    vals = np.clip(vals, lo, hi)  # keep lo/hi the extremes so the edges stay these
    vals[0], vals[1] = lo, hi
    u, o = vals[:30], vals[30:]
    for direction in DIRECTIONS:
        assert_matches_reference(u, o, bins=bins, direction=direction, inclusive_last_bin=inclusive)


def test_edges_are_linspace_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        lo = rng.uniform(-100, 100, 500).astype(dtype)
        hi = (lo + rng.uniform(1e-6, 50, 500)).astype(dtype)
        edges, _ = _linspace_edges(lo, hi, 20)
        scalar = np.stack([np.linspace(a, b, 21) for a, b in zip(lo, hi)], axis=1)
        assert edges.dtype == dtype
        np.testing.assert_array_equal(edges.view(np.uint8), scalar.view(np.uint8))
        np.testing.assert_array_equal(edges, np.linspace(lo, hi, 21, axis=0))  # numpy's own vectorised form
    # a step that underflows to zero takes linspace's denormal path, per point
    lo = np.array([0.0, 0.0], dtype=np.float32)
    hi = np.array([1e-45, 3.0], dtype=np.float32)
    edges, _ = _linspace_edges(lo, hi, 20)
    for j in range(2):
        np.testing.assert_array_equal(edges[:, j], np.linspace(lo[j], hi[j], 21))


def test_denormal_step_point_matches_reference() -> None:
    u = np.array([[0.0, 1.0], [1e-45, 2.0], [0.0, 3.0]], dtype=np.float32)
    o = np.array([[0.0, 1.5], [0.0, 0.5]], dtype=np.float32)
    for inclusive in (False, True):
        assert_matches_reference(u, o, inclusive_last_bin=inclusive)


def test_many_bins_take_the_exact_path() -> None:
    """With 2e6 float32 bins the arithmetic guess for hi falls short of bin bins-1; the result must stay exact."""
    u = np.array([[0.0, 5.0], [1.0, 7.0], [2.0, 6.0], [3.0, 9.0]], dtype=np.float32)
    o = np.array([[0.0, 5.0], [0.0, 9.0], [3.0, 6.5], [3.0, 9.0]], dtype=np.float32)
    assert_matches_reference(u, o, bins=2_000_000)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.longdouble])
def test_other_input_dtypes(dtype: type) -> None:
    rng = np.random.default_rng(6)
    u = rng.normal(0, 3, (30, 500)).astype(dtype)
    o = rng.normal(1, 3, (40, 500)).astype(dtype)
    for inclusive in (False, True):
        assert_matches_reference(u, o, inclusive_last_bin=inclusive)


def test_non_monotonic_edges_raise_like_the_reference() -> None:
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    u = np.array([[0.0], [11 * tiny]], dtype=np.float32)  # step rounds up to one subnormal: edge 19 > hi
    o = np.zeros((2, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="monoton"):
        klom_reference(u, o)
    with pytest.raises(ValueError, match="not monotonic"):
        klom(u, o)


def test_threads_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    u, o = realistic(rng, 100, 100, 4000, np.float32)
    monkeypatch.setattr(klom_module, "_usable_cpus", lambda: 1)
    serial = klom(u, o)
    monkeypatch.setattr(klom_module, "_usable_cpus", lambda: 3)
    np.testing.assert_array_equal(klom(u, o), serial)
    u[:, 3500] = 11 * np.finfo(np.float32).smallest_subnormal * np.arange(100) / 99  # fails in a worker thread
    o[:, 3500] = 0
    with pytest.raises(ValueError, match="not monotonic"):
        klom(u, o)


def test_reference_nan_cases_become_saturation() -> None:
    # point 0: every unlearned value equals hi -> P's sample is empty (reference NaN)
    # point 1: the same with the roles swapped -> finite in the default direction
    # point 2: a NaN margin
    u = np.array([[5.0, 0.0, 1.0], [5.0, 1.0, np.nan], [5.0, 2.0, 0.0]], dtype=np.float32)
    o = np.array([[1.0, 9.0, 1.0], [2.0, 9.0, 2.0]], dtype=np.float32)
    ref = klom_reference(u, o)
    assert math.isnan(ref[0]) and math.isfinite(ref[1]) and math.isnan(ref[2])
    got = klom(u, o)
    np.testing.assert_array_equal(got[[0, 2]], SAT)
    assert got[1] == pytest.approx(ref[1], abs=1e-12)
    swapped = klom(u, o, direction="oracle-unlearned")
    assert swapped[1] == SAT and math.isfinite(swapped[0]) and swapped[2] == SAT
    # closing the last bin keeps P's values, so point 0 is finite (and large: disjoint supports)
    closed = klom(u, o, inclusive_last_bin=True)
    assert math.isfinite(closed[0]) and closed[0] == pytest.approx(math.log(1 / 1e-5), abs=1e-4)
    assert saturation(1e-3) == pytest.approx(math.log(1000.0))
    assert klom(u, o, eps=1e-3)[0] == saturation(1e-3)


def test_hand_computed_example() -> None:
    # bins=2: lo=0, hi=3, edges [0, 1.5, 3]; the 3s sit on hi and are dropped by default.
    u = np.array([[0.0], [1.0], [2.0], [3.0]])  # P = [2/3, 1/3]
    o = np.array([[0.0], [0.0], [1.0], [3.0]])  # Q = [1, 0] -> floored [1, 1e-5], renormalised by 1.00001
    expected = 2 / 3 * math.log((2 / 3) / (1 / 1.00001)) + 1 / 3 * math.log((1 / 3) / (1e-5 / 1.00001))
    assert klom(u, o, bins=2)[0] == pytest.approx(expected, abs=1e-12)
    assert klom_reference(u, o, bins=2)[0] == pytest.approx(expected, abs=1e-12)
    # swapped: P = [1, 0], Q = [2/3, 1/3]; Q's second bin is not floored (P is 0 there) -> ln(3/2)
    assert klom(u, o, bins=2, direction="oracle-unlearned")[0] == pytest.approx(math.log(1.5), abs=1e-12)
    # closed last bin: P = [1/2, 1/2], Q = [3/4, 1/4] -> 0.5 ln(2/3) + 0.5 ln 2
    assert klom(u, o, bins=2, inclusive_last_bin=True)[0] == pytest.approx(0.5 * math.log(4 / 3), abs=1e-12)
    # clipping: 1000 becomes 100, so lo=0, hi=100 and only the clipped value is dropped
    u2, o2 = np.array([[0.0], [1000.0]]), np.array([[0.0], [60.0]])  # P = [1, 0], Q = [1/2, 1/2]
    assert klom(u2, o2, bins=2)[0] == pytest.approx(math.log(2.0), abs=1e-12)


def test_float32_margins_keep_float32_edges() -> None:
    """u[0] is exactly a float32 linspace edge that differs from the float64 one, so the dtype changes the bin."""
    u = np.array([[-1.1369504928588867], [-0.13210485875606537], [0.6404226422309875], [0.10490011423826218],
                  [-0.5356693863868713]], dtype=np.float32)
    o = np.array([[0.3615950644016266], [1.3040000200271606], [0.9470809698104858], [-0.7037352323532104],
                  [-1.2654215097427368]], dtype=np.float32)
    got = klom(u, o)
    assert got[0] == pytest.approx(klom_reference(u, o)[0], abs=1e-12)
    assert got[0] == pytest.approx(9.903537551286169, abs=1e-9)
    as64 = klom(u.astype(np.float64), o.astype(np.float64))
    assert as64[0] == pytest.approx(7.878201330966081, abs=1e-9)
    assert klom(u, o.astype(np.float64)).dtype == np.float64  # mixed inputs are promoted to float64


def test_invalid_arguments() -> None:
    u = np.zeros((3, 4))
    with pytest.raises(ValueError, match="unlearned-oracle.*oracle-unlearned"):
        klom(u, u, direction="forward")
    with pytest.raises(ValueError, match="point counts differ"):
        klom(u, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        klom(np.zeros(4), u)
    assert klom(np.zeros((2, 0)), np.zeros((3, 0))).shape == (0,)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "unlearnbench.cli", *args], capture_output=True, text=True, env=env)


def test_cli_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    u, o = realistic(rng, 20, 30, 700, np.float32)
    np.save(tmp_path / "u.npy", u)
    np.save(tmp_path / "o.npy", o)
    out = tmp_path / "k.npy"
    proc = run_cli("klom", "--unlearned", str(tmp_path / "u.npy"), "--oracle", str(tmp_path / "o.npy"),
                   "--out", str(out), "--direction", "oracle-unlearned")
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, klom(u, o, direction="oracle-unlearned"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.npy", "o.npy", "u.npy"]  # no temp file left

    rc = cli.main(["klom", "--unlearned", str(tmp_path / "u.npy"), "--oracle", str(tmp_path / "o.npy"),
                   "--out", str(out), "--bins", "7", "--eps", "1e-3", "--clip", "-3", "4", "--inclusive-last-bin"])
    assert rc == 0
    want = klom(u, o, bins=7, eps=1e-3, clip=(-3.0, 4.0), inclusive_last_bin=True)
    np.testing.assert_array_equal(np.load(out), want)


def test_cli_directions_match_the_library() -> None:
    base = ["klom", "--unlearned", "u.npy", "--oracle", "o.npy", "--out", "k.npy"]
    parser = cli.build_parser()
    assert parser.parse_args(base).direction == DIRECTIONS[0]
    for direction in DIRECTIONS:
        assert parser.parse_args([*base, "--direction", direction]).direction == direction
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--direction", "forward"])


def test_cli_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((4, 10), dtype=np.float32))
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((4, 11), dtype=np.float32))
    out = tmp_path / "k.npy"

    proc = run_cli("klom", "--unlearned", str(corrupt), "--oracle", str(good), "--out", str(out))
    assert proc.returncode == 2
    assert "corrupt.npy" in proc.stderr and "Traceback" not in proc.stderr

    archive = tmp_path / "archive.npz"
    np.savez(archive, x=np.zeros((4, 10)))
    for args, needle in [
        (["--unlearned", str(tmp_path / "missing.npy"), "--oracle", str(good)], "no such file"),
        (["--unlearned", str(good), "--oracle", str(other)], "point counts differ"),
        (["--unlearned", str(good), "--oracle", str(archive)], "expected a .npy array"),
        (["--unlearned", str(good), "--oracle", str(good), "--bins", "0"], "bins must be a positive integer"),
    ]:
        assert cli.main(["klom", *args, "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
    assert not out.exists()
