# What people read: results/summary.md (each method's reported run per forget set), figures under
# results/figures/ and, with `snakemake --report results/report.html`, a self-contained HTML report.
# The library does the work (unlearnbench.plots, .summary_md; paths in .layout); scripts unpack.
# The figures follow the table: each method's run chosen on the selection sample, reported on the
# report sample (the select_run checkpoints say which).
# Every rule of the report stage (and summarize, summarize_ulira) is a localrule: on a cluster it runs
# where snakemake runs, without a queue wait, and in no group job. Three of them read the select_run
# checkpoints, and a group job holding checkpoint readers can leave a run stalled with jobs never
# started (snakemake issue #823, which --keep-going turns into exit 0: see the Snakefile's onsuccess).

from unlearnbench import report_plan
from unlearnbench.methods import with_role

REPORT_STAT = "p95"  # the statistic the headline tables and figures rank and plot
REPORT_POINTS = 3  # forget points with margin histograms, per forget set
# the method whose worst-forgotten points are shown: the upper reference (role no_unlearning), else the first
REPORT_REFERENCE = next(iter(with_role(RUNS, "no_unlearning", config["plugins"])), "")
OPTIONAL_TABLES = report_plan.enabled_optional_tables(
    config
)  # U-LiRA, the per-run metrics (epsilon), the pool: when enabled


rule report_tables:
    input:
        unpack(lambda w: {name: path for name, (path, _) in OPTIONAL_TABLES.items()}),
        summary=layout.KLOM_SUMMARY,
    output:
        markdown=report(
            layout.SUMMARY_MD,
            caption="../report/summary_md.rst",
            category="1. Summary tables",
            labels={"table": "summary.md (reported run per method)"},
        ),
        best=report(
            layout.BEST_RUNS_HTML,
            caption="../report/best_runs.rst",
            category="1. Summary tables",
            labels={"table": "reported run per method and forget set"},
        ),
        full=report(
            layout.SUMMARY_HTML,
            caption="../report/klom_summary.rst",
            category="1. Summary tables",
            labels={"table": "every run, snapshot and group"},
        ),
    log:
        PATHS.log("report_tables", layout.SUMMARY_MD),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        titles={name: title for name, (_, title) in OPTIONAL_TABLES.items()},
        code=get_code("report_tables.py"),
    script:
        "../scripts/report_tables.py"


rule report_extra_table:
    input:
        table=lambda w: OPTIONAL_TABLES[w.table][0],
    output:
        html=report(
            layout.extra_table_html(),
            caption="../report/extra_table.rst",
            category="1. Summary tables",
            labels={"table": "{table}"},
        ),
    log:
        PATHS.log("report_extra_table", layout.extra_table_html()),
    wildcard_constraints:
        table="|".join(report_plan.OPTIONAL_TABLES),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        title=lambda w: report_plan.OPTIONAL_TABLES[w.table][1],
        code=get_code("report_extra_table.py"),
    script:
        "../scripts/report_extra_table.py"


rule plot_tradeoff:
    input:
        summary=layout.KLOM_SUMMARY,
    output:
        figure=report(
            layout.figure("tradeoff", "{forget_set}"),
            caption="../report/tradeoff.rst",
            category="2. P95 against cost",
            labels={"forget set": "{forget_set}"},
        ),
    log:
        PATHS.log("plot_tradeoff", layout.figure("tradeoff", "{forget_set}")),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        cost_scale=config["report"]["cost_scale"],
        forget_set_id=lambda w: w.forget_set,
        code=get_code("plot_tradeoff.py"),
    script:
        "../scripts/plot_tradeoff.py"


rule plot_group_bars:
    input:
        summary=layout.KLOM_SUMMARY,
    output:
        figure=report(
            layout.figure("p95_bars"),
            caption="../report/group_bars.rst",
            category="3. P95 per group",
            labels={"figure": "reported run per method, every forget set"},
        ),
    log:
        PATHS.log("plot_group_bars", layout.figure("p95_bars")),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        code=get_code("plot_group_bars.py"),
    script:
        "../scripts/plot_group_bars.py"


rule plot_klom_epochs:
    input:
        summary=layout.KLOM_SUMMARY,
        scores=klom_epochs_files,
        forget_set=FORGET_SET,
        selections=get_selection_files,
    output:
        figure=report(
            layout.figure("klom_epochs", "{forget_set}"),
            caption="../report/klom_epochs.rst",
            category="4. KLOM over epochs",
            labels={"forget set": "{forget_set}"},
        ),
    log:
        PATHS.log("plot_klom_epochs", layout.figure("klom_epochs", "{forget_set}")),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        n_train=DATA.n_train,
        n_val=DATA.n_val,
        forget_set_id=lambda w: w.forget_set,
        code=get_code("plot_klom_epochs.py"),
    script:
        "../scripts/plot_klom_epochs.py"


rule plot_margins:
    input:
        summary=layout.KLOM_SUMMARY,
        scores=margins_score_files,
        unlearned=margins_shard_files,
        oracles=get_scored_oracle_margins,
        forget_set=FORGET_SET,
        selections=get_selection_files,
    output:
        figure=report(
            layout.figure("margins", "{forget_set}"),
            caption="../report/margins.rst",
            category="5. Margin histograms",
            labels={"forget set": "{forget_set}"},
        ),
    log:
        PATHS.log("plot_margins", layout.figure("margins", "{forget_set}")),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        n_train=DATA.n_train,
        n_val=DATA.n_val,
        n_points=REPORT_POINTS,
        reference=REPORT_REFERENCE,
        clip=config["klom"]["clip"],
        forget_set_id=lambda w: w.forget_set,
        code=get_code("plot_margins.py"),
    script:
        "../scripts/plot_margins.py"
