"""Published assets from a Hugging Face data set, through ``huggingface_hub``: pinned, verified, offline-capable.

``huggingface_hub`` is the maintained client of the Hub: it caches every file once (``HF_HUB_CACHE``,
layout ``datasets--{owner}--{name}/{blobs,snapshots/<commit>,refs}``), resumes downloads, resolves
revisions and works without network (``HF_HUB_OFFLINE=1``) from that cache. It does not check a cached
file's content, so this module does:

- **Revision.** A branch or tag is resolved once to its commit, and every file is fetched at that commit
  (never a mix of two states of the data set). The commit is recorded in the lock file; later fetches use
  the recorded commit, so ``revision: main`` is pinned from its first verified fetch on.
- **Content.** Every file's sha256 is computed and compared with (1) a pin in the config
  (``import.sha256``), (2) the lock file's record for that commit, and (3) the name of its cache blob:
  for LFS files (all the published ``.pt``/``.npy`` files) the Hub's etag *is* the file's sha256 and the
  cache names the blob after it, so a blob whose content hashes to another name is corrupt. A file with
  neither a config pin nor a lock record is trusted on first use: its sha256 goes into the lock file, and
  every later fetch must match it. What is pinned where is listed in config/README.md.
- **Availability.** :func:`check_available` runs when the workflow is parsed: offline, with files missing
  from the cache, the run stops before any job, naming the files and the ``hf download`` command that
  gets them. :func:`fetch` (one local job on the submitting host) downloads what is missing and writes a
  manifest (commit and sha256 of every file); the import jobs read files through :func:`resolve`, which
  checks them against the manifest again.

The files each layout needs: :mod:`unlearnbench.hub_layouts`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import re
from pathlib import Path

from .content_digests import sha256 as file_sha256
from .storage import atomic_path

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")
LOCK_VERSION = 1
SHOWN = 8  # missing files listed by name in a message


class HubError(RuntimeError):
    """A published file is missing, unreachable, or not the pinned content."""


@dataclasses.dataclass(frozen=True)
class Source:
    repo: str
    revision: str = "main"
    repo_type: str = "dataset"

    @property
    def key(self) -> str:
        return f"{self.repo_type}s/{self.repo}"

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}"


def _constants():
    from huggingface_hub import constants

    return constants


def cache_dir() -> str:
    return _constants().HF_HUB_CACHE


def offline() -> bool:
    return bool(_constants().HF_HUB_OFFLINE)


# lock file ---------------------------------------------------------------------------------------------


def read_lock(path: str | os.PathLike) -> dict:
    """The lock file's content (an empty lock when the file does not exist)."""
    if not os.path.exists(path):
        return {"version": LOCK_VERSION, "repos": {}}
    try:
        with open(path) as fh:
            lock = json.load(fh)
        if not isinstance(lock, dict) or not isinstance(lock.get("repos"), dict):
            raise ValueError("no 'repos' mapping")
    except (OSError, ValueError) as err:
        raise HubError(
            f"lock file {path} cannot be read ({err}); it is yours: repair it from version control, or delete "
            "it to record the files again on the next fetch (trust on first use)"
        ) from err
    return lock


def locked_commit(lock: dict, source: Source) -> str | None:
    return lock["repos"].get(source.key, {}).get("revisions", {}).get(source.revision)


def locked_files(lock: dict, source: Source, commit: str) -> dict[str, str]:
    return lock["repos"].get(source.key, {}).get("files", {}).get(commit, {})


def record(path: str | os.PathLike, source: Source, commit: str, digests: dict[str, str]) -> list[str]:
    """Add the commit and digests to the lock file (atomically, under a file lock); return the new names.

    An existing record is never changed: a different digest for a recorded file is an error.
    """
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(Path(path).parent / f".{Path(path).name}.lock"):  # serialises concurrent runs
        lock = read_lock(path)
        repo = lock["repos"].setdefault(source.key, {"revisions": {}, "files": {}})
        changed = False
        if not COMMIT.fullmatch(source.revision) and repo["revisions"].get(source.revision) != commit:
            if source.revision in repo["revisions"]:
                raise HubError(f"{path}: {source} is locked to {repo['revisions'][source.revision]}, not {commit}")
            repo["revisions"][source.revision] = commit
            changed = True
        files = repo["files"].setdefault(commit, {})
        new = []
        for name, digest in sorted(digests.items()):
            if name not in files:
                files[name], changed = digest, True
                new.append(name)
            elif files[name] != digest:
                raise HubError(f"{path}: {name} at {commit} is recorded as {files[name]}, not {digest}")
        if changed:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return new


# cache -------------------------------------------------------------------------------------------------


def _repo_folder(source: Source) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return Path(cache_dir()) / repo_folder_name(repo_id=source.repo, repo_type=source.repo_type)


def cached_commit(source: Source) -> str | None:
    """The commit the local cache knows for ``source.revision`` (its ``refs/`` entry), if any."""
    if COMMIT.fullmatch(source.revision):
        return source.revision
    ref = _repo_folder(source) / "refs" / source.revision
    return ref.read_text().strip() if ref.is_file() else None


def cached_path(source: Source, commit: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.repo, filename, cache_dir=cache_dir(), revision=commit,
                                   repo_type=source.repo_type)
    return found if isinstance(found, str) else None


def missing_files(source: Source, commit: str | None, files: list[str]) -> list[str]:
    if commit is None:
        return list(files)
    return [name for name in files if cached_path(source, commit, name) is None]


def how_to_get(source: Source, files: list[str], commit: str | None = None) -> str:
    """The ``hf download`` command that puts ``files`` into the cache (folders as ``--include`` globs)."""
    patterns = sorted({f"{os.path.dirname(name)}/*" if os.path.dirname(name) else name for name in files})
    includes = " ".join(f"--include '{pattern}'" for pattern in patterns)
    revision = commit or source.revision
    return f"hf download {source.repo} --repo-type {source.repo_type} --revision {revision} {includes}".rstrip()


def _missing_message(source: Source, commit: str | None, missing: list[str], total: int) -> str:
    shown = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
    where = f"commit {commit}" if commit else f"revision {source.revision} (no commit of it in the cache)"
    return (
        f"{len(missing)} of {total} files of the Hub data set {source.repo} ({where}) are not in the local "
        f"Hub cache {cache_dir()} and HF_HUB_OFFLINE is set: {shown}. Get them with\n"
        f"  {how_to_get(source, missing, commit)}\n"
        "(huggingface-cli download takes the same arguments), or let the workflow download them: run with "
        "HF_HUB_OFFLINE=0 on a machine with network."
    )


def check_available(source: Source, files: list[str], lock_path: str | os.PathLike) -> None:
    """Offline, refuse at once (before any job) when files are missing from the cache; online, do nothing."""
    if not offline():
        return
    commit = locked_commit(read_lock(lock_path), source) or cached_commit(source)
    missing = missing_files(source, commit, files)
    if missing:
        raise HubError(_missing_message(source, commit, missing, len(files)))


# fetch -------------------------------------------------------------------------------------------------


def resolve_commit(source: Source, lock: dict) -> str:
    """The commit to fetch: the revision itself, its lock record, or (first fetch) what it points to now."""
    if COMMIT.fullmatch(source.revision):
        return source.revision
    commit = locked_commit(lock, source)
    if commit:
        return commit
    if not offline():
        from huggingface_hub import HfApi

        try:
            return HfApi().repo_info(source.repo, repo_type=source.repo_type, revision=source.revision).sha
        except Exception as err:  # network down, repo or revision unknown: the cache may still know it
            commit = cached_commit(source)
            if commit is None:
                raise HubError(f"cannot resolve {source} on the Hub ({type(err).__name__}: {_first_line(err)}) "
                               "and the local cache has no commit for it") from err
            log.warning("cannot reach the Hub (%s); using the cached commit %s of %s", _first_line(err), commit,
                        source)
            return commit
    commit = cached_commit(source)
    if commit is None:
        raise HubError(f"HF_HUB_OFFLINE is set and the local Hub cache {cache_dir()} has no commit for {source}; "
                       f"get the files with `{how_to_get(source, ['*'])}` or run with HF_HUB_OFFLINE=0")
    return commit


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _download(source: Source, commit: str, names: list[str], max_workers: int) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # one log line per 10% instead of a bar per file
    step = max(1, len(names) // 10)
    with concurrent.futures.ThreadPoolExecutor(max_workers) as pool:
        futures = {
            pool.submit(hf_hub_download, source.repo, name, repo_type=source.repo_type, revision=commit,
                        cache_dir=cache_dir()): name
            for name in names
        }
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            try:
                future.result()
            except Exception as err:
                for other in futures:
                    other.cancel()
                raise HubError(f"cannot download {futures[future]} from {source.repo} at {commit} "
                               f"({type(err).__name__}: {_first_line(err)}); "
                               f"by hand: {how_to_get(source, [futures[future]], commit)}") from err
            if done % step == 0 or done == len(names):
                log.info("downloaded %d/%d files", done, len(names))


def verify_file(path: str, name: str, expected: dict[str, str | None]) -> str:
    """sha256 of the cached ``path`` of ``name``, checked against its blob name and each pin in ``expected``
    (``{"config import.sha256": digest, "lock file x": digest}``); raise :class:`HubError` on a mismatch."""
    digest = file_sha256(path)
    blob = os.path.basename(os.path.realpath(path))
    if SHA256.fullmatch(blob) and blob != digest:
        raise HubError(
            f"{name}: the cached copy {os.path.realpath(path)} is corrupt (its content hashes to {digest}, not to "
            "its name, the Hub's sha256): delete it and fetch again"
        )
    for where, pin in expected.items():
        if pin and pin != digest:
            raise HubError(
                f"{name}: sha256 {digest} differs from {pin} pinned in the {where}; the file is not the one the "
                f"pin names (cached at {path}). If the data set changed on purpose, update the pin deliberately"
            )
    return digest


def fetch(source: Source, files: list[str], pins: dict[str, str], lock_path: str | os.PathLike,
          manifest_path: str | os.PathLike, max_workers: int = 8) -> dict:
    """Bring ``files`` into the local Hub cache at one commit, verify each, record them, write the manifest."""
    lock = read_lock(lock_path)
    commit = resolve_commit(source, lock)
    missing = missing_files(source, commit, files)
    log.info("%s: commit %s, %d files, %d not in the cache %s", source, commit, len(files), len(missing), cache_dir())
    if missing:
        if offline():
            raise HubError(_missing_message(source, commit, missing, len(files)))
        _download(source, commit, missing, max_workers)
    recorded = locked_files(lock, source, commit)
    digests = {}
    for name in files:
        path = cached_path(source, commit, name)
        if path is None:
            raise HubError(f"{name}: not in the cache after downloading it from {source.repo} at {commit}")
        digests[name] = verify_file(path, name, {"config import.sha256": pins.get(name),
                                                 f"lock file {lock_path}": recorded.get(name)})
    record(lock_path, source, commit, digests)
    first_use = [name for name in files if not pins.get(name) and not recorded.get(name)]
    log.info("verified %d files: %d pinned in the config, %d in the lock file %s, %d trusted on first use "
             "(recorded there now)", len(files), sum(1 for name in files if pins.get(name)),
             sum(1 for name in files if recorded.get(name)), lock_path, len(first_use))
    manifest = {"repo": source.repo, "repo_type": source.repo_type, "revision": source.revision, "commit": commit,
                "files": digests}
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def load_manifest(path: str | os.PathLike) -> dict:
    with open(path) as fh:
        return json.load(fh)


def resolve(manifest: dict, name: str) -> str:
    """The cached file ``name`` of a fetch's manifest, checked against the sha256 the fetch verified."""
    source = Source(manifest["repo"], manifest["revision"], manifest["repo_type"])
    if name not in manifest["files"]:
        raise HubError(f"{name} is not among the fetched files (rerun the fetch_hub_assets rule)")
    path = cached_path(source, manifest["commit"], name)
    if path is None:
        raise HubError(f"{name} of {source.repo} at {manifest['commit']} left the Hub cache {cache_dir()} after "
                       "it was fetched; rerun with --forcerun fetch_hub_assets")
    verify_file(path, name, {"manifest of the fetch": manifest["files"][name]})
    return path


def resolve_groups(manifest: dict, groups) -> list[list[str]]:
    """:func:`resolve` for a list of file groups (one per model); each distinct file is checked once."""
    paths = {name: resolve(manifest, name) for name in sorted({name for group in groups for name in group})}
    return [[paths[name] for name in group] for group in groups]
