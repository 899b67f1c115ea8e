"""A planted linear attribution truth: pool masks, outputs and the exact forget effect, for measuring estimators.

The numbers are those of issue 11's measurement (its CIFAR-10 scenario: n = 50,000 train points, M = 256 models):
every model trains on a random half (each point independently with probability ½); every *train* target x has a
self-influence θ_x(x) ~ U(0.5, 4) and every target (train or validation-like) has ``n_influencers`` random train
points with effects N(0, ``cross_sd``²); outputs are ``masks @ θ + N(0, noise²)``.  Only the targets a
measurement needs are generated (forget sets, some other train points, some validation-like points), so
n = 50,000 takes seconds.  Used by ``tests/test_datamodels.py`` and ``benchmarks/attribution_pool_size.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PlantedTruth:
    masks: np.ndarray  # bool [M, n_train]
    outputs: np.ndarray  # float64 [M, P]; targets: the forget sets' points, other train points, validation-like
    forget_sets: list[np.ndarray]  # sorted, disjoint train indices
    effects: list[np.ndarray]  # per forget set: the true Σ_{i∈F} θ_i(x) of every target [P]
    inside: list[np.ndarray]  # per forget set: bool [P], is the target a point of that forget set
    n_train_targets: int  # targets 0..n_train_targets-1 are train points, the rest validation-like


def planted_truth(n_train: int, n_models: int, forget_sizes: list[int], n_other: int, n_val: int, seed: int,
                  n_influencers: int = 50, cross_sd: float = 0.2, noise: float = 1.0) -> PlantedTruth:
    """Draw a planted truth (module doc); the forget sets come first among the targets, in ``forget_sizes`` order."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n_models, n_train)) < 0.5
    order = rng.permutation(n_train)
    bounds = np.cumsum([0, *forget_sizes])
    forget_sets = [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    train_targets = np.concatenate([order[: bounds[-1]], order[bounds[-1]: bounds[-1] + n_other]])
    n_points = len(train_targets) + n_val
    influencers = rng.integers(0, n_train, (n_points, n_influencers))
    cross = rng.normal(0, cross_sd, (n_points, n_influencers))
    self_influence = rng.uniform(0.5, 4.0, len(train_targets))
    outputs = rng.normal(0, noise, (n_models, n_points))
    for j in range(n_points):  # one target at a time: no [M, P, n_influencers] temporary
        outputs[:, j] += masks[:, influencers[j]] @ cross[j]
    outputs[:, : len(train_targets)] += masks[:, train_targets] * self_influence
    effects, inside = [], []
    for f in forget_sets:
        own = np.zeros(n_points, dtype=bool)
        own[: len(train_targets)] = np.isin(train_targets, f)
        effect = (cross * np.isin(influencers, f)).sum(axis=1)
        effect[own] += self_influence[own[: len(train_targets)]]
        effects.append(effect)
        inside.append(own)
    return PlantedTruth(masks, outputs, forget_sets, effects, inside, len(train_targets))
