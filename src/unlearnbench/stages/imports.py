"""Stages of ``workflow/rules/import.smk`` (``import`` is a Python keyword, hence ``imports``): published
assets instead of local work. Each writes exactly the file the regular rule would (a forget set, a weights
shard, a margins shard), so everything downstream is unchanged.

The formats are read and mapped by :mod:`unlearnbench.published` (files of the published benchmark and its
successor), :mod:`unlearnbench.hub` (the Hugging Face Hub cache and its manifest) and
:mod:`unlearnbench.downloads` (a forget set's url).
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)


def download_forget_set(indices: str, url: str, sha256: str | None, allow_http: bool, user_path: str | None,
                        max_bytes: int) -> None:
    """The index file of a forget set's ``url``, checked, as ``indices`` (the user's ``path`` is not touched)."""
    from ..downloads import fetch_forget_set

    fetch_forget_set(url, indices, max_bytes=max_bytes, sha256=sha256, allow_http=allow_http, user_path=user_path)


def import_base_weights(state_dicts: list[str], weights: str, model: str, num_classes: int, in_channels: int,
                        model_range: tuple[int, int]) -> None:
    """One weights shard (as ``train_base`` would write it) from published state dicts, one per model."""
    _save_published_weights(state_dicts, model_range, weights, model, num_classes, in_channels)


def import_oracle_margins(train: str, val: str, margins: str, model_range: tuple[int, int], n_train: int,
                          n_val: int) -> None:
    """Rows ``model_range`` of the published train/val margin tensors as one oracle margins shard."""
    _save_margin_rows(train, val, margins, model_range, n_train, n_val)


def fetch_hub_assets(manifest: str, repo: str, revision: str | None, files: list[str], pins: dict,
                     lock: str) -> None:
    """Every file of the run into the Hub cache at one commit, each sha256 verified; ``manifest`` lists them."""
    from .. import hub

    hub.fetch(hub.Source(repo, revision), list(files), dict(pins), lock, manifest)


def import_hub_forget_set(manifest: str, indices: str, file: str, n_train: int) -> None:
    """A published index file as our forget set: the same points, sorted (as every forget set)."""
    from .. import hub
    from ..published import published_forget_set
    from ..storage import save_npy

    path = hub.resolve(hub.load_manifest(manifest), file)
    forget = np.sort(published_forget_set(path, n_train))
    save_npy(indices, forget)
    log.info("forget set of %d points from %s", len(forget), path)


def import_hub_base_weights(manifest: str, weights: str, files: list[str], model: str, num_classes: int,
                            in_channels: int, model_range: tuple[int, int]) -> None:
    from .. import hub

    listed = hub.load_manifest(manifest)
    paths = [hub.resolve(listed, name) for name in files]
    _save_published_weights(paths, model_range, weights, model, num_classes, in_channels)


def import_hub_base_margins(manifest: str, margins: str, files: list, model_range: tuple[int, int], n_train: int,
                            n_val: int) -> None:
    """A base margins shard from per-model (train, validation) margin files."""
    from .. import hub
    from ..published import per_model_margins

    model_files = hub.resolve_groups(hub.load_manifest(manifest), files)
    model_index = range(*model_range)
    values = per_model_margins(model_files, model_index, n_train, n_val)
    _save_margins(margins, values, model_index)
    log.info("imported margins of models %s (%d files): %s", list(model_index), 2 * len(model_files), values.shape)


def import_hub_oracle_margins(manifest: str, forget_set: str, margins: str, layout: str, files: list,
                              forget_file: str, model_range: tuple[int, int], n_train: int, n_val: int,
                              forget_set_id: str) -> None:
    """One oracle margins shard of a Hub layout (:mod:`unlearnbench.hub_layouts`), after checking that the
    run's forget set (``forget_set``) is the published one (``forget_file``) the oracles were trained without."""
    from .. import hub
    from ..published import check_same_forget_set, per_model_oracle_margins, published_forget_set
    from ..storage import load_npy

    listed = hub.load_manifest(manifest)
    published_file, model_files = hub.resolve(listed, forget_file), hub.resolve_groups(listed, files)
    published = published_forget_set(published_file, n_train)
    check_same_forget_set(published, load_npy(forget_set), forget_set_id)
    if layout == "klom":  # one [oracles, points] file per split holds every oracle of the forget set
        train, val = model_files[0]
        _save_margin_rows(train, val, margins, model_range, n_train, n_val)
        return
    model_index = range(*model_range)
    values = per_model_oracle_margins(published, model_files, model_index, n_train, n_val)
    _save_margins(margins, values, model_index)
    log.info("imported oracle margins of models %s (%d files; %d forget points back in train order): %s",
             list(model_index), 3 * len(model_files), len(published), values.shape)


def _save_published_weights(paths: list, model_range: tuple[int, int], out: str, arch: str, num_classes: int,
                            in_channels: int) -> None:
    from ..published import stack_from_published

    model_index = range(*model_range)
    stack = stack_from_published(paths, model_index, arch, num_classes, in_channels)
    stack.save(out, {"imported_from": [os.path.basename(str(p)) for p in paths]})
    log.info("imported %d published %s state dicts as models %s", len(paths), arch, list(model_index))


def _save_margin_rows(train: str, val: str, out: str, model_range: tuple[int, int], n_train: int | None,
                      n_val: int | None) -> None:
    from ..published import margin_rows

    values = margin_rows(train, val, model_range, n_train, n_val)
    start, stop = (int(v) for v in model_range)
    _save_margins(out, values, range(start, stop))
    log.info("imported rows %d..%d of %s and %s: margins %s", start, stop - 1, train, val, values.shape)


def _save_margins(out: str, margins: np.ndarray, model_index) -> None:
    from ..storage import save_arrays

    save_arrays(out, margins=margins, model_index=np.asarray(model_index, dtype=np.int64))
