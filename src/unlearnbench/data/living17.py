"""Living-17 (BREEDS, Santurkar et al. 2021; spec §9): 17 ImageNet super-classes of living things,
4 ImageNet sub-classes (WordNet ids) each, read from a local ImageNet folder.

The class mapping. BREEDS does not publish Living-17 as a fixed list: it is *computed* from the BREEDS
ImageNet hierarchy (the three files ``dataset_class_info.json``, ``class_hierarchy.txt`` and
``node_names.txt`` of the public BREEDS-Benchmarks repository, folder
``imagenet_class_hierarchy/modified``) by a fixed recipe: the hierarchy nodes at depth 5 (longest path
from the root ``n00001740``) below "living thing" ``n00004258`` that have at least 4 ImageNet classes
below them, sorted by WordNet id, are the super-classes (label = position); for each, in that order, 4
of its ImageNet classes (sorted) are drawn with ``numpy.random.RandomState(2).choice(..., 4,
replace=False)``. :func:`living17_from_hierarchy` implements that recipe; no WordNet id is written
into this project. Alternatively, give the mapping yourself as a JSON file
(:func:`living17_from_file`): ``{"superclasses": [{"name": "...", "wnids": ["n0...", ...]}, ...]}`` in
label order (e.g. printed by the BREEDS tools' ``make_living17``). Either way the result is checked:
17 super-classes, 4 distinct WordNet ids each, none shared.

Data layout under ``root``: ``imagenet/train/<wnid>/*.JPEG`` and ``imagenet/val/<wnid>/*.JPEG`` (the
usual folder-per-class layout of the validation set), plus ``breeds/`` holding the three hierarchy
files, or ``living17_classes.json``.

**The published index space cannot be recomputed.** In the benchmark's public repository
("data-unlearning-bench", its paper-era branches of May 2025: ``unlearning/datasets/living17.py`` and
``unlearning/training/train_living.py``) the Living-17 splits are never built from images: the code
reads pre-built files (FFCV ``living17_tr.beton`` / ``living17_val.beton``, later tensor files
``raw_tensors_tr_new.pt`` / ``raw_tensors_val_new.pt``), and its train split is the first 44,200
records of the 88,400-image BREEDS train file (``88_400 // 2``, ``np.arange(44_200)``). The script that
wrote those files, and so their record order, is not published; the order is shuffled (one published
sub-population forget set, 647 points of one ImageNet class, is reported to spread over indices
12-44,038), so the first half holds about half of every sub-class. Hence two ways to make the splits:

- ``split_file`` (``data.split_file``), to use published index files (forget sets, oracle margins): a
  CSV with a header naming at least the columns ``split``, ``path`` and ``label``; one row per image,
  ``split`` = ``train`` or ``val``, the rows of each split **in index order** (row k of ``train`` is
  train point k), ``path`` relative to ``root`` (or absolute), ``label`` the super-class label 0-16
  of the published files. Other columns (an index, a WordNet id) are ignored. It is exported from the
  published assets by whoever holds them (e.g. by matching the published images to the ImageNet files);
  the class mapping is then not needed.
- otherwise this module's own recipe: train = the first half of every sub-class's ImageNet train images
  in file-name order (1,300 -> 650 per sub-class, 44,200 in all); validation = all ImageNet validation
  images of the 68 sub-classes (3,400). A valid Living-17 split, but **not** the published index space.

Resolutions (spec §9; same source): the published trainer decodes train images at the training
resolution, 160, with a centre crop of ratio 224/256 and no augmentation, and saves train logits from
that same pipeline; validation images are decoded at 224 with the same crop ratio. Its validation
*accuracy* loop averages the logits of flipped and unflipped images, but the logits it saves, from
which margins are computed, have no flip. So here: ``resolution`` (train, default 160) and
``val_resolution`` (default: ``resolution``; the Living-17 scenario sets 224), and margins without
flip, as published.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .splits import Splits

ROOT_WNID = "n00001740"  # entity
LIVING_THING = "n00004258"
LEVEL = 5
N_SUBCLASSES = 4
N_SUPERCLASSES = 17
SEED = 2
HIERARCHY_FILES = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")


@dataclass(frozen=True)
class ClassMapping:
    names: list[str]  # super-class names, label order
    wnids: list[list[str]]  # per super-class, its ImageNet sub-class WordNet ids

    def folder_labels(self) -> dict[str, int]:
        """ImageNet class folder (WordNet id) -> super-class label."""
        return {w: label for label, group in enumerate(self.wnids) for w in group}

    def check(self, n_superclasses: int = N_SUPERCLASSES, n_subclasses: int = N_SUBCLASSES) -> ClassMapping:
        if len(self.wnids) != n_superclasses or len(self.names) != n_superclasses:
            raise ValueError(f"Living-17 needs {n_superclasses} super-classes, the mapping has {len(self.wnids)}")
        for name, group in zip(self.names, self.wnids):
            if len(set(group)) != n_subclasses:
                raise ValueError(f"super-class {name!r}: {n_subclasses} distinct sub-classes needed, got {group}")
        flat = [w for group in self.wnids for w in group]
        if len(set(flat)) != len(flat):
            raise ValueError("a WordNet id belongs to two super-classes")
        return self


def living17_from_file(path: str | os.PathLike) -> ClassMapping:
    """The mapping from a JSON file ``{"superclasses": [{"name": ..., "wnids": [...]}, ...]}`` (label order)."""
    with open(path) as fh:
        data = json.load(fh)
    entries = data["superclasses"] if isinstance(data, dict) else data
    return ClassMapping([str(e["name"]) for e in entries], [[str(w) for w in e["wnids"]] for e in entries]).check()


def _read_hierarchy(info_dir: str | os.PathLike):
    missing = [f for f in HIERARCHY_FILES if not os.path.exists(os.path.join(info_dir, f))]
    if missing:
        raise FileNotFoundError(
            f"{info_dir}: BREEDS hierarchy files {missing} missing (from the BREEDS-Benchmarks repository, "
            "imagenet_class_hierarchy/modified/), or give the class mapping as living17_classes.json"
        )
    with open(os.path.join(info_dir, "dataset_class_info.json")) as fh:
        leaves = [str(entry[1]) for entry in json.load(fh)]
    with open(os.path.join(info_dir, "class_hierarchy.txt")) as fh:
        edges = [line.split() for line in fh if line.strip()]
    with open(os.path.join(info_dir, "node_names.txt")) as fh:
        names = dict(line.rstrip("\n").split("\t", 1) for line in fh if line.strip())
    return leaves, edges, names


def living17_from_hierarchy(info_dir: str | os.PathLike, level: int = LEVEL, ancestor: str = LIVING_THING,
                            n_subclasses: int = N_SUBCLASSES, seed: int = SEED, root: str = ROOT_WNID,
                            expected: int | None = N_SUPERCLASSES) -> ClassMapping:
    """The BREEDS recipe (module doc) on the hierarchy files in ``info_dir``."""
    leaves, edges, names = _read_hierarchy(info_dir)
    leaf_set = set(leaves)
    children: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    for parent, child in edges:
        children.setdefault(parent, set()).add(child)
        parents.setdefault(child, set()).add(parent)
    # keep only the dataset classes and their ancestors, with the edges leading into them
    closure, todo = set(), [leaf for leaf in leaves if leaf in parents or leaf in children]
    while todo:
        node = todo.pop()
        if node not in closure:
            closure.add(node)
            todo.extend(parents.get(node, ()))
    graph: dict[str, set[str]] = {}
    for node in closure:
        for parent in parents.get(node, ()):
            graph.setdefault(parent, set()).add(node)
    # depth of a node = its longest path from the root (nodes not below the root have none)
    reachable, todo = set(), [root]
    while todo:
        node = todo.pop()
        if node not in reachable:
            reachable.add(node)
            todo.extend(graph.get(node, ()))
    depth: dict[str, int] = {root: 0}

    def longest(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max(longest(p) for p in parents.get(node, ()) if p in reachable)
        return depth[node]

    for node in reachable:
        longest(node)
    # descendants of the ancestor within 20 steps (as the reference traversal)
    below, layer = {ancestor}, [ancestor]
    for _ in range(20):
        layer = {c for n in layer for c in graph.get(n, ())}
        below.update(layer)

    def leaves_below(node: str) -> list[str]:
        found, stack, visited = set(), [node], set()
        while stack:
            n = stack.pop()
            for c in graph.get(n, ()):
                if c in leaf_set:
                    found.add(c)
                elif c not in visited:
                    visited.add(c)
                    stack.append(c)
        if node in leaf_set:
            found.add(node)
        return sorted(found)

    candidates = sorted(n for n, d in depth.items() if d == level and n in below)
    kept = [(n, leaves_below(n)) for n in candidates]
    kept = [(n, ls) for n, ls in kept if len(ls) >= n_subclasses]
    rng = np.random.RandomState(seed)
    wnids = [[str(w) for w in rng.choice(ls, n_subclasses, replace=False)] for _, ls in kept]
    mapping = ClassMapping([names.get(n, n) for n, _ in kept], wnids)
    return mapping.check(expected, n_subclasses) if expected is not None else mapping


def living17_mapping(root: str) -> ClassMapping:
    """``root/living17_classes.json`` if present, else the recipe on ``root/breeds/``."""
    path = os.path.join(root, "living17_classes.json")
    if os.path.exists(path):
        return living17_from_file(path)
    return living17_from_hierarchy(os.path.join(root, "breeds"))


SPLIT_FILE_COLUMNS = ("split", "path", "label")


def read_split_file(path: str | os.PathLike, root: str = ".",
                    n_classes: int = N_SUPERCLASSES) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(image path, label), ...], "val": [...]}`` in index order, from a split file (module doc).

    Relative paths are taken relative to ``root``. Raises ValueError naming the file and the first bad row on
    a missing column, an unknown split, a label outside ``0..n_classes-1``, a path listed twice or an empty
    split; FileNotFoundError listing missing images.
    """
    import csv

    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in SPLIT_FILE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: split file needs the columns {list(SPLIT_FILE_COLUMNS)}; missing {missing}")
        splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            split, image, label = row["split"].strip(), row["path"].strip(), row["label"].strip()
            if split not in splits:
                raise ValueError(f"{path}:{line}: split must be 'train' or 'val', got {split!r}")
            if not label.isdigit() or int(label) >= n_classes:
                raise ValueError(f"{path}:{line}: label must be an integer in 0..{n_classes - 1}, got {label!r}")
            full = os.path.normpath(image if os.path.isabs(image) else os.path.join(root, image))
            if full in seen:
                raise ValueError(f"{path}:{line}: {image} is listed twice")
            seen.add(full)
            splits[split].append((full, int(label)))
    for split, samples in splits.items():
        if not samples:
            raise ValueError(f"{path}: no {split} rows")
    absent = [p for samples in splits.values() for p, _ in samples if not os.path.isfile(p)]
    if absent:
        raise FileNotFoundError(f"{path}: {len(absent)} listed images missing, e.g. {absent[:3]}")
    return splits


def load_living17_splits(root: str = "data", resolution: int = 160, train_fraction: float = 0.5,
                         workers: int = 0, mapping: ClassMapping | None = None, val_resolution: int | None = None,
                         split_file: str | None = None, **_options) -> Splits:
    """Living-17 train / validation splits from ``root`` (layout, split file and resolutions in the module doc)."""
    from .imagefolder import IMAGENET_MEAN, IMAGENET_STD, load_imagefolder_splits, read_images

    if split_file:
        listed = read_split_file(split_file, root)
        x_train, y_train = read_images(listed["train"], resolution, workers=workers)
        x_val, y_val = read_images(listed["val"], val_resolution or resolution, workers=workers)
        return Splits(x_train, y_train, x_val, y_val, 1 / 255, IMAGENET_MEAN.copy(), IMAGENET_STD.copy())
    mapping = mapping or living17_mapping(root)
    imagenet = os.path.join(root, "imagenet")
    return load_imagefolder_splits(
        os.path.join(imagenet, "train"), os.path.join(imagenet, "val"), mapping.folder_labels(),
        resolution=resolution, train_fraction_per_folder=train_fraction, workers=workers,
        val_resolution=val_resolution,
    )


load = load_living17_splits  # the data-set registry's entry point
