"""Where the published data sets keep their files on the Hugging Face Hub, and which of them a run needs.

Two layouts, each read from the code that downloads it (read, not copied; MIT licences):

``klom`` — the Hub data set "royrin/KLOM-models" of the published benchmark (data-unlearning-bench).
Source: ``unlearning_bench/paths.py`` (``HF_REGISTRY``) of github.com/RoyRin/data-unlearning-bench at
commit eb261f9c652aa1daae62c7f23f4e56286edf745c:

- base models: ``full_models/CIFAR10/sd_{i}____epoch_23.pt``, one ResNet-9 ``state_dict`` per model
  (keys optionally prefixed ``model.``/``module.``; the benchmark strips both);
- oracle margins: ``oracle_models/CIFAR10/only_margins/forget_set_{id}/{train,val}_margins_all.pt``, one
  tensor ``[oracles, points]`` per split (the benchmark keeps the first N rows);
- forget sets: ``forget_set_indices/CIFAR10/forget_set_{id}.npy``, int64 indices (ids 1-10).

``easydub`` — the Hub data set "easydub/EasyDUB-dataset" of the successor (Easy Data Unlearning Bench,
arXiv 2602.16400; 200 pretrained and 2,000 oracle ResNet-9s). Source: ``easydub/data.py``
(``load_margins_array``, ``load_forget_indices``) and ``eval_pretrain.py`` of
github.com/easydub/EasyDUB-code at commit 5de3c4cd1b9b55308e745291e878403c47e98c47, and for the
checkpoints ``list_pretrain_model_paths`` in ``easydub/data.py`` at commit
d05c145ed974f3ec67f725844c5e90ae0bc1f4dc (a pre-release; the release reads margins only):

- base ("pretrain") margins, one float ``.npy`` per model and split:
  ``margins/cifar10/pretrain/retain/resnet9/id_{i}_epoch_23.npy`` holds all 50,000 train points (its
  ``eval_pretrain.py`` masks the forget points out of it), ``.../pretrain/val/resnet9/id_{i}_epoch_23.npy``
  the 10,000 validation points;
- oracle margins: ``margins/cifar10/oracle/forget_{id}/{retain,forget,val}/resnet9/id_{j}_epoch_23.npy``:
  the retain file lists train minus F in increasing index order (``np.where(mask)``), the forget file the
  forget points in the order of the forget-set file (``x_all[forget_idx]`` in ``train_models.py``);
- base checkpoints: ``models/cifar10/pretrain/resnet9/id_{i}_epoch_23.pt`` (ResNet-9 ``state_dict``);
- forget sets: ``forget_sets/cifar10/forget_set_{id}.npy`` (ids 1-10; its loader casts to int64).

Both layouts are CIFAR-10 with the torchvision train / test order (spec §3-4). This module only names
files (no I/O, no torch): the workflow calls it at every parse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from . import plan

FORGET_SET_IDS = tuple(range(1, 11))  # the published CIFAR-10 forget sets, both layouts


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    forget_set: Callable[[int], str]
    base_weights: Callable[[int], str]
    # per base model: the files of its margins (None: the layout publishes no base margins)
    base_margins: Callable[[int], tuple[str, ...]] | None
    # per forget set and oracle: the files of its margins (the klom layout: one file per split for all)
    oracle_margins: Callable[[int, int], tuple[str, ...]]
    per_model_oracle_files: bool


KLOM = Layout(
    name="klom",
    forget_set=lambda fs: f"forget_set_indices/CIFAR10/forget_set_{fs}.npy",
    base_weights=lambda i: f"full_models/CIFAR10/sd_{i}____epoch_23.pt",
    base_margins=None,
    oracle_margins=lambda fs, _j: tuple(
        f"oracle_models/CIFAR10/only_margins/forget_set_{fs}/{split}_margins_all.pt" for split in ("train", "val")
    ),
    per_model_oracle_files=False,
)

EASYDUB = Layout(
    name="easydub",
    forget_set=lambda fs: f"forget_sets/cifar10/forget_set_{fs}.npy",
    base_weights=lambda i: f"models/cifar10/pretrain/resnet9/id_{i}_epoch_23.pt",
    base_margins=lambda i: tuple(
        f"margins/cifar10/pretrain/{split}/resnet9/id_{i}_epoch_23.npy" for split in ("retain", "val")
    ),
    oracle_margins=lambda fs, j: tuple(
        f"margins/cifar10/oracle/forget_{fs}/{phase}/resnet9/id_{j}_epoch_23.npy"
        for phase in ("retain", "forget", "val")
    ),
    per_model_oracle_files=True,
)

LAYOUTS = {layout.name: layout for layout in (KLOM, EASYDUB)}
# Hub data sets whose layout is known; another repository (a mirror, a fork) names its layout itself.
KNOWN_REPOS = {"royrin/KLOM-models": "klom", "easydub/EasyDUB-dataset": "easydub"}


def layout_name(imports: dict) -> str | None:
    """The layout of an ``import`` section: its ``layout`` key, else the known repository's."""
    return imports.get("layout") or KNOWN_REPOS.get(imports.get("repo", ""))


@dataclasses.dataclass(frozen=True)
class HubAssets:
    """Every file a run takes from the Hub, by the job that reads it (keys are shard / forget-set ids)."""

    repo: str
    revision: str
    layout: Layout
    lock: str
    pins: dict[str, str]
    forget_sets: dict[str, str]  # forget-set id -> index file (kind: published)
    base_weights: dict[int, list[str]]  # base shard -> one state dict per model
    base_margins: dict[int, list[tuple[str, ...]]]  # base shard -> per model its margin files
    oracle_margins: dict[tuple[str, int], list[tuple[str, ...]]]  # (forget set, oracle shard) -> per oracle
    oracle_forget_sets: dict[str, str]  # forget-set id -> index file, for every set with imported oracles

    @property
    def files(self) -> list[str]:
        """Every file, once, sorted."""
        names = set(self.forget_sets.values()) | set(self.oracle_forget_sets.values())
        names.update(f for shard in self.base_weights.values() for f in shard)
        for groups in (*self.base_margins.values(), *self.oracle_margins.values()):
            names.update(f for group in groups for f in group)
        return sorted(names)


def imported_oracle_shards(config: dict) -> list[int]:
    """Oracle shards whose margins come from published files (``import.oracle_shards``): the scored ones,
    or with ``all`` the held-out ones too. The selection oracles are always trained here: the published
    oracles of a forget set are the scored and held-out families (EasyDUB: 200 per set)."""
    which = config["import"].get("oracle_shards", "all")
    if which == "none":
        return []
    if which == "scored":
        return plan.scored_oracle_shards(config)
    return plan.scored_oracle_shards(config) + plan.holdout_oracle_shards(config)


def used_base_shards(config: dict) -> list[int]:
    """Base shards a run reads: the report sample's, and the selection sample's when a method selects."""
    from .selection import selects

    if any(selects(config, m) for m in config["methods"]):
        return list(range(len(plan.base_shards(config))))
    return plan.report_base_shards(config)


def hub_assets(config: dict) -> HubAssets | None:
    """The files of a validated config's ``import: {source: hub}`` section; None for other sources."""
    imports = config["import"]
    if imports.get("source") != "hub":
        return None
    layout = LAYOUTS[layout_name(imports)]
    base = imports["base"]
    base_shards = plan.base_shards(config)
    used = used_base_shards(config)
    weights = {s: [layout.base_weights(i) for i in range(*base_shards[s])] for s in used}
    margins = (
        {s: [layout.base_margins(i) for i in range(*base_shards[s])] for s in used}
        if layout.base_margins
        else {}
    )
    oracle_ranges = plan.oracle_shards(config)
    published_ids = [str(fs["id"]) for fs in config["forget_sets"] if _is_published_id(fs["id"])]
    shards = imported_oracle_shards(config)
    oracles = {
        (fs, s): [layout.oracle_margins(int(fs), j) for j in range(*oracle_ranges[s])]
        for fs in published_ids
        for s in shards
    }
    return HubAssets(
        repo=imports["repo"],
        revision=imports["revision"],
        layout=layout,
        lock=imports["lock"],
        pins=dict(imports.get("sha256") or {}),
        forget_sets={
            str(fs["id"]): layout.forget_set(int(fs["id"])) for fs in config["forget_sets"] if fs["kind"] == "published"
        },
        base_weights=weights if base in ("weights", "both") else {},
        base_margins=margins if base in ("margins", "both") else {},
        oracle_margins=oracles,
        oracle_forget_sets={fs: layout.forget_set(int(fs)) for fs in published_ids} if shards else {},
    )


def _is_published_id(value) -> bool:
    return str(value) in {str(i) for i in FORGET_SET_IDS}  # exactly "4", not "04"
