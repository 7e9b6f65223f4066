"""The plugin is loaded by every pytest session of an environment where tradeoff is installed, the
project's own unit tests included: importing it must not pull in the heavy libraries an evaluation needs."""

import subprocess
import sys


def test_the_plugin_loads_without_torch_transformers_scipy_or_deepeval() -> None:
    heavy = ("torch", "transformers", "scipy", "statsmodels", "deepeval", "matplotlib", "pandas", "vllm")
    code = f"import sys, evalkit.plugin; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
