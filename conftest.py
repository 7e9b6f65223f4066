"""Top-level pytest configuration: offline, telemetry-free defaults for every run."""

import os

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DEEPEVAL_TELEMETRY_OPT_OUT": "YES",
    "DEEPEVAL_DISABLE_DOTENV": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

# The evaluation plugin (options, parametrization of tests/eval, summary, gates). It is inert in runs
# that collect no evaluation test; tests/eval itself is excluded from plain `pytest` (pytest.ini).
# pytester runs the plugin's own end-to-end tests (tests/e2e/test_plugin.py).
pytest_plugins = ["evalkit.plugin", "pytester"]
