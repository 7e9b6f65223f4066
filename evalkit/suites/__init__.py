"""The benchmark suites, one module each, and the registry the plugin iterates over.

Built in: ``spider`` (:mod:`evalkit.suites.spider`, the target skill), ``mmlu``
(:mod:`evalkit.suites.mmlu`, general knowledge) and the forgetting family (``hellaswag``,
``arc_challenge``, ``arc_easy``, ``winogrande``, ``piqa``, ``openbookqa``: lm-evaluation-harness's
commonsense tasks, :mod:`evalkit.suites.multiple_choice`). A user adds a multiple-choice suite from a JSONL file
with ``--suite NAME=PATH`` (:mod:`evalkit.suites.choice_file`). Adding a built-in suite is one new module
whose class is listed in :data:`REGISTRY`; its options, markers, gates and report sections follow.
"""

from evalkit.suites.base import Example, Generation, LogLikelihoods, Scored, Setting, Suite
from evalkit.suites import multiple_choice
from evalkit.suites.arc import ARCChallengeSuite, ARCEasySuite
from evalkit.suites.choice_file import ChoiceFileSuite, parse_suite_spec
from evalkit.suites.hellaswag import HellaSwagSuite
from evalkit.suites.mmlu import MMLUSuite
from evalkit.suites.openbookqa import OpenBookQASuite
from evalkit.suites.piqa import PIQASuite
from evalkit.suites.spider import SpiderSuite
from evalkit.suites.winogrande import WinoGrandeSuite
from evalkit.summary import Layout

REGISTRY: dict[str, type[Suite]] = {cls.name: cls for cls in (SpiderSuite, MMLUSuite, HellaSwagSuite, ARCChallengeSuite,
                                                              ARCEasySuite, WinoGrandeSuite, PIQASuite, OpenBookQASuite)}
# A family names its suites together: --suites=forgetting, -m forgetting, the gate forgetting.delta.
FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(name for name, cls in REGISTRY.items() if cls.family == family)
    for family in dict.fromkeys(cls.family for cls in REGISTRY.values() if cls.family)
}

# How a family's macro average is titled in the summary.
FAMILY_LAYOUTS: dict[str, Layout] = {multiple_choice.FAMILY: multiple_choice.FAMILY_LAYOUT}

__all__ = ["FAMILIES", "FAMILY_LAYOUTS", "REGISTRY", "ChoiceFileSuite", "Example", "Generation", "LogLikelihoods",
           "Scored", "Setting", "Suite", "parse_suite_spec"]
