"""`unlearnbench klom` argument handling: bounded bins, negative and infinite clip bounds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from unlearnbench import cli
from unlearnbench.metrics.klom import klom

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def margins(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "u.npy", rng.normal(2, 1, (8, 50)).astype(np.float32))
    np.save(tmp_path / "o.npy", rng.normal(0, 3, (9, 50)).astype(np.float32))
    return tmp_path


def klom_args(folder, *extra):
    return ["klom", "--unlearned", str(folder / "u.npy"), "--oracle", str(folder / "o.npy"),
            "--out", str(folder / "k.npy"), *extra]


def test_huge_bins_give_a_one_line_error_not_a_memory_error(margins):
    proc = subprocess.run([sys.executable, "-m", "unlearnbench", *klom_args(margins, "--bins", "1000000000")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "at most 100000 bins" in proc.stderr, proc.stderr
    assert not (margins / "k.npy").exists()


def test_the_bins_bound_is_the_schemas():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["properties"]["klom"]["properties"]["bins"]["maximum"] == cli.MAX_BINS


@pytest.mark.parametrize(
    "clip_args, clip",
    [
        (["--clip", "-1e3", "1e3"], (-1e3, 1e3)),
        (["--clip=-1e3,1e3"], (-1e3, 1e3)),
        (["--clip", "-1e3,1e3"], (-1e3, 1e3)),
        (["--clip", "-inf", "5"], (-np.inf, 5.0)),
        (["--clip=-inf,inf"], (-np.inf, np.inf)),
        (["--clip", "-3", "4"], (-3.0, 4.0)),
        (["--clip", "-.5", "2.5E1"], (-0.5, 25.0)),
    ],
)
def test_negative_and_infinite_clip_bounds_are_values(margins, clip_args, clip):
    assert cli.main(klom_args(margins, *clip_args)) == 0
    u, o = np.load(margins / "u.npy"), np.load(margins / "o.npy")
    np.testing.assert_array_equal(np.load(margins / "k.npy"), klom(u, o, clip=clip))


@pytest.mark.parametrize("clip_args, needle", [(["--clip", "5", "-5"], "LOW must be below HIGH"),
                                               (["--clip", "nan", "5"], "LOW must be below HIGH"),
                                               (["--clip=1,2,3"], "two numbers"),
                                               (["--clip", "a", "b"], "two numbers")])
def test_bad_clip_bounds_are_usage_errors(margins, capsys, clip_args, needle):
    with pytest.raises(SystemExit) as exit_:
        cli.main(klom_args(margins, *clip_args))
    assert exit_.value.code == 2 and needle in capsys.readouterr().err
