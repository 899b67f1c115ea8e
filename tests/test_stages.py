"""The stage package: one stage function per rule, named like it and taking the rule's names; `call` hands a job over.

The rules are read from the `.smk` files statically (their named inputs, outputs and params, and whether an
`unpack(...)` adds names only known per job), so these tests need no snakemake run.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from unlearnbench.stages import RERUN_TRIGGERS, StageArgumentError, call, job_arguments

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
SCRIPTS = REPO / "workflow" / "scripts"
STAGES = REPO / "src" / "unlearnbench" / "stages"
PYTHON_NAMES = {"import": "imports"}  # a rule file whose name is a Python keyword


# call and job_arguments on a fake job ---------------------------------------------------------------


def named(**items):
    """Snakemake's named list (the type of snakemake.input / output / params in a job)."""
    from snakemake.iocontainers import Namedlist

    return Namedlist(fromdict=items)


def fake_job(tmp_path, input=None, output=None, params=None, threads=1, rule="a_rule"):
    return SimpleNamespace(input=named(**(input or {})), output=named(**(output or {})),
                           params=named(**(params or {})), threads=threads, rule=rule,
                           log=[str(tmp_path / "job.log")], wildcards=named(forget_set="7"))


def a_stage(splits: str, shards: list, table: str, seed: int, options: dict, optional: str | None = None,
            threads: int = 1):
    logging.getLogger("unlearnbench.test").info("ran with seed %d", seed)
    return locals()


def test_job_arguments_passes_every_name_as_plain_values(tmp_path):
    job = fake_job(tmp_path, input={"splits": "s.npz", "shards": ["a.npz", "b.npz"]}, output={"table": "t.csv"},
                   params={"seed": 3, "options": {"k": 1}, "code": "digest", "content": "digests"}, threads=4)
    arguments = job_arguments(a_stage, job)
    assert arguments == {"splits": "s.npz", "shards": ["a.npz", "b.npz"], "table": "t.csv", "seed": 3,
                         "options": {"k": 1}, "threads": 4}
    assert type(arguments["shards"]) is list and type(arguments["splits"]) is str
    assert set(RERUN_TRIGGERS) == {"code", "content"}  # what reaches no function


def test_threads_only_when_the_function_takes_them(tmp_path):
    def no_threads(table: str):
        return table

    assert job_arguments(no_threads, fake_job(tmp_path, output={"table": "t.csv"}, threads=8)) == {"table": "t.csv"}


@pytest.mark.parametrize("job, message", [
    ({"input": {"splits": "s"}, "output": {"table": "t"}, "params": {"seed": 1, "options": {}}},
     "rule a_rule -> .*a_stage: the rule supplies no 'shards'"),
    ({"input": {"splits": "s", "shards": [], "extra": "x"}, "output": {"table": "t"},
      "params": {"seed": 1, "options": {}}}, "rule a_rule -> .*a_stage: the rule's input 'extra' is no parameter"),
    ({"input": {"splits": "s", "shards": []}, "output": {"table": "t"},
      "params": {"seed": 1, "options": {}, "splits": "again"}}, "'splits' is named twice"),
])
def test_a_name_the_rule_and_the_function_do_not_share_is_an_error_naming_both(tmp_path, job, message):
    with pytest.raises(StageArgumentError, match=message):
        job_arguments(a_stage, fake_job(tmp_path, **job))


def test_open_ended_functions_take_names_known_only_per_job(tmp_path):
    def tables(summary: str, **optional: str):
        return optional

    job = fake_job(tmp_path, input={"summary": "s.csv", "ulira": "u.csv"})
    assert job_arguments(tables, job) == {"summary": "s.csv", "ulira": "u.csv"}


def test_call_logs_to_the_jobs_log_and_runs_the_function(tmp_path):
    seen = {}

    def stage(table: str, seed: int):
        logging.getLogger("unlearnbench.test").info("ran with seed %d", seed)
        seen.update(table=table, seed=seed)

    call(stage, fake_job(tmp_path, output={"table": "t.csv"}, params={"seed": 5, "code": "x"}))
    logging.getLogger().handlers[0].flush()
    assert seen == {"table": "t.csv", "seed": 5}
    assert "ran with seed 5" in (tmp_path / "job.log").read_text()


# every rule: one script, one stage function, the same names --------------------------------------------


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rule_blocks(text: str):
    """(kind, name, lines) of every rule and checkpoint of a .smk file, nested ones (under `if`) included."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(rule|checkpoint) (\w+):", line)
        if match:
            body = []
            for following in lines[i + 1:]:
                if following.strip() and indent(following) <= len(match.group(1)):
                    break
                body.append(following)
            yield match.group(2), match.group(3), body


def section_keys(body: list[str], section: str) -> tuple[list[str], bool]:
    """The names of a rule's `input:` / `output:` / `params:` and whether an `unpack(...)` or `**mapping` adds
    more."""
    keys, unpacked = [], False
    for i, line in enumerate(body):
        if line.strip() == f"{section}:":
            depth = indent(line) + 4
            for entry in body[i + 1:]:
                if entry.strip() and indent(entry) < depth:
                    break
                if indent(entry) == depth:
                    if entry.strip().startswith(("unpack(", "**")):  # names known per job, or from the config
                        unpacked = True
                    elif match := re.match(r"\s*(\w+)=", entry):
                        keys.append(match.group(1))
    return keys, unpacked


def script_of(body: list[str]) -> str:
    text = "\n".join(body)
    return re.search(r'script:\s*"\.\./scripts/(\w+)\.py"', text).group(1)


def called_stage(script: Path) -> tuple[str, str]:
    """``(module, function)`` of a script that is exactly imports plus one ``call(<function>, snakemake)``."""
    tree = ast.parse(script.read_text())
    imported = {a.asname or a.name: node.module for node in tree.body if isinstance(node, ast.ImportFrom)
                for a in node.names}
    statements = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert len(statements) == 1 and len(calls) == 1, f"{script.name}: one statement, call(<stage>, snakemake)"
    (node,) = calls
    assert isinstance(node.func, ast.Name) and node.func.id == "call" and imported.get("call") == "unlearnbench.stages"
    assert len(node.args) == 2 and not node.keywords and isinstance(node.args[0], ast.Name), ast.unparse(node)
    assert ast.unparse(node.args[1]) == "snakemake", ast.unparse(node)
    function = node.args[0].id
    return imported[function], function


def all_rules():
    for path in sorted(RULES.glob("*.smk")):
        for kind, name, body in rule_blocks(path.read_text()):
            yield path.stem, kind, name, body


def test_the_rules_are_read():
    names = {name for _, _, name, _ in all_rules()}
    assert {"prepare_dataset", "train_base", "unlearn", "score_klom", "select_run", "plot_margins",
            "import_hub_oracle_margins"} <= names
    (score,) = [body for _, _, name, body in all_rules() if name == "score_klom"]
    assert section_keys(score, "output") == (["scores", "stats"], True)  # and a table per per-run metric
    (unlearn,) = [body for _, _, name, body in all_rules() if name == "unlearn"]
    assert section_keys(unlearn, "input") == ([], True)


@pytest.mark.parametrize("rule_file, kind, rule, body", list(all_rules()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_rule_calls_one_stage_function_named_like_it_with_its_names(rule_file, kind, rule, body):
    script = script_of(body)
    assert script == rule, f"rule {rule} runs scripts/{script}.py: one script per rule, named like it"
    module, function = called_stage(SCRIPTS / f"{script}.py")
    assert module == f"unlearnbench.stages.{PYTHON_NAMES.get(rule_file, rule_file)}", f"{rule}: {module}"
    assert function == rule, f"rule {rule} calls {function}"
    stage = getattr(importlib.import_module(module), function)
    parameters = inspect.signature(stage).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    taken = {name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD} - {"threads"}
    keys, unpacked = [], False
    for section in ("input", "output", "params"):
        names, more = section_keys(body, section)
        keys += names
        unpacked |= more
    keys = set(keys) - set(RERUN_TRIGGERS)
    if unpacked:  # more names are known per job (job_arguments checks those): every static one is taken
        assert keys <= taken or open_ended, f"rule {rule}: {sorted(keys - taken)} are no parameters of {function}"
    else:
        assert keys == taken, f"rule {rule} names {sorted(keys - taken)}, {function} takes {sorted(taken - keys)}"


def test_collecting_rules_read_identities_from_their_inputs_not_from_parallel_keys():
    """Scores and unlearned shards name their own run (unlearnbench.identity): the jobs that write them get their
    identity; the summaries, select_run and the figures get files only, no list of keys parallel to them."""
    params = {rule: section_keys(body, "params")[0] for _, _, rule, body in all_rules()}
    parallel = {rule: names for rule, names in params.items() if any(n.endswith("_keys") or n == "runs" for n in names)}
    assert not parallel, parallel
    assert {rule for rule, names in params.items() if "identity" in names} == {"unlearn", "score_klom", "score_ulira"}


def test_the_stage_package_mirrors_the_rule_files():
    rule_files = {PYTHON_NAMES.get(p.stem, p.stem) for p in RULES.glob("*.smk")} - {"common"}
    modules = {p.stem for p in STAGES.glob("*.py")} - {"__init__"}
    assert modules == rule_files
    rules = {(PYTHON_NAMES.get(f, f), name) for f, _, name, _ in all_rules()}
    for module in modules:
        source = importlib.import_module(f"unlearnbench.stages.{module}")
        public = {name for name, value in vars(source).items()
                  if inspect.isfunction(value) and value.__module__ == source.__name__ and not name.startswith("_")}
        assert public == {name for m, name in rules if m == module}, module
    assert {p.stem for p in SCRIPTS.glob("*.py")} == {name for _, name in rules}
