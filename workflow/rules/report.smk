# What people read: results/summary.md (each method's reported run per forget set), figures under
# results/figures/ and, with `snakemake --report results/report.html`, a self-contained HTML report.
# The library does the work (unlearnbench.plots, .summary_md; paths in .report_plan); scripts unpack.
# The figures follow the table: each method's run chosen on the selection sample, reported on the
# report sample (the select_run checkpoints say which).

from unlearnbench import report_plan
from unlearnbench.methods import with_role

REPORT_STAT = "p95"  # the statistic the headline tables and figures rank and plot
REPORT_POINTS = 3  # forget points with margin histograms, per forget set
# the method whose worst-forgotten points are shown: the upper reference (role no_unlearning), else the first
REPORT_REFERENCE = next(iter(with_role(RUNS, "no_unlearning", config["plugins"])), "")
OPTIONAL_TABLES = report_plan.enabled_optional_tables(
    config
)  # U-LiRA, epsilon when enabled
REPORT_TARGETS = report_plan.targets(FORGET_SETS, config)


rule report_tables:
    input:
        unpack(lambda w: {name: path for name, (path, _) in OPTIONAL_TABLES.items()}),
        summary="results/klom_summary.csv",
    output:
        markdown=report(
            report_plan.SUMMARY_MD,
            caption="../report/summary_md.rst",
            category="1. Summary tables",
            labels={"table": "summary.md (reported run per method)"},
        ),
        best=report(
            report_plan.BEST_RUNS_HTML,
            caption="../report/best_runs.rst",
            category="1. Summary tables",
            labels={"table": "reported run per method and forget set"},
        ),
        full=report(
            report_plan.SUMMARY_HTML,
            caption="../report/klom_summary.rst",
            category="1. Summary tables",
            labels={"table": "every run, snapshot and group"},
        ),
    log:
        "logs/report/report_tables.log",
    group:
        "report"
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
            report_plan.EXTRA_TABLE_HTML,
            caption="../report/extra_table.rst",
            category="1. Summary tables",
            labels={"table": "{table}"},
        ),
    log:
        "logs/report/report_extra_table/{table}.log",
    wildcard_constraints:
        table="|".join(report_plan.OPTIONAL_TABLES),
    group:
        "report"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        title=lambda w: report_plan.OPTIONAL_TABLES[w.table][1],
        code=get_code("report_extra_table.py"),
    script:
        "../scripts/report_extra_table.py"


rule plot_tradeoff:
    input:
        summary="results/klom_summary.csv",
    output:
        figure=report(
            report_plan.figure("tradeoff", "{forget_set}"),
            caption="../report/tradeoff.rst",
            category="2. P95 against cost",
            labels={"forget set": "{forget_set}"},
        ),
    log:
        "logs/report/plot_tradeoff/forget_set~{forget_set}.log",
    group:
        "report"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        cost_scale=config["report"]["cost_scale"],
        code=get_code("plot_tradeoff.py"),
    script:
        "../scripts/plot_tradeoff.py"


rule plot_group_bars:
    input:
        summary="results/klom_summary.csv",
    output:
        figure=report(
            report_plan.figure("p95_bars"),
            caption="../report/group_bars.rst",
            category="3. P95 per group",
            labels={"figure": "reported run per method, every forget set"},
        ),
    log:
        "logs/report/plot_group_bars.log",
    group:
        "report"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        code=get_code("plot_group_bars.py"),
    script:
        "../scripts/plot_group_bars.py"


rule plot_klom_epochs:
    input:
        summary="results/klom_summary.csv",
        scores=lambda w: klom_epochs_files(w)[0],
        forget_set=lambda w: FORGET_SET.format(dataset=DATASET, forget_set=w.forget_set),
        selections=get_selection_files,
    output:
        figure=report(
            report_plan.figure("klom_epochs", "{forget_set}"),
            caption="../report/klom_epochs.rst",
            category="4. KLOM over epochs",
            labels={"forget set": "{forget_set}"},
        ),
    log:
        "logs/report/plot_klom_epochs/forget_set~{forget_set}.log",
    group:
        "report"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        score_keys=lambda w: klom_epochs_files(w)[1],
        n_train=DATA.n_train,
        n_val=DATA.n_val,
        code=get_code("plot_klom_epochs.py"),
    script:
        "../scripts/plot_klom_epochs.py"


rule plot_margins:
    input:
        summary="results/klom_summary.csv",
        scores=lambda w: margins_score_files(w)[0],
        unlearned=lambda w: margins_shard_files(w)[0],
        oracles=get_scored_oracle_margins,
        forget_set=lambda w: FORGET_SET.format(dataset=DATASET, forget_set=w.forget_set),
        selections=get_selection_files,
    output:
        figure=report(
            report_plan.figure("margins", "{forget_set}"),
            caption="../report/margins.rst",
            category="5. Margin histograms",
            labels={"forget set": "{forget_set}"},
        ),
    log:
        "logs/report/plot_margins/forget_set~{forget_set}.log",
    group:
        "report"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        stat=REPORT_STAT,
        score_keys=lambda w: margins_score_files(w)[1],
        unlearned_keys=lambda w: margins_shard_files(w)[1],
        n_train=DATA.n_train,
        n_val=DATA.n_val,
        n_points=REPORT_POINTS,
        reference=REPORT_REFERENCE,
        clip=config["klom"]["clip"],
        code=get_code("plot_margins.py"),
    script:
        "../scripts/plot_margins.py"
