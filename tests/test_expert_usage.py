"""benchmarks.expert_usage: the gate's recorded weights and the two ablations, each checked
against an independent route to the same model (tiny random backbone on ml-100k)."""

import copy

import pytest
import torch

import recbole_mixrec  # noqa: F401  registers the plugin's models
import recbole_mixrec.quick_start
from benchmarks import expert_usage
from recbole_mixrec.model.mixrec import MixRec
from recbole_mixrec.quick_start import run_mixrec


@pytest.fixture(scope="module")
def batch(ml100k_splits):
    return next(iter(ml100k_splits[1]))[0]


def _scores(model, batch):
    with torch.no_grad():
        return model.full_sort_predict(batch)


def _mixrec(ml100k_config, ml100k_splits, reading_gate):
    torch.manual_seed(0)
    model = MixRec(ml100k_config, ml100k_splits[0]._dataset)
    if reading_gate:  # a gate that reads its input and gives the context expert real weight
        for layer in model.damoe_layers:
            torch.nn.init.normal_(layer.gate.weight, std=0.05)
            torch.nn.init.zeros_(layer.gate.bias)
    return model.eval()


def test_recorded_gates_are_the_gates_weights_and_the_layers_are_restored(ml100k_config, ml100k_splits, batch):
    model = _mixrec(ml100k_config, ml100k_splits, reading_gate=False)  # input-independent start
    before = _scores(model, batch)
    with expert_usage.recorded_gates(model) as sums:
        _scores(model, batch)
    assert len(sums) == len(model.damoe_layers) > 0
    for total, count in sums:
        assert count > len(batch) and total / count == pytest.approx(model.gate_init_causal, abs=1e-5)
    assert all("gate_weights" not in vars(layer) for layer in model.damoe_layers)
    torch.testing.assert_close(_scores(model, batch), before)


def test_causal_only_is_a_gate_saturated_on_the_causal_expert(ml100k_config, ml100k_splits, batch):
    model = _mixrec(ml100k_config, ml100k_splits, reading_gate=True)
    as_trained = _scores(model, batch)
    saturated = copy.deepcopy(model)
    for layer in saturated.damoe_layers:
        torch.nn.init.zeros_(layer.gate.weight)
        layer.gate.bias.data = torch.tensor([40.0, 0.0])  # softmax -> (1, 4e-18)
    with expert_usage.causal_only(model):
        ablated = _scores(model, batch)
        with expert_usage.recorded_gates(model) as sums:  # records the ablation, and keeps it
            _scores(model, batch)
        assert all(total == count for total, count in sums)
        torch.testing.assert_close(_scores(model, batch), ablated)
    torch.testing.assert_close(ablated, _scores(saturated, batch))
    assert not torch.allclose(ablated, as_trained, atol=1e-4)
    assert all("gate_weights" not in vars(layer) for layer in model.damoe_layers)  # undone
    torch.testing.assert_close(_scores(model, batch), as_trained)


def test_no_cf_is_every_cf_slot_masked(ml100k_config, ml100k_splits, batch):
    model = _mixrec(ml100k_config, ml100k_splits, reading_gate=True)
    as_trained = _scores(model, batch)
    masked = copy.deepcopy(model)
    cf_vectors = masked._cf_vectors

    def all_masked(*args):
        states, valid = cf_vectors(*args)
        return states, torch.zeros_like(valid)
    masked._cf_vectors = all_masked
    with expert_usage.no_cf(model):
        ablated = _scores(model, batch)
    torch.testing.assert_close(ablated, _scores(masked, batch))
    assert not torch.allclose(ablated, as_trained, atol=1e-4)
    torch.testing.assert_close(_scores(model, batch), as_trained)  # undone


def test_main_reports_gates_and_ablations_of_a_trained_checkpoint(tiny_config_dict, tmp_path, small_sasrec_run, capsys, monkeypatch):
    result = run_mixrec("MixRec", "ml-100k", config_dict=dict(tiny_config_dict, checkpoint_dir=str(tmp_path)))
    loads = []
    load = recbole_mixrec.quick_start.load_data_and_model

    def counted(*args, **kwargs):  # the real loader, counted: one load serves every evaluation
        loads.append(args)
        return load(*args, **kwargs)
    monkeypatch.setattr(recbole_mixrec.quick_start, "load_data_and_model", counted)
    assert expert_usage.main([result["saved_model_file"], "--samples", "200"]) == 0
    assert len(loads) == 1
    lines = capsys.readouterr().out.splitlines()
    gates = [float(g) for g in lines[0].split("):")[1].split()]
    assert len(gates) == 2 and all(0 < g < 1 for g in gates)  # the tiny backbone's 2 layers
    shares = [float(x) for part in lines[1].split(": ")[1:] for x in part.split(";")[0].split()]
    assert lines[1].startswith("context expert's attention") and len(shares) == 4 and all(0 < x < 1 for x in shares)
    assert float(lines[2].rsplit(":", 1)[1]) == pytest.approx(result["best_valid_result"]["mrr@10"], abs=1e-4)
    assert [line.split()[0] for line in lines[3:]] == ["no-cf", "causal-only"]
    assert expert_usage.main([small_sasrec_run["saved_model_file"]]) == 2
    assert "has no DAMoE layers" in capsys.readouterr().err


@pytest.mark.parametrize("impl", ["blocks", "dense"])
def test_cf_key_mass_with_equal_scores_is_the_share_of_visible_cf_keys(impl):
    """q = 0 makes every visible key equally likely: the share on the CF keys is their count
    among the keys the context mask (masks.py) shows each token."""
    from recbole_mixrec.model.attention import ExpertMasks
    from recbole_mixrec.model.masks import context_mask

    segments = torch.tensor([[-1, 0, 0, 0, 1, 1, 2, 2, 2, -2]])  # prefix, 3 items, padding
    attention_mask = (segments > -2).long()
    cf_valid = torch.ones(1, 4, dtype=torch.bool)  # the user, items 0..2
    masks = ExpertMasks.build(segments, attention_mask, cf_valid)
    heads, kv_heads, dim = 4, 2, 8
    torch.manual_seed(0)
    mass = expert_usage.cf_key_mass(torch.zeros(1, 10, heads, dim), torch.randn(1, 10, kv_heads, dim),
                                    torch.randn(1, 4, kv_heads, dim), masks, 0.5, impl)
    visible = context_mask(segments, attention_mask, cf_valid)[0].float()  # [T, T + C]
    expected = torch.stack([visible[:, 10], visible[:, 11:].sum(1)], dim=1) / visible.sum(1, keepdim=True)
    torch.testing.assert_close(mass[0, :9], expected[:9])  # the padding token's row is never read
    assert expected[5].tolist() == [0.25, 0.25]  # item 1's [SEQ]: its 2 tokens, the user, its own CF key


def test_recorded_cf_attention_leaves_the_model_as_it_was(ml100k_config, ml100k_splits, batch):
    model = _mixrec(ml100k_config, ml100k_splits, reading_gate=True)
    before = _scores(model, batch)
    with expert_usage.recorded_cf_attention(model) as sums:
        _scores(model, batch)
    assert len(sums) == len(model.damoe_layers)
    for user, items, count in sums:
        assert count > len(batch) and 0 < user / count < 1 and 0 < items / count < 1 and user + items < count
    assert all(not layer._forward_pre_hooks for layer in model.damoe_layers)
    torch.testing.assert_close(_scores(model, batch), before)
    with expert_usage.no_cf(model), expert_usage.recorded_cf_attention(model) as sums:
        _scores(model, batch)
    assert all(count == 0 for _, _, count in sums)  # nothing to read without CF
