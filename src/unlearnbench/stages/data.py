"""Stages of ``workflow/rules/data.smk``: the data set's fixed splits and the forget sets."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def prepare_dataset(splits: str, dataset: str, root: str, download: bool, verify_checksums: bool,
                    resolution: int | None, val_resolution: int | None, n_train: int, n_val: int,
                    split_file: str | None = None, threads: int = 1) -> None:
    """The fixed splits of data set ``dataset``, written to ``splits``.

    ``n_train`` / ``n_val`` are the sizes the rest of the DAG assumes (forget sets are drawn from
    ``range(n_train)`` before any image is read): a different data set on disk is an error.
    """
    from ..data import load_dataset, save_splits

    data = load_dataset(dataset, root=root, download=download, verify_checksums=verify_checksums,
                        resolution=resolution, val_resolution=val_resolution, split_file=split_file,
                        workers=threads if threads > 1 else 0)
    if (data.n_train, data.n_val) != (n_train, n_val):
        raise ValueError(
            f"{dataset} under {root!r} has {data.n_train} train / {data.n_val} val points, the "
            f"workflow expects {n_train} / {n_val}: set data.n_train and data.n_val in the config to match")
    log.info("%s: %d train / %d val points, input shape %s", dataset, data.n_train, data.n_val, data.x_train.shape[1:])
    save_splits(splits, data)


def make_forget_set(indices: str, entry: dict, seed: int, n_train: int, user_file: str | None = None,
                    splits: str | None = None, datamodels: str | None = None) -> None:
    """One forget set (its config ``entry``), as sorted train indices in ``indices``.

    ``user_file``: the user's index file, or the download of its url when the user has none
    (``results/downloads/``); ``splits``: the labels of a class forget set; ``datamodels``: the pool's fit
    (``.npz``) or an imported matrix (``.npy``, memory-mapped) of an ``attribution_pc`` set.
    """
    from ..data import load_splits
    from ..downloads import verify_sha256
    from ..forget_sets import build_forget_set
    from ..storage import save_npy

    entry = dict(entry)
    if user_file is not None:
        verify_sha256(user_file, entry.get("sha256"), f"forget set {entry['id']}: the file {user_file}")
        entry["path"] = user_file
    labels = load_splits(splits).y_train if splits else None
    weights = None
    if datamodels:
        from ..datamodels import train_by_train

        weights = train_by_train(datamodels, n_train)
    forget = build_forget_set({**entry, "seed": seed}, n_train, labels, weights)
    log.info("forget set %s (%s): %d points", entry["id"], entry["kind"], len(forget))
    save_npy(indices, forget)
