"""Dataset loaders over the real files: Spider 1.0 (``spider.py``) and MMLU (``mmlu.py``).

``python -m evalkit.data fetch --from ../shared/data`` materialises ``datasets_cache/`` from a local
copy and verifies its checksums (``fetch.py``).
"""

from evalkit.data.mmlu import MMLUQuestion, load_mmlu, load_shots
from evalkit.data.spider import SpiderExample, load_spider

__all__ = ["MMLUQuestion", "SpiderExample", "load_mmlu", "load_shots", "load_spider"]
