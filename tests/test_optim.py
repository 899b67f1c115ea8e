"""The loop's own optimisers equal torch.optim; a job's torch start-up imports no compiler; CPU runs are
bit-reproducible."""

import json
import subprocess
import sys

import pytest
import torch

from unlearnbench.optim import SGD, Adam, param_groups

SHAPES = {"conv.weight": (3, 4, 2, 3, 3), "bn.weight": (3, 4), "bn.bias": (3, 4), "fc.weight": (3, 10, 4)}
NO_DECAY = {"bn.weight", "bn.bias"}


def parameters(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=gen) for n, s in SHAPES.items()}


def run_both(make_mine, make_reference, steps=60, frozen=()):
    """Identical parameters and gradients through both optimisers, a changing lr, some params frozen."""
    mine, ref = parameters(), parameters()
    groups = param_groups(mine, 5e-3, NO_DECAY)
    ours = make_mine(groups)
    theirs = make_reference([{"params": [ref[n] for n in g.names], "weight_decay": g.weight_decay} for g in groups])
    for step in range(steps):
        lr = 0.02 * (1 + step % 5)
        gen = torch.Generator().manual_seed(1000 + step)
        for n in SHAPES:
            grad = torch.randn(SHAPES[n], generator=gen)
            frozen_now = n in frozen and step >= steps // 2
            mine[n].grad = None if frozen_now else grad.clone()
            ref[n].grad = None if frozen_now else grad.clone()
        ours.step(lr)
        for g in theirs.param_groups:
            g["lr"] = lr
        theirs.step()
    return mine, ref


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_equals_torch_optim_bit_for_bit_on_cpu(momentum, nesterov):
    mine, ref = run_both(lambda g: SGD(g, momentum=momentum, nesterov=nesterov),
                         lambda g: torch.optim.SGD(g, lr=0.0, momentum=momentum, nesterov=nesterov),
                         frozen={"fc.weight"})
    for n in SHAPES:
        assert torch.equal(mine[n], ref[n]), n  # the CPU's foreach ops are torch.optim's per-tensor loop
    assert not torch.equal(mine["conv.weight"], parameters()["conv.weight"])


def test_adam_equals_torch_optim_bit_for_bit_on_cpu():
    mine, ref = run_both(lambda g: Adam(g), lambda g: torch.optim.Adam(g, lr=0.0), frozen={"bn.bias"})
    for n in SHAPES:
        assert torch.equal(mine[n], ref[n]), n


def test_a_parameter_without_gradient_is_left_alone():
    params = parameters()
    before = {n: v.clone() for n, v in params.items()}
    opt = SGD(param_groups(params, 0.1), momentum=0.9)
    for n in params:
        params[n].grad = torch.ones_like(params[n]) if n != "fc.weight" else None
    opt.step(0.1)
    assert torch.equal(params["fc.weight"], before["fc.weight"]) and "fc.weight" not in opt.state
    assert not torch.equal(params["conv.weight"], before["conv.weight"])


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(ValueError, match="momentum"):
        SGD(param_groups(parameters(), 0.0), momentum=0.0, nesterov=True)


JOB = """
import hashlib, json, sys
import numpy as np, torch
from unlearnbench.data import load_dataset
from unlearnbench.device import torch_setup
from unlearnbench.loop import Optimiser, Phase, run_loop
from unlearnbench.methods import load_build, lookup
from unlearnbench.methods.base import cross_entropy
from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, train_stack
from unlearnbench.unlearning import unlearn_stack

device = torch_setup(1, "cpu")
splits = load_dataset("digits")
x, y = splits.images(), torch.from_numpy(splits.labels())
stack = ModelStack.initialise("digits_cnn", 10, 1, [3, 4], [0, 1])
recipe = Recipe(epochs=2, batch_size=32, lr=0.2, peak_epoch=1, momentum=0.9, weight_decay=5e-4)
train_stack(stack, x, y, np.arange(splits.n_train), [3, 4], recipe)
out = unlearn_stack(load_build(lookup("gradient_ascent")), {"lr": 0.05, "momentum": 0.9}, [1], stack, splits,
                    np.arange(10), [5, 6])
run_loop(stack, x, y, [7, 8], Optimiser("adam"), 1, lambda e: [Phase(np.arange(40), 8, cross_entropy, 1e-3)])
digest = hashlib.sha256()
for name in sorted(stack.params):
    digest.update(stack.params[name].numpy().tobytes())
digest.update(out["margins"].tobytes())
print(json.dumps({"dynamo": "torch._dynamo" in sys.modules, "inductor": "torch._inductor" in sys.modules,
                  "deterministic": torch.are_deterministic_algorithms_enabled(), "digest": digest.hexdigest()}))
"""


def run_job():
    proc = subprocess.run([sys.executable, "-c", JOB], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_torch_job_imports_no_compiler_and_a_cpu_run_is_bit_reproducible():
    """A fresh process: job set-up, training (SGD with momentum) and unlearning (SGD, Adam) never import
    torch._dynamo (1.5-2 s of start-up in every job), deterministic mode is on, and two runs of the same
    job give the same bytes."""
    first = run_job()
    assert not first["dynamo"] and not first["inductor"]
    assert first["deterministic"]
    assert run_job()["digest"] == first["digest"]


def test_torch_setup_records_the_compile_switch():
    from unlearnbench import loop
    from unlearnbench.device import torch_setup

    try:
        torch_setup(1, "cpu", compile=True)
        assert loop.ENGINE.compile and torch.are_deterministic_algorithms_enabled()
    finally:
        loop.configure(compile=False)
        torch.use_deterministic_algorithms(False)
