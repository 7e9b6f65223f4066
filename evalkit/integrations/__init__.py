"""Where users already look for results: GitHub job summaries and annotations (:mod:`.github`), JUnit
XML properties (:mod:`.junit`), experiment trackers (:mod:`.trackers`).

They all read the finished report folder back (:mod:`evalkit.readback`), so what they show is what
``tradeoff.json`` says, and they run after it is written: none of them can lose the report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError


def publish(report_dir: Path, log_to: Sequence[str], junit_xml: Any | None = None,
            environ: Mapping[str, str] = os.environ) -> list[str]:
    """Hand a written report to GitHub (when its variables are set), to pytest's JUnit writer
    (``junit_xml``, a ``LogXML`` when ``--junitxml`` is on) and to the ``log_to`` trackers; return the
    lines to print at the end of the run (workflow commands, where each tracker logged, warnings)."""
    from evalkit.integrations import github, junit, trackers
    from evalkit.readback import load_report

    if junit_xml is None and not log_to and not github.wanted(environ):
        return []  # nothing asked for: the report is not read back
    try:
        saved = load_report(report_dir)
    except EvalkitError as exc:
        return [f"WARNING: nothing published to GitHub, JUnit or trackers: {exc}"]
    if junit_xml is not None:
        junit.publish(saved, junit_xml)
    return [*github.publish(saved, environ), *trackers.log_to(log_to, saved)]
