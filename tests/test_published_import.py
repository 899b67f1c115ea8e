"""Importing the published assets (state dicts, margin tensors) and downloading published forget sets.

Every fixture is generated here in exactly the published formats; nothing is fetched from outside:
the download tests talk to a throw-away HTTP server on 127.0.0.1.
"""

import functools
import hashlib
import http.server
import io
import re
import socket
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch

from unlearnbench.downloads import DownloadError, fetch_forget_set, index_file_limit
from unlearnbench.margins import stack_margins
from unlearnbench.published import (
    PublishedFormatError,
    load_published_margins,
    load_published_state_dict,
    stack_from_published,
)
from unlearnbench.stack import ModelStack
from unlearnbench.stages.imports import import_base_weights, import_oracle_margins
from unlearnbench.storage import load_arrays
from unlearnbench.models.resnet9 import ResNet9
from unlearnbench import layout

DIGITS = layout.Layout("digits")  # the paths of a run on the digits data set


def trained_looking_resnet9(seed: int) -> ResNet9:
    """A ResNet-9 with non-default BatchNorm statistics (so a mix-up of buffers would show)."""
    torch.manual_seed(seed)
    model = ResNet9()
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(4704)
    return model.eval()


def renamed_in_order(state: dict) -> OrderedDict:
    """The same tensors in the same order under other names (as another module layout would give)."""
    out = OrderedDict()
    for i, (key, value) in enumerate(state.items()):
        leaf = key.rsplit(".", 1)[1]
        out[f"layers.{i}.{leaf}"] = value
    return out


@pytest.fixture(scope="module")
def x():
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("style", ["model.", "module.", "module.model.", "renamed"])
def test_published_state_dict_loads_onto_our_resnet9(tmp_path, x, style):
    model = trained_looking_resnet9(1)
    state = model.state_dict()
    saved = renamed_in_order(state) if style == "renamed" else OrderedDict((style + k, v) for k, v in state.items())
    path = tmp_path / "sd_0____epoch_23.pt"
    torch.save(saved, path)
    loaded = load_published_state_dict(path)
    assert list(loaded) == list(state)
    fresh = ResNet9().eval()
    fresh.load_state_dict(loaded)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_published_state_dict_without_batchnorm_counters(tmp_path, x):
    model = trained_looking_resnet9(2)
    state = OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items() if "num_batches" not in k)
    torch.save(renamed_in_order(state), tmp_path / "sd.pt")
    loaded = load_published_state_dict(tmp_path / "sd.pt")
    assert int(loaded["net.0.1.num_batches_tracked"]) == 0
    fresh = ResNet9().eval()
    fresh.load_state_dict(loaded)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_a_state_dict_of_another_layout_is_refused(tmp_path):
    state = ResNet9().state_dict()
    keys = list(state)
    swapped = OrderedDict(state)
    swapped[keys[0]] = torch.zeros(64, 3, 5, 5)  # wrong kernel size
    torch.save(renamed_in_order(swapped), tmp_path / "bad_shape.pt")
    with pytest.raises(PublishedFormatError, match="shape"):
        load_published_state_dict(tmp_path / "bad_shape.pt")
    shorter = OrderedDict(list(renamed_in_order(state).items())[:-1])
    torch.save(shorter, tmp_path / "short.pt")
    with pytest.raises(PublishedFormatError, match="expected"):
        load_published_state_dict(tmp_path / "short.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickled_object_is_refused(tmp_path):
    torch.save({"net.0.0.weight": torch.zeros(1), "payload": Evil()}, tmp_path / "sd_evil.pt")
    with pytest.raises(PublishedFormatError, match="weights_only"):
        load_published_state_dict(tmp_path / "sd_evil.pt")
    torch.save(Evil(), tmp_path / "train_margins_all.pt")
    with pytest.raises(PublishedFormatError, match="refused"):
        load_published_margins(tmp_path / "train_margins_all.pt")


def test_stack_from_published_and_weights_shard(tmp_path, x):
    models = [trained_looking_resnet9(s) for s in (3, 4)]
    paths = []
    for n, model in enumerate(models):
        paths.append(tmp_path / f"sd_{n}____epoch_23.pt")
        torch.save(OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items()), paths[-1])
    stack = stack_from_published(paths, [0, 1])
    with torch.no_grad():
        expected = torch.stack([m(x) for m in models])
        torch.testing.assert_close(stack.forward(x, train=False), expected, rtol=1e-5, atol=1e-6)
    out = tmp_path / "shard~0.safetensors"
    import_base_weights([str(p) for p in paths], str(out), "resnet9", 10, 3, (5, 7))
    loaded = ModelStack.load(out)
    assert loaded.arch == "resnet9" and loaded.model_index.tolist() == [5, 6]
    labels = torch.arange(6) % 10
    np.testing.assert_array_equal(stack_margins(loaded, x, labels), stack_margins(stack, x, labels))


def test_published_margins_become_a_margins_shard(tmp_path):
    rng = np.random.default_rng(0)
    n_models, n_train, n_val = 5, 12, 4
    train = torch.from_numpy(rng.normal(size=(n_models, n_train)).astype(np.float32))
    val = torch.from_numpy(rng.normal(size=(n_models, n_val)).astype(np.float32))
    torch.save(train, tmp_path / "train_margins_all.pt")
    torch.save(val.double(), tmp_path / "val_margins_all.pt")  # any float dtype becomes float32
    got = load_published_margins(tmp_path / "val_margins_all.pt", n_points=n_val)
    assert got.dtype == np.float32 and got.shape == (n_models, n_val)
    out = tmp_path / "shard~1.npz"
    import_oracle_margins(str(tmp_path / "train_margins_all.pt"), str(tmp_path / "val_margins_all.pt"), str(out), (2, 5),
                          n_train, n_val)
    arrays = load_arrays(out, ("margins", "model_index"))
    assert arrays["model_index"].tolist() == [2, 3, 4]
    assert arrays["margins"].dtype == np.float32
    np.testing.assert_array_equal(arrays["margins"][:, :n_train], train.numpy()[2:5])
    np.testing.assert_allclose(arrays["margins"][:, n_train:], val.numpy()[2:5])
    with pytest.raises(PublishedFormatError, match="holds 5 models"):
        import_oracle_margins(str(tmp_path / "train_margins_all.pt"), str(tmp_path / "val_margins_all.pt"), str(out),
                              (4, 6), None, None)
    with pytest.raises(PublishedFormatError, match="expected 50000"):
        load_published_margins(tmp_path / "train_margins_all.pt", n_points=50_000)


# downloads -------------------------------------------------------------------------------------------


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


FORGET_4 = npy_bytes(np.array([3, 1, 4, 15, 9], dtype=np.int64))
LIMIT = index_file_limit(50_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, files, *args, **kwargs):
        self.files = files
        super().__init__(*args, **kwargs)

    def do_GET(self):
        if self.path.startswith("/redirect/"):  # a redirect to another url on the same server
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect"):])
            self.end_headers()
            return
        body = self.files.get(self.path.removeprefix("/unsized"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if not self.path.startswith("/unsized/"):  # /unsized/...: no Content-Length, the body just ends
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server with a few generated files; shut down after the test (daemon thread, and a
    hard stop after 30 s in case a test hangs)."""
    files = {
        "/forget_set_4.npy": FORGET_4,
        "/floats.npy": npy_bytes(np.array([0.5, 1.5])),
        "/pickled.npy": npy_bytes(np.array([{"a": 1}], dtype=object)),
        "/garbage.npy": b"<html>not found</html>",
        "/huge.npy": npy_bytes(np.arange(10_000, dtype=np.int64)),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, files))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(30, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_fetch_forget_set_downloads_and_checks(server, tmp_path):
    dest = tmp_path / "results" / "downloads" / "forget_set_4.npy"
    pin = hashlib.sha256(FORGET_4).hexdigest()
    indices = fetch_forget_set(f"{server}/forget_set_4.npy", dest, max_bytes=LIMIT, sha256=pin, allow_http=True,
                               timeout=10)
    assert indices.tolist() == [3, 1, 4, 15, 9]
    np.testing.assert_array_equal(np.load(dest, allow_pickle=False), indices)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["forget_set_4.npy"]  # no temp file left
    unsized = fetch_forget_set(f"{server}/unsized/forget_set_4.npy", dest, max_bytes=LIMIT, allow_http=True,
                               timeout=10)
    assert unsized.tolist() == [3, 1, 4, 15, 9]


@pytest.mark.parametrize("name, options, message", [
    ("floats.npy", {}, "integer"),
    ("pickled.npy", {}, "pickle"),
    ("garbage.npy", {}, "not a .npy"),
    ("missing_forget_set_7.npy", {}, "404"),
    ("forget_set_4.npy", {"sha256": "0" * 64}, "differs from the " + "0" * 64 + " pinned"),
    ("huge.npy", {"max_bytes": 1000}, "announces 80128 bytes, more than the limit of 1000"),
    ("unsized/huge.npy", {"max_bytes": 1000}, "sends more than the limit of 1000 bytes"),
])
def test_fetch_forget_set_refuses_bad_content(server, tmp_path, name, options, message):
    dest = tmp_path / "forget_set_7.npy"
    dest.write_bytes(npy_bytes(np.array([1, 2], dtype=np.int64)))  # an existing file survives a bad download
    with pytest.raises(DownloadError, match=re.escape(message)) as err:
        fetch_forget_set(f"{server}/{name}", dest, allow_http=True, user_path="data/mine.npy", timeout=10,
                         **{"max_bytes": LIMIT, **options})
    assert "put the file at data/mine.npy yourself" in str(err.value)
    assert np.load(dest).tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forget_set_7.npy"]


def test_plain_http_only_when_allowed(server, tmp_path):
    dest = tmp_path / "forget_set_4.npy"
    with pytest.raises(DownloadError, match="refusing plain http"):
        fetch_forget_set(f"{server}/forget_set_4.npy", dest, max_bytes=LIMIT)
    with pytest.raises(DownloadError, match="refusing"):
        fetch_forget_set("ftp://example.org/forget_set_4.npy", dest, max_bytes=LIMIT)
    assert not dest.exists()
    # a redirect within http is followed when http is allowed ...
    got = fetch_forget_set(f"{server}/redirect/forget_set_4.npy", dest, max_bytes=LIMIT, allow_http=True, timeout=10)
    assert got.tolist() == [3, 1, 4, 15, 9]


def test_a_redirect_may_not_downgrade_https():
    import urllib.request

    from unlearnbench.downloads import _SchemeCheckingRedirects

    handler = _SchemeCheckingRedirects(allow_http=False)
    request = urllib.request.Request("https://huggingface.co/datasets/x/resolve/main/f.npy")
    with pytest.raises(DownloadError, match="refusing plain http"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://cdn.example.org/f.npy")
    with pytest.raises(DownloadError, match="local file"):
        _SchemeCheckingRedirects(allow_http=True).redirect_request(request, None, 302, "Found", {},
                                                                   "file:///etc/passwd")
    followed = handler.redirect_request(request, None, 302, "Found", {}, "https://cdn.example.org/f.npy")
    assert followed.full_url == "https://cdn.example.org/f.npy"


def test_index_file_limit_fits_every_valid_index_file(tmp_path):
    every_point = npy_bytes(np.arange(50_000, dtype=np.int64))
    assert len(every_point) <= index_file_limit(50_000) < 2 * len(every_point)


def test_fetch_forget_set_offline_says_what_to_do(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/forget_set_indices/CIFAR10/forget_set_5.npy"
    dest = tmp_path / "forget_set_5.npy"
    with pytest.raises(DownloadError) as err:
        fetch_forget_set(url, dest, max_bytes=LIMIT, allow_http=True, user_path="data/forget_set_5.npy", timeout=5)
    text = str(err.value)
    assert text.startswith(f"cannot download {url}")
    assert "put the file at data/forget_set_5.npy yourself" in text and "check your network" in text
    assert not dest.exists() and list(tmp_path.iterdir()) == []


# the workflow: import rules replace training -----------------------------------------------------------


@pytest.mark.workflow
def test_imported_assets_replace_training_in_the_dag(workflow_copy):
    """Published base weights and oracle margins (digits-sized fixtures in the published formats): the
    dry run imports them instead of training base models or scoring-oracle margins."""
    import yaml

    from conftest import planned_jobs, snakemake
    from unlearnbench.models import build_model

    published = workflow_copy / "published"
    published.mkdir()
    for n in range(2):
        state = build_model("digits_cnn", 10, 1).state_dict()
        torch.save(OrderedDict((f"model.{k}", v) for k, v in state.items()), published / f"sd_{n}____epoch_23.pt")
    torch.save(torch.zeros(4, 300), published / "train_margins_all.pt")
    torch.save(torch.zeros(4, 1497), published / "val_margins_all.pt")
    config = {
        "dataset": "digits", "model": "digits_cnn", "train": {"epochs": 1, "batch_size": 32, "lr": 0.01},
        "n_models": 2, "n_holdout_oracles": 2, "models_per_job": 1,
        "forget_sets": [{"id": 1, "kind": "random", "size": 5}],
        "methods": {"do_nothing": None, "oracle": None},
        "import": {"base_weights": "published/sd_{index}____epoch_23.pt",
                   "oracle_margins": {1: {"train": "published/train_margins_all.pt",
                                          "val": "published/val_margins_all.pt"}}},
    }
    (workflow_copy / "import.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workflow_copy, "-n", "--configfile", "import.yaml"))
    assert jobs["import_base_weights"] == 2 and jobs["import_oracle_margins"] == 4
    assert "train_base" not in jobs and "train_oracle" not in jobs
    assert jobs["compute_margins"] == 2  # base models' margins only

    # and end to end: the imported assets are scored
    snakemake(workflow_copy, "--configfile", "import.yaml")
    import numpy as np
    import pandas as pd

    table = pd.read_csv(workflow_copy / layout.KLOM_SUMMARY)
    assert set(table.method) == {"do_nothing", "oracle"} and (table.n_oracles == 2).all()
    oracle = np.load(workflow_copy / DIGITS.margins(layout.oracle_family("1"), 0))
    assert oracle["margins"].shape == (1, 300 + 1497) and not oracle["margins"].any()


# a url never makes the user's file a rule output (issue 18.7) --------------------------------------------


def url_config(workflow_copy, url: str, **extra) -> str:
    import yaml

    config = yaml.safe_load((workflow_copy / ".test/config/config.yaml").read_text())
    config["forget_sets"] = [{"id": 7, "kind": "file", "path": "user/forget_7.npy", "url": url, **extra}]
    config["methods"] = {"do_nothing": None}
    (workflow_copy / "url.yaml").write_text(yaml.safe_dump(config))
    return "url.yaml"


@pytest.mark.workflow
def test_snakemake_never_deletes_the_users_file(workflow_copy):
    """The user's file is read, never written: --forcerun of the download rule and --delete-all-output
    leave it alone, also when the url cannot be reached (here: nothing listens on port 9)."""
    from conftest import planned_jobs, snakemake

    mine = npy_bytes(np.array([4, 8, 15], dtype=np.int64))
    (workflow_copy / "user").mkdir()
    user_file = workflow_copy / "user/forget_7.npy"
    user_file.write_bytes(mine)
    config = url_config(workflow_copy, "https://127.0.0.1:9/forget_set_7.npy")
    target = DIGITS.forget_set("7")
    jobs = planned_jobs(snakemake(workflow_copy, target, "-n", "--configfile", config))
    assert jobs == {"make_forget_set": 1}  # the user's file is there: nothing is downloaded
    snakemake(workflow_copy, target, "--forcerun", "download_forget_set", "--configfile", config)
    assert user_file.read_bytes() == mine
    assert np.load(workflow_copy / target).tolist() == [4, 8, 15]
    snakemake(workflow_copy, target, "--delete-all-output", "--configfile", config)
    assert user_file.read_bytes() == mine and not (workflow_copy / target).exists()


@pytest.mark.workflow
def test_without_the_users_file_the_url_is_downloaded_into_results(workflow_copy, tmp_path):
    from conftest import planned_jobs, snakemake

    published = tmp_path / "published_forget_set_7.npy"
    published.write_bytes(npy_bytes(np.array([9, 2, 5], dtype=np.int64)))
    pin = hashlib.sha256(published.read_bytes()).hexdigest()
    config = url_config(workflow_copy, published.as_uri(), sha256=pin)
    target = DIGITS.forget_set("7")
    jobs = planned_jobs(snakemake(workflow_copy, target, "-n", "--configfile", config))
    assert jobs == {"download_forget_set": 1, "make_forget_set": 1}
    snakemake(workflow_copy, target, "--configfile", config)
    assert np.load(workflow_copy / target).tolist() == [2, 5, 9]
    assert (workflow_copy / DIGITS.downloaded_forget_set("7")).read_bytes() == published.read_bytes()
    assert not (workflow_copy / "user").exists()  # the user's path is never written

    # the user's own file, when it differs from the pinned content, is refused with what is wrong
    (workflow_copy / "user").mkdir()
    (workflow_copy / "user/forget_7.npy").write_bytes(npy_bytes(np.array([1, 2], dtype=np.int64)))
    proc = snakemake(workflow_copy, target, "--configfile", config, check=False)
    assert proc.returncode != 0
    log = (workflow_copy / DIGITS.log("make_forget_set", DIGITS.forget_set()).format(forget_set=7)).read_text()
    assert f"forget set 7: the file user/forget_7.npy: sha256" in log and f"differs from the {pin} pinned" in log
