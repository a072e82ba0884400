"""Hydra: the selective scan against the step-by-step recurrence, causality of the scan and of
the model, shapes, and one epoch on ml-100k through run_mixrec."""

import gc
import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation
from recbole.utils import get_model, get_trainer

from recbole_mixrec.model import selective_scan as selective_scan_module
from recbole_mixrec.model.hydra import Hydra
from recbole_mixrec.model.selective_scan import selective_scan, selective_scan_reference
from recbole_mixrec.quick_start import build_config, load_dataset, run_mixrec
from recbole_mixrec.trainer import BaselineTrainer

TINY = {
    "hidden_size": 32, "n_layers": 1, "n_heads": 2, "head_size": 8, "d_state": 4, "expand": 1,
    "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 4096, "eval_batch_size": 1024,
    "epochs": 1, "show_progress": False,
}


def _scan_inputs(b=3, length=37, heads=2, p=4, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, length, heads, p, generator=g)
    delta = F.softplus(torch.randn(b, length, heads, p, generator=g))
    A = -torch.rand(heads, p, n, generator=g) * 3
    B = torch.randn(b, length, heads, n, generator=g)
    C = torch.randn(b, length, heads, n, generator=g)
    D = torch.randn(heads, p, generator=g)
    return u, delta, A, B, C, D


@pytest.mark.parametrize("length", [1, 7, 16, 37])
@pytest.mark.parametrize("chunk", [1, 4, 5, 16])
def test_scan_equals_step_by_step_recurrence(length, chunk):
    inputs = _scan_inputs(length=length)
    expected = selective_scan_reference(*inputs)
    torch.testing.assert_close(selective_scan(*inputs, chunk=chunk), expected, atol=1e-5, rtol=0)


def test_scan_gradients_equal_the_reference():
    inputs = [t.requires_grad_(True) for t in _scan_inputs(length=21)]
    selective_scan(*inputs, chunk=8).pow(2).sum().backward()
    ours = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    selective_scan_reference(*inputs).pow(2).sum().backward()
    for mine, ref in zip(ours, (t.grad for t in inputs)):
        torch.testing.assert_close(mine, ref, atol=1e-4, rtol=1e-4)


def test_scan_training_keeps_no_state_tensor_alive(monkeypatch):
    """Backward recomputes chunks: after forward, neither autograd's saved tensors nor the chunk
    states handed from chunk to chunk hold a [b, chunk, H, P, N] tensor (the states of a
    whole chunk) or anything larger than an input of the scan."""
    inputs = [t.requires_grad_(True) for t in _scan_inputs(length=64)]
    u, A = inputs[0], inputs[2]
    b, _, heads, p = u.shape
    saved, chunk_outputs = [], []

    def pack(tensor):  # storage size: a view keeps all of its base alive
        saved.append(tensor.untyped_storage().nbytes() // tensor.element_size())
        return tensor

    real_chunk = selective_scan_module._scan_chunk

    def watched_chunk(*args):  # the real computation; keeps weak references to its outputs' storage
        y_c, end_state = real_chunk(*args)
        base = end_state if end_state._base is None else end_state._base
        chunk_outputs.append(weakref.ref(base))
        return y_c, end_state

    monkeypatch.setattr(selective_scan_module, "_scan_chunk", watched_chunk)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        y = selective_scan(*inputs, chunk=8)
    gc.collect()
    largest_input = max(t.numel() for t in inputs)
    assert saved and max(saved) <= largest_input < u.numel() * A.size(-1)
    alive = [ref() for ref in chunk_outputs if ref() is not None]
    assert alive and all(t.numel() == b * heads * p * A.size(-1) for t in alive)
    y.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in inputs)


def test_reference_matches_a_hand_computed_single_channel():
    u = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    delta = torch.tensor([0.5, 1.0]).view(1, 2, 1, 1)
    A = torch.tensor([[[-2.0]]])
    B = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    C = torch.tensor([5.0, 6.0]).view(1, 2, 1, 1)
    h0 = 0.5 * 3.0 * 1.0
    h1 = math.exp(-2.0) * h0 + 1.0 * 4.0 * 2.0
    expected = torch.tensor([5.0 * h0, 6.0 * h1]).view(1, 2, 1, 1)
    torch.testing.assert_close(selective_scan_reference(u, delta, A, B, C), expected)
    torch.testing.assert_close(selective_scan(u, delta, A, B, C), expected)


def test_scan_is_causal():
    u, delta, A, B, C, D = _scan_inputs(length=30)
    y = selective_scan(u, delta, A, B, C, D, chunk=8)
    t = 12
    for tensor in (u, delta, B, C):
        tensor[:, t + 1:] += 1.0
    y2 = selective_scan(u, delta, A, B, C, D, chunk=8)
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:])


@pytest.fixture(scope="module")
def hydra_setup():
    config = build_config("Hydra", "ml-100k", config_dict=TINY)
    dataset = load_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    return config, Hydra(config, train._dataset), train, test


def test_registered_by_name_with_plugin_yaml(hydra_setup):
    config = hydra_setup[0]
    assert get_model("Hydra") is Hydra
    assert get_trainer(config["MODEL_TYPE"], "Hydra") is BaselineTrainer
    assert config["loss_type"] == "CE" and config["scan_impl"] == "chunked"
    assert config["hydra_text_features"] is False


def test_shapes_and_no_future_leakage(hydra_setup):
    config, model, train, test = hydra_setup
    model.eval()
    batch = next(iter(train))
    loss = model.calculate_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    interaction = next(iter(test))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        assert scores.shape == (len(interaction), model.n_items)
        seq = interaction[model.ITEM_SEQ][:8].clone()
        states = model.sequence_states(seq)
        assert states.shape == (8, seq.size(1), model.hidden_size)
        changed = seq.clone()
        t = 5
        changed[:, t + 1:] = torch.randint(1, model.n_items, changed[:, t + 1:].shape)
        states2 = model.sequence_states(changed)
    torch.testing.assert_close(states2[:, : t + 1], states[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(states2[:, t + 1:], states[:, t + 1:])


def test_reference_scan_gives_the_same_model_output(hydra_setup):
    _, model, _, test = hydra_setup
    model.eval()
    interaction = next(iter(test))[0][:16]
    with torch.no_grad():
        fast = model.full_sort_predict(interaction)
        for layer in model.layers:
            layer.mamba.scan_impl = "reference"
        slow = model.full_sort_predict(interaction)
        for layer in model.layers:
            layer.mamba.scan_impl = "chunked"
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)


def test_text_features_add_a_trained_projection_of_frozen_item_text_vectors(hydra_setup):
    config, _, train, test = hydra_setup
    config["hydra_text_features"] = True
    try:
        torch.manual_seed(0)
        model = Hydra(config, train._dataset)
    finally:
        config["hydra_text_features"] = False
    vectors = model.item_text_vectors
    assert vectors.shape == (model.n_items, 384)  # all-MiniLM-L6-v2 width
    assert torch.equal(vectors[0], torch.zeros(384))  # padding
    assert (vectors[1:].norm(dim=1) > 0).all()
    # with the ID embeddings zeroed, items still differ through their text alone
    with torch.no_grad():
        model.item_embedding.weight.zero_()
    table = model.item_vectors()
    assert not torch.allclose(table[1], table[2])
    torch.testing.assert_close(table, model.text_projection(vectors))
    # the projection trains, the text vectors stay frozen and out of the checkpoint
    model.train()
    model.calculate_loss(next(iter(train))).backward()
    assert model.text_projection.weight.grad.abs().sum() > 0
    assert not vectors.requires_grad
    assert "item_text_vectors" not in model.state_dict()
    interaction = next(iter(test))[0]
    with torch.no_grad():
        assert model.full_sort_predict(interaction).shape == (len(interaction), model.n_items)


def test_one_epoch_on_ml100k(tmp_path):
    # 5-star ratings only (~21k interactions): every prefix is a sample, this keeps it fast
    config = dict(TINY, checkpoint_dir=str(tmp_path), val_interval={"rating": "[5,5]"})
    result = run_mixrec("Hydra", "ml-100k", config_dict=config)
    metrics = result["test_result"]
    assert set(metrics) >= {"mrr@10", "recall@10", "ndcg@10"}
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in metrics.values())


def test_run_by_name_builds_the_loaders_with_hydras_defaults(cache_dir):
    """``run_recbole(model="Hydra")`` builds RecBole's Config without the plugin's yaml: the
    defaults must be in place before the loaders read the batch size and negative sampling."""
    import yaml
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    from recbole_mixrec.properties import model_file
    from recbole_mixrec.quick_start import isolated_argv

    with isolated_argv():
        config = Config(model="Hydra", dataset="ml-100k", config_dict={"epochs": 1})
    defaults = yaml.safe_load(open(model_file("Hydra")))
    assert config["train_batch_size"] != defaults["train_batch_size"]  # RecBole's own default
    train = data_preparation(config, create_dataset(config))[0]
    assert train.batch_size == defaults["train_batch_size"]
    assert config["train_neg_sample_args"]["distribution"] == "none"  # Hydra: CE over all items
    assert train.neg_sample_args["distribution"] == "none"
