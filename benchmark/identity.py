"""Content-addressed run identity: the same config always gets the same run id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical(config: Mapping[str, Any], noise_keys: tuple[str, ...]) -> str:
    """Stable JSON of ``config`` with top-level ``noise_keys`` removed and keys sorted."""
    kept = {k: v for k, v in config.items() if k not in noise_keys}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)


def run_id(config: Mapping[str, Any], noise_keys: tuple[str, ...], length: int = 10) -> str:
    """Short SHA-1 of the canonical config (noise keys such as logging excluded)."""
    digest = hashlib.sha1(canonical(config, noise_keys).encode("utf-8")).hexdigest()
    return digest[:length]
