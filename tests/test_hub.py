"""Published assets through huggingface_hub, tested for real against a local Hub cache in the library's
own layout (tests/hubcache.py) with HF_HUB_OFFLINE=1: the successor's margin set, pins, the lock file, a
checksum mismatch, a corrupt blob and missing files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import constants, hf_hub_download

from hubcache import COMMIT, add_snapshot, easydub_dataset, npy_bytes
from unlearnbench import hub
from unlearnbench.config import ConfigError, validate
from unlearnbench.hub_layouts import EASYDUB, KLOM, hub_assets
from unlearnbench.published import (
    PublishedFormatError,
    check_same_forget_set,
    load_margin_vector,
    per_model_margins,
    per_model_oracle_margins,
)
from unlearnbench.storage import load_arrays
from unlearnbench import layout

REPO = "easydub/EasyDUB-dataset"
SOURCE = hub.Source(REPO, "main")
SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
CONFIGS = Path(__file__).resolve().parents[1] / "config"
FORGET = {1: np.array([5, 3, 30]), 10: np.array([7, 1, 22, 9])}  # set 10 unsorted, as the published one


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hub cache in tmp_path, offline mode on (as HF_HUB_OFFLINE=1 HF_HUB_CACHE=... would set)."""
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.fixture
def published(offline_cache):
    files, truth = easydub_dataset(n_train=40, n_val=10, n_base=3, n_oracles=3, forget_sets=FORGET)
    add_snapshot(offline_cache, REPO, files)
    return files, truth


def test_the_cache_is_the_library_layout(published):
    """huggingface_hub itself serves the generated files offline, at the branch and at the commit."""
    files, _ = published
    name = EASYDUB.forget_set(10)
    for revision in ("main", COMMIT):
        path = hf_hub_download(REPO, name, repo_type="dataset", revision=revision)
        assert Path(path).read_bytes() == files[name]


def test_fetch_verifies_records_and_pins(published, tmp_path):
    files, _ = published
    names = sorted(files)
    manifest = hub.fetch(SOURCE, names, {}, "hub.lock.json", layout.HUB_MANIFEST)
    assert manifest["commit"] == COMMIT
    assert manifest["files"] == {n: hashlib.sha256(files[n]).hexdigest() for n in names}
    assert json.loads(Path(layout.HUB_MANIFEST).read_text()) == manifest
    lock = hub.read_lock("hub.lock.json")
    assert hub.locked_commit(lock, SOURCE) == COMMIT  # main is pinned from now on
    assert hub.locked_files(lock, SOURCE, COMMIT) == manifest["files"]  # trust on first use, recorded
    assert hub.resolve(manifest, names[0]).endswith(names[0])

    # main moves to another commit: the lock keeps the run on the recorded one
    other = "f" * 40
    add_snapshot(tmp_path / "hub-cache", REPO, {names[0]: b"new content"}, commit=other)
    again = hub.fetch(SOURCE, names, {}, "hub.lock.json", layout.HUB_MANIFEST)
    assert again == manifest
    # a commit revision is used as it is
    assert hub.fetch(hub.Source(REPO, other), [names[0]], {}, "other.lock.json", "m.json")["commit"] == other


def test_a_checksum_mismatch_is_refused(published):
    files, _ = published
    name = EASYDUB.forget_set(1)
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(hub.HubError, match=f"differs from {wrong} pinned in the config import.sha256"):
        hub.fetch(SOURCE, [name], {name: wrong}, "hub.lock.json", "manifest.json")
    assert not Path("manifest.json").exists() and not Path("hub.lock.json").exists()

    # a lock file that recorded other content for this commit: refused too
    Path("hub.lock.json").write_text(json.dumps({"version": 1, "repos": {"datasets/" + REPO: {
        "revisions": {"main": COMMIT}, "files": {COMMIT: {name: wrong}}}}}))
    with pytest.raises(hub.HubError, match=f"differs from {wrong} pinned in the lock file hub.lock.json"):
        hub.fetch(SOURCE, [name], {}, "hub.lock.json", "manifest.json")

    # the manifest check at read time: a file replaced after the fetch
    Path("hub.lock.json").unlink()
    manifest = hub.fetch(SOURCE, [name], {}, "hub.lock.json", "manifest.json")
    manifest["files"][name] = wrong
    with pytest.raises(hub.HubError, match="manifest of the fetch"):
        hub.resolve(manifest, name)


def test_a_corrupt_blob_is_refused(offline_cache):
    files, _ = easydub_dataset(40, 10, 1, 1, {1: FORGET[1]})
    name = EASYDUB.forget_set(1)
    add_snapshot(offline_cache, REPO, files, corrupt=(name,))
    with pytest.raises(hub.HubError, match="is corrupt .* not to its name, the Hub's sha256"):
        hub.fetch(SOURCE, [name], {}, "hub.lock.json", "manifest.json")


def test_missing_files_offline_name_the_files_and_the_command(published):
    files, _ = published
    names = sorted(files) + [EASYDUB.base_margins(7)[0], EASYDUB.oracle_margins(10, 9)[1]]
    for attempt in (lambda: hub.check_available(SOURCE, names, "hub.lock.json"),
                    lambda: hub.fetch(SOURCE, names, {}, "hub.lock.json", "manifest.json")):
        with pytest.raises(hub.HubError) as err:
            attempt()
        text = str(err.value)
        assert f"2 of {len(names)} files of the Hub data set {REPO}" in text
        assert "margins/cifar10/pretrain/retain/resnet9/id_7_epoch_23.npy" in text
        assert "margins/cifar10/oracle/forget_10/forget/resnet9/id_9_epoch_23.npy" in text
        assert (f"hf download {REPO} --repo-type dataset --revision {COMMIT} "
                "--include 'margins/cifar10/oracle/forget_10/forget/resnet9/*' "
                "--include 'margins/cifar10/pretrain/retain/resnet9/*'") in text
        assert "HF_HUB_OFFLINE=0" in text
    assert not Path("manifest.json").exists()


def test_nothing_cached_offline(offline_cache):
    with pytest.raises(hub.HubError, match=r"files of the Hub data set .* \(revision main \(no commit of it"):
        hub.check_available(SOURCE, [EASYDUB.forget_set(1)], "hub.lock.json")
    with pytest.raises(hub.HubError, match="has no commit for"):
        hub.fetch(SOURCE, [EASYDUB.forget_set(1)], {}, "hub.lock.json", "manifest.json")


def test_online_without_network_falls_back_to_the_cache(published, monkeypatch):
    """HF_HUB_OFFLINE unset but the Hub unreachable: the cached commit of `main` serves the files."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    files, _ = published
    hub.check_available(SOURCE, ["not/cached.npy"], "hub.lock.json")  # online: the fetch will get it
    manifest = hub.fetch(SOURCE, sorted(files)[:2], {}, "hub.lock.json", "manifest.json")
    assert manifest["commit"] == COMMIT


def test_an_unreadable_lock_file_is_the_users(offline_cache):
    Path("hub.lock.json").write_text("{not json")
    with pytest.raises(hub.HubError, match="lock file hub.lock.json cannot be read .* it is yours"):
        hub.read_lock("hub.lock.json")


# the successor's formats ---------------------------------------------------------------------------------


def test_per_model_margins_go_back_to_train_order(published, tmp_path):
    files, truth = published
    manifest = hub.fetch(SOURCE, sorted(files), {}, "hub.lock.json", "manifest.json")
    base = hub.resolve_groups(manifest, [EASYDUB.base_margins(i) for i in (1, 2)])
    got = per_model_margins(base, [1, 2], 40, 10)
    np.testing.assert_array_equal(got, truth["base"][1:3])
    assert got.dtype == np.float32

    oracles = hub.resolve_groups(manifest, [EASYDUB.oracle_margins(10, j) for j in range(3)])
    np.testing.assert_array_equal(per_model_oracle_margins(FORGET[10], oracles, [0, 1, 2], 40, 10),
                                  truth[("oracle", 10)])
    # reading the forget file in sorted order instead would put margins on the wrong points
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(per_model_oracle_margins(np.sort(FORGET[10]), oracles, [0, 1, 2], 40, 10),
                                      truth[("oracle", 10)])


@pytest.mark.parametrize("array, message", [
    (np.zeros(5, dtype=np.float32), "5 margins, expected 4"),
    (np.zeros(4, dtype=np.int64), "1-D float"),
    (np.zeros((2, 2), dtype=np.float32), "1-D float"),
])
def test_bad_margin_files_are_refused(tmp_path, array, message):
    path = tmp_path / "id_0_epoch_23.npy"
    path.write_bytes(npy_bytes(array))
    with pytest.raises(PublishedFormatError, match=message):
        load_margin_vector(path, 4)


def test_a_pickled_margin_file_is_refused(tmp_path):
    path = tmp_path / "id_0_epoch_23.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PublishedFormatError, match="pickled"):
        load_margin_vector(path, 1)


def test_imported_oracles_need_their_own_forget_set():
    check_same_forget_set(np.array([7, 1, 22, 9]), np.array([1, 7, 9, 22]), "10")  # order does not matter
    with pytest.raises(PublishedFormatError, match=r"forget set 3: the config's forget set \(2 points\) is not the "
                                                   r"published forget set 3 \(3 points, 2 in common\)"):
        check_same_forget_set(np.array([1, 2, 3]), np.array([1, 2]), "3")


# config -------------------------------------------------------------------------------------------------


def load_config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def test_easydub_scenario_fetches_margins_only():
    config = validate(load_config("easydub.yaml"), SCHEMA)
    assets = hub_assets(config)
    assert assets.layout is EASYDUB and assets.repo == REPO and not assets.base_weights
    assert len(assets.files) == 10 + 100 * 2 + 10 * 200 * 3  # forget sets, base and oracle margins
    assert assets.base_margins[3][-1] == EASYDUB.base_margins(99)
    assert assets.oracle_margins[("10", 7)][-1] == EASYDUB.oracle_margins(10, 199)


def test_a_selecting_method_imports_the_selection_base_models_and_trains_the_selection_oracles():
    """With a grid to choose from, the selection sample's base models (100-199) come from the Hub too, but its
    oracles (indices past the scored and held-out 200 the data set publishes per forget set) are trained."""
    config = load_config("easydub.yaml")
    config["import"]["base"] = "both"
    config["methods"]["gradient_ascent"] = {"lr": [0.01, 0.1], "epochs": [1]}
    config = validate(config, SCHEMA)
    assets = hub_assets(config)
    assert assets.base_weights[7][-1] == EASYDUB.base_weights(199)  # base shards 4-7: the selection sample
    assert sorted({shard for _, shard in assets.oracle_margins}) == list(range(8))  # scored 0-3, held out 4-7
    assert max(int(name.rsplit("id_", 1)[1].split("_")[0]) for name in assets.files if "/oracle/" in name) == 199


def test_cifar10_scenario_pins_the_published_forget_sets():
    config = validate(load_config("cifar10.yaml"), SCHEMA)
    assets = hub_assets(config)
    assert assets.layout is KLOM and sorted(assets.forget_sets) == sorted(str(i) for i in range(4, 11))
    assert assets.files == sorted(KLOM.forget_set(i) for i in range(4, 11))
    assert all(assets.pins.get(name) for name in assets.files)  # every file it fetches is pinned
    # switching the published models on fetches their checkpoints and every set's oracle margins
    config = load_config("cifar10.yaml")
    config["import"].update(base="weights", oracle_shards="all")
    assets = hub_assets(validate(config, SCHEMA))
    assert KLOM.base_weights(99) in assets.files and KLOM.oracle_margins(3, 0)[0] in assets.files
    assert KLOM.forget_set(1) in assets.files  # the generated sets 1-3 are checked against these


@pytest.mark.parametrize("change, message", [
    (lambda c: c["import"].update(source="files"), "import.repo: only with import.source: hub"),
    (lambda c: c["import"].update(repo="someone/mirror"), "import.layout: someone/mirror is not a known data set"),
    (lambda c: c["import"].update(base_weights="x/{index}.pt"), "import.base_weights: a path for source: files"),
    (lambda c: c["methods"].update(gradient_ascent={"lr": 0.1, "epochs": [1]}),
     "import.base: margins imports no base models, but methods.gradient_ascent fine-tunes them"),
    (lambda c: c.update(dataset="digits", model="digits_cnn"), "import.repo: the easydub layout holds CIFAR-10"),
    (lambda c: c["forget_sets"].append({"id": 11, "kind": "published"}), "forget_sets.10.id: the published forget"),
    (lambda c: c["import"].update(layout="klom", base="margins"), "import.base: the klom layout publishes no base"),
    (lambda c: c["import"].update(sha256={"a.npy": "abc"}), "import.sha256.a.npy"),
])
def test_bad_hub_configs_are_refused(change, message):
    config = load_config("easydub.yaml")
    change(config)
    with pytest.raises(ConfigError, match=f"^config key {message}"):
        validate(config, SCHEMA)


def test_a_published_forget_set_needs_the_hub():
    config = load_config("easydub.yaml")
    del config["import"]
    with pytest.raises(ConfigError, match="^config key forget_sets.0.kind: published needs import.source: hub"):
        validate(config, SCHEMA)


@pytest.mark.parametrize("entry, message", [
    ({"url": "http://example.org/f.npy"}, "forget_sets.0.url: plain http has no transport integrity"),
    ({"url": "https://example.org/f.npy", "sha256": "ab"}, "forget_sets.0.sha256"),
    ({"path": "f.npy", "sha256": "a" * 64}, "forget_sets.0.sha256: only for a file forget set with a url"),
])
def test_bad_download_configs_are_refused(entry, message):
    config = load_config("config.yaml")
    config["forget_sets"] = [{"id": 1, "kind": "file", **entry}]
    with pytest.raises(ConfigError, match=f"^config key {message}"):
        validate(config, SCHEMA)
    config["forget_sets"] = [{"id": 1, "kind": "file", "url": "http://example.org/f.npy", "allow_http": True}]
    validate(config, SCHEMA)  # opted in


# the workflow -------------------------------------------------------------------------------------------


def tiny_easydub(workflow_copy: Path) -> str:
    """config/easydub.yaml at test size: 2 scored + 2 held-out oracles, forget set 10 (unsorted), 40 + 10 points."""
    config = load_config("easydub.yaml")
    config.update(n_models=2, n_holdout_oracles=2, models_per_job=2, data={"n_train": 40, "n_val": 10})
    config["forget_sets"] = [fs for fs in config["forget_sets"] if fs["id"] == 10]
    (workflow_copy / "easydub_tiny.yaml").write_text(yaml.safe_dump(config))
    return "easydub_tiny.yaml"


def hub_env(cache: Path) -> dict:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}


@pytest.mark.workflow
def test_easydub_scenario_scores_published_margins_without_training(workflow_copy, tmp_path):
    from conftest import planned_jobs, snakemake

    files, truth = easydub_dataset(n_train=40, n_val=10, n_base=4, n_oracles=4, forget_sets={10: FORGET[10]})
    add_snapshot(tmp_path / "cache", REPO, files)
    env = hub_env(tmp_path / "cache")
    config = tiny_easydub(workflow_copy)
    dry = snakemake(workflow_copy, "-n", "--configfile", config, env=env)
    jobs = planned_jobs(dry)
    print("snakemake -n --configfile config/easydub.yaml (test size):", jobs)
    assert {"fetch_hub_assets", "import_hub_base_margins", "import_hub_oracle_margins", "import_hub_forget_set",
            "unlearn", "score_klom", "summarize"} <= set(jobs)
    assert not {"train_base", "train_oracle", "train_pool", "compute_margins", "prepare_dataset"} & set(jobs)
    assert jobs["unlearn"] == 2  # do_nothing and oracle: margins methods, no fine-tuning job

    snakemake(workflow_copy, layout.KLOM_SUMMARY, "--configfile", config, env=env)
    margins = layout.Layout("cifar10").margins
    base = load_arrays(workflow_copy / margins("base", 0))
    np.testing.assert_array_equal(base["margins"], truth["base"][:2])
    held_out = load_arrays(workflow_copy / margins(layout.oracle_family(10), 1))
    np.testing.assert_array_equal(held_out["margins"], truth[("oracle", 10)][2:4])
    assert held_out["model_index"].tolist() == [2, 3]
    table = __import__("pandas").read_csv(workflow_copy / layout.KLOM_SUMMARY)
    assert set(table.method) == {"do_nothing", "oracle"} and set(table.n_oracles) == {2}
    manifest = json.loads((workflow_copy / layout.HUB_MANIFEST).read_text())
    assert manifest["commit"] == COMMIT and len(manifest["files"]) == 1 + 2 * 2 + 4 * 3
    assert hub.locked_commit(hub.read_lock(workflow_copy / "hub.lock.json"), SOURCE) == COMMIT


@pytest.mark.workflow
def test_offline_without_the_files_the_run_stops_before_any_job(workflow_copy, tmp_path):
    from conftest import snakemake

    files, _ = easydub_dataset(n_train=40, n_val=10, n_base=4, n_oracles=3, forget_sets={10: FORGET[10]})
    add_snapshot(tmp_path / "cache", REPO, files)  # oracle 3 (a held-out one) is missing
    proc = snakemake(workflow_copy, "--configfile", tiny_easydub(workflow_copy), env=hub_env(tmp_path / "cache"),
                     check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Published assets (config key import): 3 of 17 files of the Hub data set easydub/EasyDUB-dataset" in text
    assert "margins/cifar10/oracle/forget_10/retain/resnet9/id_3_epoch_23.npy" in text
    assert f"hf download {REPO} --repo-type dataset --revision {COMMIT}" in text
    assert not (workflow_copy / "results").exists() and not (workflow_copy / "logs").exists()


# the published benchmark's layout -------------------------------------------------------------------------


def test_klom_layout_checkpoints_and_oracle_margins(offline_cache, tmp_path):
    """royrin/KLOM-models: ResNet-9 state dicts and [oracles, points] margin tensors, read weights_only."""
    import io
    from collections import OrderedDict

    import torch

    from unlearnbench.models.resnet9 import ResNet9
    from unlearnbench.stack import ModelStack
    from unlearnbench.stages.imports import import_hub_base_weights, import_hub_oracle_margins

    def saved(value) -> bytes:
        buf = io.BytesIO()
        torch.save(value, buf)
        return buf.getvalue()

    torch.manual_seed(0)
    models = [ResNet9().eval() for _ in range(2)]
    train = torch.randn(4, 40)
    val = torch.randn(4, 10)
    forget = np.array([3, 17, 29], dtype=np.int64)
    files = {KLOM.base_weights(i): saved(OrderedDict((f"model.{k}", v) for k, v in m.state_dict().items()))
             for i, m in enumerate(models)}
    files.update({KLOM.oracle_margins(3, 0)[0]: saved(train), KLOM.oracle_margins(3, 0)[1]: saved(val),
                  KLOM.forget_set(3): npy_bytes(forget)})
    add_snapshot(offline_cache, "royrin/KLOM-models", files)
    source = hub.Source("royrin/KLOM-models", "main")
    manifest = hub.fetch(source, sorted(files), {}, "hub.lock.json", "manifest.json")

    import_hub_base_weights("manifest.json", str(tmp_path / "base.safetensors"),
                            [KLOM.base_weights(i) for i in range(2)], "resnet9", 10, 3, (0, 2))
    stack = ModelStack.load(tmp_path / "base.safetensors")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stack.forward(x, train=False), torch.stack([m(x) for m in models]))

    ours = tmp_path / "forget_set_3.npy"
    np.save(ours, np.sort(forget))
    groups = [KLOM.oracle_margins(3, j) for j in (2, 3)]
    import_hub_oracle_margins("manifest.json", str(ours), str(tmp_path / "oracle.npz"), "klom", groups,
                              KLOM.forget_set(3), (2, 4), 40, 10, "3")
    got = load_arrays(tmp_path / "oracle.npz", ("margins", "model_index"))
    np.testing.assert_array_equal(got["margins"], torch.cat([train, val], 1)[2:4].numpy())
    assert got["model_index"].tolist() == [2, 3]
    np.save(ours, np.array([3, 17, 30]))  # a generated set that is not the published one
    with pytest.raises(PublishedFormatError, match="forget set 3: the config's forget set"):
        import_hub_oracle_margins("manifest.json", str(ours), str(tmp_path / "other.npz"), "klom", groups,
                                  KLOM.forget_set(3), (2, 4), 40, 10, "3")


@pytest.mark.workflow
def test_published_benchmark_models_replace_training_in_the_dag(workflow_copy):
    """config/cifar10.yaml with the published models switched on: no base or oracle model is trained."""
    from conftest import planned_jobs, snakemake

    config = load_config("cifar10.yaml")
    config["import"].update(base="weights", oracle_shards="all")
    config.update(n_models=2, n_holdout_oracles=2, models_per_job=1, pool=None, ulira=None)
    config["forget_sets"] = [fs for fs in config["forget_sets"] if fs["id"] in (1, 4)]
    config["methods"] = {"do_nothing": None, "oracle": None, "gradient_ascent": {"lr": 1e-4, "epochs": [1]}}
    (workflow_copy / "published.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workflow_copy, "-n", "--configfile", "published.yaml"))
    assert jobs["fetch_hub_assets"] == 1 and jobs["import_hub_base_weights"] == 2
    assert jobs["import_hub_oracle_margins"] == 2 * 4  # sets 1 and 4, scored and held-out shards
    assert jobs["import_hub_forget_set"] == 1 and jobs["make_forget_set"] == 1  # set 1 is generated, then checked
    assert jobs["compute_margins"] == 2  # the base models' margins only
    assert not {"train_base", "train_oracle", "train_pool"} & set(jobs)
