"""The Hugging Face Hub as featinv uses it: ``hf-hub:ORG/NAME[@REVISION]`` addresses, the
local cache, downloads and uploads (through ``huggingface_hub``, imported only when needed).

The cache has huggingface_hub's layout: ``CACHE/models--ORG--NAME/refs/REVISION`` holds a
commit hash and ``CACHE/models--ORG--NAME/snapshots/COMMIT/FILE`` are the files. It is looked at
first, without importing anything: offline (``HF_HUB_OFFLINE=1``) a decoder that is not cached
is refused at once, in one line. Online, ``snapshot_download`` fetches (or confirms) the files;
huggingface_hub reads the token from ``HF_TOKEN`` (or a saved login).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, FeatinvError, printable

PREFIX = "hf-hub:"
MODEL_FILE = "model.safetensors"  # the decoder of a packed folder
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PICTURE_FILE = "reconstruction.png"
SHARED_FILES = (MODEL_FILE, CONFIG_FILE, CARD_FILE, PICTURE_FILE)  # what a packed folder holds
DOWNLOADED = [MODEL_FILE, CONFIG_FILE, CARD_FILE]  # what loading fetches (not the picture)
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO = re.compile(f"{_PART}/{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubRef:
    """A model repository on the Hub and a revision (branch, tag or commit; None: main)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse_repo_id(text: str) -> str:
    """``ORG/NAME`` checked as the Hub spells repository names; a one-line error otherwise."""
    if not _REPO.fullmatch(text) or ".." in text or "--" in text:
        raise FeatinvError(f"'{printable(text)}' is not a Hub repository name; write ORG/NAME "
                           "(letters, digits, '.', '_', '-'), e.g. my-lab/hog-decoder.")
    return text


def parse_ref(text: str) -> HubRef:
    """``hf-hub:ORG/NAME`` or ``hf-hub:ORG/NAME@REVISION`` -> ``HubRef``."""
    body = text[len(PREFIX):] if text.startswith(PREFIX) else text
    repo, _, revision = body.partition("@")
    if "@" in body and not _REVISION.fullmatch(revision):
        raise FeatinvError(f"'{printable(text)}': '{printable(revision)}' is not a revision; "
                           "write hf-hub:ORG/NAME@REVISION (a branch, tag or commit).")
    return HubRef(parse_repo_id(repo), revision or None)


def offline() -> bool:
    """``HF_HUB_OFFLINE`` is set (huggingface_hub's spelling: 1, ON, YES, TRUE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def cache_dir() -> Path:
    """huggingface_hub's cache folder, from the environment as it reads it: ``HF_HUB_CACHE``,
    else ``HF_HOME/hub``, else ``XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub``."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base.expanduser() / "huggingface" / "hub"


def repo_folder(repo_id: str, cache: Path) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _read_small(path: Path, limit: int = 256) -> str | None:
    """A short text file's content; None for anything else (a FIFO, a device, a folder)."""
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            return f.read(limit).decode("ascii", "replace").strip()
    except OSError:
        return None


def cached_snapshot(ref: HubRef, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``ref`` holding a ``model.safetensors``, or None."""
    folder = repo_folder(ref.repo_id, cache or cache_dir())
    revision = ref.revision or "main"
    commit = _read_small(folder / "refs" / revision)
    if commit is None and _COMMIT.fullmatch(revision):
        commit = revision
    if not commit or not _COMMIT.fullmatch(commit):
        return None
    snapshot = folder / "snapshots" / commit
    return snapshot if (snapshot / MODEL_FILE).is_file() else None


def cached_refs(cache: Path | None = None) -> list[tuple[HubRef, Path]]:
    """Every ``(ref, snapshot folder)`` of the cache that holds a ``model.safetensors``: one
    per branch or tag in ``refs`` (``main`` written without a revision)."""
    cache = cache or cache_dir()
    found = []
    try:
        repos = sorted(p for p in cache.glob("models--*--*") if p.is_dir())
    except OSError:
        return []
    for repo in repos:
        repo_id = repo.name[len("models--"):].replace("--", "/", 1)
        if not _REPO.fullmatch(repo_id):
            continue
        refs = repo / "refs"
        names = sorted(str(p.relative_to(refs)) for p in refs.rglob("*") if p.is_file()) \
            if refs.is_dir() else []
        for name in names:
            ref = HubRef(repo_id, None if name == "main" else name)
            snapshot = cached_snapshot(ref, cache)
            if snapshot is not None:
                found.append((ref, snapshot))
    return found


def download(ref: HubRef) -> Path:
    """The snapshot folder of ``ref``: from the cache when offline, else fetched (or confirmed)
    by huggingface_hub into its cache. One-line ``CheckpointError`` when it cannot be had."""
    cache = cache_dir()
    if offline():
        local = cached_snapshot(ref, cache)
        if local is None:
            raise CheckpointError(f"{ref} is not in the Hugging Face cache ({printable(cache)}) "
                                  "and HF_HUB_OFFLINE is set, so it cannot be downloaded; unset "
                                  "HF_HUB_OFFLINE, or point HF_HUB_CACHE at a cache that holds it.")
        return local
    from huggingface_hub import errors, snapshot_download

    from ..version import __version__

    try:
        folder = Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache,
                                        allow_patterns=DOWNLOADED, library_name="featinv",
                                        library_version=__version__))
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"{ref}: the repository has no revision "
                              f"'{printable(ref.revision)}'.") from None
    except errors.GatedRepoError:
        raise CheckpointError(f"{ref} is gated: accept its conditions on the Hub, then set "
                              "HF_TOKEN to a token of that account.") from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(f"{ref}: no such model on the Hugging Face Hub, or it is private "
                              "(set HF_TOKEN to a token that can read it).") from None
    except errors.LocalEntryNotFoundError:
        raise CheckpointError(f"{ref}: cannot reach the Hugging Face Hub and the decoder is not "
                              f"in the cache ({printable(cache)}); connect, or set "
                              "HF_HUB_CACHE to a cache that holds it.") from None
    except errors.HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ref}: the Hugging Face Hub refused the download "
                              f"({printable(first)}).") from None
    except OSError as exc:
        raise CheckpointError(f"{ref}: cannot write the Hugging Face cache {printable(cache)} "
                              f"({exc.strerror or exc}); set HF_HUB_CACHE to a writable "
                              "folder.") from None
    if not (folder / MODEL_FILE).is_file():
        raise CheckpointError(f"{ref} holds no {MODEL_FILE}: it is not a featinv decoder "
                              "(share one with 'featinv push').")
    return folder


def commit_operations(folder: Path) -> list:
    """huggingface_hub ``CommitOperationAdd``s for the files of a packed folder, by name."""
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
            for name in SHARED_FILES if (folder / name).is_file()]


def upload(folder: Path, repo_id: str, private: bool = False, revision: str | None = None,
           message: str = "Upload a featinv decoder") -> HubRef:
    """Upload a packed folder to the model repository ``repo_id`` (created if missing;
    ``private`` then), on branch ``revision`` (created from main if missing; None: main), in
    one commit. Returns the address to load it by."""
    repo_id = parse_repo_id(repo_id)
    ref = HubRef(repo_id, revision)
    if revision is not None:
        parse_ref(str(ref))  # checks the revision's spelling
    if offline():
        raise FeatinvError(f"Cannot upload to {ref}: HF_HUB_OFFLINE is set; unset it to push.")
    from huggingface_hub import HfApi, errors

    from ..version import __version__

    api = HfApi(library_name="featinv", library_version=__version__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.create_commit(repo_id, commit_operations(folder), commit_message=message,
                          revision=revision)
    except errors.LocalTokenNotFoundError:
        raise FeatinvError(f"Cannot upload to {ref}: no Hugging Face token; set HF_TOKEN to a "
                           "token with write access (or log in with 'hf auth login').") from None
    except errors.HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatinvError(f"Cannot upload to {ref}: the Hugging Face Hub refused it "
                           f"({printable(first)}); check that HF_TOKEN may write to "
                           f"{repo_id.split('/')[0]}.") from None
    except Exception as exc:  # no network: OSError, or httpx's errors
        if not isinstance(exc, OSError) and not type(exc).__module__.startswith("httpx"):
            raise
        raise FeatinvError(f"Cannot upload to {ref}: the Hub cannot be reached "
                           f"({printable(type(exc).__name__)}: {printable(exc)}).") from None
    return ref
