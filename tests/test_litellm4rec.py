"""LiteLLM4Rec with the random 2-layer backbone on ml-100k: shapes, causal sequence encoders,
the item-vector cache and its invalidation, frozen weights out of checkpoints, one epoch."""

import math
import os

import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import get_model

from recbole_mixrec.model import litellm4rec as lite
from recbole_mixrec.model.litellm4rec import LiteLLM4Rec, item_vector_key
from recbole_mixrec.quick_start import build_config, load_dataset, run_mixrec


@pytest.fixture(scope="module")
def lite_dict(tiny_config_dict):
    return dict(
        tiny_config_dict, MAX_ITEM_LIST_LENGTH=20, max_seq_items=20, sequence_layers=1,
        sequence_hidden_size=32, item_encode_batch_size=256,
    )


@pytest.fixture(scope="module")
def setup(lite_dict):
    config = build_config("LiteLLM4Rec", "ml-100k", config_dict=lite_dict)
    dataset = load_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, train, test


def _model(config, train, **overrides):
    saved = {key: config[key] for key in overrides}
    for key, value in overrides.items():
        config[key] = value
    try:
        torch.manual_seed(0)
        return LiteLLM4Rec(config, train._dataset)
    finally:
        for key, value in saved.items():
            config[key] = value


def test_registered_by_name(setup):
    config = setup[0]
    assert get_model("LiteLLM4Rec") is LiteLLM4Rec
    assert config["sequence_encoder"] == "transformer" and config["item_pooling"] == "last"


@pytest.mark.parametrize("encoder", ["transformer", "upper_layers"])
def test_shapes_loss_and_no_future_leakage(setup, encoder):
    config, train, test = setup
    model = _model(config, train, sequence_encoder=encoder)
    model.train()
    loss = model.calculate_loss(next(iter(train)))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.item_projection.weight.grad.abs().sum() > 0
    model.eval()
    interaction = next(iter(test))[0][:8]
    seq, length = interaction[model.ITEM_SEQ].clone(), interaction[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        assert model.full_sort_predict(interaction).shape == (8, model.n_items)
        full = torch.full_like(length, seq.size(1))
        seq = torch.randint(1, model.n_items, seq.shape)
        hidden, window, count = model(seq, full)
        assert hidden.shape[:2] == window.shape == (8, 20)
        t = 6
        changed = seq.clone()
        changed[:, t + 1:] = torch.randint(1, model.n_items, changed[:, t + 1:].shape)
        hidden2, _, _ = model(changed, full)
    torch.testing.assert_close(hidden2[:, : t + 1], hidden[:, : t + 1], atol=1e-5, rtol=0)
    assert not torch.allclose(hidden2[:, t + 1:], hidden[:, t + 1:], atol=1e-4)


def test_upper_layers_are_the_backbones_top_layers(setup):
    config, train, _ = setup
    model = _model(config, train, sequence_encoder="upper_layers")
    item_layers = model.item_llm.layers  # tiny-random: 2 layers, the item LLM keeps both
    upper = model.sequence_model.layers
    assert len(upper) == 1
    torch.testing.assert_close(
        upper[0].self_attn.sublayer.q_proj.weight, item_layers[1].self_attn.q_proj.weight
    )
    assert [m.layer_idx for m in upper.modules() if hasattr(m, "layer_idx")] == [0]  # backbone.keep_layers


def test_pooling_modes(setup):
    config, train, _ = setup
    items = torch.tensor([1, 2, 3])
    for pooling in ("last", "mean"):
        model = _model(config, train, item_pooling=pooling).eval()
        with torch.no_grad():
            vectors = model.encode_items(items)
            model.item_token_embedding.data.add_(1.0)
            moved = model.encode_items(items)
        assert vectors.shape == (3, model.item_hidden_size)
        # only 'last' reads the [ITEM] token; the mean is over the sentence tokens
        assert torch.allclose(vectors, moved) == (pooling == "mean")


def test_item_vector_cache_and_its_invalidation(setup):
    config, train, _ = setup
    model = _model(config, train).eval()
    ids, lengths = model.item_token_ids, model.item_token_lengths
    key = model.item_vector_key
    # the key follows the backbone, its depth, the pooling and the item tokens (text fields)
    assert item_vector_key("smollm2-135m", model.backbone_layers, "last", ids, lengths) != key
    assert item_vector_key("tiny-random", 1, "last", ids, lengths) != key
    assert item_vector_key("tiny-random", model.backbone_layers, "mean", ids, lengths) != key
    other_text = ids.clone()
    other_text[5, 0] += 1
    assert item_vector_key("tiny-random", model.backbone_layers, "last", other_text, lengths) != key
    assert item_vector_key("tiny-random", model.backbone_layers, "last", ids.clone(), lengths) == key

    disk_file = os.path.join(config["backbone_cache_dir"], "item_vectors", f"item_vectors-{key}.pt")
    if os.path.exists(disk_file):
        os.remove(disk_file)
    lite._MEMORY_CACHE.clear()
    vectors = model.all_item_vectors()
    assert vectors.shape == (model.n_items, model.item_hidden_size)
    assert not vectors.requires_grad and vectors[0].abs().sum() == 0
    assert os.path.isfile(disk_file)
    torch.testing.assert_close(vectors[1:4], model.encode_items(torch.tensor([1, 2, 3])).detach())
    # a second model reads the cache (memory, then disk) instead of encoding again
    again = _model(config, train).eval()
    again.encode_items = None  # would fail if called
    assert again.all_item_vectors() is not None and torch.equal(again.all_item_vectors(), vectors)
    lite._MEMORY_CACHE.clear()
    from_disk = _model(config, train).eval()
    from_disk.encode_items = None
    torch.testing.assert_close(from_disk.all_item_vectors(), vectors)
    # changed item text: new key, vectors encoded anew
    changed = _model(config, train).eval()
    changed.item_token_ids = changed.item_token_ids.clone()
    changed.item_token_ids[5, 0] += 1
    new = changed.all_item_vectors()
    assert changed.item_vector_key != key
    assert not torch.allclose(new[5], vectors[5]) and torch.allclose(new[6], vectors[6])


def test_trainable_item_encoder(setup):
    config, train, test = setup
    model = _model(config, train, item_encoder_trainable=True)
    model.train()
    model.calculate_loss(next(iter(train))[:16]).backward()
    assert model.item_token_embedding.grad.abs().sum() > 0
    ups = [p for n, p in model.named_parameters() if n.startswith("item_llm") and n.endswith("adapter.up.weight")]
    assert ups and all(p.grad.abs().sum() > 0 for p in ups)
    model.eval()
    with torch.no_grad():
        model.full_sort_predict(next(iter(test))[0][:4])
    assert model._item_vectors is not None
    model.train()  # a new training epoch: the cached evaluation vectors are stale
    assert model._item_vectors is None


def test_checkpoints_hold_trainable_weights_only(setup):
    config, train, test = setup
    model = _model(config, train, sequence_encoder="upper_layers")
    state = model.state_dict()
    assert not any(k.startswith("item_llm.") for k in state)
    assert any(".adapter." in k for k in state)
    assert all(".adapter." in k for k in state if k.startswith("sequence_model."))
    with torch.no_grad():
        model.item_projection.bias.fill_(0.5)
    fresh = _model(config, train, sequence_encoder="upper_layers")
    fresh.load_state_dict(state)
    model.eval(), fresh.eval()
    interaction = next(iter(test))[0][:4]
    with torch.no_grad():
        torch.testing.assert_close(fresh.full_sort_predict(interaction), model.full_sort_predict(interaction))
    with pytest.raises(RuntimeError, match="does not match"):
        fresh.load_state_dict({k: v for k, v in state.items() if not k.startswith("item_projection")})


def test_one_epoch_on_ml100k(lite_dict, tmp_path):
    result = run_mixrec("LiteLLM4Rec", "ml-100k", config_dict=dict(lite_dict, checkpoint_dir=str(tmp_path)))
    metrics = result["test_result"]
    assert set(metrics) >= {"mrr@10", "recall@10", "ndcg@10"}
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in metrics.values())
