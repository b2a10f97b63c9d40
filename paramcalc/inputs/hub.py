"""A Hugging Face Hub model id (`org/name`) -> the path of its config.json.

First the local Hugging Face cache, laid out as huggingface_hub writes it:
`<cache>/models--org--name/refs/<branch>` holds a commit hash and
`<cache>/models--org--name/snapshots/<commit>/config.json` the file. The
cache is `HF_HUB_CACHE`, else `HF_HOME/hub`, else
`$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (the same
order as huggingface_hub.constants). A revision is a branch (or tag) named in
`refs/`, or a commit hash.

Not cached: `config.json` alone (never weights) is downloaded with
huggingface_hub's `hf_hub_download`, an optional dependency (`paramcalc[hub]`)
imported only here, unless `HF_HUB_OFFLINE` is set. A gated repository needs
a token: `HF_TOKEN` from the environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from paramcalc.errors import UserError

# huggingface_hub's repo id rule: [A-Za-z0-9._-], no leading or trailing '.' or '-', at most 96 characters
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "on", "yes", "true"}
INSTALL = "pip install 'paramcalc[hub]'"


def is_repo_id(text: str) -> bool:
    """`org/name` with the Hub's characters, and no file suffix paramcalc reads (`a/b.json` is a missing file)."""
    return bool(_REPO_ID.fullmatch(text)) and not text.lower().endswith((".json", ".yaml", ".yml", ".safetensors"))


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded repositories."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):  # the older name huggingface_hub still honours
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cached_config(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached config.json of `repo_id` at `revision` (default `main`), or None."""
    repo = hub_cache() / f"models--{repo_id.replace('/', '--')}"
    revision = revision or "main"
    commit = None
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif _COMMIT.fullmatch(revision):
        commit = revision
    if not commit:
        return None
    config = repo / "snapshots" / commit / "config.json"
    return config if config.is_file() else None


def config_path(repo_id: str, revision: str | None = None) -> Path:
    """The config.json of a Hub model: from the cache, else downloaded (config.json only)."""
    cached = cached_config(repo_id, revision)
    if cached is not None:
        return cached
    at = f" at revision {revision!r}" if revision else ""
    download = f"`hf download {repo_id} config.json{f' --revision {revision}' if revision else ''}`"
    if offline():
        from importlib.util import find_spec

        fetch = "unset HF_HUB_OFFLINE to let paramcalc fetch its config.json" + (
            "" if find_spec("huggingface_hub") else f" (after installing the extra: {INSTALL})")
        raise UserError(f"Hugging Face model {repo_id!r}{at} is not in the local cache ({hub_cache()}) "
                        "and HF_HUB_OFFLINE is set", fix=f"download it first ({download}), or {fetch}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError(f"Hugging Face model {repo_id!r}{at} is not in the local cache ({hub_cache()}), "
                        "and huggingface_hub, which downloads it, is not installed",
                        fix=f"install the extra ({INSTALL}), or download its config.json and name that file "
                            "instead") from None
    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision, token=os.environ.get("HF_TOKEN") or None)
    except Exception as error:  # huggingface_hub's errors: not found, gated, no network
        raise _download_error(repo_id, at, error) from None
    return Path(path)


def _download_error(repo_id: str, at: str, error: Exception) -> UserError:
    kind = type(error).__name__
    if kind == "GatedRepoError" or "401" in str(error) or "403" in str(error):
        return UserError(f"Hugging Face model {repo_id!r} is gated or private",
                         fix="accept its licence on huggingface.co and set HF_TOKEN to a token with read access")
    if kind == "RepositoryNotFoundError":
        return UserError(f"no Hugging Face model {repo_id!r}",
                         fix="check the spelling (org/name), or set HF_TOKEN if it is private")
    if kind == "RevisionNotFoundError":
        return UserError(f"Hugging Face model {repo_id!r} has no revision{at.replace(' at revision', '')}",
                         field="revision", fix="give a branch, tag or commit hash of the repository")
    if kind == "EntryNotFoundError" or kind == "RemoteEntryNotFoundError":
        return UserError(f"Hugging Face model {repo_id!r}{at} has no config.json",
                         fix="paramcalc reads transformers models; name a local config.json or spec instead")
    first = str(error).strip().splitlines()[0] if str(error).strip() else kind
    return UserError(f"could not download config.json of Hugging Face model {repo_id!r}{at} ({first})",
                     fix="check the network, or download it elsewhere into the Hugging Face cache and run again "
                         "with HF_HUB_OFFLINE=1")
