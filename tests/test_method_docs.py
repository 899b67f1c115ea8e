"""The methods tables of README.md and config/README.md are generated from the registry (unlearnbench.method_docs):
they are up to date, and a method added with its module and one registry line gets its rows from the command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unlearnbench import method_docs
from unlearnbench.methods import METHODS, Registered

REPO = Path(__file__).resolve().parents[1]

A_METHOD = '''
"""Forget by shouting (Nobody et al., "A Method For Tests", 2026): gradient ascent, louder."""

from unlearnbench.methods.hyperparameters import Fraction


def build(ctx, lr: float, volume: Fraction = 0.25, batch_size: int = 32, **optimiser):
    """Each epoch one pass over F at ``volume`` times the loss.

    ``optimiser``: momentum, weight_decay, nesterov.
    """
'''


def test_the_tables_in_the_repository_are_up_to_date():
    proc = subprocess.run([sys.executable, "-m", "unlearnbench.method_docs", "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_new_method_gets_its_rows(tmp_path, monkeypatch):
    package = tmp_path / "shouting_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "shout.py").write_text(textwrap.dedent(A_METHOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    methods = {**METHODS, "shout": Registered("shouting_pkg.shout:build")}  # the one registration line
    for name in ("README.md", "config"):
        (shutil.copytree if name == "config" else shutil.copy)(REPO / name, tmp_path / name)

    before = method_docs.render(tmp_path)
    after = method_docs.render(tmp_path, methods)
    readme, config_readme = (after[tmp_path / f] for f in ("README.md", "config/README.md"))
    assert "| `shout` | unlearning | Forget by shouting (Nobody et al., \"A Method For Tests\", 2026): gradient " \
           "ascent, louder. |" in readme
    assert "| `shout` | `lr` (required), `volume` (0.25; 0 < f <= 1), `batch_size` (32), SGD keys. Each epoch " \
           "one pass over F at `volume` times the loss. |" in config_readme
    # nothing else moved: the rest of both files is as the registry without it makes them
    for path in before:
        assert [line for line in after[path].splitlines() if "`shout`" not in line] == before[path].splitlines()


def test_a_stale_table_is_reported_and_rewritten(tmp_path, monkeypatch):
    for name in ("README.md", "config"):
        (shutil.copytree if name == "config" else shutil.copy)(REPO / name, tmp_path / name)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `salun` | unlearning |", "| `salun` | unlearning | old text |"))
    monkeypatch.setattr(method_docs, "REPO", tmp_path)
    assert method_docs.main(["--check"]) == 1
    assert method_docs.main([]) == 0
    assert method_docs.main(["--check"]) == 0
    assert readme.read_text() == (REPO / "README.md").read_text()


def test_a_file_without_its_markers_is_an_error():
    with pytest.raises(ValueError, match="markers"):
        method_docs.with_table("# no table here\n", "the methods table", "| a |")
