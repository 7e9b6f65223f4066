"""JUnit XML (``pytest --junitxml``): the scores where CI dashboards that read JUnit look.

Each evaluation test gets properties, as ``record_property`` writes them (``<property>`` under its
``<testcase>``): suite, variant, id, group, cluster, score and outcome. The run's figures (every
:func:`~evalkit.integrations.figures.figures` name: scores and deltas with their CI bounds, n and
p-values), each gate's verdict and the answer lines become ``<testsuite>`` properties, as
``record_testsuite_property`` writes them.
"""

from __future__ import annotations

from typing import Any

from evalkit.integrations.figures import figures, verdicts
from evalkit.readback import SavedReport
from evalkit.summary import CaseRecord


def case_properties(record: CaseRecord) -> list[tuple[str, Any]]:
    """One evaluation test's properties; ``outcome`` is the metric's outcome (``match``, ``correct``,
    ...) or, for an example that did not run, its status (``skipped``, ``error``)."""
    properties: list[tuple[str, Any]] = [("suite", record.suite), ("variant", record.variant), ("id", record.id),
                                         ("group", record.group), ("cluster", record.cluster)]
    if record.score is not None:
        properties.append(("score", record.score))
    return [*properties, ("outcome", record.outcome or record.status)]


def suite_properties(saved: SavedReport) -> list[tuple[str, str]]:
    """The run's figures, gate verdicts and answer lines, as ``<testsuite>`` properties."""
    return [*((name, str(value)) for name, value in figures(saved.doc).items()),
            *verdicts(saved.doc).items(), *(("answer", line) for line in saved.doc.get("answer", []))]


def publish(saved: SavedReport, xml: Any) -> None:
    """Add the suite properties to pytest's JUnit writer (``LogXML``), which writes them after this."""
    for name, value in suite_properties(saved):
        xml.add_global_property(name, value)
