"""The real embedded model: loading by alias, generation, chat template, adapters, and load errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalkit.errors import ModelLoadError
from evalkit.models import LoadedModel, load_model

pytestmark = pytest.mark.model


def _greedy(loaded: LoadedModel, prompt: str, new_tokens: int = 12) -> str:
    tok = loaded.tokenizer
    batch = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = loaded.model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_alias_loads_and_completes_a_chat_prompt(embedded_model: LoadedModel) -> None:
    tok = embedded_model.tokenizer
    assert (tok.eos_token, tok.pad_token, tok.padding_side) == ("<|im_end|>", "<|im_end|>", "left")
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    answer = _greedy(embedded_model, prompt)
    assert "Paris" in answer and "\ufffd" not in answer
    assert embedded_model.model.dtype == torch.float32 and embedded_model.device == "cpu"
    assert len(embedded_model.fingerprint) == 16


def test_fingerprint_is_stable_and_adapter_changes_output(embedded_model: LoadedModel, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    again = load_model("smollm2-135m")
    assert again.fingerprint == embedded_model.fingerprint
    # A real LoRA adapter on the real base; B is non-zero so the adapter changes the function.
    peft_model = get_peft_model(again.model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    with_adapter = load_model("smollm2-135m", adapter=tmp_path / "adapter")
    assert with_adapter.base_fingerprint == embedded_model.base_fingerprint
    assert with_adapter.fingerprint != embedded_model.fingerprint
    prompt = "SELECT name FROM singer WHERE"
    assert _greedy(with_adapter, prompt) != _greedy(embedded_model, prompt)


def test_adapter_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"Adapter folder not found: .*nowhere.*Fix"):
        load_model("smollm2-135m", adapter=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no adapter_config\.json"):
        load_model("smollm2-135m", adapter=tmp_path / "empty")


def test_adapter_for_another_base_is_refused(tmp_path: Path) -> None:
    """An adapter whose LoRA shapes belong to a model with another hidden size."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, vocab_size=49152))
    other.config.name_or_path = "some-org/other-base"
    adapter = get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    adapter.save_pretrained(tmp_path / "foreign")
    config = json.loads((tmp_path / "foreign/adapter_config.json").read_text())
    config["base_model_name_or_path"] = "some-org/other-base"
    (tmp_path / "foreign/adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"does not fit base model 'smollm2-135m' \(it was trained on 'some-org/other-base'\)"):
        load_model("smollm2-135m", adapter=tmp_path / "foreign")


def test_model_errors_offline_paths_and_4bit_on_cpu(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"Cannot load model 'someone/not-downloaded-model'.*HF_HUB_OFFLINE"):
        load_model("someone/not-downloaded-model")
    with pytest.raises(ModelLoadError, match="Model folder not found"):
        load_model(str(tmp_path / "missing-model"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model("smollm2-135m", load_in_4bit=True)
