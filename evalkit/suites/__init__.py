"""The benchmark suites, one module each, and the registry the plugin iterates over.

Built in: ``spider`` (:mod:`evalkit.suites.spider`, the target skill) and ``mmlu``
(:mod:`evalkit.suites.mmlu`, general knowledge). A user adds a multiple-choice suite from a JSONL file
with ``--suite NAME=PATH`` (:mod:`evalkit.suites.choice_file`). Adding a built-in suite is one new module
whose class is listed in :data:`REGISTRY`; its options, markers, gates and report sections follow.
"""

from evalkit.suites.base import Example, Generation, LogLikelihoods, Scored, Setting, Suite
from evalkit.suites.choice_file import ChoiceFileSuite, parse_suite_spec
from evalkit.suites.mmlu import MMLUSuite
from evalkit.suites.spider import SpiderSuite

REGISTRY: dict[str, type[Suite]] = {cls.name: cls for cls in (SpiderSuite, MMLUSuite)}

__all__ = ["REGISTRY", "ChoiceFileSuite", "Example", "Generation", "LogLikelihoods", "Scored", "Setting", "Suite",
           "parse_suite_spec"]
