"""The example CI workflow runs exactly the README's commands, so the guide and the file cannot drift."""

from __future__ import annotations

import re

import yaml

from evalkit.paths import PROJECT_ROOT

WORKFLOW = PROJECT_ROOT / "examples" / "tradeoff-gate.yml"


def _commands(text: str) -> list[str]:
    """Each ``pytest tests/eval`` command, backslash continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", "", text)
    return [re.sub(r"\s+#.*$", "", line.strip()) for line in joined.splitlines()
            if line.strip().startswith("pytest tests/eval")]


def test_workflow_runs_the_readmes_ci_commands() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["evaluate"]["steps"]
    commands = [command for step in steps for command in _commands(step.get("run", ""))]
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci_section = readme[readme.index("## Gates and baselines in CI"):]
    assert commands == _commands(ci_section[:ci_section.index("\n## ", 3)])
    assert len(commands) == 2 and "--save-baseline=" in commands[0] and "--gate" in commands[1]
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/tradeoff/"
