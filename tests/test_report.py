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
from unlearnbench import layout
from unlearnbench.stages.report import _save_figure, plot_group_bars, report_tables

GROUPS = ("forget", "retain", "val")


def protocol_summary(ci: bool = False, forget_sets=("1", "class3"), methods=("do_nothing", "oracle", "ga"),
                     descriptions: dict | None = None, run_suffix: str = "") -> pd.DataFrame:
    """A summary as the workflow writes it: ``ga`` has two grid points x two snapshots on the selection sample
    and its chosen run (by average_95) on the report sample, ``retrain`` two budgets; from :func:`unlearnbench.selection.annotate`.

    Selection sample of ``ga`` on every forget set: lr~0.1 epoch 2 is best by average_95 (2.0 + 3.0 + 1.0) / 3,
    lr~0.01 epoch 1 by forget P95 alone. On the report sample the chosen run reads forget 3.0 (optimism 1.0).
    """
    from unlearnbench.selection import annotate

    rows = []

    def add(fs, method, run, sample, epoch, f, r, v, cost=0.0, diverged=0):
        for group, p95, n in (("forget", f, 10), ("retain", r, 290), ("val", v, 50)):
            row = {"dataset": "digits", "model": "digits_cnn", "forget_set": fs, "method": method, "run": run,
                   "sample": sample, "epoch": epoch, "group": group, "n_points": n,
                   "n_models": 4 if sample == "report" else 3, "p95": p95, "p99": p95 + 1, "mean": p95 / 2,
                   "std": 1.0, "n_oracles": 4, "relative_cost": cost, "diverged": diverged,
                   "direction": "unlearned-oracle"}
            if ci:
                row.update(p95_low=p95 - 0.5, p95_high=p95 + 0.25)
            rows.append(row)

    chosen = []
    for fs in forget_sets:
        if "do_nothing" in methods:
            add(fs, "do_nothing", "default", "report", 0, 9.0, 0.7, 0.7)
            chosen.append({"method": "do_nothing", "forget_set": fs, "run": "default", "epoch": 0})
        if "oracle" in methods:
            add(fs, "oracle", "default", "report", 0, 0.7, 0.6, 0.6)
            chosen.append({"method": "oracle", "forget_set": fs, "run": "default", "epoch": 0})
        for method in [m for m in methods if m not in ("do_nothing", "oracle")]:
            lo, hi = "lr~0.01" + run_suffix, "lr~0.1" + run_suffix
            add(fs, method, lo, "selection", 1, 1.5, 6.0, 6.0, 0.01)
            add(fs, method, lo, "selection", 2, 7.0, 2.0, 2.0, 0.02)
            add(fs, method, hi, "selection", 1, 6.0, 2.0, 2.0, 0.02)
            add(fs, method, hi, "selection", 2, 2.0, 3.0, 1.0, 0.04)
            add(fs, method, hi, "report", 2, 3.0, 3.2, 1.3, 0.04)
            chosen.append({"method": method, "forget_set": fs, "run": hi, "epoch": 2})
        add(fs, "retrain", "budget~0.1", "report", 3, 5.0, 2.5, 2.5, 0.09)
        add(fs, "retrain", "budget~0.5", "report", 15, 1.0, 0.9, 0.9, 0.48)
    roles = {"do_nothing": {"role": "no_unlearning"}, "oracle": {"role": "oracle"},
             "retrain": {"role": "retrain"}}
    return annotate(pd.DataFrame(rows), chosen, "average_95",
                    {m: roles.get(m, {"role": "unlearning"}) for m in (*methods, "retrain")},
                    descriptions or {})


# tables --------------------------------------------------------------------------------------------------


def test_reported_runs_are_the_chosen_ones_on_the_report_sample():
    rows = summary_md.reported_runs(protocol_summary()).set_index(["forget_set", "method", "run"])
    ga = rows.loc[("1", "ga", "lr~0.1")]
    assert ga["epoch"] == 2 and ga["forget_p95"] == 3.0 and ga["retain_p95"] == pytest.approx(3.2)
    assert ga["selected_on"] == pytest.approx(2.0) and ga["reported_on"] == pytest.approx(2.5)
    assert ga["optimism"] == pytest.approx(0.5) and ga["n_candidates"] == 4
    assert ga["relative_cost"] == pytest.approx(0.04)
    assert rows.loc[("1", "oracle", "default"), "relative_cost"] == pytest.approx(290 / 300)  # one retraining
    # reference methods first, then the retrain baseline's budgets (by cost), then the others; forget sets in order
    order = summary_md.reported_runs(protocol_summary())[["forget_set", "method"]].values.tolist()
    assert order[:5] == [["1", "do_nothing"], ["1", "oracle"], ["1", "retrain"], ["1", "retrain"], ["1", "ga"]]
    assert list(summary_md.headline_runs(protocol_summary())["method"][:3]) == ["do_nothing", "oracle", "ga"]


def test_a_table_without_samples_is_read_as_chosen_and_reported_on_one_sample():
    legacy = protocol_summary()
    legacy = legacy[legacy["sample"] == "selection"].drop(columns=["sample", "selected", "selection_rule",
                                                                   "selection_value", "role"])
    rows = summary_md.reported_runs(legacy).set_index(["forget_set", "method"])
    assert rows.loc[("1", "ga"), ["run", "epoch", "forget_p95"]].tolist() == ["lr~0.1", 2, 2.0]
    assert np.isnan(rows.loc[("1", "ga"), "selected_on"])
    assert "on the same models and oracles" in summary_md.summary_markdown(legacy)


def test_summary_markdown_shows_the_rule_both_samples_and_the_optimism():
    text = summary_md.summary_markdown(protocol_summary(), {"U-LiRA": pd.DataFrame({"method": ["ga"],
                                                                                      "accuracy": [0.5123]})})
    assert "## Forget set 1" in text and "## Forget set class3" in text
    assert "chosen by `average_95`" in text
    assert "| average\\_95 where chosen | average\\_95 reported | optimism |" in text
    assert "| `ga` | `lr~0.1` | 2 | 3.000 | 3.200 | 1.300 | 0.040 | 2.000 | 2.500 | 0.500 | 4 | 0 |" in text
    assert "| `retrain` | `budget~0.5` | 15 | 1.000 | 0.900 | 0.900 | 0.480 |  | 0.933 |  | 2 | 0 |" in text
    assert "## U-LiRA" in text and "| `ga` | 0.512 |" in text
    assert "[" not in text.split("## Forget set 1")[1].split("##")[0]  # no CI columns, no brackets


def test_confidence_intervals_are_shown_when_the_summary_has_them():
    text = summary_md.summary_markdown(protocol_summary(ci=True))
    assert "| `ga` | `lr~0.1` | 2 | 3.000 [2.500, 3.250] |" in text
    assert "`p95_low`" in text


def test_html_tables_are_self_contained_and_name_the_rule():
    page = summary_md.reported_runs_html(protocol_summary(ci=True))
    assert page.startswith("<!doctype html>") and "<table>" in page and "lr~0.1" in page
    assert "chosen by average_95" in page
    full = summary_md.full_summary_html(protocol_summary())
    assert full.count("<table>") == 2 and "All rows: dataset digits" in full and "selection_rule average_95" in full
    for text in (page, full, summary_md.table_html("epsilon", pd.DataFrame({"eps": [0.25]}))):
        assert not re.search(r"(src|href)=[\"']?https?:", text)


def test_write_tables_is_atomic_and_readable(tmp_path):
    csv = tmp_path / "klom_summary.csv"
    protocol_summary().to_csv(csv, index=False)
    extra = tmp_path / "ulira_summary.csv"
    pd.DataFrame({"method": ["ga"], "accuracy": [0.6]}).to_csv(extra, index=False)
    out = {k: tmp_path / "out" / f"{k}" for k in ("md", "best", "full")}
    report_tables(str(csv), str(out["md"]), str(out["best"]), str(out["full"]), "p95", {"ulira": "U-LiRA"},
                  ulira=str(extra))
    assert "## U-LiRA" in out["md"].read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["best", "full", "md"]  # no temp files left
    assert out["md"].stat().st_mode & 0o044  # readable by others (mkstemp would give 0600)


def test_the_console_summary_is_the_reported_runs(tmp_path):
    csv = tmp_path / "klom_summary.csv"
    protocol_summary().to_csv(csv, index=False)
    text = summary_md.console_summary(csv)
    assert "chosen by average_95 on the selection sample" in text
    ga = next(line for line in text.splitlines() if line.strip().startswith("ga"))
    assert ga.split()[0] == "ga" and [float(v) for v in ga.split()[1:]] == [3.0, 3.2, 1.3, 2.0, 2.5, 0.04]
    assert "retrain" not in text.split("\n\n", 1)[1]


# keys stay keys; user strings are escaped; descriptions are shown ----------------------------------------

KEY_CASES = {
    "leading zeros": ["1", "01", "007"],
    "missing-value words": ["NA", "nan", "null", "None"],
}


@pytest.mark.parametrize("case", sorted(KEY_CASES))
def test_forget_set_ids_come_back_as_written_in_tables_and_figures(tmp_path, case):
    ids = KEY_CASES[case]
    table = protocol_summary(forget_sets=ids)
    offsets = {fs: 10.0 * (i + 1) for i, fs in enumerate(ids)}  # each set's own do_nothing forget P95
    mask = (table["method"] == "do_nothing") & (table["group"] == "forget")
    table.loc[mask, "p95"] = table.loc[mask, "forget_set"].map(offsets)
    csv = tmp_path / "klom_summary.csv"
    from unlearnbench.storage import load_table, save_table

    save_table(csv, table)
    assert sorted(load_table(csv)["forget_set"].unique()) == sorted(ids)
    md = tmp_path / "summary.md"
    report_tables(str(csv), str(md), str(tmp_path / "b.html"), str(tmp_path / "f.html"), "p95", {})
    text = md.read_text()
    for fs in ids:
        section = text.split(f"## Forget set {summary_md.md_text(fs)}\n", 1)[1].split("##", 1)[0]
        assert f"| `do_nothing` | `default` | 0 | {offsets[fs]:.3f} |" in section, fs
    plot_group_bars(str(csv), str(tmp_path / "bars.png"), "p95")
    bars = plots.group_bars_figure(summary_md.normalise(load_table(csv)))
    assert [ax.get_title() for ax in bars.axes if ax.get_visible()] == [f"Forget set {fs}" for fs in
                                                                         summary_md.forget_set_order(ids)]
    for fs in ids:
        fig = plots.tradeoff_figure(summary_md.normalise(load_table(csv)), fs)
        assert sum(len(c.get_offsets()) for c in fig.axes[0].collections if hasattr(c, "get_offsets")) >= 6, fs


def test_a_plugin_method_named_na_is_kept(tmp_path):
    table = protocol_summary(methods=("do_nothing", "oracle", "NA"))
    csv = tmp_path / "klom_summary.csv"
    table.to_csv(csv, index=False)
    from unlearnbench.storage import load_table

    assert "NA" in set(load_table(csv)["method"])
    md = tmp_path / "summary.md"
    report_tables(str(csv), str(md), str(tmp_path / "b.html"), str(tmp_path / "f.html"), "p95", {})
    assert "| `NA` | `lr~0.1` | 2 | 3.000 |" in md.read_text()
    assert "NA" in [t.get_text() for ax in plots.group_bars_figure(load_table(csv)).axes
                    for t in ax.get_xticklabels()]


def test_user_strings_are_escaped_in_summary_md():
    evil_run = "tag~<script>alert(1)</script>|x*y*"
    description = "ten *points* <img src=x onerror=alert(1)> | [link](http://example.com) $5"
    table = protocol_summary(forget_sets=("1",), run_suffix="_" + evil_run, descriptions={"1": description})
    text = summary_md.summary_markdown(table)
    assert "<script" not in text and "<img" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt; \\| \\[link\\]\\(http://example.com\\) $5" in text
    assert "lr\\~0.1\\_tag\\~&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\|x\\*y\\*" in text  # shown literally
    ga = next(line for line in text.splitlines() if line.startswith("| `ga`"))
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert ga.replace("\\|", "").count("|") == header.count("|")  # the pipe does not split the cell
    assert summary_md.md_code("a`b") == "``a`b``" and summary_md.md_code("`x") == "`` `x ``"


def test_forget_set_descriptions_are_shown_in_tables_and_figures():
    table = protocol_summary(descriptions={"1": "ten random points", "class3": "half of digit 3"})
    text = summary_md.summary_markdown(table)
    assert "## Forget set 1: ten random points" in text and "## Forget set class3: half of digit 3" in text
    assert "<h2>Forget set class3: half of digit 3</h2>" in summary_md.reported_runs_html(table)
    assert "Forget set 1: ten random points" in summary_md.full_summary_html(table)
    assert "ten random points" in plots.tradeoff_figure(table, "1")._suptitle.get_text()
    titles = [ax.get_title() for ax in plots.group_bars_figure(table).axes if ax.get_visible()]
    assert titles == ["Forget set 1: ten random points", "Forget set class3: half of digit 3"]


def test_report_plan_optional_tables_follow_the_config():
    assert report_plan.enabled_optional_tables({}) == {}
    assert list(report_plan.enabled_optional_tables({"ulira": {"n_shadow": 4}})) == ["ulira"]
    assert report_plan.enabled_optional_tables({"epsilon": {"enabled": False}}) == {}
    targets = report_plan.targets(["1", "2"], {"epsilon": True})
    assert layout.figure("margins", "2") in targets
    assert layout.extra_table_html("epsilon") in targets and layout.SUMMARY_MD in targets
    runs = [{"method": "do_nothing", "run": "default", "sample": "report_epoch~0"},
            {"method": "ga", "run": "lr~1", "sample": "selection"}]
    paths = report_plan.score_files("r/{dataset}/{method}/{run}/fs~{forget_set}/{sample}.npz", "d", "3", runs)
    assert paths == ["r/d/do_nothing/default/fs~3/report_epoch~0.npz", "r/d/ga/lr~1/fs~3/selection.npz"]
    shards = report_plan.shard_files("{dataset}/{method}/{run}/{forget_set}/{sample}/{shard}", "d", "3",
                                     runs, lambda m: range(2) if m == "ga" else [5])
    assert shards == ["d/do_nothing/default/3/report_epoch~0/5", "d/ga/lr~1/3/selection/0", "d/ga/lr~1/3/selection/1"]


# figures -------------------------------------------------------------------------------------------------


def test_short_run_labels():
    labels = plots.short_run_labels(["batch_size~16_lr~0.02", "batch_size~16_lr~0.05"])
    assert labels == {"batch_size~16_lr~0.02": "lr~0.02", "batch_size~16_lr~0.05": "lr~0.05"}
    assert plots.short_run_labels(["default"]) == {"default": ""}


def test_worst_points_are_the_highest_klom_forget_points():
    klom = np.array([9.0, 1.0, 5.0, 7.0, 3.0, 9.5])
    mask = np.array([True, True, True, True, True, False])
    assert plots.worst_points(klom, mask, 3).tolist() == [0, 3, 2]


@pytest.mark.parametrize("ci", [False, True])
def test_summary_figures(tmp_path, ci):
    table = protocol_summary(ci)
    fig = plots.tradeoff_figure(table, "1")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["forget P95", "retain P95", "val P95", "average_95"]
    bars = plots.group_bars_figure(table)
    visible = [ax for ax in bars.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["Forget set 1", "Forget set class3"]
    assert len(visible[0].patches) == 3 * 3  # three methods (not the retrain curve) x three groups
    assert [t.get_text() for t in visible[0].get_xticklabels()] == ["do_nothing", "oracle", "ga"]
    heights = [p.get_height() for p in visible[0].patches]
    assert heights[2] == pytest.approx(3.0)  # ga's forget bar: its reported value, not the selection's 2.0
    has_errorbars = any(c.__class__.__name__ == "ErrorbarContainer" for c in visible[0].containers)
    assert has_errorbars == ci
    path = tmp_path / "figures" / "bars.png"
    _save_figure(bars, path)
    image = mpimg.imread(path)
    assert image.ndim == 3 and image[..., :3].std() > 0.05
    assert [p.name for p in path.parent.iterdir()] == ["bars.png"]


def _points(ax):
    """(x, y) of every scatter point of an axis."""
    return [tuple(xy) for c in ax.collections if hasattr(c, "get_offsets") for xy in np.asarray(c.get_offsets())]


def test_the_tradeoff_figure_follows_the_protocol():
    table = protocol_summary()
    fig = plots.tradeoff_figure(table, "1")
    forget, rule_panel = fig.axes[0], fig.axes[3]
    assert forget.get_xscale() == "log" and plots.tradeoff_figure(table, "1", cost_scale="linear").axes[0] \
        .get_xscale() == "linear"
    points = _points(forget)
    assert (0.04, 3.0) in points and (0.04, 2.0) in points  # ga reported, and where it was chosen
    assert any(x == pytest.approx(290 / 300) and y == pytest.approx(0.7) for x, y in points)  # oracle at its cost
    retrain = [line for line in forget.get_lines() if line.get_color() == plots.ROLE_COLOURS["retrain"]
               and len(line.get_xdata()) == 2]
    assert retrain and list(retrain[0].get_xdata()) == [0.09, 0.48]  # the baseline: a line over its budgets
    chosen = [line for line in rule_panel.get_lines() if line.get_linestyle() == "--"
              and list(line.get_xdata()) == [0.04, 0.04]]
    assert chosen and list(chosen[0].get_ydata()) == pytest.approx([2.0, 2.5])  # chosen on -> reported on
    do_nothing = [line for line in forget.get_lines() if list(line.get_ydata()) == [9.0, 9.0]]
    assert do_nothing  # cost 0: a level
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "retrain (budgets)" in labels and "chosen there by average_95" in labels


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


def test_the_margins_figure_names_the_reference_it_was_given():
    """The points are those the upper reference forgets worst: whatever it is called (registry role, not name)."""
    rng = np.random.default_rng(0)
    panels = [{"method": name, "run": "default", "epoch": 0, "margins": rng.normal(size=(3, 12)),
               "klom": rng.random(12)} for name in ("keep_all", "ga")]
    fig = plots.margins_figure([0, 2], rng.normal(size=(3, 12)), panels, "1", 8, reference="keep_all")
    title = fig._suptitle.get_text().replace("\n", " ")
    assert "keep_all forgets worst" in title and "do_nothing" not in title


# the tiny run --------------------------------------------------------------------------------------------

FIGURES = ["p95_bars.png"] + [f"{kind}_forget_set~{fs}.png" for fs in ("1", "class3")
                              for kind in ("tradeoff", "klom_epochs", "margins")]


def test_training_jobs_log_their_progress(tiny_run):
    logs = [log for rule in ("train_base", "train_oracle") for log in sorted((tiny_run / "logs" / rule).rglob("*.log"))]
    assert logs
    for log in logs:
        text = log.read_text()
        assert re.search(r"epoch \d+ accuracy \(mean over models[^)]*\): train \d\.\d+, val \d\.\d+", text), f"{log}:\n{text}"
        assert "device cpu" in text


def test_summary_md_and_figures_are_written(tiny_run):
    text = (tiny_run / layout.SUMMARY_MD).read_text()
    table = pd.read_csv(tiny_run / layout.KLOM_SUMMARY)
    for method in table.method.unique():
        assert f"| `{method}` |" in text
    for fs in ("1", "class3"):
        assert f"## Forget set {fs}" in text
    for name in FIGURES:
        image = mpimg.imread(tiny_run / layout.FIGURES / name)
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


@pytest.mark.system  # installs Chromium with apt-get when missing
def test_html_report_is_self_contained_and_renders_in_a_browser(tiny_run, tmp_path):
    snakemake(tiny_run, "--report", layout.REPORT_HTML, "--configfile", TINY_CONFIG)
    report = tiny_run / layout.REPORT_HTML
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


def test_a_long_tradeoff_legend_stays_inside_the_figure():
    """Twenty methods with two grid points each: the legend takes more columns (the figure widens) instead of
    running off the bottom of the image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    table = protocol_summary(methods=("do_nothing", "oracle", *(f"method{i:02d}" for i in range(20))))
    fig = plots.tradeoff_figure(table, "1")
    FigureCanvasAgg(fig).draw()
    legend, frame = fig.legends[0].get_window_extent(), fig.bbox
    assert len(fig.legends[0].get_texts()) > plots.LEGEND_ROWS
    assert frame.x0 <= legend.x0 and legend.x1 <= frame.x1 and frame.y0 <= legend.y0 and legend.y1 <= frame.y1
