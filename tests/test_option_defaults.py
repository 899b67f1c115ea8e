"""One value per default of every option group (recipe: tests/test_training.py; KLOM, ε, bootstrap here).

The config's defaults are the schema's (workflow/schemas/config.schema.yaml), which the workflow fills in; the library
(function signatures, option classes) and the command line have their own, for callers without a config. Each
group has one source in the library (``KlomOptions``, ``metrics.epsilon.DELTA`` / ``EPSILON_CAP``,
``metrics.bootstrap.N_RESAMPLES`` / ``ALPHA``); this test fails as soon as any other copy drifts from it."""

import dataclasses
import inspect
from pathlib import Path

from unlearnbench import cli
from unlearnbench.config import load_schema
from unlearnbench.metrics import bootstrap, epsilon, groups, klom
from unlearnbench.scoring import KlomOptions, score_margins

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def schema_defaults(group: str) -> dict:
    return {k: v["default"] for k, v in load_schema(SCHEMA)["properties"][group]["properties"].items()}


def defaults(function) -> dict:
    return {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def parsed(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_klom_defaults_have_one_value():
    options = dataclasses.asdict(KlomOptions())
    config = schema_defaults("klom")
    assert {k: config[k] for k in options} == {**options, "clip": list(options["clip"])}
    assert {k: v for k, v in defaults(klom.klom).items() if k in options} == options
    args = parsed("klom", "--unlearned", "u.npy", "--oracle", "o.npy", "--out", "k.npy")
    assert {k: getattr(args, k) for k in options} == options
    assert config["percentiles"] == list(defaults(score_margins)["percentiles"]) \
        == list(defaults(groups.group_stats)["percentiles"])


def test_epsilon_defaults_have_one_value():
    config = schema_defaults("epsilon")
    assert config == {"delta": epsilon.DELTA, "cap": epsilon.EPSILON_CAP}
    assert {k: defaults(epsilon.epsilon_per_point)[k] for k in config} == config
    args = parsed("score", "--unlearned", "u.npy", "--oracle", "o.npy", "--forget", "f.npy", "--n-train", "3")
    assert {"delta": args.epsilon_delta, "cap": args.epsilon_cap} == config


def test_bootstrap_resamples_have_one_value():
    resamples = schema_defaults("bootstrap")["n_resamples"]
    copies = [defaults(f)["n_resamples"] for f in (bootstrap.bootstrap_ci, bootstrap.mean_ci,
                                                    bootstrap.klom_percentile_ci)]
    assert copies + [resamples] == [bootstrap.N_RESAMPLES] * 4
    # the scorer's and the command line's 0 is a switch (no interval unless asked), not a count
    assert defaults(score_margins)["bootstrap"] == 0 == parsed(
        "score", "--unlearned", "u.npy", "--oracle", "o.npy", "--forget", "f.npy", "--n-train", "3").bootstrap


def test_bootstrap_alpha_has_one_value():
    alpha = schema_defaults("bootstrap")["alpha"]
    assert alpha == bootstrap.ALPHA
    copies = [defaults(f)["alpha"] for f in (score_margins, bootstrap.bootstrap_ci, bootstrap.mean_ci,
                                              bootstrap.klom_percentile_ci)]
    args = parsed("score", "--unlearned", "u.npy", "--oracle", "o.npy", "--forget", "f.npy", "--n-train", "3")
    assert copies + [args.alpha] == [alpha] * 5
