"""Per-run metrics beside KLOM come from one registry (unlearnbench.run_metrics): the score job writes a table per
metric, the summary stacks each, the rules name none. A new metric is its function and one registry line."""

import numpy as np
import pandas as pd
import pytest

from unlearnbench import identity, layout, run_metrics
from unlearnbench.run_metrics import RUN_METRICS, RunMetric
from unlearnbench.stages.scoring import score_klom, summarize
from unlearnbench.storage import save_arrays, save_npy

N_TRAIN, N_VAL = 30, 10
KLOM = dict(bins=5, eps=1e-5, clip=[-100, 100], direction="unlearned-oracle", inclusive_last_bin=False,
            percentiles=[95, 99])


def test_metrics_are_computed_on_the_report_sample_while_their_section_is_on():
    config = {"epsilon": {"delta": 1e-5, "cap": 50}}
    assert run_metrics.options(config, "report") == {"epsilon": {"delta": 1e-5, "cap": 50}}
    assert run_metrics.options(config, "selection") == {"epsilon": None}  # selection ranks by KLOM only
    assert run_metrics.options({"epsilon": {"enabled": False, "delta": 1e-5}}, "report") == {"epsilon": None}
    assert run_metrics.options({"epsilon": {"enabled": True, "delta": 1e-5}}, "report") == {"epsilon": {"delta": 1e-5}}
    assert layout.run_metric_summary("epsilon") == "results/epsilon_summary.csv"


def forget_gap(snapshot, scale: float = 1.0) -> dict:
    """A throwaway metric: scale x (mean unlearned - mean oracle margin) on the forget points."""
    forget = snapshot.masks["forget"]
    return {"gap": scale * float(snapshot.unlearned[:, forget].mean() - snapshot.oracle[:, forget].mean())}


def write_run(tmp_path, method: str):
    rng = np.random.default_rng(0)
    save_npy(tmp_path / "forget.npy", np.array([1, 5, 7]))
    save_arrays(tmp_path / "oracle.npz", margins=rng.normal(size=(6, N_TRAIN + N_VAL)).astype(np.float32),
                model_index=np.arange(6))
    margins = rng.normal(size=(2, 5, N_TRAIN + N_VAL)).astype(np.float32)
    save_arrays(tmp_path / f"{method}.npz", margins=margins, epochs=np.array([1, 2]), samples=np.full((2, 5), 100),
                diverged=np.zeros((2, 5), bool), model_index=np.arange(5))
    return margins, np.load(tmp_path / "oracle.npz")["margins"]


def score(tmp_path, method, metrics, tables):
    score_klom([str(tmp_path / f"{method}.npz")], [str(tmp_path / "oracle.npz")], str(tmp_path / "forget.npy"),
               str(tmp_path / f"{method}_klom.npz"), str(tmp_path / f"{method}_stats.csv"), KLOM,
               bootstrap=None, run_metrics=metrics, n_train=N_TRAIN, n_val=N_VAL, cost_unit=1000,
               identity={"dataset": "digits", "model": "digits_cnn", "forget_set": "1", "method": method,
                         "run": "default", "sample": "report_epoch~2"}, **tables)


def test_a_new_per_run_metric_is_its_function_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(RUN_METRICS, "forget_gap", RunMetric(f"{__name__}:forget_gap", ("gap",), "forget gap"))
    margins, oracle = write_run(tmp_path, "ga")
    tables = {name: str(tmp_path / f"ga_{name}.csv") for name in RUN_METRICS}
    score(tmp_path, "ga", {"epsilon": None, "forget_gap": {"scale": 2.0}}, tables)
    who, gap = identity.load_table(tables["forget_gap"])
    assert who.method == "ga" and gap.epoch.tolist() == [1, 2]
    forget = [1, 5, 7]
    expected = [2.0 * (margins[s][:, forget].mean() - oracle[:, forget].mean()) for s in range(2)]
    np.testing.assert_allclose(gap.gap, expected, rtol=1e-6)
    off = identity.load_table(tables["epsilon"])[1]
    assert off.empty and list(off.columns)[-6:] == ["epoch", *RUN_METRICS["epsilon"].columns]  # off: columns only

    out = {f"{name}_summary": str(tmp_path / f"{name}_summary.csv") for name in RUN_METRICS}
    summarize([str(tmp_path / "ga_stats.csv")], [], str(tmp_path / "summary.csv"), str(tmp_path / "summary.parquet"),
              [], "average_95", {}, {}, **{name: [path] for name, path in tables.items()}, **out)
    summary = pd.read_csv(out["forget_gap_summary"])
    assert summary.method.tolist() == ["ga", "ga"] and summary["sample"].tolist() == ["report", "report"]
    np.testing.assert_allclose(summary.gap, expected, rtol=1e-6)


def test_a_score_job_whose_tables_and_the_registry_disagree_is_refused(tmp_path):
    write_run(tmp_path, "ga")
    with pytest.raises(ValueError, match=r"per-run metrics \['epsilon'\]: the job has tables \[\]"):
        score(tmp_path, "ga", {"epsilon": None}, {})
