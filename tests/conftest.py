"""Shared fixtures. Tests that need the real data under ../shared/data are marked `data`
and skip with the reason when it is absent (as on a user's fresh machine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def real_data_root() -> Path | None:
    """The real data root, or None when this machine does not have it."""
    env = os.environ.get("CRISISLENS_DATA")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if (candidate / "crisismmd").is_dir() else None


@pytest.fixture
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real data not present: ../shared/data (or $CRISISLENS_DATA) is missing on this machine")
    return root


@pytest.fixture(scope="session")
def tiny_exported(tmp_path_factory):
    """(tiny random student, its ONNX file), built once per session."""
    from tests.tiny_bundle import export_tiny

    return export_tiny(tmp_path_factory.mktemp("tiny_export"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_exported, tmp_path_factory) -> Path:
    from tests.tiny_bundle import write_tiny_bundle

    return write_tiny_bundle(tiny_exported[1], tmp_path_factory.mktemp("tiny_bundle") / "bundle")
