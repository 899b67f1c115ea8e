# Each method's reported run (grid point and snapshot) is chosen on the selection sample by
# selection.rule; the report sample then unlearns and scores only that run (unlearnbench.selection).
# A checkpoint per forget set (every method with a choice): which report-sample jobs exist depends on
# what it chooses.


checkpoint select_run:
    input:
        stats=get_selection_stats,
    output:
        selection=PATHS.selected(),
    log:
        PATHS.log("select_run", PATHS.selected()),
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        rule=config["selection"]["rule"],
        forget_set_id=lambda w: w.forget_set,
        code=get_code("select_run.py"),
    script:
        "../scripts/select_run.py"
