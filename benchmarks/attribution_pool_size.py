"""How many pool models does a forget effect of a given quality need?  Measured on a planted linear truth.

A planted truth with the numbers of issue 11: random-half masks over ``--n-train`` points; every train target has a
self-influence drawn from U(0.5, 4) and 50 random influencers with N(0, 0.2²) effects, validation-like targets only
the influencers; output noise sd 1.  For each forget-set size k and pool size M (the first M models of one pool,
so the rows are nested like a growing pool) the script estimates Σ_{i∈F} β_i(x) with ``--estimator`` and prints:

- ``slope``: least-squares slope of the estimate on the truth over all targets (1 = right scale);
- ``corr``: their correlation;
- ``noise_forget`` / ``noise_other``: sd of (estimate − truth) on the forget targets and on the other targets (where
  the true effect is ≈ 0, so this is the shift DM-direct adds to retain and validation margins by chance);
- ``noise_other/sd_y``: the same in units of the targets' across-model output sd (what carries over to real
  margins), next to the rule ``2·sqrt(k/M)`` that a difference in means of random halves follows.

Usage (the table in config/README.md, "Datamodel estimators"):

    python benchmarks/attribution_pool_size.py --n-train 50000 --models 64 256 1024 4096 --forget-sizes 10 100 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from unlearnbench.datamodels import PoolAttribution
from unlearnbench.planted import planted_truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--models", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--forget-sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--estimator", default="auto")
    parser.add_argument("--l2", type=float, default=100.0)
    parser.add_argument("--other-targets", type=int, default=300)
    parser.add_argument("--val-targets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    truth = planted_truth(args.n_train, max(args.models), args.forget_sizes, args.other_targets, args.val_targets,
                          args.seed)
    print(f"planted truth: n_train {args.n_train}, {truth.outputs.shape[1]} targets, {max(args.models)} models "
          f"({time.perf_counter() - start:.0f} s)\n")
    print("| k = \\|F\\| | M | estimator | slope | corr | noise_forget | noise_other | noise_other/sd_y | 2·sqrt(k/M) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, f, effect, inside in zip(args.forget_sizes, truth.forget_sets, truth.effects, truth.inside):
        for m in args.models:
            pool = PoolAttribution(truth.masks[:m], truth.outputs[:m], args.estimator, args.l2)
            estimate = pool.effect(f)
            error = estimate - effect
            slope = np.cov(estimate, effect)[0, 1] / effect.var(ddof=1)
            sd_y = truth.outputs[:m, ~inside].std(axis=0).mean()
            noise_other = error[~inside].std()
            print(f"| {k} | {m} | {pool.estimator} | {slope:.3f} | {np.corrcoef(estimate, effect)[0, 1]:.3f} | "
                  f"{error[inside].std():.2f} | {noise_other:.2f} | {noise_other / sd_y:.2f} | "
                  f"{2 * np.sqrt(k / m):.2f} |")

if __name__ == "__main__":
    main()
