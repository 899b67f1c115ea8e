"""``unlearnbench score``: margins from any framework (npy, npz, pt, folder) scored as the library scores them, and a
one-line message (exit 2) for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnbench import cli
from unlearnbench.margin_files import load_margins
from unlearnbench.metrics import epsilon as eps_metric
from unlearnbench.metrics.groups import group_masks, group_stats
from unlearnbench.metrics.klom import klom

SRC = Path(__file__).resolve().parents[1] / "src"
N_TRAIN, N_VAL, N_U, N_O = 150, 50, 20, 30
P = N_TRAIN + N_VAL


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    u = rng.normal(2.0, 1.5, (N_U, P)).astype(np.float32)
    o = (rng.normal(2.0, 1.5, (N_O, P)) - 2.0 * (rng.random(P) < 0.2)).astype(np.float32)
    forget = np.sort(rng.choice(N_TRAIN, 15, replace=False)).astype(np.int64)
    cu, co = rng.random((N_U, P)) < 0.9, rng.random((N_O, P)) < 0.8
    return u, o, forget, cu, co


def library_expectation(u, o, forget, cu, co):
    """What the library's own KLOM, group statistics and ε functions give (not the scoring core)."""
    per_point = klom(u, o)
    masks = group_masks(forget, N_TRAIN, N_VAL)
    rows = {g: group_stats(per_point[m]) | {"accuracy": cu[:, m].mean(), "oracle_accuracy": co[:, m].mean()}
            for g, m in masks.items()}
    eps = eps_metric.epsilon_per_point(u[:, forget], o[:, forget])
    score = eps_metric.forget_score(eps, n_models=N_U)
    final = eps_metric.final_score(score, cu[:, masks["retain"]].mean(1), co[:, masks["retain"]].mean(1),
                                   cu[:, masks["val"]].mean(1), co[:, masks["val"]].mean(1))
    rows["forget"] |= {"epsilon_mean": eps.mean(), "epsilon_max": eps.max(), "forget_score": score,
                       "final_score": final}
    return rows


def write(path: Path, array: np.ndarray, fmt: str, key: str) -> Path:
    """``array`` in format ``fmt`` at ``path`` (suffix added); folders hold one file per model."""
    if fmt == "npy":
        np.save(path.with_suffix(".npy"), array)
        return path.with_suffix(".npy")
    if fmt == "npz":
        np.savez(path.with_suffix(".npz"), **{key: array})
        return path.with_suffix(".npz")
    if fmt == "npz-single":  # the archive's only array, under another name
        np.savez(path.with_suffix(".npz"), arr_0=array)
        return path.with_suffix(".npz")
    if fmt == "pt":
        torch.save(torch.from_numpy(array), path.with_suffix(".pt"))
        return path.with_suffix(".pt")
    if fmt == "pt-dict":
        torch.save({key: torch.from_numpy(array)}, path.with_suffix(".pt"))
        return path.with_suffix(".pt")
    if fmt == "folder":  # model_0.npy, model_1.pt, ... mixed formats, one model each
        path.mkdir()
        for i, row in enumerate(array):
            if i % 2:
                torch.save(torch.from_numpy(row.copy()), path / f"model_{i}.pt")
            else:
                np.save(path / f"model_{i}.npy", row)
        return path
    raise ValueError(fmt)


def score(*args) -> int:
    return cli.main(["score", *map(str, args)])


@pytest.mark.parametrize("fmt", ["npy", "npz", "npz-single", "pt", "pt-dict", "folder"])
def test_every_input_format_scores_as_the_library(tmp_path, data, fmt):
    u, o, forget, cu, co = data
    paths = {name: write(tmp_path / name, array, fmt, key) for name, array, key in (
        ("u", u, "margins"), ("o", o, "margins"), ("cu", cu, "correct"), ("co", co, "correct"))}
    np.save(tmp_path / "forget.npy", forget)
    out = tmp_path / "table.csv"
    assert score("--unlearned", paths["u"], "--oracle", paths["o"], "--forget", tmp_path / "forget.npy",
                 "--n-train", N_TRAIN, "--correct-unlearned", paths["cu"], "--correct-oracle", paths["co"],
                 "--out", out) == 0
    table = pd.read_csv(out).set_index("group")
    assert list(table.index) == ["forget", "retain", "val"]
    assert {"n_points", "n_models_unlearned", "n_models_oracle", "p95", "p99", "mean", "p95_low", "p95_high",
            "accuracy", "oracle_accuracy", "forget_score", "final_score"} <= set(table.columns)
    assert (table.n_models_unlearned == N_U).all() and (table.n_models_oracle == N_O).all()
    for group, expected in library_expectation(u, o, forget, cu, co).items():
        for key, value in expected.items():
            assert table.loc[group, key] == pytest.approx(value, rel=1e-12), (group, key)
    assert table.loc[["retain", "val"], "forget_score"].isna().all()  # ε describes the forget points


def test_folders_stack_files_in_natural_name_order(tmp_path):
    rows = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    folder = write(tmp_path / "margins", rows, "folder", "margins")
    np.testing.assert_array_equal(load_margins(folder), rows)  # model_10 after model_9, not after model_1


def test_stdout_json_parquet_and_the_bootstrap_interval(tmp_path, data):
    u, o, forget, cu, co = data
    for name, array in (("u", u), ("o", o), ("f", forget), ("cu", cu), ("co", co)):
        np.save(tmp_path / f"{name}.npy", array)
    args = ["score", "--unlearned", "u.npy", "--oracle", "o.npy", "--forget", "f.npy", "--n-train", str(N_TRAIN),
            "--correct-unlearned", "cu.npy", "--correct-oracle", "co.npy", "--bootstrap", "20", "--out", "t.json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "unlearnbench", *args], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "t.json").read_text())
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"KLOM(unlearned || oracle), 20 bins: {N_U} unlearned vs {N_O} oracle models, "
                               f"{P} points ({N_TRAIN} train, {N_VAL} val), forget set of 15 points")
    assert lines[1].split() == ["group", "n_points", "p95", "p95_low", "p95_high", "p99", "mean", "accuracy",
                                "oracle_accuracy"]
    for line, record in zip(lines[2:5], records):
        assert line.split()[:3] == [record["group"], str(record["n_points"]), f"{record['p95']:.4f}"]
        assert record["p95_low"] <= record["p95"] <= record["p95_high"]
    assert records[1]["forget_score"] is None  # NaN is null in JSON
    assert f"forget score {records[0]['forget_score']:.4f}, final score {records[0]['final_score']:.4f}" in lines[5]
    assert lines[6] == "wrote t.json"

    assert score("--unlearned", tmp_path / "u.npy", "--oracle", tmp_path / "o.npy", "--forget", tmp_path / "f.npy",
                 "--n-train", N_TRAIN, "--no-epsilon", "--out", tmp_path / "t.parquet") == 0
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert table.group.tolist() == ["forget", "retain", "val"] and "accuracy" not in table.columns
    assert "forget_score" not in table.columns and table.p95_low.isna().all()
    assert table.p95.tolist() == pytest.approx([r["p95"] for r in records])


class _Payload:
    """Unpickling this creates a file: proof that a loader executed pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_every_bad_input_gets_one_line_and_exit_2(tmp_path, data, capsys):
    u, o, forget, cu, co = data
    good = {"u": tmp_path / "u.npy", "o": tmp_path / "o.npy", "f": tmp_path / "f.npy"}
    np.save(good["u"], u)
    np.save(good["o"], o)
    np.save(good["f"], forget)
    marker = tmp_path / "unpickled"
    bad = {}

    def save(name, array):
        np.save(tmp_path / name, array)
        return tmp_path / name

    bad["pickled.npy"] = save("pickled.npy", np.array([_Payload(marker)], dtype=object))
    torch.save({"margins": _Payload(marker)}, tmp_path / "pickled.pt")
    torch.save([torch.zeros(2, P)], tmp_path / "list.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    (tmp_path / "u.txt").write_text("1 2 3")
    np.savez(tmp_path / "two.npz", a=u, b=u)
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "m0.npy", u[0])
    np.save(folder / "m1.npy", u[1, :-1])
    cases = [
        ({"u": tmp_path / "pickled.npy"}, "pickled.npy: holds pickled Python objects"),
        ({"u": tmp_path / "pickled.pt"}, "pickled.pt: holds pickled Python objects besides tensors"),
        ({"o": tmp_path / "list.pt"}, "expected a tensor or a dict with one tensor, found a list"),
        ({"o": tmp_path / "corrupt.pt"}, "corrupt.pt: not a readable .pt file"),
        ({"u": tmp_path / "u.txt"}, "u.txt: unknown suffix '.txt'"),
        ({"u": tmp_path / "missing.npy"}, "missing.npy: no such file"),
        ({"u": tmp_path / "two.npz"}, "holds 2 arrays"),
        ({"u": folder}, "m1.npy: 199 points, but m0.npy has 200"),
        ({"o": save("short.npy", o[:, :-1])}, "point counts differ: --unlearned has 200 points, --oracle has 199"),
        ({"u": save("flat.npy", u[0])}, "expected a 2-D [models, points] array, got shape (200,)"),
        ({"u": save("int.npy", u.astype(np.int64))}, "expected floating-point margins, got dtype int64"),
        ({"f": save("ff.npy", forget.astype(np.float64))}, "expected integer train indices, got dtype float64"),
        ({"f": save("far.npy", np.array([3, N_TRAIN]))}, "1 of 2 indices out of range [0, 150) (--n-train), e.g. 150"),
        ({"f": save("neg.npy", np.array([-1, 3]))}, "out of range"),
        ({"f": save("rep.npy", np.array([3, 3]))}, "1 repeated index"),
        ({"n": N_TRAIN + N_VAL + 1}, "--n-train 201: must be in [1, 200]"),
        ({"cu": save("cf.npy", cu.astype(np.float32))}, "expected correctness flags (bool, or 0/1 integers), got "
                                                        "dtype float32"),
        ({"cu": save("c2.npy", cu.astype(np.int8) * 2)}, "with other values than 0 and 1"),
        ({"co": save("cs.npy", co[:-1])}, f"--correct-oracle {tmp_path / 'cs.npy'}: shape (29, 200) differs from "
                                          "the --oracle margins' (30, 200)"),
        ({"u": save("one.npy", u[:1])}, "the ε forget score needs at least 2 models (or --no-epsilon)"),
        ({"out": tmp_path / "t.xlsx"}, "t.xlsx: unknown suffix (expected .csv, .json, .parquet)"),
        ({"bootstrap": -1}, "--bootstrap -1: must be 0 or more"),
    ]
    for change, needle in cases:
        spec = {"u": good["u"], "o": good["o"], "f": good["f"], "n": N_TRAIN} | change
        args = ["--unlearned", spec["u"], "--oracle", spec["o"], "--forget", spec["f"], "--n-train", spec["n"]]
        for key, flag in (("cu", "--correct-unlearned"), ("co", "--correct-oracle"), ("out", "--out"),
                          ("bootstrap", "--bootstrap")):
            if key in spec:
                args += [flag, spec[key]]
        assert score(*args) == 2, needle
        err = capsys.readouterr().err
        assert needle in err, (needle, err)
        assert err.startswith("unlearnbench score: error: ") and err.count("\n") == 1, err
    assert not marker.exists()  # nothing was unpickled
    assert not (tmp_path / "t.xlsx").exists()


def test_the_klom_subcommand_still_works(tmp_path, data):
    u, o, *_ = data
    np.save(tmp_path / "u.npy", u)
    np.save(tmp_path / "o.npy", o)
    assert cli.main(["klom", "--unlearned", str(tmp_path / "u.npy"), "--oracle", str(tmp_path / "o.npy"),
                     "--out", str(tmp_path / "k.npy"), "--bins", "7"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), klom(u, o, bins=7))


def test_the_readme_example_prints_what_the_readme_says(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Scoring margins from any framework", 1)[1]
    code = section.split("```python\n# make_margins.py\n", 1)[1].split("```", 1)[0]
    shown = section.split("```text\n$ ", 1)[1].split("```", 1)[0]
    command, printed = shown.split("\n", 2)[:2], shown.split("\n", 2)[2]
    command = (command[0].rstrip("\\") + command[1]).split()
    assert command[0] == "unlearnbench"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, env=env)
    proc = subprocess.run([sys.executable, "-m", "unlearnbench", *command[1:]], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == printed
