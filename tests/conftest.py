"""Fixtures shared by the project's own tests: the real data and the real embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.paths import data_dir as resolve_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (TRADEOFF_DATA_DIR, or datasets_cache/ after `python -m evalkit.data fetch`)."""
    root = resolve_data_dir()
    if not (root / "spider").is_dir() or not (root / "mmlu").is_dir():
        pytest.fail(f"No Spider/MMLU data under {root}: set TRADEOFF_DATA_DIR=../shared/data "
                    "or run `python -m evalkit.data fetch --from ../shared/data`.")
    return root


@pytest.fixture(scope="session")
def embedded_model():
    """SmolLM2-135M-Instruct, the real embedded default (loaded once per session)."""
    from evalkit.models import load_model

    return load_model("smollm2-135m")
