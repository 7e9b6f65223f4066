"""Fixtures shared by the project's own tests: the real data and the real embedded model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from evalkit.paths import PROJECT_ROOT
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


@pytest.fixture
def run_unprivileged() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run Python code where file permissions apply: root ignores them, so as root the code runs under
    setpriv without the capabilities that override them (a real read-only folder, not a mock)."""
    prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"] \
        if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")

    def run(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=PROJECT_ROOT)

    return run
