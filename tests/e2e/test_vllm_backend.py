"""The vLLM backend against the transformers backend, on the embedded model in fp32 and real prompts.

Runs only where vllm imports (the environment of ``bash scripts/setup_vllm_cpu.sh``, or a GPU machine with
the ``[gpu]`` extra); the default install and CI skip it with that reason. Loading the engine compiles the
model (2-4 minutes on a 2-core CPU); the whole module took 19 minutes on a 2-core VM shared with other jobs.

What is compared (:mod:`evalkit.inference.agreement`): the same Spider prompts' generated SQL and its
execution verdicts, and the same 5-shot MMLU questions' letter log-likelihoods and argmax letters. The
bounds are what fp32 kernels summing in another order allow: log-likelihoods within 1e-3 (measured: about
3e-5), an argmax letter may differ only where the two best letters are closer than that; generated SQL
may differ only where two next tokens nearly tie, which greedy decoding then follows, so 90% of the texts
and of their verdicts must be identical (measured: 24/24 identical; docs/benchmarks.md#vllm-on-cpu).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import vllm  # noqa: F401
except Exception as exc:  # not installed, or a CUDA torchvision breaking its import (scripts/setup_vllm_cpu.sh)
    pytest.skip(f"vllm is not importable ({type(exc).__name__}: {exc}). This test needs vLLM's environment: "
                "bash scripts/setup_vllm_cpu.sh (docs/engine.md#vllm-on-cpu).", allow_module_level=True)

from evalkit.data.mmlu import SUBJECTS, load_mmlu
from evalkit.data.spider import load_spider
from evalkit.inference import as_backend, choice_logprobs, generate
from evalkit.inference.agreement import compare_generations, compare_scores
from evalkit.inference.vllm_backend import VLLMBackend
from evalkit.models import LoadedModel, load_model, materialise_embedded
from evalkit.prompts import MMLU_CONTINUATIONS, mmlu_kshot_prompt, spider_chat_prompt

pytestmark = [pytest.mark.model, pytest.mark.slow]
TOLERANCE = 1e-3  # |Δ log-prob| between two fp32 implementations of the same model


@pytest.fixture(scope="module")
def vllm_backend() -> VLLMBackend:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; the embedded model needs far less
    from vllm.platforms import current_platform

    return VLLMBackend.load("smollm2-135m", dtype="float32", enable_lora=not current_platform.is_cpu())


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA on the embedded model with random, non-zero weights (no training): it changes every score."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(materialise_embedded()),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "random-lora"
    model.save_pretrained(folder)
    return folder


def test_runs_on_vllms_platform_in_fp32_under_its_own_cache_keys(vllm_backend: VLLMBackend,
                                                                  embedded_model: LoadedModel) -> None:
    from vllm.platforms import current_platform

    facts = vllm_backend.describe()
    assert facts["device"] == current_platform.device_type and facts["dtype"] == "float32"
    assert facts["backend"] == "vllm" and facts["fingerprint"] == embedded_model.fingerprint
    key = vllm_backend.model_key()
    assert key.startswith("vllm:") and key != as_backend(embedded_model).model_key()


def test_spider_generation_agrees_with_transformers(vllm_backend: VLLMBackend, embedded_model: LoadedModel) -> None:
    dev = [e for e in load_spider("dev") if e.db_path is not None]
    examples = dev[::len(dev) // 24][:24]  # spread over dev's databases
    prompts = [spider_chat_prompt(e, embedded_model.tokenizer) for e in examples]
    hf = generate(embedded_model, prompts, max_new_tokens=128, stop=[";"], progress=False)
    vl = generate(vllm_backend, prompts, max_new_tokens=128, stop=[";"], progress=False)
    agreement = compare_generations(examples, hf, vl)
    print(agreement.line(), *agreement.differences, sep="\n")
    assert agreement.same_text >= 0.9 * agreement.n, agreement.differences
    assert agreement.same_verdict >= 0.9 * agreement.n, agreement.differences


def test_mmlu_loglikelihoods_agree_with_transformers(vllm_backend: VLLMBackend, embedded_model: LoadedModel) -> None:
    subjects = list(SUBJECTS)[::6]
    prompts = [mmlu_kshot_prompt(q) for s in subjects for q in load_mmlu("test", subjects=[s])[:2]]
    hf = choice_logprobs(embedded_model, prompts, list(MMLU_CONTINUATIONS), progress=False)
    vl = choice_logprobs(vllm_backend, prompts, list(MMLU_CONTINUATIONS), progress=False)
    agreement = compare_scores(hf, vl)
    print(agreement.line(), *agreement.differences, sep="\n")
    assert agreement.max_abs_delta < TOLERANCE
    assert all(d["first_margin"] < 2 * TOLERANCE for d in agreement.differences), agreement.differences


def test_multi_token_and_empty_context_continuations_agree(vllm_backend: VLLMBackend,
                                                           embedded_model: LoadedModel) -> None:
    """Continuations of several tokens (one next-token query per token), a context ending in a space (moved
    to the continuation), and an empty context (the BOS token as context), as the harness scores them."""
    contexts = ["Question: What is 2 + 2?\nAnswer:", "The capital of France is ", ""]
    choices = [[" 4", " four apples", " A"], ["Paris", "Paris, France", "London"], ["Hello", " world", "SELECT 1"]]
    hf = choice_logprobs(embedded_model, contexts, choices, progress=False)
    vl = choice_logprobs(vllm_backend, contexts, choices, progress=False)
    assert compare_scores(hf, vl).max_abs_delta < TOLERANCE


def test_lora_adapter_served_per_request_agrees_with_peft(vllm_backend: VLLMBackend, random_adapter: Path) -> None:
    """The same engine serves the base and an adapter (with_adapter, no reload); the adapter's scores equal
    transformers + PEFT's, and differ from the base's."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():  # an adapter step there takes minutes (docs/benchmarks.md#vllm-on-cpu)
        pytest.skip("LoRA through vLLM's CPU build is too slow for this test; its agreement with PEFT is measured "
                    "by a plugin run, docs/benchmarks.md#vllm-on-cpu")
    prompts = [mmlu_kshot_prompt(q) for q in load_mmlu("test", subjects=["anatomy"])[:4]]
    peft_model = load_model("smollm2-135m", random_adapter)
    served = vllm_backend.with_adapter(random_adapter)
    assert served.llm is vllm_backend.llm and served.model_key() != vllm_backend.model_key()
    reference = choice_logprobs(peft_model, prompts, list(MMLU_CONTINUATIONS), progress=False)
    adapted = choice_logprobs(served, prompts, list(MMLU_CONTINUATIONS), progress=False)
    base = choice_logprobs(vllm_backend, prompts, list(MMLU_CONTINUATIONS), progress=False)
    assert compare_scores(reference, adapted).max_abs_delta < TOLERANCE
    assert compare_scores(base, adapted).max_abs_delta > 100 * TOLERANCE
