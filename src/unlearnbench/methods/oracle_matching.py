"""Oracle matching: regress the model's logits onto an oracle's logits (squared error) on the forget
set plus a fresh retain subsample of ``retain_multiplier`` x |F| points each epoch.

The target oracles are held-out ones, disjoint from the oracles KLOM is scored against: matching the
scored oracles would overfit the metric. Datamodel matching (``dm_matching``) is the same loop towards
datamodel-predicted oracle logits.
"""

import logging

import numpy as np
import torch

from ..stack import ModelStack
from .base import Plan, adam

log = logging.getLogger(__name__)


def matching(ctx, target: str, lr: float, retain_multiplier: int, forget_multiplier: int, batch_size: int,
             weight_decay: float = 0.0):
    """Adam on squared error to ``ctx.targets[target]`` over (forget x forget_multiplier) + retain sample."""

    def loss(logits, labels, batch):
        return (logits - ctx.target(target, batch)).pow(2).mean(dim=(1, 2))

    def phases(epoch: int):
        retain = ctx.sample_per_model(ctx.retain, retain_multiplier * ctx.forget.shape[1], epoch, "retain")
        points = np.concatenate([np.tile(ctx.forget, forget_multiplier), retain], axis=1)
        return [ctx.phase(points, loss, lr, batch_size, "match")]

    return Plan(adam(weight_decay), phases)


def build(ctx, lr: float, retain_multiplier: int = 20, forget_multiplier: int = 1, batch_size: int = 64,
          weight_decay: float = 0.0):
    """Adam (``weight_decay`` is Adam's)."""
    oracles = ctx.needed["matching_oracles"]  # held-out: disjoint from the oracles KLOM is scored against
    ctx.targets["oracle_logits"] = matched_oracle_logits(oracles, ctx.original.model_index, ctx.inputs)
    return matching(ctx, "oracle_logits", lr, retain_multiplier, forget_multiplier, batch_size, weight_decay)


def matched_oracle_logits(oracles: ModelStack, model_index: np.ndarray, inputs) -> torch.Tensor:
    """Each model's matched oracle's logits on every point, ``[M, P, C]``: model ``model_index[i]`` gets the
    oracle of :func:`matching_rows`. Only the matched oracles are evaluated."""
    matched = matching_rows(model_index, oracles.model_index)
    needed, slot = np.unique(matched, return_inverse=True)
    logits = oracles.select(needed).logits(inputs)
    log.info("oracle matching targets (base model -> held-out oracle): %s",
             ", ".join(f"{b}->{o}" for b, o in zip(model_index, oracles.model_index[matched])))
    return logits[torch.as_tensor(slot, device=logits.device)]


def matching_rows(model_index: np.ndarray, oracle_index: np.ndarray) -> np.ndarray:
    """Row of the held-out oracle each model is matched to: model ``i`` (its global index) gets the
    ``(i mod H)``-th of the H held-out oracles, counted in their own index order.

    Keyed by the global index, every held-out oracle is a target exactly once per H consecutive models
    however the models are sharded (keyed by the row inside a shard, every shard would reuse the first
    oracles, and duplicated targets correlate the unlearned sample).
    """
    order = np.argsort(np.asarray(oracle_index), kind="stable")
    if len(order) == 0:
        raise ValueError("oracle matching needs at least one held-out oracle")
    return order[np.asarray(model_index, dtype=np.int64) % len(order)]
