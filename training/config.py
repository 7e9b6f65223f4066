"""A training run's configuration: one YAML or JSON file, validated before torch, data or a model loads.

Why strict validation: a typo such as ``lora: {rank: 32}`` would otherwise be ignored and the run would
spend hours training with the default rank. So every section forbids unknown keys, values are checked
by type without coercion (``epochs: "3"`` is an error, not 3), and every problem is reported at once in
one :class:`~evalkit.errors.ConfigError` that names the file, the key and the fix.

YAML quirk handled here: PyYAML follows YAML 1.1, where ``2e-4`` (no dot) is a *string*. The loader
below reads it as a float, as YAML 1.2 and every human do. A key given twice is an error (YAML and JSON
parsers keep the last one silently), and so is a number that is not finite.

What can be checked on disk without loading anything is checked too: ``output_dir`` can be created and
written, ``model.base`` is a folder or (offline) a model in the local hub cache, and each of
``lora.target_modules`` names a module of the base model when its weights are a local safetensors file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evalkit.data.files import decode_utf8
from evalkit.errors import ConfigError
from evalkit.paths import folder_problem
from evalkit.models import EMBEDDED

SPLIT_HINT = ("use data.split: train (or train_spider / train_others), or set data.allow_eval_split: true "
              "to train on evaluation data on purpose (run.json and every report then say so)")


RUN_FILE = "run.json"  # what a training run writes into its output_dir first
MAX_EPOCHS = 1000  # a LoRA fine-tune takes a handful; 10**12 would only end in a crash hours later
# numpy's generator, which transformers' set_seed seeds, takes 0 <= seed < 2**32: a 23-digit seed failed after loading.
Seed = Annotated[int, Field(ge=0, lt=2**32)]
MAX_VALUES = 10_000  # values a config may expand to; one holds a few dozen
SHOWN_CHARS = 80  # of a value quoted in an error message


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class ModelSection(_Section):
    """The base model: the embedded alias, a Hugging Face hub id, or a local transformers folder."""

    base: str = "smollm2-135m"


class DataSection(_Section):
    """Which Spider examples to train on."""

    split: Literal["train", "train_spider", "train_others", "dev"] = "train"
    sample: Annotated[int, Field(gt=0)] | None = None
    seed: Seed = 0
    allow_eval_split: bool = False
    data_dir: str | None = None


class PromptSection(_Section):
    """Arguments of ``evalkit.prompts.spider_chat_messages``: the same prompt evaluation uses."""

    sample_rows: Annotated[int, Field(ge=0)] = 0
    # "schema" in the file; pydantic's BaseModel has a method of that name.
    schema_style: Literal["create", "compact"] = Field("create", alias="schema")

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``spider_chat_messages``, as training.json records them."""
        return {"sample_rows": self.sample_rows, "schema": self.schema_style}


class LoraSection(_Section):
    """peft ``LoraConfig`` fields."""

    r: Annotated[int, Field(gt=0)] = 16
    alpha: Annotated[float, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    # [all-linear] is peft's shorthand for every linear layer except the output head.
    target_modules: Annotated[list[str], Field(min_length=1)] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class QuantizationSection(_Section):
    """``4bit`` is QLoRA: bitsandbytes NF4 with double quantisation; it needs CUDA."""

    mode: Literal["none", "4bit"] = "none"
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class TrainerSection(_Section):
    """trl ``SFTConfig`` fields, under short names."""

    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = 1
    max_steps: Annotated[int, Field(gt=0)] | None = None
    learning_rate: Annotated[float, Field(gt=0)] = 2e-4
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
                       "polynomial", "inverse_sqrt"] = "linear"
    warmup: Annotated[float, Field(ge=0)] = 0
    batch_size: Annotated[int, Field(gt=0)] = 4
    gradient_accumulation: Annotated[int, Field(gt=0)] = 1
    max_length: Annotated[int, Field(gt=0)] = 1024
    seed: Seed = 42
    gradient_checkpointing: bool = False
    optim: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
                   "adafactor", "sgd"] = "adamw_torch"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    logging_steps: Annotated[int, Field(gt=0)] = 1
    save_steps: Annotated[int, Field(gt=0)] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml", "dvclive"]] = []


class EvaluationSection(_Section):
    """Checkpoints scored against the base while training (training/scoring.py): the plugin's suites, samples
    and gates on one fixed paired sample. Names and gates are checked offline by :func:`_check_evaluation`."""

    suites: Annotated[list[str], Field(min_length=1)] = ["spider", "arc_easy"]
    # examples per stratum, as the plugin's --<suite>-sample (Spider: per hardness level)
    samples: dict[str, Annotated[int, Field(gt=0)]] = {}
    gates: list[str] = []
    every: Annotated[int, Field(gt=0)] | Literal["epoch"] = "epoch"
    select: Literal["gates", "none"] = "none"
    stop_when_cost_fails: Annotated[int, Field(gt=0)] | None = None
    gain: str | None = None  # the suite whose delta is the skill gained (default: the target suite, spider)
    cost: str | None = None  # the suite or family whose delta is the cost (default: forgetting, else the retention suite)
    seed: Annotated[int, Field(ge=0)] = 0
    max_new_tokens: Annotated[int, Field(gt=0)] = 128
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95

    @model_validator(mode="after")
    def _needs_gates(self) -> EvaluationSection:
        if self.select == "gates" and not self.gates:
            raise ValueError("evaluation.select: 'gates' chooses the checkpoint whose cost passes the gates, and "
                             "evaluation.gates is empty. Fix: add a gate, e.g. gates: [\"forgetting.delta >= -0.02\"], "
                             "or set select: none.")
        if self.stop_when_cost_fails is not None and not self.gates:
            raise ValueError("evaluation.stop_when_cost_fails needs the cost gate it counts failures of, and "
                             "evaluation.gates is empty. Fix: add a gate, or remove stop_when_cost_fails.")
        return self


class TrainingConfig(_Section):
    """One training run. ``output_dir`` is the only required key; relative paths are taken from the cwd."""

    output_dir: str
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    prompt: PromptSection = PromptSection()
    lora: LoraSection = LoraSection()
    quantization: QuantizationSection = QuantizationSection()
    trainer: TrainerSection = TrainerSection()
    evaluation: EvaluationSection | None = None
    # a sweep file's grid: {"lora.r": [16, 32]} (python -m training sweep; checked by training.sweep)
    sweep: dict[str, list[Any]] | None = None

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
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"found duplicate key {key!r} (first on line {first[key] + 1})", key_node.start_mark)
                first.setdefault(key, key_node.start_mark.line)
            return super().construct_mapping(node, deep)

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
        if annotation is not None and not isinstance(annotation, type):  # an optional section: X | None
            annotation = next((a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)
                               and issubclass(a, BaseModel)), annotation)
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
    "finite_number": "write a finite number, e.g. 0.0002",
    "too_short": "list at least one, e.g. [q_proj, v_proj]",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "greater_than_equal": "use a larger value",
}


def _clip(text: str) -> str:
    """At most :data:`SHOWN_CHARS` of ``text``: a value can be megabytes long, its message must not be."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 1]}… ({len(text):,} characters)"


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
    shown = f" (got {_clip(repr(got))}, a {type(got).__name__})" if kind != "missing" else ""
    fix = _TYPE_FIXES.get(kind, "see docs/training.md for allowed values")
    return f"{key}: {error['msg']}{shown}. Fix: {fix}."


def _check_paths(config: TrainingConfig) -> list[str]:
    """Files and folders the run needs that can be checked without loading anything."""
    problems = [*_check_output_dir(config.output_dir), *_check_base(config.model.base)]
    if config.data.data_dir is not None and not (Path(config.data.data_dir).expanduser() / "spider").is_dir():
        problems.append(f"data.data_dir: {config.data.data_dir!r} has no spider/ folder. Fix: point it at the data "
                        "folder (the one holding spider/ and spider_syn/), or remove the key to use TRADEOFF_DATA_DIR.")
    if not problems and config.lora.target_modules != ["all-linear"]:
        problems += _check_target_modules(config.lora.target_modules, config.model.base)
    if config.evaluation is not None:
        problems += _check_evaluation(config)
    if config.sweep is not None:
        problems += check_sweep_block(config.sweep)
    return problems


def _check_evaluation(config: TrainingConfig) -> list[str]:
    """The evaluation block against the plugin's own registry and gate grammar (no model, no data loaded):
    an unknown suite, a sample for a suite not scored, a gate the plugin would refuse, a gain or cost that
    names nothing scored, and the data folder of every suite."""
    from training.scoring import check_evaluation

    return check_evaluation(config)


def _check_output_dir(output_dir: str) -> list[str]:
    """output_dir names a folder that exists or can be created, and can be written (tried, not read from
    permission bits): otherwise the run fails after loading the model. An existing folder must be empty or
    hold a training run (its run.json, written first): the run writes epoch-N/, final/, checkpoints/ and
    loss.png, so /etc or ../../etc would get them among its own files, or lose files of the same name."""
    if not output_dir.strip():
        return ["output_dir: empty. Fix: name the folder the run writes its adapters to, e.g. runs/my-run."]
    path = Path(output_dir).expanduser()
    problem = folder_problem(path)
    if problem:
        return [f"output_dir: {_clip(repr(output_dir))}: {problem}. Fix: choose a folder you can write to."]
    if path.is_dir() and not (path / RUN_FILE).is_file() and any(path.iterdir()):
        return [f"output_dir: {_clip(repr(output_dir))} ({path.resolve()}) is a folder that holds other files and no "
                f"training run ({RUN_FILE}). Fix: name a new or empty folder, e.g. runs/my-run."]
    return []


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_base(base: str) -> list[str]:
    """A local folder needs config.json; a name that is not one is a hub id, which offline must be cached."""
    if base in EMBEDDED:
        return []
    path = Path(base).expanduser()
    if path.exists() or base.startswith((".", "/", "~")):
        if (path / "config.json").is_file():
            return []
        return [f"model.base: {base!r} is not a folder with config.json. Fix: point it at a folder written by "
                f"save_pretrained, use a hub id such as Qwen/Qwen2-7B-Instruct, or the alias {next(iter(EMBEDDED))!r}."]
    if not _hub_offline():
        return []  # a hub id, downloaded when the run starts
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(base, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
    if isinstance(cached, str):
        return []
    return [f"model.base: {base!r} is not a folder (no {path.absolute()}) nor in the local hub cache, and "
            f"HF_HUB_OFFLINE is set. Fix: correct the path (./{base} for a folder), or download the model once: "
            f"HF_HUB_OFFLINE=0 hf download {base}."]


def _local_weights(base: str) -> Path | None:
    """The base model's local folder when its weights are there without converting anything, else None."""
    if base in EMBEDDED:
        from evalkit.paths import cache_dir

        folder = cache_dir() / "models" / base  # written by evalkit.models.materialise_embedded on first use
    else:
        folder = Path(base).expanduser()
    return folder if (folder / "config.json").is_file() else None


def _module_names(folder: Path) -> set[str]:
    """Module names that own a weight, from the safetensors header(s) (JSON read, no tensor loaded);
    empty when the weights are in another format."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        tensors = list(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    elif (folder / "model.safetensors").is_file():
        with (folder / "model.safetensors").open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            tensors = [name for name in json.loads(handle.read(size)) if name != "__metadata__"]
    else:
        return set()
    return {name.rpartition(".")[0] for name in tensors if name.endswith((".weight", ".bias"))}


def _check_target_modules(targets: list[str], base: str) -> list[str]:
    """Each target must match a module as peft matches them (the full name, or its last parts)."""
    folder = _local_weights(base)
    modules = _module_names(folder) if folder else set()
    if not modules:
        return []  # not checkable without loading the model
    leaves = sorted({name.rpartition(".")[2] for name in modules})
    problems = []
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in modules):
            close = difflib.get_close_matches(target, leaves, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"lora.target_modules: {target!r} names no module of {base!r}. Fix: {hint}modules with "
                            f"weights are {', '.join(leaves)} (or use [all-linear]).")
    return problems


def _count_values(value: Any, limit: int) -> int:
    """How many values ``value`` holds, a YAML alias counted at each use, counting no further than past
    ``limit``: nine nested levels of nine aliases (a "billion laughs", 2 KB of YAML) are 387 million values,
    which validation would expand until memory ran out, and whose error message would quote them all."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return count


def parse_config(raw: Any, source: str = "<config>") -> TrainingConfig:
    """Validate an already-parsed mapping; raise one ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (output_dir, model, data, "
                          f"lora, ...), not {type(raw).__name__}. "
                          "Fix: start from training/configs/smollm2-135m-cpu.yaml.")
    if _count_values(raw, MAX_VALUES) > MAX_VALUES:
        raise ConfigError(f"{source}: the config expands to more than {MAX_VALUES:,} values (YAML anchors & and "
                          "aliases * nested in each other: a \"billion laughs\"), and a training config holds a few "
                          "dozen. Fix: write the values out, without nested aliases.")
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
    text = decode_utf8(path.read_bytes(), path, ConfigError)

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        duplicate = next((key for key in keys if keys.count(key) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"{path}: duplicate key {duplicate!r} (the last value would win silently). "
                              "Fix: keep one of them.")
        return dict(pairs)

    try:
        raw = (json.loads(text, object_pairs_hook=unique_keys) if path.suffix == ".json"
               else yaml.load(text, Loader=_yaml_loader()))  # noqa: S506
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc}). "
                          "Fix: correct the syntax at the position shown.") from exc
    return parse_config(raw, str(path))


# Which keys a sweep may vary: a fact of this schema, used by the loader (a file's sweep: block) and by
# training.sweep (--set).
NOT_SWEPT = {"output_dir": "the sweep gives each point its own folder under --out",
             "evaluation": "the sweep evaluates every final adapter with the config's evaluation block",
             "sweep": "it is the grid itself"}


def _sections() -> dict[str, type[BaseModel]]:
    out = {}
    for name, field in TrainingConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and name not in NOT_SWEPT:
            out[name] = annotation
    return out


def _leaves(cls: type[BaseModel]) -> list[str]:
    """A section's keys as the config file spells them (``prompt.schema``, not pydantic's field name)."""
    return [field.alias or name for name, field in cls.model_fields.items()]


def _check_key(key: str) -> str | None:
    """Why ``key`` cannot be swept (None when it can)."""
    sections = _sections()
    section, dot, leaf = key.partition(".")
    if section in NOT_SWEPT:
        return f"--set {key}: {section} is not swept ({NOT_SWEPT[section]}). Fix: set it in the config file."
    if section not in sections:
        close = difflib.get_close_matches(section, list(sections), n=1)
        hint = f"did you mean {close[0]}.{leaf or 'KEY'}? " if close else ""
        return (f"--set {key}: unknown key. Fix: {hint}name a config key as SECTION.KEY, SECTION one of "
                f"{', '.join(sections)}.")
    valid = _leaves(sections[section])
    if not dot or leaf not in valid:
        close = [HF_NAMES[leaf]] if HF_NAMES.get(leaf) in valid else difflib.get_close_matches(leaf, valid, n=1)
        hint = f"did you mean {section}.{close[0]}? " if close else ""
        return f"--set {key}: unknown key. Fix: {hint}keys of {section} are {', '.join(valid)}."
    return None


def grid_problems(key: str, values: list[Any], where: str) -> str | None:
    """Why one key's list of values cannot be a grid axis (None when it can); ``where`` names its origin."""
    problem = _check_key(key)
    if problem:
        return problem.replace("--set ", where, 1)
    if not values:
        return f"{where}{key}: the list of values is empty. Fix: give at least one value, e.g. {key}=V1,V2."
    if len({json.dumps(v, sort_keys=True, default=str) for v in values}) < len(values):
        return f"{where}{key}: a value is listed twice ({values}). Fix: list each value once."
    return None


def check_sweep_block(block: dict[str, Any]) -> list[str]:
    """Problems of a config file's ``sweep:`` block (keys and lists; values are checked by :func:`plan_grid`)."""
    return [p for key, values in block.items()
            if (p := grid_problems(key, values if isinstance(values, list) else [values], "sweep."))]
