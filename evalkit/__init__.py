"""tradeoff's evaluation kit: what did specialising a model cost it?

Data flows one way, each module holding one concern:

- ``data/``: Spider and MMLU loaders over the real files; ``prompts``: every prompt, named in a registry.
- ``models/``: where a base comes from, fingerprints, loading (base, or base + LoRA adapter).
- ``inference/``: batched generation and log-likelihoods behind one backend protocol, over a crash-safe cache.
- ``metrics/``: the DeepEval metrics (Spider execution accuracy, multiple-choice accuracy), measured once;
  ``sandbox``: where model SQL runs.
- ``suites/``: each benchmark declared as data (Spider, MMLU, a user's JSONL), and their registry.
- ``config``, ``sampling``, ``runtime``, ``baseline``: one run's settings, sample, inference and base results.
- ``summary`` (the only aggregation; ``stats`` for the intervals), ``gates``, ``report/`` (text, files, plots),
  ``finish`` (the end of a run); ``plugin``: the pytest options and hooks that tie them together.
- ``readback`` (a report folder's tradeoff.json read back), ``integrations/`` (GitHub job summaries and
  annotations, JUnit properties, experiment trackers), ``cli``: the ``tradeoff`` command.
"""

__version__ = "0.1.0"
