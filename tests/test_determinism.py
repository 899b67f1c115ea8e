"""Identical runs give identical bytes, for every kind of artefact the workflow writes.

Each build runs in its own process (different PYTHONHASHSEED, and a fresh Rust hash seed inside safetensors),
so anything ordered by hashing, or stamped with a time, shows up as a byte difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUILD = r"""
import sys
from pathlib import Path

import numpy as np

from unlearnbench.stages.report import plot_group_bars, plot_tradeoff, report_tables
from unlearnbench.stages.scoring import score_klom, summarize
from unlearnbench.stack import ModelStack
from unlearnbench.storage import save_arrays, save_npy, save_table

out = Path(sys.argv[1])
n_train, n_val = 40, 20
rng = np.random.default_rng(0)
ModelStack.initialise("digits_cnn", 10, 1, [3, 4], [0, 1]).save(out / "weights.safetensors",
                                                                {"b": 1, "a": [2, 3], "c": "x"})
save_npy(out / "forget.npy", np.array([1, 5, 7]))
save_arrays(out / "oracle.npz", margins=rng.normal(size=(6, n_train + n_val)).astype(np.float32),
            model_index=np.arange(6))
stats, eps = [], []
for method in ("do_nothing", "gradient_ascent"):
    save_arrays(out / f"{method}.npz", margins=rng.normal(size=(2, 5, n_train + n_val)).astype(np.float32),
                epochs=np.array([1, 2]), samples=np.full((2, 5), 100), diverged=np.zeros((2, 5), bool),
                model_index=np.arange(5))
    score_klom([str(out / f"{method}.npz")], [str(out / "oracle.npz")], str(out / "forget.npy"),
               str(out / f"{method}_klom.npz"), str(out / f"{method}_stats.csv"),
               dict(bins=5, eps=1e-5, clip=[-100, 100], direction="unlearned-oracle", inclusive_last_bin=False,
                    percentiles=[95, 99]),
               bootstrap={"n_resamples": 5, "alpha": 0.1}, run_metrics={"epsilon": {"delta": 1e-5, "cap": 50}},
               epsilon=str(out / f"{method}_eps.csv"),
               n_train=n_train, n_val=n_val, cost_unit=1000,
               identity={"dataset": "digits", "model": "digits_cnn", "forget_set": "1", "method": method,
                         "run": "default", "sample": "report_epoch~2"})
    stats.append(str(out / f"{method}_stats.csv"))
    eps.append(str(out / f"{method}_eps.csv"))
summarize(stats, [], str(out / "summary.csv"), str(out / "summary.parquet"), [], "average_95", {}, {}, epsilon=eps,
          epsilon_summary=str(out / "epsilon.csv"))
report_tables(str(out / "summary.csv"), str(out / "summary.md"), str(out / "best.html"), str(out / "full.html"),
              "p95", {})
plot_group_bars(str(out / "summary.csv"), str(out / "bars.png"), "p95")
plot_tradeoff(str(out / "summary.csv"), str(out / "tradeoff.png"), "p95", "log", "1")
"""


def build(folder: Path, hash_seed: str) -> dict[str, bytes]:
    folder.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", BUILD, "."], cwd=folder, capture_output=True, text=True, env=env,
                          timeout=600)  # relative paths: summary.md names its source
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_every_artefact_is_byte_identical_across_processes(tmp_path):
    first, second = build(tmp_path / "a", "1"), build(tmp_path / "b", "2")
    assert {".safetensors", ".npz", ".npy", ".csv", ".parquet", ".md", ".html", ".png"} <= {
        Path(name).suffix for name in first}
    assert sorted(first) == sorted(second)
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, differ
