"""Each method moves the models the intended way on a tiny problem; the loop records cost and divergence."""

import numpy as np
import pytest
import torch

from unlearnbench.data import load_dataset
from unlearnbench.forget_sets import random_forget_set, retain_points
from unlearnbench.loop import Optimiser, run_loop
from unlearnbench.margins import stack_margins
from unlearnbench.methods import METHODS, load_build, lookup
from unlearnbench.methods.base import UnlearningContext, cross_entropy, kd_loss
from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, train_stack
from unlearnbench.unlearning import unlearn_stack

SEEDS = [21, 22]


@pytest.fixture(scope="module")
def problem():
    splits = load_dataset("digits")
    x, y = splits.inputs(), torch.from_numpy(splits.labels())
    forget = random_forget_set(splits.n_train, 20, seed=3)
    recipe = Recipe(epochs=6, batch_size=32, lr=0.2, peak_epoch=2, momentum=0.9, weight_decay=5e-4)
    base = ModelStack.initialise("digits_cnn", 10, 1, SEEDS, [0, 1])
    train_stack(base, x, y, np.arange(splits.n_train), SEEDS, recipe)
    oracles = ModelStack.initialise("digits_cnn", 10, 1, [31, 32], [2, 3])
    train_stack(oracles, x, y, retain_points(forget, splits.n_train), [31, 32], recipe)
    return splits, x, y, forget, base, oracles


def mean_loss(stack, x, y, points):
    with torch.no_grad():
        logits = stack.forward(x[points], train=False)
        return cross_entropy(logits, y[points].expand(stack.n_models, -1)).mean().item()


def run(name, hp, problem, epochs=(1, 2), needed=None):
    splits, _, _, forget, base, _ = problem
    return unlearn_stack(load_build(lookup(name)), hp, list(epochs), base.copy(), splits, forget, SEEDS, needed)


def make_context(problem):
    splits, x, y, forget, base, _ = problem
    student = base.copy()
    ctx = UnlearningContext(x, y, forget, retain_points(forget, splits.n_train), student.copy(), SEEDS)
    return ctx, student


def train_with(name, hp, problem, epochs=2):
    ctx, student = make_context(problem)
    plan = load_build(lookup(name))(ctx, **hp)
    run_loop(student, ctx.inputs, ctx.labels, SEEDS, plan.optimiser, epochs, plan.phases)
    return ctx, student


def test_gradient_ascent_raises_the_forget_loss(problem):
    _, x, y, forget, base, _ = problem
    _, after = train_with("gradient_ascent", {"lr": 0.05}, problem)
    assert mean_loss(after, x, y, forget) > mean_loss(base, x, y, forget) + 0.05


def test_gradient_descent_lowers_the_retain_loss(problem):
    splits, x, y, forget, base, _ = problem
    retain = retain_points(forget, splits.n_train)
    noisy = base.copy()
    noisy.params = {k: v + 0.05 * torch.randn_like(v) for k, v in noisy.params.items()}  # room to improve
    problem_noisy = (*problem[:4], noisy, problem[5])
    _, after = train_with("gradient_descent", {"lr": 0.05}, problem_noisy)
    assert mean_loss(after, x, y, retain) < mean_loss(noisy, x, y, retain)


def test_ascent_descent_ascends_only_in_its_ascent_epochs(problem):
    ctx, _ = make_context(problem)
    plan = load_build(lookup("ascent_descent"))(ctx, lr=0.01, ascent_epochs=2, forget_batch_size=8)
    assert [p.name for p in plan.phases(1)] == ["ascent", "descent"]
    assert [p.name for p in plan.phases(3)] == ["descent"]
    assert plan.phases(1)[0].batch_size == 8


def test_scrub_moves_the_student_and_leaves_the_teacher_untouched(problem):
    _, x, y, forget, base, _ = problem
    ctx, student = train_with("scrub", {"lr": 0.05, "ascent_epochs": 1}, problem)
    for name, value in base.params.items():
        torch.testing.assert_close(ctx.original.params[name], value)  # teacher frozen
    moved = max((student.params[n] - base.params[n]).abs().max().item() for n in base.params)
    assert moved > 1e-3  # the optimiser owns the student's parameters (the published bug did not)



def test_scrub_max_step_pushes_the_student_away_from_the_teacher_on_forget_points(problem):
    _, x, _, forget, base, _ = problem
    ctx, student = make_context(problem)
    plan = load_build(lookup("scrub"))(ctx, lr=0.05, ascent_epochs=1)
    max_step = plan.phases(1)[0]
    assert max_step.name == "max"
    run_loop(student, ctx.inputs, ctx.labels, SEEDS, plan.optimiser, 3, lambda epoch: [max_step])

    def divergence_from_teacher(points):
        with torch.no_grad():
            return kd_loss(student.forward(x[points], train=False), base.forward(x[points], train=False), 4.0).mean()

    assert divergence_from_teacher(forget) > 1.2 * divergence_from_teacher(ctx.retain) > 0


def test_scrub_decays_its_learning_rate_after_epochs_3_5_9(problem):
    ctx, _ = make_context(problem)
    plan = load_build(lookup("scrub"))(ctx, lr=1.0, ascent_epochs=0)
    lrs = [plan.phases(e)[0].lr for e in (1, 3, 4, 5, 6, 9, 10)]
    np.testing.assert_allclose(lrs, [1, 1, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_oracle_matching_reduces_the_distance_to_its_target_logits(problem):
    _, x, _, forget, base, oracles = problem
    ctx, student = make_context(problem)
    ctx.needed["matching_oracles"] = oracles  # model i -> held-out oracle i mod 2: oracles 2, 3 for models 0, 1
    plan = load_build(lookup("oracle_matching"))(ctx, lr=1e-2, retain_multiplier=5)
    torch.testing.assert_close(ctx.targets["oracle_logits"], oracles.logits(x))
    points = plan.phases(1)[0].points
    assert points.shape == (2, 20 + 100) and set(forget) <= set(points[0])

    def distance(stack):
        return (stack.logits(x)[:, forget] - ctx.targets["oracle_logits"][:, forget]).pow(2).mean().item()

    before = distance(student)
    run_loop(student, ctx.inputs, ctx.labels, SEEDS, plan.optimiser, 3, plan.phases)
    assert distance(student) < 0.7 * before


def test_snapshots_differ_and_cost_counts_samples(problem):
    out = run("gradient_ascent", {"lr": 0.05, "batch_size": 8}, problem, epochs=(1, 3))
    assert out["margins"].shape == (2, 2, 300 + 1497)
    assert not np.allclose(out["margins"][0], out["margins"][1])
    np.testing.assert_array_equal(out["samples"], [[20, 20], [60, 60]])  # |F| per epoch per model
    assert out["epochs"].tolist() == [1, 3] and not out["diverged"].any()


def test_progress_accuracy_comes_from_the_snapshots_without_forward_passes_of_its_own(problem, monkeypatch, caplog):
    """The snapshots classify every point anyway; an extra accuracy pass per report epoch only cost time."""
    from unlearnbench.loop import Progress

    def no_pass(*args, **kwargs):
        raise AssertionError("an unlearning run evaluated accuracy with forward passes of its own")

    monkeypatch.setattr(Progress, "accuracy", no_pass)
    with caplog.at_level("INFO", logger="unlearnbench.unlearning"):
        out = run("gradient_ascent", {"lr": 0.05, "batch_size": 8}, problem, epochs=(1, 3))
    splits, _, _, forget, _, _ = problem
    lines = [r.getMessage() for r in caplog.records if "accuracy (mean over models, every point)" in r.getMessage()]
    assert [line.split(": epoch ")[1].split(" ")[0] for line in lines] == ["1", "3"]
    last = out["correct"][1]  # epoch 3, [models, points]
    retain = np.setdiff1d(np.arange(splits.n_train), forget)
    expected = f"forget {last[:, forget].mean():.3f}, retain {last[:, retain].mean():.3f}, " \
               f"val {last[:, splits.n_train:].mean():.3f}"
    assert lines[1].endswith(expected), (lines[1], expected)


def test_a_diverging_learning_rate_is_recorded_not_raised(problem):
    out = run("gradient_ascent", {"lr": 1e8}, problem, epochs=(1, 5))
    assert out["diverged"][-1].all()
    assert np.isnan(out["margins"][-1]).all()


def test_matching_oracles_feed_oracle_matching(problem):
    out = run("oracle_matching", {"lr": 1e-3, "retain_multiplier": 2}, problem, epochs=(2,),
              needed={"matching_oracles": problem[5]})
    assert out["samples"].tolist() == [[120, 120]]  # (|F| + 2|F|) x 2 epochs


def test_every_registered_method_resolves():
    for name in METHODS:
        assert callable(load_build(lookup(name)))
    with pytest.raises(ValueError, match="plugins"):
        lookup("no_such_method")


def test_margins_of_the_original_are_unchanged_by_unlearning(problem):
    splits, x, y, forget, base, _ = problem
    before = stack_margins(base, x, y)
    run("gradient_descent", {"lr": 0.1}, problem, epochs=(1,))
    np.testing.assert_array_equal(before, stack_margins(base, x, y))  # runs work on a copy


SGD_METHODS = {"gradient_ascent": {}, "gradient_descent": {}, "ascent_descent": {"ascent_epochs": 1},
               "scrub": {"ascent_epochs": 1}}


@pytest.mark.parametrize("name", sorted(SGD_METHODS))
def test_sgd_methods_take_momentum_weight_decay_and_nesterov(problem, name):
    ctx, _ = make_context(problem)
    build = load_build(lookup(name))
    assert build(ctx, lr=0.1, **SGD_METHODS[name]).optimiser == Optimiser("sgd")  # published: plain SGD
    plan = build(ctx, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True, **SGD_METHODS[name])
    assert plan.optimiser == Optimiser("sgd", momentum=0.9, nesterov=True, weight_decay=5e-4)


@pytest.mark.parametrize("name", ["oracle_matching", "dm_matching"])
def test_adam_methods_take_weight_decay(problem, name):
    ctx, _ = make_context(problem)
    ctx.needed.update(matching_oracles=problem[5], datamodel_effect={"logit_effect": np.zeros((1797, 10), np.float32)})
    build = load_build(lookup(name))
    assert build(ctx, lr=1e-3).optimiser == Optimiser("adam")
    assert build(ctx, lr=1e-3, weight_decay=1e-4).optimiser == Optimiser("adam", weight_decay=1e-4)
    with pytest.raises(TypeError):
        build(ctx, lr=1e-3, momentum=0.9)  # Adam has no such knob here


def test_momentum_is_used_by_the_run(problem):
    """The paper-era SCRUB optimiser (momentum 0.9, wd 5e-4) moves the student farther than plain SGD at
    the same lr."""
    _, _, _, _, base, _ = problem
    plain = train_with("scrub", {"lr": 0.01, "ascent_epochs": 1}, problem)[1]
    heavy = train_with("scrub", {"lr": 0.01, "ascent_epochs": 1, "momentum": 0.9, "weight_decay": 5e-4}, problem)[1]

    def moved(stack):
        return sum((stack.params[n] - base.params[n]).pow(2).sum().item() for n in base.params)

    assert moved(heavy) > 2 * moved(plain)


def test_the_optimiser_keys_are_grid_keys_of_every_finetune_method():
    from pathlib import Path

    import yaml

    from unlearnbench.config import ConfigError, validate
    from unlearnbench.plan import method_runs

    repo = Path(__file__).resolve().parents[1]
    schema = repo / "workflow/schemas/config.schema.yaml"
    config = yaml.safe_load((repo / ".test/config/pool.yaml").read_text())
    config["methods"] = {
        "gradient_ascent": {"lr": 0.1, "epochs": [1], "momentum": [0.0, 0.9], "weight_decay": 5e-4,
                            "nesterov": [False]},
        "gradient_descent": {"lr": 0.1, "epochs": [1], "momentum": 0.9, "nesterov": True},
        "ascent_descent": {"lr": 0.1, "ascent_epochs": 1, "epochs": [1], "weight_decay": [0.0, 1e-3]},
        "scrub": {"lr": 0.1, "ascent_epochs": 1, "epochs": [1], "momentum": 0.9, "weight_decay": 5e-4},
        "oracle_matching": {"lr": 0.1, "epochs": [1], "weight_decay": 1e-4},
        "dm_matching": {"lr": 0.1, "epochs": [1], "weight_decay": [0.0, 1e-4]},
    }
    runs = method_runs(validate(config, schema)["methods"])
    assert "lr~0.1_momentum~0.9_nesterov~False_weight_decay~0.0005" in runs["gradient_ascent"]
    assert len(runs["dm_matching"]) == 2
    bad = {**config, "methods": {"gradient_descent": {"lr": 0.1, "epochs": [1], "nesterov": True}}}
    with pytest.raises(ConfigError, match="methods.gradient_descent.nesterov"):
        validate(bad, schema)
    for key, value in (("momentum", 1.5), ("weight_decay", -1)):
        bad = {**config, "methods": {"scrub": {"lr": 0.1, "ascent_epochs": 1, "epochs": [1], key: value}}}
        with pytest.raises(ConfigError, match=f"methods.scrub.{key}"):
            validate(bad, schema)
    with pytest.raises(ConfigError, match="methods.oracle_matching"):
        validate({**config, "methods": {"oracle_matching": {"lr": 0.1, "epochs": [1], "momentum": 0.9}}}, schema)
