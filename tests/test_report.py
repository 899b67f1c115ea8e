"""The report: table and figure functions on a synthetic summary, and the tiny run's HTML report rendered
in a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from conftest import TINY_CONFIG, snakemake
from unlearnbench import plots, report_plan, summary_md

GROUPS = ("forget", "retain", "val")


def synthetic_summary(ci: bool = False) -> pd.DataFrame:
    """Two forget sets; do_nothing, oracle and a method with two grid points x two snapshots.

    Forget P95 of ``ga`` (lr 0.1) at epoch 2 is the lowest of its four candidates in forget set 1;
    (lr 0.01) at epoch 1 in forget set ``class3``.
    """
    forget = {
        ("1", "do_nothing", "default", 0): 9.0, ("1", "oracle", "default", 0): 2.0,
        ("1", "ga", "lr~0.01", 1): 8.0, ("1", "ga", "lr~0.01", 2): 7.0,
        ("1", "ga", "lr~0.1", 1): 6.0, ("1", "ga", "lr~0.1", 2): 3.0,
        ("class3", "do_nothing", "default", 0): 8.0, ("class3", "oracle", "default", 0): 2.5,
        ("class3", "ga", "lr~0.01", 1): 4.0, ("class3", "ga", "lr~0.01", 2): 5.0,
        ("class3", "ga", "lr~0.1", 1): 6.0, ("class3", "ga", "lr~0.1", 2): 11.5,
    }
    rows = []
    for (fs, method, run, epoch), value in forget.items():
        cost = 0.0 if method != "ga" else epoch * (0.01 if "0.01" in run else 0.02)
        for g, group in enumerate(GROUPS):
            p95 = value if group == "forget" else 3.0 + g + 0.1 * epoch
            row = {"dataset": "digits", "model": "digits_cnn", "forget_set": fs, "method": method, "run": run,
                   "epoch": epoch, "group": group, "n_points": 10, "n_models": 4, "p95": p95, "p99": p95 + 1,
                   "mean": p95 / 2, "std": 1.0, "n_oracles": 4, "relative_cost": cost,
                   "diverged": 4 if p95 == 11.5 else 0, "direction": "unlearned-oracle"}
            if ci:
                row.update(p95_low=p95 - 0.5, p95_high=p95 + 0.25)
            rows.append(row)
    return pd.DataFrame(rows)


# tables --------------------------------------------------------------------------------------------------


def test_best_runs_pick_the_lowest_forget_p95_at_any_snapshot():
    best = summary_md.best_runs(synthetic_summary()).set_index(["forget_set", "method"])
    assert best.loc[("1", "ga"), ["run", "epoch", "forget_p95"]].tolist() == ["lr~0.1", 2, 3.0]
    assert best.loc[("class3", "ga"), ["run", "epoch", "forget_p95"]].tolist() == ["lr~0.01", 1, 4.0]
    assert best.loc[("1", "ga"), "retain_p95"] == pytest.approx(4.2)
    assert best.loc[("1", "ga"), "relative_cost"] == pytest.approx(0.04)
    assert best.loc[("1", "ga"), "n_candidates"] == 4
    # reference methods first, then the others; forget sets in order
    assert list(summary_md.best_runs(synthetic_summary())["method"][:3]) == ["do_nothing", "oracle", "ga"]


def test_best_runs_break_ties_by_cost_then_epoch():
    table = synthetic_summary()
    table.loc[(table.forget_set == "1") & (table.run == "lr~0.01") & (table.epoch == 2) & (table.group == "forget"),
              "p95"] = 3.0  # ties with lr~0.1 epoch 2 (cost 0.04), cheaper (0.02)
    best = summary_md.best_runs(table).set_index(["forget_set", "method"])
    assert best.loc[("1", "ga"), ["run", "epoch"]].tolist() == ["lr~0.01", 2]


def test_forget_set_ids_read_back_as_integers_still_match():
    table = synthetic_summary()
    table = table[table.forget_set == "1"].assign(forget_set=1)  # as pandas reads a CSV of numeric ids
    assert set(summary_md.best_runs(table)["forget_set"]) == {"1"}


def test_summary_markdown_has_a_table_per_forget_set_and_optional_extras():
    text = summary_md.summary_markdown(synthetic_summary(), {"U-LiRA": pd.DataFrame({"method": ["ga"],
                                                                                       "accuracy": [0.5123]})})
    assert "## Forget set 1" in text and "## Forget set class3" in text
    assert "| ga | 3.000 | 4.200 | 5.200 | 0.040 | lr~0.1 | 2 | 0 | 4 |" in text
    assert "## U-LiRA" in text and "| ga | 0.512 |" in text
    assert "[" not in text.split("## Forget set 1")[1].split("##")[0]  # no CI columns, no brackets


def test_confidence_intervals_are_shown_when_the_summary_has_them():
    text = summary_md.summary_markdown(synthetic_summary(ci=True))
    assert "| ga | 3.000 [2.500, 3.250] |" in text
    assert "p95_low" in text


def test_html_tables_are_self_contained():
    page = summary_md.best_runs_html(synthetic_summary(ci=True))
    assert page.startswith("<!doctype html>") and "<table>" in page and "lr~0.1" in page
    full = summary_md.full_summary_html(synthetic_summary())
    assert full.count("<table>") == 2 and "All rows: dataset digits" in full
    for text in (page, full, summary_md.table_html("epsilon", pd.DataFrame({"eps": [0.25]}))):
        assert not re.search(r"(src|href)=[\"']?https?:", text)


def test_write_tables_is_atomic_and_readable(tmp_path):
    csv = tmp_path / "klom_summary.csv"
    synthetic_summary().to_csv(csv, index=False)
    extra = tmp_path / "ulira_summary.csv"
    pd.DataFrame({"method": ["ga"], "accuracy": [0.6]}).to_csv(extra, index=False)
    out = {k: tmp_path / "out" / f"{k}" for k in ("md", "best", "full")}
    summary_md.write_tables(str(csv), str(out["md"]), str(out["best"]), str(out["full"]), {"U-LiRA": str(extra)})
    assert "## U-LiRA" in out["md"].read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["best", "full", "md"]  # no temp files left
    assert out["md"].stat().st_mode & 0o044  # readable by others (mkstemp would give 0600)


def test_report_plan_optional_tables_follow_the_config():
    assert report_plan.enabled_optional_tables({}) == {}
    assert list(report_plan.enabled_optional_tables({"ulira": {"n_shadow": 4}})) == ["ulira"]
    assert report_plan.enabled_optional_tables({"epsilon": {"enabled": False}}) == {}
    targets = report_plan.targets(["1", "2"], {"epsilon": True})
    assert "results/figures/margins_forget_set~2.png" in targets
    assert "results/report/epsilon_summary.html" in targets and "results/summary.md" in targets
    runs = {"do_nothing": {"default": {}}, "ga": {"lr~0.1": {}, "lr~1": {}}}
    assert report_plan.klom_paths("r/{dataset}/{method}/{run}/fs~{forget_set}.npz", "d", runs, "3")[-1] == \
        "r/d/ga/lr~1/fs~3.npz"
    shards = report_plan.unlearned_paths("{dataset}/{method}/{run}/{forget_set}/{shard}", "d", runs, "3",
                                         lambda m: range(2))
    assert len(shards) == 6 == len(report_plan.unlearned_keys(runs, lambda m: range(2)))


# figures -------------------------------------------------------------------------------------------------


def test_pareto_frontier_and_labels():
    x, y = plots.pareto_frontier([0.3, 0.1, 0.2, 0.4, np.nan], [5.0, 6.0, 7.0, 4.0, 1.0])
    assert x.tolist() == [0.1, 0.3, 0.4] and y.tolist() == [6.0, 5.0, 4.0]
    labels = plots.short_run_labels(["batch_size~16_lr~0.02", "batch_size~16_lr~0.05"])
    assert labels == {"batch_size~16_lr~0.02": "lr~0.02", "batch_size~16_lr~0.05": "lr~0.05"}
    assert plots.short_run_labels(["default"]) == {"default": ""}


def test_worst_points_are_the_highest_klom_forget_points():
    klom = np.array([9.0, 1.0, 5.0, 7.0, 3.0, 9.5])
    mask = np.array([True, True, True, True, True, False])
    assert plots.worst_points(klom, mask, 3).tolist() == [0, 3, 2]


@pytest.mark.parametrize("ci", [False, True])
def test_summary_figures(tmp_path, ci):
    table = synthetic_summary(ci)
    fig = plots.tradeoff_figure(table, "1")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    forget_ax = fig.axes[0]
    assert forget_ax.get_title() == "forget P95"
    bars = plots.group_bars_figure(table)
    visible = [ax for ax in bars.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["Forget set 1", "Forget set class3"]
    assert len(visible[0].patches) == 3 * 3  # three methods x three groups
    has_errorbars = any(c.__class__.__name__ == "ErrorbarContainer" for c in visible[0].containers)
    assert has_errorbars == ci
    path = tmp_path / "figures" / "bars.png"
    plots.save_figure(bars, path)
    image = mpimg.imread(path)
    assert image.ndim == 3 and image[..., :3].std() > 0.05
    assert [p.name for p in path.parent.iterdir()] == ["bars.png"]


def test_klom_and_margin_figures_cope_with_diverged_models():
    rng = np.random.default_rng(0)
    n_train, n_val, m = 8, 4, 5
    masks = {"forget": np.arange(12) < 3, "retain": (np.arange(12) >= 3) & (np.arange(12) < 8),
             "val": np.arange(12) >= 8}
    curves = [{"method": "do_nothing", "run": "default", "epochs": np.array([0]), "klom": rng.random((1, 12))},
              {"method": "ga", "run": "lr~0.1", "epochs": np.array([1, 2]), "klom": rng.random((2, 12))}]
    fig = plots.klom_epochs_figure(curves, masks, "1")
    assert len(fig.axes) == 3 and fig.axes[0].get_legend_handles_labels()[1] == ["do_nothing", "ga (lr~0.1)"]
    diverged = np.full((m, n_train + n_val), np.nan, dtype=np.float32)
    panels = [{"method": "do_nothing", "run": "default", "epoch": 0, "margins": rng.normal(size=(m, 12)),
               "klom": rng.random(12)},
              {"method": "ga", "run": "lr~0.1", "epoch": 2, "margins": diverged, "klom": np.full(12, 11.5)}]
    fig = plots.margins_figure([0, 2], rng.normal(size=(m, 12)), panels, "1", n_train)
    assert len(fig.axes) == 4
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("5 diverged" in t for t in texts)
    fig.canvas.draw()  # renders without error


# the tiny run --------------------------------------------------------------------------------------------

FIGURES = ["p95_bars.png"] + [f"{kind}_forget_set~{fs}.png" for fs in ("1", "class3")
                              for kind in ("tradeoff", "klom_epochs", "margins")]


def test_training_jobs_log_their_progress(tiny_run):
    logs = [log for rule in ("train_base", "train_oracle") for log in sorted((tiny_run / "logs" / rule).rglob("*.log"))]
    assert logs
    for log in logs:
        text = log.read_text()
        assert re.search(r"epoch \d+/\d+ train accuracy \d\.\d+", text), f"{log}:\n{text}"
        assert "device cpu" in text


def test_summary_md_and_figures_are_written(tiny_run):
    text = (tiny_run / "results/summary.md").read_text()
    table = pd.read_csv(tiny_run / "results/klom_summary.csv")
    for method in table.method.unique():
        assert f"| {method} |" in text
    for fs in ("1", "class3"):
        assert f"## Forget set {fs}" in text
    for name in FIGURES:
        image = mpimg.imread(tiny_run / "results/figures" / name)
        assert image[..., :3].std() > 0.05, name


def find_chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (root only), else the test is skipped."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get is not available to root here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd, timeout in ((["apt-get", "update"], 180),
                             (["apt-get", "install", "-y", "--no-install-recommends", "chromium"], 600)):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            if proc.returncode != 0:
                pytest.skip(f"cannot install chromium ({' '.join(cmd)} failed): {proc.stderr[-500:]}")
    except subprocess.TimeoutExpired as err:
        pytest.skip(f"cannot install chromium: {err}")
    if not shutil.which("chromium"):
        pytest.skip("apt-get installed no chromium binary")
    return shutil.which("chromium")


def test_html_report_is_self_contained_and_renders_in_a_browser(tiny_run, tmp_path):
    snakemake(tiny_run, "--report", "results/report.html", "--configfile", TINY_CONFIG)
    report = tiny_run / "results/report.html"
    html = report.read_text()
    # self-contained: no script, style sheet, image or frame fetched from the network
    assert not re.search(r"<(script|img|iframe)[^>]+src=[\"']?https?:", html, re.I)
    assert not re.search(r"<link[^>]+href=[\"']?https?:", html, re.I)
    assert not re.search(r"@import\s+(url\()?[\"']?https?:", html, re.I)
    for name in FIGURES + ["best_runs.html", "klom_summary.html", "summary.md"]:
        assert name in html, name
    assert html.count("data:image/png;") >= len(FIGURES)
    for category in ("Summary tables", "P95 against cost", "P95 per group", "KLOM over epochs", "Margin histograms"):
        assert category in html

    browser = find_chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    shot = tmp_path / "report.png"
    proc = subprocess.run([browser, *flags, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                           "--window-size=1280,2000", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stdout + proc.stderr
    image = mpimg.imread(shot)[..., :3]
    assert image.shape[:2] == (2000, 1280)
    assert image.std() > 0.03, "blank screenshot"
    assert len(np.unique((image * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50  # text, icons, graph
    # the React app filled its root element (the report needs JavaScript, inlined)
    dom = subprocess.run([browser, *flags, f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=5000",
                          "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert re.search(r'<div id="app"><[a-z]', dom), dom[:2000]
