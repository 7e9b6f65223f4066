"""The vLLM backend (CUDA GPUs): the same ``generate`` / ``choice_logprobs`` contract, for many adapters or big models.

Installed by the ``[gpu]`` extra and imported only when :meth:`VLLMBackend.load` is called; nothing else
imports vLLM. vLLM batches continuously, shards a model
over GPUs (``tensor_parallel_size``), serves LoRA adapters per request, and reuses shared prompt prefixes
through its own prefix cache (``enable_prefix_caching``), so this module only chunks the requests (one
cache write per chunk, for crash safety) and translates results.

Same semantics as the transformers backend: prompts and (context, continuation) pairs are tokenised by
:func:`evalkit.inference.tokens.encode_pairs` (the harness's split, no BOS); a continuation's score is the
sum of vLLM's ``prompt_logprobs`` over its tokens, as lm-evaluation-harness's vLLM backend reads them;
generation is greedy (temperature 0) and cut before the earliest stop string. Results are cached under
their own engine version, because GPU kernels in bf16 do not reproduce CPU fp32 numbers bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError
from evalkit.inference.tokens import cut_at_stop, encode_all, encode_pairs
from evalkit.models import DEFAULT_MODEL, base_fingerprint, check_adapter, combined_fingerprint, directory_fingerprint
from evalkit.models import fix_tokenizer, resolve_base

CHUNK = 512  # requests per vLLM call: one cache write each; vLLM schedules within a call itself


def _chunks(count: int, batch_size: int | None) -> Iterator[list[int]]:
    size = batch_size or CHUNK
    for start in range(0, count, size):
        yield list(range(start, min(count, start + size)))


class VLLMBackend:
    """A vLLM engine for one base model and at most one LoRA adapter (the inference protocol)."""

    engine_versions = {"generate": "vllm-1", "loglikelihood": "vllm-1"}

    def __init__(self, llm: Any, spec: str, adapter: Path | None, base_fp: str, adapter_fp: str | None) -> None:
        self.llm = llm
        self.spec = spec
        self.adapter = adapter
        self.tokenizer = fix_tokenizer(llm.get_tokenizer())
        self.base_fingerprint = base_fp
        self.adapter_fingerprint = adapter_fp
        self.dtype = str(llm.llm_engine.model_config.dtype).replace("torch.", "")
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, str(adapter))

    @classmethod
    def load(cls, spec: str = DEFAULT_MODEL, adapter: str | Path | None = None, *, tensor_parallel_size: int = 1,
             gpu_memory_utilization: float = 0.85, max_lora_rank: int = 64, dtype: str = "auto",
             cache_dir: str | Path | None = None, **engine_args: Any) -> VLLMBackend:
        """Load ``spec`` (and optionally one LoRA ``adapter``) into a vLLM engine."""
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ModelLoadError("The vLLM backend needs vllm. Fix: pip install -e '.[gpu]' on a GPU machine "
                                 "(docs/engine.md has the CPU build), or use the transformers backend.") from exc
        source, _ = resolve_base(spec, cache_dir)
        adapter_path = check_adapter(adapter) if adapter else None
        llm = LLM(model=source, tensor_parallel_size=tensor_parallel_size, dtype=dtype, seed=0,
                  gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True,
                  enable_lora=adapter_path is not None, max_lora_rank=max_lora_rank, **engine_args)
        return cls(llm, spec, adapter_path, base_fingerprint(spec, cache_dir),
                   directory_fingerprint(adapter_path, cache_dir) if adapter_path else None)

    @property
    def fingerprint(self) -> str:
        return combined_fingerprint(self.base_fingerprint, self.adapter_fingerprint)

    def model_key(self) -> str:
        return f"vllm:{self.fingerprint}:{self.dtype}"

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "adapter": str(self.adapter) if self.adapter else None,
                "base_fingerprint": self.base_fingerprint, "adapter_fingerprint": self.adapter_fingerprint,
                "fingerprint": self.fingerprint, "device": "vllm", "dtype": self.dtype, "backend": "vllm",
                "quantization": None}

    def _max_length(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def generate_batches(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str] = (),
                         batch_size: int | None = None, share_prefix: bool = True) -> Iterator[list[tuple[int, str]]]:
        """``share_prefix`` is vLLM's own prefix cache here (always on); the flag is accepted for the protocol."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = encode_all(self.tokenizer, prompts)
        window = self._max_length() - max_new_tokens
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=[s for s in stop if s] or None)
        for chunk in _chunks(len(prompts), batch_size):
            inputs = [TokensPrompt(prompt_token_ids=encoded[prompts[i]][-window:]) for i in chunk]
            outputs = self.llm.generate(inputs, params, lora_request=self.lora_request, use_tqdm=False)
            yield [(i, cut_at_stop(out.outputs[0].text, stop)) for i, out in zip(chunk, outputs)]

    def loglikelihood_batches(self, pairs: Sequence[tuple[str, str]], *, batch_size: int | None = None,
                              share_prefix: bool = True) -> Iterator[list[tuple[int, float]]]:
        """``share_prefix`` is vLLM's own prefix cache here (always on); the flag is accepted for the protocol."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = encode_pairs(self.tokenizer, pairs)
        limit = self._max_length()
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
        for chunk in _chunks(len(pairs), batch_size):
            sequences = [(encoded[i][0] + encoded[i][1])[-limit:] for i in chunk]
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params,
                                        lora_request=self.lora_request, use_tqdm=False)
            batch = []
            for i, tokens, out in zip(chunk, sequences, outputs):
                n = len(encoded[i][1])
                per_token: list[Any] = out.prompt_logprobs[-n:]
                batch.append((i, sum(entry[token].logprob for token, entry in zip(tokens[-n:], per_token))))
            yield batch
