"""tradeoff's evaluation kit: what did specialising a model cost it?

The package is flat on purpose; each module holds one concern:

- ``evalkit.data``: Spider and MMLU loaders over the real files (``data/spider.py``, ``data/mmlu.py``).
- ``evalkit.models``: base model / base + LoRA adapter loading, with fingerprints for caching.
- ``evalkit.errors``: the exception types; every message names the thing that is wrong and the fix.
- ``evalkit.paths``: where data and caches live (``--data-dir`` > ``TRADEOFF_DATA_DIR`` > ``datasets_cache/``).
"""

__version__ = "0.1.0"
