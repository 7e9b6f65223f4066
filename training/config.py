"""A training run's configuration: one YAML or JSON file, validated before torch, data or a model loads.

Why strict validation: a typo such as ``lora: {rank: 32}`` would otherwise be ignored and the run would
spend hours training with the default rank. So every section forbids unknown keys, values are checked
by type without coercion (``epochs: "3"`` is an error, not 3), and every problem is reported at once in
one :class:`~evalkit.errors.ConfigError` that names the file, the key and the fix.

YAML quirk handled here: PyYAML follows YAML 1.1, where ``2e-4`` (no dot) is a *string*. The loader
below reads it as a float, as YAML 1.2 and every human do.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evalkit.errors import ConfigError
from evalkit.models import EMBEDDED

SPLIT_HINT = ("use data.split: train (or train_spider / train_others), or set data.allow_eval_split: true "
              "to train on evaluation data on purpose (run.json and every report then say so)")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelSection(_Section):
    """The base model: the embedded alias, a Hugging Face hub id, or a local transformers folder."""

    base: str = "smollm2-135m"


class DataSection(_Section):
    """Which Spider examples to train on."""

    split: Literal["train", "train_spider", "train_others", "dev"] = "train"
    sample: Annotated[int, Field(gt=0)] | None = None
    seed: int = 0
    allow_eval_split: bool = False
    data_dir: str | None = None


class PromptSection(_Section):
    """Arguments of ``evalkit.prompts.spider_chat_messages``: the same prompt evaluation uses."""

    sample_rows: Annotated[int, Field(ge=0)] = 0


class LoraSection(_Section):
    """peft ``LoraConfig`` fields."""

    r: Annotated[int, Field(gt=0)] = 16
    alpha: Annotated[float, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    # [all-linear] is peft's shorthand for every linear layer except the output head.
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class QuantizationSection(_Section):
    """``4bit`` is QLoRA: bitsandbytes NF4 with double quantisation; it needs CUDA."""

    mode: Literal["none", "4bit"] = "none"
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class TrainerSection(_Section):
    """trl ``SFTConfig`` fields, under short names."""

    epochs: Annotated[int, Field(gt=0)] = 1
    max_steps: Annotated[int, Field(gt=0)] | None = None
    learning_rate: Annotated[float, Field(gt=0)] = 2e-4
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
                       "polynomial", "inverse_sqrt"] = "linear"
    warmup: Annotated[float, Field(ge=0)] = 0
    batch_size: Annotated[int, Field(gt=0)] = 4
    gradient_accumulation: Annotated[int, Field(gt=0)] = 1
    max_length: Annotated[int, Field(gt=0)] = 1024
    seed: int = 42
    gradient_checkpointing: bool = False
    optim: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
                   "adafactor", "sgd"] = "adamw_torch"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    logging_steps: Annotated[int, Field(gt=0)] = 1
    save_steps: Annotated[int, Field(gt=0)] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TrainingConfig(_Section):
    """One training run. ``output_dir`` is the only required key; relative paths are taken from the cwd."""

    output_dir: str
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    prompt: PromptSection = PromptSection()
    lora: LoraSection = LoraSection()
    quantization: QuantizationSection = QuantizationSection()
    trainer: TrainerSection = TrainerSection()

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainingConfig:
        if self.data.split == "dev" and not self.data.allow_eval_split:
            raise ValueError(f"data.split: 'dev' is the evaluation split; refusing to train on it. Fix: {SPLIT_HINT}")
        if self.quantization.mode == "4bit" and self.trainer.device == "cpu":
            raise ValueError("quantization.mode: '4bit' (QLoRA, bitsandbytes NF4) needs CUDA but trainer.device is "
                             "'cpu'. Fix: set quantization.mode: none on CPU, or run on a GPU.")
        return self


def _yaml_loader() -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
    )
    return Loader


def _section_class(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The pydantic class that owns the key at ``loc`` (for listing valid keys)."""
    cls: type[BaseModel] = TrainingConfig
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        cls = annotation
    return cls


# The names these settings have in transformers/peft/trl and in the seed notebooks, for "did you mean".
HF_NAMES = {
    "rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "gradient_accumulation",
    "lr": "learning_rate", "lr_scheduler_type": "scheduler", "warmup_ratio": "warmup", "warmup_steps": "warmup",
    "max_seq_length": "max_length", "load_in_4bit": "mode", "bnb_4bit_compute_dtype": "compute_dtype",
}

_TYPE_FIXES = {
    "int_type": "write a whole number without quotes, e.g. 16",
    "float_type": "write a number without quotes, e.g. 0.0002 or 2e-4",
    "bool_type": "write true or false without quotes",
    "string_type": "write text (quote it if it looks like a number)",
    "list_type": "write a list, e.g. [q_proj, v_proj]",
    "model_type": "write a mapping of keys under this section",
    "missing": "add this key",
    "literal_error": "use one of the values listed",
}


def _describe(error: dict[str, Any]) -> str:
    """One line per pydantic error: the dotted key, what is wrong with the value, and how to fix it."""
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        cls = _section_class(loc)
        valid = list(cls.model_fields)
        name = str(loc[-1])
        close = [HF_NAMES[name]] if HF_NAMES.get(name) in valid else difflib.get_close_matches(name, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{key}: unknown key. Fix: {hint}valid keys here are {', '.join(valid)}."
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    shown = f" (got {got!r}, a {type(got).__name__})" if kind != "missing" else ""
    fix = _TYPE_FIXES.get(kind, "see docs/training.md for allowed values")
    return f"{key}: {error['msg']}{shown}. Fix: {fix}."


def _check_paths(config: TrainingConfig) -> list[str]:
    """Files the run needs that can be checked without loading anything."""
    problems = []
    base = config.model.base
    if base not in EMBEDDED and base.startswith((".", "/", "~")):
        path = Path(base).expanduser()
        if not (path / "config.json").is_file():
            problems.append(f"model.base: {base!r} is not a folder with config.json. Fix: point it at a folder "
                            f"written by save_pretrained, use a hub id such as Qwen/Qwen2-7B-Instruct, or the alias "
                            f"{next(iter(EMBEDDED))!r}.")
    if config.data.data_dir is not None and not (Path(config.data.data_dir).expanduser() / "spider").is_dir():
        problems.append(f"data.data_dir: {config.data.data_dir!r} has no spider/ folder. Fix: point it at the data "
                        "folder (the one holding spider/ and spider_syn/), or remove the key to use TRADEOFF_DATA_DIR.")
    return problems


def parse_config(raw: Any, source: str = "<config>") -> TrainingConfig:
    """Validate an already-parsed mapping; raise one ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (output_dir, model, data, "
                          f"lora, ...), not {type(raw).__name__}. "
                          "Fix: start from training/configs/smollm2-135m-cpu.yaml.")
    try:
        config = TrainingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
    else:
        problems = _check_paths(config)
    if problems:
        header = f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the training config"
        raise ConfigError(header + ":\n  - " + "\n  - ".join(problems))
    return config


def load_config(path: str | Path) -> TrainingConfig:
    """Read a ``.yaml``/``.yml`` or ``.json`` training config and validate it (see :func:`parse_config`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Training config not found: {path}. Fix: pass an existing file, e.g. "
                          "--config training/configs/smollm2-135m-cpu.yaml.")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_yaml_loader())  # noqa: S506
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc}). "
                          "Fix: correct the syntax at the position shown.") from exc
    return parse_config(raw, str(path))
