"""Shared fixtures: real CIFAR-10 from ../shared when present, one tiny exported model per session. The helpers
they use (synthetic files, model export) are in tests/helpers.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import SHARED_CIFAR, ExportedModel, build_exported_model  # noqa: E402


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (the ../shared folder beside the checkout)")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> ExportedModel:
    """One tiny exported model for the whole session (read it, never write into it)."""
    return build_exported_model(tmp_path_factory.mktemp("exported_model"))
