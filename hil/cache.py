"""The per-user cache of embserve-hil: ``$XDG_CACHE_HOME/embserve-hil`` (default ``~/.cache/embserve-hil``)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "embserve-hil", *parts)
