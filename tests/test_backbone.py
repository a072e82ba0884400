"""Backbone loading and layer access across architecture families (OPT, Llama, GPT-2)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, OPTConfig

from recbole_mixrec.backbone import (
    BackboneError, decoder_layers, keep_layers, load_backbone, num_decoder_layers, sublayer_names,
    truncate_layers,
)
from recbole_mixrec.model.adapters import insert_adapters

CONFIGS = {
    "opt": OPTConfig(vocab_size=100, hidden_size=32, ffn_dim=64, num_hidden_layers=3,
                     num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32),
    "llama": LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
    "gpt2": GPT2Config(vocab_size=100, n_embd=32, n_layer=3, n_head=4, n_positions=64),
}
EXPECTED_SUBLAYERS = {"opt": ("self_attn", "fc2"), "llama": ("self_attn", "mlp"), "gpt2": ("attn", "mlp")}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_layers_adapters_and_truncation_work_for_each_family(family):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[family]).eval()
    base = model.base_model
    assert len(decoder_layers(model)) == len(decoder_layers(base)) == 3
    assert sublayer_names(decoder_layers(base)[0]) == EXPECTED_SUBLAYERS[family]
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        before = base(input_ids=ids).last_hidden_state
        adapters = insert_adapters(base, bottleneck=8)
        after = base(input_ids=ids).last_hidden_state
    assert len(adapters) == 6
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)  # zero-init: identity
    truncate_layers(model, 2)
    assert len(decoder_layers(base)) == 2 and model.config.num_hidden_layers == 2
    with torch.no_grad():
        assert base(input_ids=ids).last_hidden_state.shape == before.shape


def test_keep_layers_keeps_the_requested_layers_and_renumbers_cache_slots():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = AutoModelForCausalLM.from_config(config).eval()
    second, third = decoder_layers(model)[1:]
    model.config.layer_types = ["first", "second", "third"]
    keep_layers(model, [1, 2])
    assert list(decoder_layers(model)) == [second, third]
    assert model.config.num_hidden_layers == 2 and model.config.layer_types == ["second", "third"]
    assert [layer.self_attn.layer_idx for layer in decoder_layers(model)] == [0, 1]
    assert {key.split(".")[2] for key in model.state_dict() if ".layers." in key} == {"0", "1"}
    model.config.layer_types = ["full_attention"] * 2
    with torch.no_grad():  # the key/value cache has one slot per kept layer
        model(input_ids=torch.randint(0, 100, (1, 5)), use_cache=True)
    with pytest.raises(BackboneError, match="cannot keep decoder layers"):
        keep_layers(model, [2])


def test_layer_counts_by_alias_and_from_a_folder(cache_dir, tmp_path):
    model, _ = load_backbone("tiny-random", cache_dir)
    assert num_decoder_layers("tiny-random") == len(decoder_layers(model)) == 2
    GPT2Config(n_layer=3).save_pretrained(tmp_path)
    assert num_decoder_layers(str(tmp_path)) == 3


def test_unloadable_backbones_are_clear_errors(tmp_path, cache_dir):
    with pytest.raises(BackboneError, match="has no config.json"):
        load_backbone(str(tmp_path), cache_dir)
    with pytest.raises(BackboneError, match="GGUF backbone file not found"):
        load_backbone(str(tmp_path / "missing.gguf"), cache_dir)
    with pytest.raises(BackboneError, match="cannot load backbone 'no-such-org/no-such-model'"):
        load_backbone("no-such-org/no-such-model", cache_dir)  # HF_HUB_OFFLINE=1 in the tests
    with pytest.raises(BackboneError, match="positive number of layers"):
        load_backbone("tiny-random", cache_dir, num_layers=-1)


def test_tiny_random_is_frozen_and_reproducible(cache_dir):
    first, tokenizer = load_backbone("tiny-random", cache_dir)
    second, _ = load_backbone("tiny-random", cache_dir)
    assert not any(p.requires_grad for p in first.parameters())
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert len(tokenizer) == first.config.vocab_size
