"""Editing the library reruns exactly the jobs whose code changed (the `code` param of every rule).

One real tiny run (the session's), copied with its own copy of src/ first on PYTHONPATH; each test
edits that copy, asks snakemake what is to be done (dry runs, and `snakemake --summary`, whose
"params changed" rows are what the README tells users to look at), and puts the file back.
"""

from __future__ import annotations

import ast
import contextlib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

UPSTREAM = {"prepare_dataset", "make_forget_set", "train_base", "train_oracle", "compute_margins"}
PLUGIN = '''
from unlearnbench.methods.base import Plan, cross_entropy, sgd


def capped_ascent(ctx, lr, cap=5.0, batch_size=32):
    """Gradient ascent on the forget set with the loss capped."""
    def loss(logits, labels, batch):
        return -cross_entropy(logits, labels).clamp(max=cap)

    forget = ctx.phase(ctx.forget, loss, lr, batch_size, "ascent")
    return Plan(sgd(), lambda epoch: [forget])
'''


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("code-changes") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return workdir


def run(workdir: Path, *args: str, config: str = TINY_CONFIG):
    return snakemake(workdir, "--configfile", config, *args,
                     env={"PYTHONPATH": f"{workdir / 'src'}:{workdir}"})


def list_changes(workdir: Path, config: str = TINY_CONFIG) -> set[str]:
    """`snakemake --summary | grep "params changed"`: outputs whose params (the code digest among them)
    changed. (`snakemake --list-changes params` would be the obvious command, but snakemake 9.27 lists
    one output of every job there, changed or not.)"""
    proc = run(workdir, "--summary", config=config)
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("results/")]
    return {row[0] for row in rows if row[-2] == "params changed"}


def files(workdir: Path, pattern: str) -> set[str]:
    return {str(p.relative_to(workdir)) for p in workdir.glob(pattern) if p.is_file()}


def chosen_report_files(workdir: Path, stage: str) -> set[str]:
    """Report-sample files of the methods whose run a select_run checkpoint chose (those with a selection
    sample): while the checkpoint is to rerun, which of them are needed is not known yet."""
    selecting = {p.relative_to(workdir).parts[3] for p in (workdir / "results" / stage).glob("digits/*/*/*/selection")}
    return {f for method in selecting for f in files(workdir, f"results/{stage}/digits/{method}/*/*/report_epoch~*/**/*")}


@contextlib.contextmanager
def edited(path: Path, function: str | None = None, text: str | None = None):
    """``path`` with a statement added at the top of ``function`` (a code change), or with ``text``
    instead of its content; restored afterwards."""
    original = path.read_text()
    if function is not None:
        tree = ast.parse(original)
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
        node.body.insert(0, ast.parse("_edited = 1").body[0])
        path.write_text(ast.unparse(tree))
    else:
        path.write_text(text)
    try:
        yield
    finally:
        path.write_text(original)


def test_the_copy_is_up_to_date(run_copy):
    assert planned_jobs(run(run_copy, "-n")) == {}
    assert list_changes(run_copy) == set()


def test_a_method_module_reruns_that_methods_jobs_and_what_follows(run_copy):
    # Its runs on the selection sample are planned at once; those on the report sample follow once
    # select_run (a checkpoint, rerun for its changed inputs) has chosen again: a dry run cannot list them.
    with edited(run_copy / "src/unlearnbench/methods/gradient_ascent.py", "build"):
        ascent = files(run_copy, "results/unlearn/digits/gradient_ascent/**/selection/*.npz")
        assert ascent and list_changes(run_copy) == ascent
        jobs = planned_jobs(run(run_copy, "-n"))
    assert jobs["unlearn"] == len(ascent)
    assert jobs["score_klom"] == len(files(run_copy, "results/klom/digits/gradient_ascent/**/selection/klom.npz"))
    assert "select_run" in jobs and "summarize" in jobs and not UPSTREAM & set(jobs)


def test_the_klom_estimator_reruns_scoring_and_nothing_upstream(run_copy):
    with edited(run_copy / "src/unlearnbench/metrics/klom.py", "klom"):
        # every score but the report-sample ones of chosen runs, which follow select_run's new choice
        assert list_changes(run_copy) == files(run_copy, "results/klom/**/*") - chosen_report_files(run_copy, "klom")
        jobs = planned_jobs(run(run_copy, "-n"))
    assert jobs["score_klom"] == len(files(run_copy, "results/klom/**/klom.npz") - chosen_report_files(run_copy, "klom"))
    assert "summarize" in jobs and not (UPSTREAM | {"unlearn"}) & set(jobs)


def test_the_loop_reruns_training_and_unlearning(run_copy):
    with edited(run_copy / "src/unlearnbench/loop.py", "run_loop"):
        changed = list_changes(run_copy)
        jobs = planned_jobs(run(run_copy, "-n"))
    # training's and unlearning's own code (every method: the unlearning stage imports the loop), not
    # margins, scores, splits or forget sets (they rerun only for their updated inputs)
    unlearned = files(run_copy, "results/unlearn/**/*.npz") - chosen_report_files(run_copy, "unlearn")
    assert changed == files(run_copy, "results/weights/**/*.safetensors") | unlearned
    assert {"train_base", "train_oracle", "compute_margins", "unlearn", "score_klom"} <= set(jobs)
    assert "prepare_dataset" not in jobs and "make_forget_set" not in jobs


def test_comments_and_docstrings_rerun_nothing(run_copy):
    paths = [run_copy / "src/unlearnbench" / name for name in ("methods/gradient_ascent.py", "metrics/klom.py",
                                                                "loop.py", "stages/scoring.py")]
    with contextlib.ExitStack() as stack:
        for path in paths:
            text = path.read_text()
            text = re.sub(r'^"""(.*?)"""', '"""Reworded."""', text, count=1, flags=re.S)
            stack.enter_context(edited(path, text=text.replace("\n", "  # a comment\n", 5) + "\n# the end\n"))
        assert list_changes(run_copy) == set()
        assert planned_jobs(run(run_copy, "-n")) == {}


def test_a_plugin_change_reruns_that_plugins_jobs(run_copy):
    (run_copy / "my_methods.py").write_text(PLUGIN)
    config = yaml.safe_load((run_copy / TINY_CONFIG).read_text())
    config["plugins"] = {"capped_ascent": "my_methods:capped_ascent"}
    config["methods"]["capped_ascent"] = {"lr": [0.01], "cap": [3.0], "epochs": [1]}
    (run_copy / "plugin.yaml").write_text(yaml.safe_dump(config))
    # adding a plug-in runs its jobs and changes no other job
    assert list_changes(run_copy, "plugin.yaml") == set()
    run(run_copy, "--until", "unlearn", config="plugin.yaml")
    plugin_runs = files(run_copy, "results/unlearn/digits/capped_ascent/**/*.npz")
    assert len(plugin_runs) == 2
    plugin = run_copy / "my_methods.py"
    with edited(plugin, text=plugin.read_text().replace('"""Gradient', '"""Reworded: gradient')):
        assert list_changes(run_copy, "plugin.yaml") == set()
    with edited(plugin, "capped_ascent"):
        assert list_changes(run_copy, "plugin.yaml") == plugin_runs
        jobs = planned_jobs(run(run_copy, "-n", config="plugin.yaml"))
    assert jobs["unlearn"] == 2 and not UPSTREAM & set(jobs)


def test_a_missing_plugin_is_a_config_error(run_copy):
    config = yaml.safe_load((run_copy / TINY_CONFIG).read_text())
    config["plugins"] = {"lost": "no_such_module:build"}
    config["methods"]["lost"] = {"lr": [0.01], "epochs": [1]}
    (run_copy / "lost.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(run_copy, "-n", "--configfile", "lost.yaml", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "config key plugins.lost" in output and "no_such_module" in output
    assert "Traceback" not in output


def test_every_rule_fingerprints_its_own_script():
    """Each rule's `code=get_code("<script>")` names the script of its own `script:` line."""
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^\s*rule (\w+):", path.read_text(), flags=re.M)[1:]
        for rule, body in zip(blocks[::2], blocks[1::2]):
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', body)
            code = re.search(r'code=get_code\("(\w+\.py)"', body)
            assert script and code, f"rule {rule} in {path.name}: a script and a code param"
            assert code.group(1) == script.group(1), f"rule {rule}: code of {code.group(1)}, runs {script.group(1)}"


def test_the_readme_gives_the_command_these_tests_run():
    assert 'snakemake --summary | grep "params changed"' in (REPO / "README.md").read_text()
