"""Training and margin passes with and without deterministic mode's NaN fill of every new tensor.

    python benchmarks/uninitialized_fill.py                 # 25 digits nets: 10 epochs, margins on 1,797 points
    python benchmarks/uninitialized_fill.py --rounds 5 --models 50

``torch.use_deterministic_algorithms(True)`` also fills every tensor torch allocates uninitialised (each
op's output) with NaN, ``torch.utils.deterministic.fill_uninitialized_memory``, unless that is switched off;
``unlearnbench.device.torch_setup`` switches it off. In one process (the switch is read at every
allocation), after ``torch_setup``, this times the embedded default's training recipe on a stack of digits
nets and their eval-mode margins with the fill on ("fill", torch's default) and off ("no fill"),
alternating, and prints the minimum of each, the ratios no fill / fill and whether the trained weights and
the margins are the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
import torch

from unlearnbench.data import load_dataset
from unlearnbench.device import torch_setup
from unlearnbench.margins import stack_outputs
from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, train_stack


def run(fill: bool, x, y, models: int, epochs: int) -> tuple[float, float, str]:
    torch.utils.deterministic.fill_uninitialized_memory = fill
    seeds = list(range(1, models + 1))
    stack = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(models))
    recipe = Recipe(epochs=epochs, batch_size=32, lr=0.2, momentum=0.9, weight_decay=5e-4, peak_epoch=epochs / 5)
    start = time.perf_counter()
    train_stack(stack, x, y, np.arange(300), seeds, recipe)
    trained = time.perf_counter()
    margins, _ = stack_outputs(stack, x, y)
    done = time.perf_counter()
    digest = hashlib.sha256(np.asarray(margins).tobytes())
    for name in sorted(stack.params):
        digest.update(stack.params[name].detach().numpy().tobytes())
    return trained - start, done - trained, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=25, help="one stack, as a CPU job trains them")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch_setup(1, "cpu")
    data = load_dataset("digits")
    x, y = data.inputs(), torch.from_numpy(data.labels())
    run(False, x, y, args.models, 1)  # warm-up
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    digests: dict[bool, set[str]] = {True: set(), False: set()}
    for r in range(args.rounds):
        for fill in (True, False):
            train_s, margins_s, digest = run(fill, x, y, args.models, args.epochs)
            times[fill].append((train_s, margins_s))
            digests[fill].add(digest)
            print(f"round {r + 1}/{args.rounds} {'fill' if fill else 'no fill':7s}: train {train_s:6.3f} s, "
                  f"margins {margins_s:6.3f} s", flush=True)
    print(f"\n{args.models} digits nets, {args.epochs} epochs on 300 points, margins on {len(y)} points, 1 thread; "
          f"minimum of {args.rounds}:")
    for i, what in enumerate(("train", "margins")):
        fill, none = min(t[i] for t in times[True]), min(t[i] for t in times[False])
        print(f"  {what:8s} fill {fill:6.3f} s   no fill {none:6.3f} s   ratio no fill / fill {none / fill:.3f}")
    same = len(digests[True] | digests[False]) == 1
    print(f"weights and margins: {'the same bytes' if same else 'DIFFERENT'} with and without the fill")


if __name__ == "__main__":
    main()
