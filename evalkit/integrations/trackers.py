"""Experiment trackers (``--log-to mlflow|wandb|trackio``, repeatable): the evaluation lands beside the
training runs people already compare there.

Each tracker is an optional extra (``pip install -e ".[mlflow]"``, ``[wandb]``, ``[trackio]``), imported
only when asked for, and configured the way the tool documents it, so the evaluation goes where the user
points: MLflow reads ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME`` and ``MLFLOW_RUN_ID`` (an
existing run, e.g. the adapter's training run, to log into); W&B reads ``WANDB_PROJECT``, ``WANDB_MODE``
(``offline`` writes local run files), ``WANDB_RUN_ID`` with ``WANDB_RESUME``; trackio logs into the project
``TRACKIO_PROJECT`` (transformers' variable; default ``tradeoff``) under ``TRACKIO_DIR``.

What is logged, per variant and suite: every :func:`~evalkit.integrations.figures.figures` value (scores
and paired deltas with CI bounds, n and p-values) as metrics, each gate as a metric (1 pass, 0 not) and its
verdict as text, the answer lines and the run's facts (model, adapters, templates) as text, and the report
folder as artifacts. A tracker that cannot be reached or refuses the run is a warning: the report folder
is written before any tracker is called and stays the record.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence

from evalkit.errors import ConfigError
from evalkit.integrations.figures import figures, gate_figures, gate_name, run_facts
from evalkit.readback import SavedReport

RUN_NAME = "tradeoff"


def _texts(saved: SavedReport) -> dict[str, str]:
    """Text values: the run's facts, each gate's verdict with its gate, the answer lines."""
    gates = {gate_name(g): f"{g['verdict']}: {g['gate']}" for g in saved.doc.get("gates", [])}
    answer = {f"answer/{i}": line for i, line in enumerate(saved.doc.get("answer", []))}
    return {**run_facts(saved.doc), **gates, **answer}


def _numbers(saved: SavedReport) -> dict[str, float]:
    return {**figures(saved.doc), **gate_figures(saved.doc)}


def _mlflow(saved: SavedReport) -> str:
    """Log into the active or ``MLFLOW_RUN_ID`` run, else a new run named ``tradeoff``; texts as tags
    (tags can change, so evaluating into the same run twice does not fail as params would)."""
    import mlflow

    with mlflow.start_run(run_name=None if os.environ.get("MLFLOW_RUN_ID") else RUN_NAME) as run:
        mlflow.log_metrics(_numbers(saved))
        mlflow.set_tags({f"tradeoff/{k}": v[:5000] for k, v in _texts(saved).items()})
        mlflow.log_artifacts(str(saved.directory), artifact_path="tradeoff")
    return f"MLflow run {run.info.run_id} (experiment {run.info.experiment_id}, {mlflow.get_tracking_uri()})"


def _wandb(saved: SavedReport) -> str:
    """Log into the W&B run the environment names (``WANDB_RUN_ID``), else a new ``evaluation`` run;
    figures as one history step and in the summary, texts in the summary, the folder as an artifact."""
    import wandb

    named = os.environ.get("WANDB_RUN_ID") or os.environ.get("WANDB_NAME")
    # console="off": the run starts and ends inside pytest's session end; W&B must not rewire its output
    run = wandb.init(job_type="evaluation", name=None if named else RUN_NAME,
                     settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
    try:
        numbers = _numbers(saved)
        run.log(numbers)
        run.summary.update({**numbers, **_texts(saved)})
        artifact = wandb.Artifact(f"tradeoff-report-{run.id}", type="evaluation")
        artifact.add_dir(str(saved.directory))
        run.log_artifact(artifact)
        where = f"W&B run {run.id} ({run.project}, {run.settings.mode}: {run.dir})"
    finally:
        run.finish()
        wandb.teardown()  # W&B's service writes the run file (offline) or uploads it (online) only as it stops
    return where


def _trackio(saved: SavedReport) -> str:
    """Log a run into the trackio project ``TRACKIO_PROJECT`` (default ``tradeoff``), the report folder
    as an artifact."""
    import trackio

    project = os.environ.get("TRACKIO_PROJECT", RUN_NAME)
    run = trackio.init(project=project, config=_texts(saved), auto_log_cpu=False, auto_log_gpu=False)
    try:
        trackio.log(_numbers(saved))
        trackio.log_artifact(saved.directory, name=f"tradeoff-report-{run.name}", type="evaluation")
    finally:
        trackio.finish()
    return f"trackio run {run.name} (project {project})"


# name -> (the module imported, the extra that installs it, the logger)
TRACKERS: dict[str, tuple[str, str, Callable[[SavedReport], str]]] = {
    "mlflow": ("mlflow", "mlflow", _mlflow),
    "wandb": ("wandb", "wandb", _wandb),
    "trackio": ("trackio", "trackio", _trackio),
}


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """The ``--log-to`` values, checked at start-up (not after hours of inference): a ConfigError for an
    unknown tracker or one whose package is not installed, with the install command."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--log-to {name!r}: unknown tracker. Fix: use one of {', '.join(TRACKERS)}.")
        module, extra, _ = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--log-to {name}: the {module} package is not installed. "
                              f"Fix: pip install -e \".[{extra}]\" (or pip install \"tradeoff[{extra}]\").")
    return tuple(dict.fromkeys(names))


def log_to(names: Sequence[str], saved: SavedReport) -> list[str]:
    """Log the run to each tracker; one line each, saying where it went or, as a warning, why not."""
    lines = []
    for name in names:
        try:
            lines.append(f"tradeoff logged to {TRACKERS[name][2](saved)}")
        # A tracker is a third-party service: whatever it raises (no server, no credentials, a refused
        # run), the evaluation and its report stand, so it is reported, never raised.
        except Exception as exc:  # noqa: BLE001
            lines.append(f"WARNING (--log-to {name}): nothing was logged ({type(exc).__name__}: "
                         f"{str(exc).strip()[:500]}). The report is in {saved.directory}.")
    return lines
