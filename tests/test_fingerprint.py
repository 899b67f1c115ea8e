"""Code fingerprints: which jobs a library edit reaches, found from the syntax trees alone."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unlearnbench import fingerprint

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
STAGES = ("prepare_dataset", "make_forget_set", "train_base", "train_oracle", "train_pool", "compute_margins", "unlearn",
          "ulira_unlearn", "score_klom", "score_ulira", "summarize", "plot_margins", "fit_datamodels",
          "datamodel_quality")
TRAIN = {"train_base", "train_oracle", "train_pool"}
METHODS = ("gradient_ascent", "gradient_descent", "scrub", "oracle_matching", "do_nothing")


@pytest.fixture(autouse=True)
def private_index(tmp_path, monkeypatch):
    """Each test keeps its on-disk index of parsed files to itself."""
    monkeypatch.setenv(fingerprint.CACHE_DIR_ENV, str(tmp_path / "index"))
    fingerprint.clear_cache()
    yield
    fingerprint.clear_cache()


@pytest.fixture
def library(tmp_path, monkeypatch):
    """A copy of the package first on sys.path: edits to it reach the fingerprints, not the checkout."""
    shutil.copytree(REPO / "src" / "unlearnbench", tmp_path / "unlearnbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    fingerprint.clear_cache()
    yield tmp_path / "unlearnbench"
    fingerprint.clear_cache()


def fingerprints() -> dict[str, str]:
    prints = {stage: fingerprint.code_fingerprint(SCRIPTS / f"{stage}.py") for stage in STAGES}
    for method in METHODS:
        prints[f"unlearn+{method}"] = fingerprint.code_fingerprint(
            SCRIPTS / "unlearn.py", (f"unlearnbench.methods.{method}:build",))
    return prints


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + textwrap.dedent(text))


def edit_function(path: Path, function: str, statement: str = "_edited = 1") -> None:
    """Insert ``statement`` at the top of ``function``'s body (the file is rewritten by ast.unparse,
    which also drops every comment and changes the layout: neither may matter)."""
    tree = ast.parse(path.read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    node.body.insert(0, ast.parse(statement).body[0])
    path.write_text(ast.unparse(tree))


def test_comments_docstrings_and_layout_change_no_fingerprint(library):
    before = fingerprints()
    append(library / "loop.py", '"""A new trailing docstring-like string."""\n# a comment\n\n\n')
    klom = library / "metrics" / "klom.py"
    tree = ast.parse(klom.read_text())
    for node in ast.walk(tree):  # every docstring reworded, every comment and blank line gone
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
            node.body[0] = ast.Expr(ast.Constant("reworded"))
    klom.write_text(ast.unparse(tree))
    gradient_ascent = library / "methods" / "gradient_ascent.py"
    gradient_ascent.write_text(gradient_ascent.read_text().replace("\n", "  # note\n", 3))
    assert changed(before, fingerprints()) == set()


def test_a_method_module_reaches_that_methods_unlearning_jobs_only(library):
    before = fingerprints()
    edit_function(library / "methods" / "gradient_ascent.py", "build")
    assert changed(before, fingerprints()) == {"unlearn+gradient_ascent"}


def test_klom_reaches_scoring_and_nothing_upstream(library):
    before = fingerprints()
    edit_function(library / "metrics" / "klom.py", "klom")
    hit = changed(before, fingerprints())
    assert "score_klom" in hit
    upstream = {"prepare_dataset", "make_forget_set", *TRAIN, "compute_margins", "unlearn", "ulira_unlearn",
                *(f"unlearn+{m}" for m in METHODS)}
    assert not hit & upstream, hit


def test_the_loop_reaches_training_and_unlearning_not_margins_or_scoring(library):
    before = fingerprints()
    edit_function(library / "loop.py", "run_loop")
    hit = changed(before, fingerprints())
    assert {*TRAIN, "unlearn", "ulira_unlearn", *(f"unlearn+{m}" for m in METHODS if m != "do_nothing")} <= hit
    assert not hit & {"prepare_dataset", "make_forget_set", "compute_margins", "score_klom", "summarize"}, hit


def test_a_method_inputs_loader_reaches_the_unlearning_jobs_not_scoring(library):
    """Each kind of input names its loader as a "module:function" text (method_inputs.INPUTS), which no import
    statement shows: the fingerprint follows it."""
    before = fingerprints()
    edit_function(library / "method_inputs.py", "load_margins")
    hit = changed(before, fingerprints())
    assert {"unlearn", "unlearn+do_nothing"} <= hit
    assert not hit & {*TRAIN, "compute_margins", "score_klom", "summarize"}, hit


def test_a_per_run_metric_reaches_scoring_and_nothing_upstream(library):
    """A per-run metric is named as a "module:function" text in run_metrics.RUN_METRICS: the fingerprint follows it."""
    before = fingerprints()
    edit_function(library / "scoring.py", "epsilon_row")
    hit = changed(before, fingerprints())
    assert "score_klom" in hit
    assert not hit & {"prepare_dataset", *TRAIN, "compute_margins", "unlearn", "ulira_unlearn"}, hit


def test_the_shared_method_base_reaches_every_finetune_method(library):
    before = fingerprints()
    edit_function(library / "methods" / "base.py", "sgd")
    hit = changed(before, fingerprints())
    assert {f"unlearn+{m}" for m in ("gradient_ascent", "gradient_descent", "scrub")} <= hit
    assert not hit & {*TRAIN, "compute_margins", "score_klom"}, hit


def test_a_stage_function_reaches_its_own_rule_only(library):
    """A stage module holds the functions of a rule file's rules: a script selects its function, not the module."""
    before = fingerprints()
    edit_function(library / "stages" / "scoring.py", "score_klom")
    assert changed(before, fingerprints()) == {"score_klom"}
    before = fingerprints()
    edit_function(library / "stages" / "pool.py", "fit_datamodels")  # beside datamodel_quality, ulira_unlearn
    assert changed(before, fingerprints()) == {"fit_datamodels"}
    before = fingerprints()
    edit_function(library / "stages" / "training.py", "train_oracle")  # beside train_base and train_pool
    assert changed(before, fingerprints()) == {"train_oracle"}
    before = fingerprints()
    edit_function(library / "stages" / "training.py", "_train_shard")  # shared by the three training rules
    assert changed(before, fingerprints()) == TRAIN
    before = fingerprints()
    edit_function(library / "device.py", "torch_setup")  # shared by every torch stage
    hit = changed(before, fingerprints())
    assert {*TRAIN, "compute_margins", "unlearn", "ulira_unlearn"} <= hit
    assert not hit & {"score_klom", "summarize", "prepare_dataset"}, hit
    before = fingerprints()
    edit_function(library / "stages" / "__init__.py", "job_arguments")  # how every job is handed over
    assert changed(before, fingerprints()) == set(before)


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_static_analysis_follows_values_decorators_registries_and_lazy_imports(tmp_path, monkeypatch):
    write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/entry.py": """
            from . import passed
            from .registry import REGISTRY

            def used():
                from .lazy import helper  # runs only when used() runs
                return helper() + passed_around(passed)

            def passed_around(module):
                return module.anything()

            def unused():
                from .never import nothing
                return nothing()
        """,
        "pkg/lazy.py": "def helper():\n    return 1\n\ndef other():\n    return 2\n",
        "pkg/passed.py": "def anything():\n    return 3\n\ndef everything_else():\n    return 4\n",
        "pkg/never.py": "def nothing():\n    return 5\n",
        "pkg/registry.py": """
            def registered():
                return 6

            def by_decorator(f):
                return f

            @by_decorator
            def decorated():
                return 7

            def unreferenced():
                return 8

            REGISTRY = {"x": registered}
        """,
        "script.py": "from pkg.entry import used\n\nused()\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    fingerprint.clear_cache()
    selected = fingerprint.closure(tmp_path / "script.py", package="pkg")
    assert selected["pkg.entry"] == {"used", "passed_around"}
    assert selected["pkg.lazy"] == {"helper"}
    assert selected["pkg.passed"] == {fingerprint.WHOLE}  # passed as a value: all of it may run
    assert selected["pkg.registry"] >= {"registered", "by_decorator", "decorated"}
    assert "unreferenced" not in selected["pkg.registry"] and "pkg.never" not in selected
    base = fingerprint.code_fingerprint(tmp_path / "script.py", package="pkg")
    for path, old, new, reaches in [
        ("pkg/lazy.py", "return 2", "return 20", False),
        ("pkg/never.py", "return 5", "return 50", False),
        ("pkg/registry.py", "return 8", "return 80", False),
        ("pkg/passed.py", "return 4", "return 40", True),
        ("pkg/registry.py", "return 7", "return 70", True),
        ("pkg/registry.py", "return 6", "return 60", True),
        ("pkg/lazy.py", "return 1", "return 10", True),
    ]:
        file = tmp_path / path
        file.write_text(file.read_text().replace(old, new))
        assert (fingerprint.code_fingerprint(tmp_path / "script.py", package="pkg") != base) == reaches, path
        base = fingerprint.code_fingerprint(tmp_path / "script.py", package="pkg")


def test_a_plugin_is_located_and_fingerprinted_without_running_it(tmp_path, monkeypatch):
    write_package(tmp_path, {
        "my_plugins/__init__.py": "raise SystemExit('the package ran')\n",
        "my_plugins/methods.py": """
            raise SystemExit('the module ran')
            from unlearnbench.methods.base import Plan, sgd
            from .helpers import scale

            def capped(ctx, lr):
                return Plan(sgd(), lambda epoch: [scale(lr)])
        """,
        "my_plugins/helpers.py": "def scale(lr):\n    return 2 * lr\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    fingerprint.clear_cache()
    assert fingerprint.missing_target("my_plugins.methods:capped") is None
    assert "defines no top-level 'typo'" in fingerprint.missing_target("my_plugins.methods:typo")
    assert "module 'nowhere' not found" in fingerprint.missing_target("nowhere:build")
    script = SCRIPTS / "unlearn.py"
    selected = fingerprint.closure(script, ("my_plugins.methods:capped",))
    assert selected["my_plugins.helpers"] == {"scale"} and "sgd" in selected["unlearnbench.methods.base"]
    before = fingerprint.code_fingerprint(script, ("my_plugins.methods:capped",))
    helpers = tmp_path / "my_plugins" / "helpers.py"
    helpers.write_text(helpers.read_text().replace("2 * lr", "3 * lr"))
    assert fingerprint.code_fingerprint(script, ("my_plugins.methods:capped",)) != before
    assert "my_plugins" not in sys.modules


def test_a_later_process_parses_only_the_files_that_changed(library, tmp_path):
    """The index on disk: (path, size, mtime_ns, ctime_ns) -> what each file yields."""
    code = textwrap.dedent(f"""
        import ast, json, sys
        sys.path.insert(0, {str(library.parent)!r})
        parsed = []
        parse = ast.parse
        ast.parse = lambda source, filename="", **kw: parsed.append(filename) or parse(source, filename, **kw)
        from unlearnbench import fingerprint
        prints = [fingerprint.code_fingerprint({str(SCRIPTS)!r} + f"/{{s}}.py") for s in {list(STAGES)!r}]
        print(json.dumps([prints, parsed]))
    """)

    def run():
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300,
                             env={**os.environ, fingerprint.CACHE_DIR_ENV: str(tmp_path / "index")}).stdout
        return json.loads(out)

    cold, parsed = run()
    assert len(parsed) > 20
    warm, parsed = run()
    assert warm == cold and parsed == []
    edit_function(library / "metrics" / "klom.py", "klom")
    edited, parsed = run()
    assert parsed == [str(library / "metrics" / "klom.py")]
    assert {s for s, a, b in zip(STAGES, cold, edited) if a != b} == {"score_klom"}


def test_fingerprints_need_neither_torch_nor_snakemake():
    code = ("import sys\nfrom unlearnbench import fingerprint\n"
            f"fingerprint.code_fingerprint({str(SCRIPTS / 'unlearn.py')!r}, ('unlearnbench.methods.scrub:build',))\n"
            "assert 'torch' not in sys.modules and 'snakemake' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
