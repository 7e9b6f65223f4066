"""Models: where a base comes from, its tokenizer fixes, quantisation, fingerprints, and loading.

:func:`load_model` gives a transformers :class:`LoadedModel` (base, or base + LoRA adapter). Fingerprints
(:func:`base_fingerprint`) are computed from files alone, so a baseline check needs no weights loaded.
Training loads its base through :func:`resolve_base`, :func:`load_tokenizer` and :func:`nf4_config` too.
"""

from evalkit.models.fingerprint import base_fingerprint, combined_fingerprint, directory_fingerprint
from evalkit.models.loading import LoadedModel, check_adapter, load_model
from evalkit.models.provenance import PROVENANCE_FILE, adapter_provenance
from evalkit.models.resolve import (
    DEFAULT_MODEL,
    EMBEDDED,
    fix_tokenizer,
    load_tokenizer,
    materialise_embedded,
    nf4_config,
    DTYPES,
    cpu_has_native_bf16,
    pick_device,
    pick_dtype,
    resolve_base,
)

__all__ = [
    "DEFAULT_MODEL", "EMBEDDED", "PROVENANCE_FILE", "LoadedModel", "adapter_provenance", "base_fingerprint",
    "check_adapter", "combined_fingerprint", "directory_fingerprint", "fix_tokenizer", "load_model",
    "load_tokenizer", "materialise_embedded", "nf4_config", "pick_device", "pick_dtype", "DTYPES", "cpu_has_native_bf16", "resolve_base",
]
