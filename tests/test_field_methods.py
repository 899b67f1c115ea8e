"""The field's usual baselines (NegGrad+, random labels, SalUn, l1-sparse, SSD, Fisher forgetting, bad teacher,
CF-k, EU-k) each do what defines them on a tiny problem, and the loop hooks they use keep batched runs equal
to one-at-a-time runs."""

import numpy as np
import pytest
import torch

from unlearnbench.data import load_dataset
from unlearnbench.forget_sets import random_forget_set, retain_points
from unlearnbench.importance import diagonal_fisher, loss_gradient
from unlearnbench.loop import Hooks, Optimiser, run_loop
from unlearnbench.methods import METHODS, load_build, lookup
from unlearnbench.methods.base import Plan, UnlearningContext, cross_entropy
from unlearnbench.methods.l1_sparse import l1_norm
from unlearnbench.methods.salun import top_fraction_mask
from unlearnbench.named_layers import last_layers, weight_layers
from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, train_stack
from unlearnbench.unlearning import unlearn_stack

SEEDS = [41, 42, 43]
NEW = {
    "neggrad_plus": {"lr": 0.02, "beta": 0.9},
    "random_labels": {"lr": 0.02},
    "salun": {"lr": 0.02, "saliency": 0.3},
    "l1_sparse": {"lr": 0.02, "alpha": 1e-3},
    "ssd": {},
    "fisher": {"alpha": 1e-7, "batch_size": 8},
    "bad_teacher": {"lr": 1e-3, "batch_size": 32},
    "cf_k": {"lr": 0.02, "k": 1},
    "eu_k": {"lr": 0.02, "k": 1},
}
EDITS = ("ssd", "fisher")  # no training epochs: one snapshot at epoch 1


@pytest.fixture(scope="module")
def problem():
    splits = load_dataset("digits")
    x, y = splits.inputs(), torch.from_numpy(splits.labels())
    forget = random_forget_set(splits.n_train, 20, seed=5)
    base = ModelStack.initialise("digits_cnn", 10, 1, SEEDS, [0, 1, 2])
    recipe = Recipe(epochs=6, batch_size=32, lr=0.2, peak_epoch=2, momentum=0.9, weight_decay=5e-4)
    train_stack(base, x, y, np.arange(splits.n_train), SEEDS, recipe)
    return splits, x, y, forget, base


def context(problem):
    splits, x, y, forget, base = problem
    return UnlearningContext(x, y, forget, retain_points(forget, splits.n_train), base.copy(), SEEDS, epochs=2)


def train(name, hp, problem, epochs=2, models_per_batch=None):
    """The method's plan run on a copy of the base models: ``(ctx, models after)``."""
    ctx = context(problem)
    ctx.epochs = epochs
    plan = load_build(lookup(name))(ctx, **hp)
    after = problem[4].copy()
    run_loop(after, ctx.inputs, ctx.labels, SEEDS, plan.optimiser, epochs, plan.phases,
             models_per_batch=models_per_batch, hooks=plan.hooks)
    return ctx, after


def mean_loss(stack, x, y, points):
    with torch.no_grad():
        return cross_entropy(stack.forward(x[points], train=False), y[points].expand(stack.n_models, -1)).mean().item()


def test_every_new_method_is_registered_as_a_finetune_method():
    for name in NEW:
        assert METHODS[name].kind == "finetune" and callable(load_build(lookup(name)))


@pytest.mark.parametrize("name", sorted(NEW))
def test_batched_equals_one_model_at_a_time(problem, name):
    splits, _, _, forget, base = problem
    epochs = [1] if name in EDITS else [1, 2]
    build = load_build(lookup(name))
    together = unlearn_stack(build, NEW[name], epochs, base.copy(), splits, forget, SEEDS)
    alone = unlearn_stack(build, NEW[name], epochs, base.copy(), splits, forget, SEEDS, models_per_batch=1)
    np.testing.assert_allclose(together["margins"], alone["margins"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(together["samples"], alone["samples"])
    assert not together["diverged"].any()
    # and every model moved: the method did something (margins of the forget points changed)
    before = unlearn_stack(load_build(lookup("gradient_descent")), {"lr": 1e-12}, [1], base.copy(), splits,
                           forget, SEEDS)["margins"][0]
    assert (np.abs(together["margins"][-1] - before)[:, forget].mean(1) > 1e-3).all()


def test_neggrad_plus_with_beta_1_is_gradient_descent(problem):
    _, gd = train("gradient_descent", {"lr": 0.05, "batch_size": 32, "momentum": 0.9}, problem)
    _, ng = train("neggrad_plus", {"lr": 0.05, "beta": 1.0, "batch_size": 32, "momentum": 0.9}, problem)
    for k in gd.params:  # the same retain order, the forget batch's gradient weighted by exactly 0
        assert torch.equal(gd.params[k], ng.params[k]), k


def test_neggrad_plus_ascends_on_the_forget_set(problem):
    _, x, y, forget, _ = problem
    _, gd = train("gradient_descent", {"lr": 0.05}, problem)
    _, ng = train("neggrad_plus", {"lr": 0.05, "beta": 0.5}, problem)
    assert mean_loss(ng, x, y, forget) > mean_loss(gd, x, y, forget) + 0.1


def test_neggrad_plus_counts_the_forget_batches_in_its_cost(problem):
    splits, _, _, forget, base = problem
    out = unlearn_stack(load_build(lookup("neggrad_plus")), {"lr": 0.01, "beta": 0.9, "batch_size": 70,
                                                             "forget_batch_size": 8}, [1], base.copy(), splits,
                        forget, SEEDS)
    steps = -(-(splits.n_train - 20) // 70)
    assert out["samples"].tolist() == [[splits.n_train - 20 + 8 * steps] * 3]


def test_random_labels_never_use_the_true_label_of_a_forget_point(problem):
    _, _, y, forget, _ = problem
    ctx = context(problem)
    plan = load_build(lookup("random_labels"))(ctx, lr=0.01)
    seen = []
    target = ctx.target

    def spy(name, batch):
        out = target(name, batch)
        seen.append((batch.indices.clone(), out.clone()))
        return out

    ctx.target = spy
    run_loop(problem[4].copy(), ctx.inputs, ctx.labels, SEEDS, plan.optimiser, 2, plan.phases, hooks=plan.hooks)
    indices = torch.cat([i for i, _ in seen], 1)
    used = torch.cat([t for _, t in seen], 1)
    is_forget = torch.as_tensor(np.isin(indices.numpy(), forget))
    assert is_forget.sum() == 2 * len(forget) * len(SEEDS)  # every forget point, every epoch, every model
    assert (used[is_forget] != y[indices][is_forget]).all()
    assert (used[~is_forget] == y[indices][~is_forget]).all()  # retain points keep theirs
    assert len(torch.unique(used[is_forget])) > 3  # spread over the wrong classes
    table = ctx.targets["relabelled"][:, forget]
    assert not torch.equal(table[0], table[1])  # each model its own draw


def test_salun_changes_only_its_salient_weights(problem):
    splits, x, y, forget, base = problem
    ctx, after = train("salun", {"lr": 0.05, "saliency": 0.2, "momentum": 0.9}, problem)
    gradient, _ = loss_gradient(base, x, y, forget, 64)
    mask = top_fraction_mask({k: g.abs() for k, g in gradient.items()}, 0.2)
    total = sum(v[0].numel() for v in base.params.values())
    assert sum(v[0].sum().item() for v in mask.values()) == int(total * 0.2)  # per model, the top 20%
    changed = 0
    for k, v in base.params.items():
        moved = after.params[k] != v
        assert not moved[mask[k] == 0].any(), k
        changed += moved.sum().item()
    assert changed > 0.5 * 0.2 * total * len(SEEDS)
    assert not torch.equal(mask["5.weight"][0], mask["5.weight"][1])  # each model its own mask


def test_l1_sparse_lowers_the_l1_norm_and_decays_its_coefficient(problem):
    _, gd = train("gradient_descent", {"lr": 0.05}, problem)
    ctx, l1 = train("l1_sparse", {"lr": 0.05, "alpha": 1e-2}, problem)
    assert (l1_norm(l1.params) < l1_norm(gd.params) - 1.0).all()
    assert (l1_norm(l1.params) < l1_norm(problem[4].params)).all()
    penalty = load_build(lookup("l1_sparse"))(ctx, lr=0.05, alpha=1e-2).hooks.penalty
    params, rows = problem[4].params, np.arange(3)
    torch.testing.assert_close(penalty(params, rows, 1), 1e-2 * l1_norm(params))
    torch.testing.assert_close(penalty(params, rows, 2), 0.5e-2 * l1_norm(params))  # T = ctx.epochs = 2


def test_ssd_dampens_only_forget_important_weights_and_never_scales_up(problem):
    splits, x, y, forget, base = problem
    ctx, after = train("ssd", {"alpha": 10.0, "lam": 1.0}, problem, epochs=1)
    f, _ = diagonal_fisher(base, x, y, forget, 64)
    d, _ = diagonal_fisher(base, x, y, ctx.trained_points(), 64)
    dampened = 0
    for k, v in base.params.items():
        selected = f[k] > 10.0 * d[k]
        assert torch.equal(after.params[k][~selected], v[~selected]), k
        assert (after.params[k].abs() <= v.abs()).all(), k
        ratio = after.params[k][selected] / v[selected]
        torch.testing.assert_close(ratio, (d[k][selected] / f[k][selected]).clamp(max=1.0))
        dampened += selected.sum().item()
    assert dampened > 0
    assert mean_loss(after, x, y, forget) > mean_loss(base, x, y, forget)


def test_fisher_forgetting_adds_noise_scaled_by_the_inverse_fisher(problem):
    from unlearnbench.methods.fisher import noise_variance

    splits, x, y, forget, base = problem
    ctx, after = train("fisher", {"alpha": 1e-7, "batch_size": 8}, problem, epochs=1)
    fisher, _ = diagonal_fisher(base, x, y, ctx.retain, 8, "expected")
    head = set(last_layers(base, 1))
    z = torch.cat([((after.params[k] - v) / noise_variance(fisher[k], 1e-7, k in head).sqrt()).flatten()
                   for k, v in base.params.items()])
    assert abs(z.mean().item()) < 0.1 and 0.9 < z.std().item() < 1.1  # standard normal once rescaled
    again = train("fisher", {"alpha": 1e-7, "batch_size": 8}, problem, epochs=1)[1]
    assert torch.equal(again.params["5.weight"], after.params["5.weight"])  # seeded per model
    assert not torch.equal(after.params["5.weight"][0] - base.params["5.weight"][0],
                           after.params["5.weight"][1] - base.params["5.weight"][1])


def test_the_expected_fisher_at_batch_size_1_is_the_per_sample_sum(problem):
    _, x, y, _, base = problem
    one = base.select([0])
    points = np.arange(5)
    fisher, samples = diagonal_fisher(one, x, y, points, 1, "expected")
    module = one.to_module(0).eval()
    manual = {k: torch.zeros_like(v) for k, v in module.named_parameters()}
    for i in points:
        logits = module(x[[i]])
        p = torch.softmax(logits, -1).detach()[0]
        for c in range(10):
            grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, torch.tensor([c])),
                                        list(module.parameters()), retain_graph=True)
            for (k, _), g in zip(module.named_parameters(), grads):
                manual[k] += p[c] * g**2 / len(points)
    for k in manual:
        torch.testing.assert_close(fisher[k][0], manual[k], rtol=1e-4, atol=1e-9)
    assert samples.tolist() == [50]


def test_bad_teacher_moves_forget_outputs_towards_the_random_teacher(problem):
    _, x, y, forget, base = problem
    ctx, after = train("bad_teacher", {"lr": 1e-2, "batch_size": 32}, problem, epochs=3)
    incompetent = ctx.fresh_models("bad teacher")

    def kl_to(teacher, student, points):
        with torch.no_grad():
            t = torch.log_softmax(teacher.forward(x[points], train=False), -1)
            s = torch.log_softmax(student.forward(x[points], train=False), -1)
            return (t.exp() * (t - s)).sum(-1).mean().item()

    assert kl_to(incompetent, after, forget) < 0.5 * kl_to(incompetent, base, forget)
    retain = ctx.retain[0]
    assert kl_to(base, after, retain) < kl_to(incompetent, after, retain)
    fresh = ModelStack.initialise("digits_cnn", 10, 1, [1], [0])  # the random teacher is not the base model
    assert not torch.equal(incompetent.params["5.weight"][0], fresh.params["5.weight"][0])


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_last_k_layer_methods_leave_earlier_layers_bit_identical(problem, name):
    base = problem[4]
    _, after = train(name, {"lr": 0.05, "k": 2}, problem)
    trained = set(last_layers(base, 2))
    assert trained == {"2.0.weight", "2.1.weight", "2.1.bias", "5.weight", "5.bias"}
    for k, v in base.params.items():
        assert torch.equal(after.params[k], v) != (k in trained), k
    for k in ("0.1.running_mean", "0.1.running_var"):  # train-mode forwards do not move a frozen BatchNorm
        assert torch.equal(after.buffers[k], base.buffers[k])
    assert not torch.equal(after.buffers["2.1.running_mean"], base.buffers["2.1.running_mean"])


def test_eu_k_starts_its_last_layers_from_fresh_weights(problem):
    base = problem[4]
    ctx, after = train("eu_k", {"lr": 1e-12, "k": 1}, problem)  # a vanishing step: the re-initialised weights
    fresh = ctx.fresh_models("eu_k")
    torch.testing.assert_close(after.params["5.weight"], fresh.params["5.weight"])
    assert (after.params["5.weight"] - base.params["5.weight"]).abs().max() > 0.1


def test_weight_layers_keep_batchnorm_with_its_convolution(problem):
    assert weight_layers(problem[4]) == [["0.0.weight", "0.1.weight", "0.1.bias"],
                                         ["2.0.weight", "2.1.weight", "2.1.bias"], ["5.weight", "5.bias"]]
    with pytest.raises(ValueError):
        last_layers(problem[4], 0)


def test_hooks_penalty_and_after_step_act_on_each_model(problem):
    """A plug-in-style plan: an l2 pull towards zero through ``penalty`` and a clamp after each step."""
    ctx = context(problem)
    seen_rows = []

    def clamp(params, rows, lr):
        seen_rows.append(rows.tolist())
        params["5.bias"].clamp_(-0.01, 0.01)

    retain = ctx.phase(ctx.retain, cross_entropy, 0.05, 64, "descent")
    plan = Plan(Optimiser(), lambda epoch: [retain],
                Hooks(penalty=lambda params, rows, epoch: params["5.weight"].pow(2).flatten(1).sum(1),
                      after_step=clamp))
    after = problem[4].copy()
    run_loop(after, ctx.inputs, ctx.labels, SEEDS, plan.optimiser, 1, plan.phases, models_per_batch=2,
             hooks=plan.hooks)
    assert after.params["5.bias"].abs().max() <= 0.01
    assert {tuple(r) for r in seen_rows} == {(0, 1), (2,)}
    assert after.params["5.weight"].norm() < problem[4].params["5.weight"].norm()


def readme_hook_examples() -> dict:
    """The README's worked hook examples, as a user's plug-in module would hold them."""
    namespace: dict = {}
    exec(compile(readme_hook_examples_source(), "my_hooks.py", "exec"), namespace)
    return namespace


README_HOOKS = {
    "masked_descent": {"lr": 0.05, "fraction": 0.1},
    "l2_pull": {"lr": 0.05, "weight": 1.0},
    "clamped_ascent": {"lr": 0.05, "bound": 0.5},
    "fisher_shrink": {"factor": 0.5},
    "fresh_head": {"lr": 0.05, "k": 1},
    "random_teacher": {"lr": 0.05},
}


@pytest.mark.parametrize("name", sorted(README_HOOKS))
def test_each_readme_hook_example_runs_and_batched_equals_one_at_a_time(problem, name):
    splits, _, _, forget, base = problem
    build = readme_hook_examples()[name]
    epochs = [1] if name == "fisher_shrink" else [1, 2]
    together = unlearn_stack(build, README_HOOKS[name], epochs, base.copy(), splits, forget, SEEDS)
    alone = unlearn_stack(build, README_HOOKS[name], epochs, base.copy(), splits, forget, SEEDS, models_per_batch=1)
    np.testing.assert_allclose(together["margins"], alone["margins"], rtol=1e-4, atol=1e-4)
    ctx = context(problem)
    plan = build(ctx, **README_HOOKS[name])
    after = base.copy()
    run_loop(after, ctx.inputs, ctx.labels, SEEDS, plan.optimiser, epochs[-1], plan.phases, hooks=plan.hooks)
    moved = {k: not torch.equal(after.params[k], v) for k, v in base.params.items()}
    if name == "clamped_ascent":
        assert max(v.abs().max().item() for v in after.params.values()) <= 0.5
    if name == "fresh_head":
        assert moved["5.weight"] and not moved["0.0.weight"]
    if name == "masked_descent":  # at most the top 10% of each tensor, per model
        for k, v in base.params.items():
            assert ((after.params[k] != v).flatten(1).float().mean(1) <= 0.1 + 1.5 / v[0].numel()).all(), k
    assert any(moved.values())


def test_ulira_unlearns_with_a_plugin_using_hooks(problem, tmp_path, monkeypatch):
    """U-LiRA's job runs a plug-in (here the README's re-initialised, frozen head) on every request of every
    pool model, each request with its own forget set."""
    from unlearnbench.data import save_splits
    from unlearnbench.stages.pool import ulira_unlearn
    from unlearnbench.storage import load_arrays, save_arrays

    splits, _, _, _, base = problem
    (tmp_path / "my_hooks.py").write_text(readme_hook_examples_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = base.copy()
    masks = np.zeros((3, splits.n_train), dtype=bool)
    masks[:, ::2] = True  # every model "trained" on the even points
    pool.extras["train_mask"] = masks
    pool.save(tmp_path / "pool.safetensors")
    requests = np.stack([[np.arange(0, 20, 2) + 20 * k for k in range(2)] for _ in range(3)])  # [3, K=2, 10]
    save_arrays(tmp_path / "requests.npz", requests=requests)
    save_splits(tmp_path / "splits.npz", splits)
    seeds = {"unlearn": [[1, 2, 3], [4, 5, 6]]}
    ulira_unlearn(weights=str(tmp_path / "pool.safetensors"), pool_margins="", requests=str(tmp_path / "requests.npz"),
                  splits=str(tmp_path / "splits.npz"), runs=str(tmp_path / "out.npz"), method="fresh_head",
                  hyperparameters={"lr": 0.05, "k": 1}, epochs=[1], plugins={"fresh_head": "my_hooks:fresh_head"},
                  seeds=seeds, recipe={}, tta="none", device="cpu", models_per_batch=None, compile=False)
    out = load_arrays(tmp_path / "out.npz", ("margins", "forgotten", "samples"))
    assert out["margins"].shape == (1, 6, len(splits.labels())) and np.isfinite(out["margins"]).all()
    assert out["forgotten"][:, :40].sum(1).tolist() == [10] * 6
    assert (out["samples"] == splits.n_train // 2 - 10).all()  # one pass over each model's own retain points


def readme_hook_examples_source() -> str:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.search(r"```python\n(# my_hooks.py\n.*?)```", text, re.S).group(1)
