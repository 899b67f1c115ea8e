"""Artefacts that describe themselves (unlearnbench.identity): a score or unlearned shard stores its run's identity,
and the summaries read it from the files instead of from keys kept parallel to them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unlearnbench import identity
from unlearnbench.identity import Identity
from unlearnbench.selection import annotate, parse_sample
from unlearnbench.stages.pool import summarize_ulira
from unlearnbench.stages.scoring import summarize
from unlearnbench.storage import ArtefactError, load_table, save_arrays, save_table

RUN = Identity(dataset="digits", model="digits_cnn", forget_set="01", method="NA", run="lr~0.1",
               sample="report_epoch~3")


def test_a_table_saved_with_its_identity_loads_it_back_ids_as_strings(tmp_path):
    frame = pd.DataFrame({"epoch": [3, 3], "group": ["forget", "val"], "p95": [0.25, 1.5]})
    identity.save_table(tmp_path / "stats.csv", RUN, frame)
    who, table = identity.load_table(tmp_path / "stats.csv")
    assert who == RUN  # forget set "01" stays "01", the method "NA" is no missing value
    assert list(table.columns) == [*identity.FIELDS, "epoch", "group", "p95"]
    pd.testing.assert_frame_equal(table[["epoch", "group", "p95"]], load_table(tmp_path / "stats.csv")[frame.columns])
    assert table["p95"].tolist() == [0.25, 1.5]


def test_an_empty_table_keeps_its_identity_columns_and_identifies_nothing(tmp_path):
    """The ε of a selection sample has no rows: it adds none to a summary, with the same columns."""
    identity.save_table(tmp_path / "epsilon.csv", RUN, pd.DataFrame(columns=["epoch", "n_forget"]))
    who, table = identity.load_table(tmp_path / "epsilon.csv")
    assert who is None and len(table) == 0 and list(table.columns) == [*identity.FIELDS, "epoch", "n_forget"]


def test_arrays_saved_with_their_identity_load_it_back_without_pickles(tmp_path):
    partial = Identity(method="oracle", run="default", sample="selection")
    identity.save_arrays(tmp_path / "u.npz", partial, margins=np.ones((2, 3)), epochs=np.array([1, 2]))
    with np.load(tmp_path / "u.npz", allow_pickle=False) as npz:  # no object array
        assert npz["identity"].dtype.kind == "U" and npz["identity"].tolist() == [
            ["method", "oracle"], ["run", "default"], ["sample", "selection"]]
    who, arrays = identity.load_arrays(tmp_path / "u.npz", ("margins",))
    assert who == partial and sorted(arrays) == ["epochs", "margins"]
    assert identity.read_identity(tmp_path / "u.npz") == partial


def test_a_job_identity_is_its_run_and_its_wildcards_without_the_shard():
    who = Identity.of_job("digits", "digits_cnn", {"method": "ga", "run": "lr~1", "forget_set": "1",
                                                   "sample": "selection", "shard": "2"})
    assert who.fields() == {"dataset": "digits", "model": "digits_cnn", "forget_set": "1", "method": "ga",
                            "run": "lr~1", "sample": "selection"}
    assert Identity(**who.fields()) == who and who.describe() == "method ga, run lr~1, forget set 1"


def test_a_file_without_an_identity_is_an_artefact_error_naming_it(tmp_path):
    save_arrays(tmp_path / "old.npz", margins=np.ones(3))
    save_table(tmp_path / "old.csv", pd.DataFrame({"epoch": [1]}))
    with pytest.raises(ArtefactError, match="old.npz"):
        identity.read_identity(tmp_path / "old.npz")
    with pytest.raises(ArtefactError, match="old.csv"):
        identity.load_table(tmp_path / "old.csv")
    save_table(tmp_path / "mixed.csv", pd.DataFrame({"method": ["a", "b"], "run": ["r", "r"]}))
    with pytest.raises(ArtefactError, match="'method' holds 2 values"):
        identity.load_table(tmp_path / "mixed.csv")
    with pytest.raises(ValueError, match="reserved"):
        identity.save_arrays(tmp_path / "x.npz", RUN, identity=np.ones(1))


def test_by_run_indexes_files_by_their_stored_run_in_order(tmp_path):
    paths = []
    for i, (method, run) in enumerate([("ga", "lr~1"), ("oracle", "default"), ("ga", "lr~1")]):
        paths.append(str(tmp_path / f"{i}.npz"))
        identity.save_arrays(paths[-1], Identity(method=method, run=run), margins=np.zeros(1))
    assert identity.by_run(paths) == {("ga", "lr~1"): [paths[0], paths[2]], ("oracle", "default"): [paths[1]]}


# the summaries: files only, the same table as with the keys the rules used to pass ---------------------------


SCORES = [  # (method, run, forget set, sample): runs in the order the workflow collects them
    ("do_nothing", "default", "1", "report_epoch~0"),
    ("ga", "lr~0.2", "01", "selection"),
    ("ga", "lr~0.1", "1", "selection"),
    ("ga", "lr~0.1", "1", "report_epoch~2"),
    ("NA", "default", "01", "report_epoch~0"),
]


def keyed_stack(paths, keys, first, order):
    """How the summaries stacked score tables from the keys the rules passed (before artefacts carried them)."""
    table = pd.concat([load_table(p).assign(**k) for p, k in zip(paths, keys)], ignore_index=True)
    return table[first + [c for c in table.columns if c not in first]].sort_values(order, kind="stable")


def write_scores(tmp_path):
    """stats.csv / epsilon.csv per run as score_klom writes them (identity columns first; ε empty on selection)."""
    rng = np.random.default_rng(0)
    stats, epsilon, keys = [], [], []
    for i, (method, run, forget_set, sample) in enumerate(SCORES):
        who = Identity(dataset="digits", model="digits_cnn", forget_set=forget_set, method=method, run=run,
                       sample=sample)
        epochs = [1, 2] if sample == "selection" else [parse_sample(sample)[1]]
        rows = [{"epoch": e, "group": g, "n_points": 10, "p95": rng.random() / 3, "mean": rng.random(),
                 "n_models": 4, "accuracy": np.nan if method == "NA" else rng.random(), "direction": "u-o"}
                for e in epochs for g in ("forget", "retain", "val")]
        eps = [] if sample == "selection" else [{"epoch": e, "n_forget": 10, "epsilon_mean": rng.random() * 7,
                                                  "final_score": rng.random()} for e in epochs]
        stats.append(str(tmp_path / f"stats{i}.csv"))
        epsilon.append(str(tmp_path / f"eps{i}.csv"))
        identity.save_table(stats[-1], who, pd.DataFrame(rows))
        identity.save_table(epsilon[-1], who,
                            pd.DataFrame(eps, columns=["epoch", "n_forget", "epsilon_mean", "final_score"]))
        keys.append({**who.fields(), "sample": parse_sample(sample)[0]})
    return stats, epsilon, keys


def test_summarize_from_files_alone_gives_the_table_the_keys_gave(tmp_path):
    stats, epsilon, keys = write_scores(tmp_path)
    out = {name: str(tmp_path / f"out_{name}") for name in ("summary.csv", "summary.parquet", "epsilon.csv")}
    summarize(stats, [], out["summary.csv"], out["summary.parquet"], fixed_selections=[], rule="average_95",
              methods={}, descriptions={}, epsilon=epsilon, epsilon_summary=out["epsilon.csv"])
    ids = ["dataset", "model", "forget_set", "method", "run", "sample", "epoch"]
    expected_eps = keyed_stack(epsilon, keys, ids, ids)
    save_table(tmp_path / "expected_eps.csv", expected_eps)
    assert (tmp_path / "expected_eps.csv").read_bytes() == open(out["epsilon.csv"], "rb").read()
    stacked = keyed_stack(stats, keys, ids + ["group", "n_points", "n_models"], ids + ["group"])
    save_table(tmp_path / "expected.csv", annotate(stacked, [], "average_95", {}, {}))
    assert (tmp_path / "expected.csv").read_bytes() == open(out["summary.csv"], "rb").read()
    table = load_table(out["summary.csv"])
    assert set(table["sample"]) == {"selection", "report"} and "01" in set(table["forget_set"])


def test_summarize_ulira_from_files_alone_gives_the_table_the_keys_gave(tmp_path):
    rng = np.random.default_rng(1)
    paths, keys = [], []
    for i, (method, run) in enumerate([("oracle", "default"), ("do_nothing", "default"), ("ga", "lr~1")]):
        who = Identity(dataset="digits", model="digits_cnn", method=method, run=run)
        paths.append(str(tmp_path / f"scores{i}.csv"))
        identity.save_table(paths[-1], who, pd.DataFrame({"epoch": [0, 2], "accuracy_mean": rng.random(2),
                                                          "n_targets": [6, 6]}))
        keys.append(who.fields())
    summarize_ulira(paths, str(tmp_path / "ulira.csv"))
    ids = ["dataset", "model", "method", "run", "epoch"]
    save_table(tmp_path / "expected.csv", keyed_stack(paths, keys, ids, ids))
    assert (tmp_path / "ulira.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
