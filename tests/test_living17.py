"""Living-17: the generic ImageFolder loader, the BREEDS class-mapping recipe, the published index space
(split file) and resolutions (train and val at two sizes), and ResNet-18, on tiny generated
ImageNet-style trees (a few PNGs per class folder)."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from unlearnbench.data import get_spec
from unlearnbench.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, load_imagefolder_splits, read_imagefolder
from unlearnbench.data.living17 import (
    ClassMapping,
    living17_from_file,
    living17_from_hierarchy,
    load_living17_splits,
    read_split_file,
)
from unlearnbench.models import build_model
from unlearnbench.stack import ModelStack
from unlearnbench import layout

FOLDERS = {"n001": 0, "n002": 0, "n003": 1, "n004": 2}  # two sub-classes share super-class 0


def write_tree(root, folders, per_folder, size=16, seed=0, extra=("n999",)):
    """``root/<folder>/img_<i>.png`` with a constant colour per folder (so labels are checkable)."""
    rng = np.random.default_rng(seed)
    colours = {}
    for k, folder in enumerate(list(folders) + list(extra)):
        (root / folder).mkdir(parents=True)
        colours[folder] = ((40 * k + 10) % 256, (255 - 30 * k) % 256, (7 * k) % 256)
        for i in range(per_folder):
            pixels = np.empty((size, size + 4, 3), dtype=np.uint8)  # not square: exercises the crop
            pixels[:] = colours[folder]
            pixels[0, 0] = rng.integers(0, 256, 3)  # a corner the crop drops
            Image.fromarray(pixels).save(root / folder / f"img_{i:02d}.png")
    return colours


def test_imagefolder_loader_shapes_labels_and_order(tmp_path):
    colours = write_tree(tmp_path / "train", FOLDERS, per_folder=4)
    write_tree(tmp_path / "val", FOLDERS, per_folder=2)
    splits = load_imagefolder_splits(str(tmp_path / "train"), str(tmp_path / "val"), FOLDERS, resolution=8,
                                     crop_ratio=0.5, train_fraction_per_folder=0.5)
    assert splits.x_train.shape == (8, 3, 8, 8) and splits.x_train.dtype == np.uint8  # first half of each folder
    assert splits.x_val.shape == (8, 3, 8, 8)
    assert splits.y_train.tolist() == [0, 0, 0, 0, 1, 1, 2, 2]  # folders sorted, n999 ignored
    assert splits.y_val.dtype == np.int64 and splits.num_classes == 3
    np.testing.assert_array_equal(splits.x_train[4, :, 3, 3], colours["n003"])
    np.testing.assert_allclose(splits.mean, IMAGENET_MEAN)
    np.testing.assert_allclose(splits.std, IMAGENET_STD)
    assert splits.scale == pytest.approx(1 / 255)
    x = splits.inputs()
    expected = (colours["n001"][0] / 255 - 0.485) / 0.229
    assert x.shape == (16, 3, 8, 8) and abs(float(x[0, 0, 4, 4]) - expected) < 1e-5
    _, _, paths = read_imagefolder(str(tmp_path / "train"), FOLDERS, resolution=8, fraction_per_folder=0.5)
    assert [p.rsplit("/", 2)[-2:] for p in paths[:2]] == [["n001", "img_00.png"], ["n001", "img_01.png"]]


def test_imagefolder_missing_class_folder_is_named(tmp_path):
    write_tree(tmp_path / "train", {"n001": 0}, per_folder=1, extra=())
    with pytest.raises(FileNotFoundError, match="n002"):
        read_imagefolder(str(tmp_path / "train"), {"n001": 0, "n002": 1}, resolution=8)


def write_hierarchy(info_dir, superclasses, leaves_per_superclass):
    """A small BREEDS-format hierarchy: root -> living thing -> 3 levels -> super-classes -> leaves
    (so super-classes are at depth 5), plus a non-living branch and a too-small living node."""
    info_dir.mkdir()
    edges = [("n00001740", "n00004258"), ("n00001740", "n00021939")]
    chain = ["n00004258", "n1000001", "n1000002", "n1000003"]
    edges += list(zip(chain, chain[1:]))
    leaves, names = [], {"n00004258": "living thing", "n00021939": "artifact"}
    for s, name in enumerate(superclasses):
        wnid = f"n2{s:06d}"
        names[wnid] = name
        edges.append((chain[-1], wnid))
        for j in range(leaves_per_superclass):
            leaf = f"n3{s:03d}{j:03d}"
            edges.append((wnid, leaf))
            leaves.append(leaf)
    edges += [(chain[-1], "n2999999"), ("n2999999", "n3999000")]  # depth 5 but a single leaf: dropped
    leaves.append("n3999000")
    edges += [("n00021939", "n4000000"), ("n4000000", "n4000001"), ("n4000001", "n4000002"),
              ("n4000002", "n4000003"), ("n4000003", "n4000004")]  # non-living: outside the ancestor
    for j in range(5):
        edges.append(("n4000004", f"n5000{j:03d}"))
        leaves.append(f"n5000{j:03d}")
    edges.append(("n1000001", "n3000000"))  # a shortcut: the longest path still defines the depth
    (info_dir / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    (info_dir / "node_names.txt").write_text("".join(f"{k}\t{v}\n" for k, v in names.items()))
    (info_dir / "dataset_class_info.json").write_text(json.dumps([[i, w, f"class {w}"] for i, w in enumerate(leaves)]))
    return leaves


def test_breeds_recipe_on_a_small_hierarchy(tmp_path):
    names = [f"super{s}" for s in range(3)]
    write_hierarchy(tmp_path / "breeds", names, leaves_per_superclass=6)
    mapping = living17_from_hierarchy(tmp_path / "breeds", expected=3)
    assert mapping.names == names  # sorted by WordNet id; the 1-leaf node and the non-living branch dropped
    rng = np.random.RandomState(2)
    for s, group in enumerate(mapping.wnids):
        pool = sorted(f"n3{s:03d}{j:03d}" for j in range(6))
        assert group == list(rng.choice(pool, 4, replace=False))
    with pytest.raises(ValueError, match="17 super-classes"):
        living17_from_hierarchy(tmp_path / "breeds")  # a real Living-17 mapping must have 17
    with pytest.raises(FileNotFoundError, match="BREEDS hierarchy files"):
        living17_from_hierarchy(tmp_path / "nowhere")


def write_tiny_living17(root):
    """A user mapping file (17 super-classes x 4 made-up folder names) and a train/val tree under ``root``:
    2 images per train folder, 1 per val folder.  Returns the mapping's folder groups."""
    groups = [[f"n{s:02d}{j}" for j in range(4)] for s in range(17)]
    root.mkdir()
    (root / "living17_classes.json").write_text(json.dumps(
        {"superclasses": [{"name": f"super{s}", "wnids": g} for s, g in enumerate(groups)]}))
    folders = {w: s for s, g in enumerate(groups) for w in g}
    write_tree(root / "imagenet" / "train", folders, per_folder=2, extra=())
    write_tree(root / "imagenet" / "val", folders, per_folder=1, extra=())
    return groups


def test_living17_end_to_end_on_a_tiny_tree(tmp_path):
    """A user-supplied mapping file (17 x 4 made-up folder names), the registry entry and ResNet-18."""
    root = tmp_path / "data"
    groups = write_tiny_living17(root)
    assert living17_from_file(root / "living17_classes.json").wnids == groups
    spec = get_spec("living17")
    assert (spec.n_train, spec.n_val, spec.num_classes, spec.in_channels) == (44_200, 3_400, 17, 3)
    splits = spec.load(root=str(root), resolution=16)
    assert splits.x_train.shape == (68, 3, 16, 16) and splits.x_val.shape == (68, 3, 16, 16)  # half of 2 = 1
    assert splits.y_train.tolist() == [s for s in range(17) for _ in range(4)]
    torch.manual_seed(0)
    model = build_model("resnet18", 17, 3).eval()
    assert sum(p.numel() for p in model.parameters()) == 11_185_233  # torchvision resnet18, 17-way head
    x = splits.inputs()[:4]
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 17) and torch.isfinite(out).all()
    stack = ModelStack.initialise("resnet18", 17, 3, [1, 2], [0, 1])
    logits = stack.logits(x)
    assert logits.shape == (2, 4, 17)
    with torch.no_grad():
        torch.testing.assert_close(logits[1], stack.to_module(1).eval()(x), rtol=1e-4, atol=1e-5)


def test_a_bad_mapping_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        ClassMapping([f"s{i}" for i in range(17)], [["a", "a", "b", "c"]] + [[f"x{i}{j}" for j in range(4)]
                                                                             for i in range(16)]).check()
    with pytest.raises(ValueError, match="two super-classes"):
        ClassMapping(["a", "b"], [["w1", "w2"], ["w2", "w3"]]).check(2, 2)
    with pytest.raises(ValueError, match="17 super-classes"):
        load_living17_splits(mapping=ClassMapping(["a"], [["w1", "w2", "w3", "w4"]]).check())


@pytest.mark.workflow
def test_living17_runs_through_the_dag_on_a_tiny_tree(workflow_copy):
    """The whole DAG (ResNet-18, image-folder loader, a forget set, scoring) on a 17 x 4 tree."""
    import pandas as pd
    import yaml

    from conftest import snakemake

    root = workflow_copy / "data"
    write_tiny_living17(root)
    config = yaml.safe_load((workflow_copy / "config/living17.yaml").read_text())
    config["data"].update(root="data", resolution=16, val_resolution=24, n_train=68, n_val=68)  # two sizes
    config["train"].update(epochs=1, batch_size=32)
    config.update(n_models=2, n_holdout_oracles=2, models_per_job=2, bootstrap={"n_resamples": 0},
                  forget_sets=[{"id": 1, "kind": "random", "size": 4}],
                  methods={"do_nothing": None, "oracle": None,
                           "gradient_ascent": {"lr": [0.01], "batch_size": 4, "epochs": [1]}},
                  resources={"gpu": 0, "device": "cpu", "threads": 1})
    for key in ("pool", "ulira", "import"):
        config.pop(key, None)
    (workflow_copy / "tiny_living17.yaml").write_text(yaml.safe_dump(config))
    snakemake(workflow_copy, "--configfile", "tiny_living17.yaml")
    table = pd.read_csv(workflow_copy / layout.KLOM_SUMMARY)
    assert set(table.method) == {"do_nothing", "oracle", "gradient_ascent"} and (table.model == "resnet18").all()
    assert table.set_index("group").n_points.to_dict() == {"forget": 4, "retain": 64, "val": 68}

    config["data"]["n_train"] = 60  # a tree that does not match the declared sizes is refused by name
    (workflow_copy / "wrong.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workflow_copy, "--configfile", "wrong.yaml", "--forcerun", "prepare_dataset", check=False)
    assert proc.returncode != 0


# the published index space: a split file, and two resolutions -----------------------------------------------------


def write_coded_tree(root, folders, per_folder):
    """``root/<folder>/img_<i>.png``, each a constant colour that codes (folder position, image number)."""
    codes = {}
    for k, folder in enumerate(folders):
        (root / folder).mkdir(parents=True)
        for i in range(per_folder):
            colour = (10 + 3 * k, 10 + 20 * i, 200)  # up to 68 folders and 12 images
            Image.fromarray(np.full((10, 14, 3), colour, dtype=np.uint8)).save(root / folder / f"img_{i:02d}.png")
            codes[f"{folder}/img_{i:02d}.png"] = colour
    return codes


def write_split_file(path, rows):
    path.write_text("index,split,path,label\n" + "".join(f"{j},{s},{p},{y}\n" for j, (s, p, y) in enumerate(rows)))


def test_split_file_gives_the_index_order_and_two_resolutions(tmp_path):
    folders = ["n001", "n002", "n003"]
    train_codes = write_coded_tree(tmp_path / "imagenet" / "train", folders, per_folder=4)
    val_codes = write_coded_tree(tmp_path / "imagenet" / "val", folders, per_folder=2)
    rng = np.random.default_rng(0)
    train = [f"imagenet/train/{name}" for name in rng.permutation(sorted(train_codes))[:7]]  # a shuffled half
    val = [f"imagenet/val/{name}" for name in sorted(val_codes)][::-1]
    labels = {f: 3 * k % 17 for k, f in enumerate(folders)}
    rows = [("train", p, labels[p.split("/")[2]]) for p in train] + [("val", p, labels[p.split("/")[2]]) for p in val]
    write_split_file(tmp_path / "split.csv", rows[::2] + rows[1::2])  # splits interleaved: order within a split counts
    listed = [r for r in rows[::2] + rows[1::2]]
    order = {s: [p for (t, p, _) in listed if t == s] for s in ("train", "val")}

    splits = load_living17_splits(root=str(tmp_path), resolution=8, val_resolution=12,
                                  split_file=str(tmp_path / "split.csv"))
    assert splits.x_train.shape == (7, 3, 8, 8) and splits.x_val.shape == (6, 3, 12, 12)
    for x, paths, codes, y in ((splits.x_train, order["train"], train_codes, splits.y_train),
                               (splits.x_val, order["val"], val_codes, splits.y_val)):
        got = [tuple(int(c) for c in image[:, 4, 4]) for image in x]
        assert got == [codes[p.split("/", 2)[2]] for p in paths]  # row k of the file is point k
        assert y.tolist() == [labels[p.split("/")[2]] for p in paths]

    # one data set in margin order, two image sizes: no batch mixes them, and every point keeps its index
    images = splits.images()
    assert len(images) == 13 and images.segments == [(0, 7), (7, 13)] and images.shape[1:] == (3, 12, 12)
    assert images[2:5].shape == (3, 3, 8, 8) and images[np.array([[8, 12]])].shape == (1, 2, 3, 12, 12)
    torch.testing.assert_close(images[np.array([12, 7])], images[7:13][[5, 0]])
    with pytest.raises(IndexError, match="span the train and validation"):
        images[5:9]
    with pytest.raises(IndexError, match="span"):
        images[np.array([0, 7])]
    stack = ModelStack.initialise("resnet18", 17, 3, [1, 2], [0, 1])
    logits = stack.logits(images, batch_size=4)  # chunks of 4 would straddle point 7 without the segments
    assert logits.shape == (2, 13, 17)
    with torch.no_grad():
        torch.testing.assert_close(logits[:, 7:], stack.logits(images[7:13]), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits[:, :7], stack.logits(images[0:7]), rtol=1e-4, atol=1e-5)


def test_the_recipe_order_is_first_half_per_sub_class_in_file_name_order(tmp_path):
    groups = [[f"n{s:02d}{j}" for j in range(4)] for s in range(17)]
    mapping = ClassMapping([f"super{s}" for s in range(17)], groups)
    codes = write_coded_tree(tmp_path / "imagenet" / "train", sorted(w for g in groups for w in g), per_folder=4)
    write_coded_tree(tmp_path / "imagenet" / "val", sorted(w for g in groups for w in g), per_folder=1)
    splits = load_living17_splits(root=str(tmp_path), resolution=8, mapping=mapping)
    want = [codes[f"{w}/img_{i:02d}.png"] for w in sorted(w for g in groups for w in g) for i in range(2)]
    assert [tuple(int(c) for c in image[:, 4, 4]) for image in splits.x_train] == want
    assert splits.x_val.shape[2:] == (8, 8)  # val_resolution defaults to the train resolution


def test_a_bad_split_file_is_refused_by_line(tmp_path):
    write_coded_tree(tmp_path / "t", ["n001"], per_folder=2)
    cases = [
        ("split,path\ntrain,t/n001/img_00.png\n", "missing ['label']"),
        ("split,path,label\ntest,t/n001/img_00.png,0\n", ":2: split must be"),
        ("split,path,label\ntrain,t/n001/img_00.png,17\nval,t/n001/img_01.png,0\n", ":2: label must be"),
        ("split,path,label\ntrain,t/n001/img_00.png,1\nval,t/n001/img_00.png,1\n",
         ":3: t/n001/img_00.png is listed twice"),
        ("split,path,label\ntrain,t/n001/img_00.png,1\n", "no val rows"),
    ]
    for text, needle in cases:
        (tmp_path / "s.csv").write_text(text)
        with pytest.raises(ValueError, match=re.escape(needle)):
            read_split_file(tmp_path / "s.csv", str(tmp_path))
    (tmp_path / "s.csv").write_text("split,path,label\ntrain,t/n001/img_00.png,1\nval,t/n001/gone.png,1\n")
    with pytest.raises(FileNotFoundError, match="1 listed images missing"):
        read_split_file(tmp_path / "s.csv", str(tmp_path))
