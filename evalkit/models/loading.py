"""Load a base model, or a base model plus a LoRA adapter, for evaluation with transformers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError
from evalkit.models.fingerprint import base_fingerprint, combined_fingerprint, directory_fingerprint
from evalkit.models.resolve import DEFAULT_MODEL, load_tokenizer, nf4_config, pick_device, pick_dtype, resolve_base


@dataclass
class LoadedModel:
    """A ready-to-run transformers model with its tokenizer and the identity used to key cached results."""

    model: Any
    tokenizer: Any
    spec: str
    adapter: Path | None
    device: str
    base_fingerprint: str
    adapter_fingerprint: str | None
    quantization: str | None = None

    @property
    def fingerprint(self) -> str:
        """One id for (base weights, adapter weights)."""
        return combined_fingerprint(self.base_fingerprint, self.adapter_fingerprint)

    @property
    def dtype(self) -> str:
        return str(getattr(self.model, "dtype", "unknown")).replace("torch.", "")

    def describe(self) -> dict[str, Any]:
        """The facts a report keeps about the model."""
        return {"spec": self.spec, "adapter": str(self.adapter) if self.adapter else None,
                "base_fingerprint": self.base_fingerprint, "adapter_fingerprint": self.adapter_fingerprint,
                "fingerprint": self.fingerprint, "device": self.device, "dtype": self.dtype,
                "backend": "hf", "quantization": self.quantization}


def worker_device(worker: str | None, cuda_devices: int) -> str | None:
    """The CUDA device of pytest-xdist worker ``worker`` (``gw0``, ``gw1``, ...; xdist's
    ``PYTEST_XDIST_WORKER``) among ``cuda_devices`` visible devices: worker i uses ``cuda:i``, round-robin
    when there are more workers than devices. Without it every worker's model lands on the current device,
    GPU 0, and ``-n K`` on K GPUs uses one. ``CUDA_VISIBLE_DEVICES`` is respected as CUDA respects it: the
    visible devices are renumbered from 0, so ``cuda:i`` is the i-th of them. None outside xdist or
    without CUDA devices."""
    if not worker or not worker.startswith("gw") or not worker[2:].isdigit() or cuda_devices < 1:
        return None
    return f"cuda:{int(worker[2:]) % cuda_devices}"


def workers_note(workers: int, cuda_devices: int) -> str | None:
    """What the run's header says about ``workers`` xdist workers on ``cuda_devices`` devices, so that
    sharing a GPU is known before a worker runs out of its memory; None when there is nothing to say."""
    if workers < 2 or cuda_devices < 1:
        return None
    if workers <= cuda_devices:
        return f"{workers} pytest-xdist workers, one CUDA device each: worker i (gw<i>) uses cuda:i."
    return (f"{workers} pytest-xdist workers share {cuda_devices} CUDA device(s) round-robin: worker i (gw<i>) uses "
            f"cuda:(i mod {cuda_devices}), so a device holds up to {-(-workers // cuda_devices)} models at once. "
            f"Fix, if they do not fit: -n {cuda_devices}.")


def xdist_header(workers: object) -> list[str]:
    """The header line for ``-n workers`` (pytest-xdist's ``numprocesses``) on this machine's CUDA devices."""
    if not isinstance(workers, int) or workers < 2:
        return []
    import torch

    note = workers_note(workers, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    return [f"tradeoff: {note}"] if note else []


def check_adapter(adapter: str | Path) -> Path:
    """The adapter folder, or a ModelLoadError when it is not a PEFT adapter."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"Adapter folder not found: {path}. Fix: pass the folder that holds adapter_config.json "
                             "(e.g. runs/<name>/epoch-1).")
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"{path} has no adapter_config.json, so it is not a PEFT adapter. "
                             "Fix: pass a folder written by trainer.save_model / model.save_pretrained of a PeftModel.")
    return path


def _load_adapter(model: Any, adapter: Path, base_name: str) -> Any:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        trained_on = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path", "unknown")
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
    dtype: str = "auto",
) -> LoadedModel:
    """Load ``spec`` (alias, local folder or hub id), optionally with a LoRA ``adapter``, in eval mode.

    ``dtype`` ``auto`` is bf16 on CUDA (fp16 where unsupported) and fp32 on CPU
    (:func:`~evalkit.models.resolve.pick_dtype`). On CPU, sdpa attention is replaced by
    :mod:`evalkit.models.attention` (the same attention without copying the KV cache for grouped heads;
    docs/benchmarks.md has the measured effect). ``load_in_4bit`` uses bitsandbytes NF4 and needs CUDA.
    """
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    if device == "cuda":
        import torch

        device = worker_device(os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count()) or device
    kind = device.split(":")[0]  # "cuda:1" is a CUDA device
    source, local = resolve_base(spec, cache_dir)
    adapter_path = check_adapter(adapter) if adapter else None
    kwargs: dict[str, Any] = {"dtype": pick_dtype(kind, dtype)}
    if load_in_4bit:
        if kind != "cuda":
            raise ModelLoadError("load_in_4bit=True needs a CUDA GPU (bitsandbytes NF4). "
                                 "Fix: load without 4-bit on this machine, or run on a GPU.")
        kwargs["quantization_config"] = nf4_config(kwargs["dtype"])
        kwargs["device_map"] = {"": int(device.partition(":")[2] or 0)}
    try:
        tokenizer = load_tokenizer(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "YES", "true")
        raise ModelLoadError(
            f"Cannot load model {spec!r}: {str(exc).splitlines()[0][:300]}. "
            + ("Fix: HF_HUB_OFFLINE is set and the model is not in the local hub cache; download it first "
               "(hf download <model id>) or pass a local folder." if offline or local is None else
               "Fix: check that the folder holds config.json and weights.")
        ) from exc
    if not load_in_4bit:
        model.to(device)
    if device == "cpu" and getattr(model.config, "_attn_implementation", None) == "sdpa":
        from evalkit.models.attention import register

        model.set_attn_implementation(register())
    if adapter_path is not None:
        model = _load_adapter(model, adapter_path, spec)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, adapter=adapter_path, device=device,
                       base_fingerprint=base_fingerprint(spec, cache_dir),
                       adapter_fingerprint=directory_fingerprint(adapter_path, cache_dir) if adapter_path else None,
                       quantization="nf4" if load_in_4bit else None)
