"""GitHub Actions: the answer where reviewers read it, not only in a log and an artifact.

When ``GITHUB_STEP_SUMMARY`` is set (GitHub sets it in every step), the run appends its ``tradeoff.md``
(the answer first, one table per suite, the gates, what changed) to the job summary, which GitHub renders
as GitHub-flavoured Markdown: pipe tables with a header row and a ``|---|`` delimiter row, ``\\|`` for a
pipe inside a cell. When ``GITHUB_ACTIONS`` is ``true`` it also prints workflow commands that GitHub turns
into annotations on the run and the pull request: an ``::error`` per gate that fails or errs (the
gates decide the exit status, so this is why the job is red) and a ``::notice`` per answer line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from evalkit.readback import SavedReport

# GitHub refuses a step summary over 1 MiB ("$GITHUB_STEP_SUMMARY upload aborted") and then shows none.
SUMMARY_LIMIT = 1024 * 1024


def _data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """A workflow command's property value (``title=...``): ``:`` and ``,`` end it unless escaped."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(saved: SavedReport) -> list[str]:
    """One ``::error`` line per gate that fails or errs, then one ``::notice`` line per answer line."""
    report = saved.directory / "tradeoff.md"
    lines = []
    for gate in saved.gates:
        if gate.verdict == "PASS":
            continue
        why = gate.message or f"{gate.figure_text}; {gate.evidence}"
        lines.append(f"::error title={_property(f'tradeoff gate {gate.verdict}: {gate.gate} ({gate.label})')}::"
                     f"{_data(f'{why}. Report: {report}')}")
    lines += [f"::notice title={_property('tradeoff answer')}::{_data(line)}" for line in saved.doc.get("answer", [])]
    return lines


def fit(markdown: str, limit: int = SUMMARY_LIMIT) -> str:
    """``markdown`` whole when it fits GitHub's limit, else cut at the last section that fits, saying so."""
    if len(markdown.encode("utf-8")) <= limit:
        return markdown
    note = "\n_The rest of this report did not fit GitHub's 1 MiB job summary: it is in the uploaded tradeoff.md._\n"
    head = markdown.encode("utf-8")[: limit - len(note.encode("utf-8"))].decode("utf-8", errors="ignore")
    cut = head.rfind("\n## ")
    return (head[:cut] if cut > 0 else head) + note


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether this run is inside GitHub Actions or has a job summary to write."""
    return environ.get("GITHUB_ACTIONS") == "true" or bool(environ.get("GITHUB_STEP_SUMMARY"))


def publish(saved: SavedReport, environ: Mapping[str, str]) -> list[str]:
    """Append the report to the job summary when ``GITHUB_STEP_SUMMARY`` is set; return the annotation
    lines to print when running in GitHub Actions (none elsewhere), and a warning if the summary could
    not be written."""
    lines = annotations(saved) if environ.get("GITHUB_ACTIONS") == "true" else []
    summary = environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            markdown = (saved.directory / "tradeoff.md").read_text(encoding="utf-8")
            with Path(summary).open("a", encoding="utf-8") as handle:
                handle.write(fit(markdown) + "\n")
        except OSError as exc:
            lines.append(f"WARNING: the job summary was not written ({exc}); the report is in {saved.directory}.")
    return lines
