"""The README's set-up installs what the project's tests need, so a newcomer's `python -m pytest -q` is CI's."""

from __future__ import annotations

import re

from evalkit.paths import PROJECT_ROOT


def _pip_installs(script: str) -> list[str]:
    """The arguments of each ``pip install`` in a shell script (``$PIP install ...`` or ``pip install ...``)."""
    return [line.split(" install ", 1)[1] for line in script.splitlines()
            if re.search(r"(\$PIP|pip) install ", line) and not line.lstrip().startswith("#")]


def test_the_set_up_installs_the_test_extra_and_ci_installs_nothing_else():
    """The [test] extra (Playwright) was installed by .ci/run alone: on a fresh clone with Chromium, the README's
    two commands ended in ModuleNotFoundError: No module named 'playwright' for the HTML report's tests."""
    setup = _pip_installs((PROJECT_ROOT / "scripts" / "setup.sh").read_text())
    assert any('-e ".[test]"' in args for args in setup), setup
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh" in ci and _pip_installs(ci) == []
