"""The code behind every workflow rule: one stage function per rule, one module per rule file.

``stages/<file>.py`` mirrors ``workflow/rules/<file>.smk`` (``imports.py`` holds the rules of ``import.smk``:
``import`` is a Python keyword). A stage function is named like its rule, and its parameters are the rule's
named inputs, outputs and params (plus ``threads`` where it runs torch), so what a rule passes and what the
code receives read the same. Stage functions do the I/O (load inputs, write outputs, log) and call the library,
which stays pure and testable without Snakemake or files.

Each script of ``workflow/scripts/`` is ``call(<stage function>, snakemake)``: :func:`call` is the one place
that hands a job to its stage function — in the script's own process, or, in a local run, in a fork of the warm
process that imported torch once (:mod:`unlearnbench.warm`). A job's arguments are plain JSON values either way
(:func:`job_arguments`), so both receive the same values.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

# Params that exist for Snakemake alone (they make a job rerun when they change) and reach no function.
RERUN_TRIGGERS = ("code", "content")


class StageArgumentError(TypeError):
    """A rule and its stage function disagree on a name."""


def _plain(value, where: str):
    """``value`` as plain JSON data: Snakemake's file names and lists as ``str`` and ``list``, tuples as
    lists, mappings with ``str`` keys as dicts. Anything else is an error naming the argument: a job must
    receive the same values whether it runs here or in the warm process, which gets them as JSON."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, where) for k, v in value.items()}
    raise StageArgumentError(f"{where} is not plain data (str, number, bool, None, list, str-keyed dict): {value!r}")


def job_arguments(function: Callable, snakemake) -> dict:
    """The keyword arguments of ``function`` for a job: every named input, output and param of the rule
    (less :data:`RERUN_TRIGGERS`), and ``threads`` when the function takes it.

    A name the function does not take, a name given twice, or a parameter of the function without a default
    that the rule does not supply is an error naming the rule and the parameter.
    """
    rule = getattr(snakemake, "rule", "?")
    where = f"rule {rule} -> {function.__module__}.{function.__qualname__}"
    accepted = inspect.signature(function).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())  # **named: inputs named by the config
    arguments: dict = {}
    for kind, named in (("input", snakemake.input), ("output", snakemake.output), ("params", snakemake.params)):
        for name, value in named.items():
            if kind == "params" and name in RERUN_TRIGGERS:
                continue
            if name in arguments:
                raise StageArgumentError(f"{where}: '{name}' is named twice (the {kind} repeats another key)")
            if name not in accepted and not open_ended:
                raise StageArgumentError(f"{where}: the rule's {kind} '{name}' is no parameter of the function")
            arguments[name] = _plain(value, f"{where}: the {kind} '{name}'")
    if "threads" in accepted:
        arguments["threads"] = int(snakemake.threads)
    missing = [name for name, p in accepted.items()
               if p.default is inspect.Parameter.empty and name not in arguments
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise StageArgumentError(f"{where}: the rule supplies no {', '.join(repr(m) for m in missing)}")
    return arguments


def call(function: Callable, snakemake) -> None:
    """Run one job: its log file set up as ``log[0]``, then ``function(**job_arguments(function, snakemake))``
    (a mismatch of names is reported in that log, as any error of the job) — in a fork of the warm process
    when this run has one, else here. A failure there is this script's exit status (its traceback is in the log).
    """
    from .. import logs, warm

    log = snakemake.log[0]
    logs.to_file(log)
    arguments = job_arguments(function, snakemake)
    status = warm.run(f"{function.__module__}:{function.__qualname__}", arguments, log)
    if status is None:
        function(**arguments)
    elif status != 0:
        sys.exit(status)
