"""The vLLM backend (CUDA GPUs): the same ``generate`` / ``choice_logprobs`` contract, for many adapters or big models.

Installed by the ``[gpu]`` extra and imported only by :func:`load_vllm` (and by the front end for a model
that :func:`load_vllm` returned); CPU runs never import vLLM. vLLM batches continuously, shards a model
over GPUs (``tensor_parallel_size``), serves LoRA adapters per request, and reuses shared prompt prefixes
through its own prefix cache (``enable_prefix_caching``), so this module only chunks the requests (one
cache write per chunk, for crash safety) and translates results.

Same semantics as the transformers backend: prompts and (context, continuation) pairs are tokenised by
:func:`evalkit.inference.engine.encode_pairs` (the harness's split, no BOS); a continuation's score is the
sum of vLLM's ``prompt_logprobs`` over its tokens, as lm-evaluation-harness's vLLM backend reads them;
generation is greedy (temperature 0) and cut before the earliest stop string. Results are cached under
their own engine version, because GPU kernels in bf16 do not reproduce CPU fp32 numbers bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError
from evalkit.inference.engine import _encode_all, cut_at_stop, encode_pairs
from evalkit.models import DEFAULT_MODEL, LoadedModel, _directory_fingerprint, _fix_tokenizer, _resolve_base
from evalkit.paths import cache_dir as resolve_cache_dir

ENGINE_VERSIONS = {"generate": "vllm-1", "loglikelihood": "vllm-1"}  # as engine.ENGINE_VERSIONS
CHUNK = 512  # requests per vLLM call: one cache write each; vLLM schedules within a call itself


def load_vllm(spec: str = DEFAULT_MODEL, adapter: str | Path | None = None, *, tensor_parallel_size: int = 1,
              gpu_memory_utilization: float = 0.85, max_lora_rank: int = 64, dtype: str = "auto",
              cache_dir: str | Path | None = None, **engine_args: Any) -> LoadedModel:
    """Load ``spec`` (and optionally one LoRA ``adapter``) into a vLLM engine, as a :class:`LoadedModel`."""
    try:
        from vllm import LLM
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise ModelLoadError("The vLLM backend needs vllm and a CUDA GPU. Fix: pip install -e '.[gpu]' on a GPU "
                             "machine, or use evalkit.models.load_model (transformers) instead.") from exc
    source, local = _resolve_base(spec, cache_dir)
    adapter_path = Path(adapter).expanduser() if adapter else None
    if adapter_path is not None and not (adapter_path / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter_path} has no adapter_config.json, so it is not a PEFT adapter. "
                             "Fix: pass the folder written by trainer.save_model.")
    llm = LLM(model=source, tensor_parallel_size=tensor_parallel_size, dtype=dtype, seed=0,
              gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True,
              enable_lora=adapter_path is not None, max_lora_rank=max_lora_rank, **engine_args)
    memo = resolve_cache_dir(cache_dir)
    base_fp = _directory_fingerprint(local, memo) if local is not None else f"hub:{spec}"
    return LoadedModel(
        model=llm, tokenizer=_fix_tokenizer(llm.get_tokenizer()), spec=spec, adapter=adapter_path, device="cuda",
        base_fingerprint=base_fp,
        adapter_fingerprint=_directory_fingerprint(adapter_path, memo) if adapter_path is not None else None,
        extra={"backend": "vllm", "dtype": str(llm.llm_engine.model_config.dtype).replace("torch.", ""),
               "lora_request": LoRARequest("adapter", 1, str(adapter_path)) if adapter_path is not None else None},
    )


def model_key(model: LoadedModel) -> str:
    return f"vllm:{model.fingerprint}:{model.extra['dtype']}"


def _max_length(model: LoadedModel) -> int:
    return int(model.model.llm_engine.model_config.max_model_len)


def _chunks(count: int, batch_size: int | None) -> Iterator[list[int]]:
    size = batch_size or CHUNK
    for start in range(0, count, size):
        yield list(range(start, min(count, start + size)))


def generate_batches(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str] = (),
                     batch_size: int | None = None, share_prefix: bool = True) -> Iterator[list[tuple[int, str]]]:
    """``share_prefix`` is vLLM's own prefix cache here (always on); the flag is accepted for the same API."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    encoded = _encode_all(model.tokenizer, prompts)
    window = _max_length(model) - max_new_tokens
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=[s for s in stop if s] or None)
    for chunk in _chunks(len(prompts), batch_size):
        inputs = [TokensPrompt(prompt_token_ids=encoded[prompts[i]][-window:]) for i in chunk]
        outputs = model.model.generate(inputs, params, lora_request=model.extra["lora_request"], use_tqdm=False)
        yield [(i, cut_at_stop(out.outputs[0].text, stop)) for i, out in zip(chunk, outputs)]


def loglikelihood_batches(model: LoadedModel, pairs: Sequence[tuple[str, str]], *, batch_size: int | None = None,
                          share_prefix: bool = True) -> Iterator[list[tuple[int, float]]]:
    """``share_prefix`` is vLLM's own prefix cache here (always on); the flag is accepted for the same API."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    encoded = encode_pairs(model.tokenizer, pairs)
    limit = _max_length(model)
    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
    for chunk in _chunks(len(pairs), batch_size):
        sequences = [(encoded[i][0] + encoded[i][1])[-limit:] for i in chunk]
        outputs = model.model.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params,
                                       lora_request=model.extra["lora_request"], use_tqdm=False)
        batch = []
        for i, tokens, out in zip(chunk, sequences, outputs):
            n = len(encoded[i][1])
            per_token: list[Any] = out.prompt_logprobs[-n:]
            batch.append((i, sum(entry[token].logprob for token, entry in zip(tokens[-n:], per_token))))
        yield batch
