"""Checking the fields of a preprocessing config read from a bundle's `preprocess.json`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

_C = TypeVar("_C")


def _config_from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
    """`cls(**data)`, refusing unknown keys so a typo in a saved config is not silently ignored."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return cls(**data)


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")


def _float_triple(owner: str, name: str, value: Any) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or not all(np.isfinite(triple)):
        raise ValueError(f"{owner}.{name} must be three finite numbers (R, G, B), got {value!r}")
    return triple
