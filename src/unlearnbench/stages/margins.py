"""Stage of ``workflow/rules/margins.smk``: every model's margins on every point."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def compute_margins(weights: str, splits: str, margins: str, device: str, keep_logits: bool, tta: str,
                    threads: int = 1) -> None:
    """Margins of every model of a shard on every train point, then every validation point (float32), and
    whether each model's argmax is right on each point (``correct``, bool ``[M, P]``).

    Arrays stored with the weights (pool models' ``train_mask``) are carried over; ``keep_logits`` also
    stores the logits ``[M, P, C]`` (datamodel matching regresses logits). ``tta="flip"``: margins (and
    logits) of the mean logits of each image and its mirror image (``ModelStack.tta``).
    """
    import torch

    from ..data import load_splits
    from ..device import torch_setup
    from ..margins import argmax_correct, margins_from_logits
    from ..stack import ModelStack
    from ..storage import save_arrays

    dev = torch_setup(threads, device)
    data = load_splits(splits)
    stack = ModelStack.load(weights, dev)
    stack.tta = tta
    inputs, labels = data.images(dev), torch.from_numpy(data.labels()).to(dev)
    logits = stack.logits(inputs)  # [M, P, C]: small next to the images
    values = margins_from_logits(logits, labels).cpu().numpy()
    correct = argmax_correct(logits, labels).cpu().numpy()
    extra = {"logits": logits.cpu().numpy()} if keep_logits else {}
    n = data.n_train
    log.info("argmax accuracy: train %.4f, val %.4f (mean over %d models)",
             correct[:, :n].mean(), correct[:, n:].mean(), stack.n_models)
    save_arrays(margins, margins=values, correct=correct, model_index=stack.model_index, **stack.extras, **extra)
