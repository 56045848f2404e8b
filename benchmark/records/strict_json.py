"""Strict JSON for every file and store row the harness writes: no NaN or Infinity (which
Python's ``json`` writes by default and no other JSON reader accepts); a missing or undefined
number is ``null``."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf), at any depth, replaced by None;
    NumPy scalars and arrays become Python numbers and lists; tuples become lists."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite_or_none(value.tolist())
    if isinstance(value, np.generic):
        return finite_or_none(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``finite_or_none(value)``; anything else unknown is written as its
    ``str`` (paths, enums). Raises ValueError rather than write a non-finite number."""
    return json.dumps(finite_or_none(value), allow_nan=False, default=str, **kwargs)


def loads(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity (they are not JSON)."""
    return json.loads(text, parse_constant=_refuse)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
