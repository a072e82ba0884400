"""The item head (standardised input, start from text and popularity), L_cf's sampling of
all training pairs, the gate's start near the causal expert."""

import math

import torch

from recbole_mixrec.model.item_head import ItemHead, RunningStandardizer
from recbole_mixrec.model.mixrec import MixRec
from recbole_mixrec.quick_start import build_config


def test_standardizer_centres_and_scales_with_running_statistics():
    g = torch.Generator().manual_seed(0)
    # a huge shared offset in two dimensions, as the LLM's [SEQ] states have
    offset = torch.zeros(8)
    offset[:2] = torch.tensor([25.0, 21.0])
    rows = offset + torch.randn(500, 8, generator=g) * torch.linspace(0.1, 2.0, 8)
    norm = RunningStandardizer(8, momentum=0.01)
    norm.set_statistics(rows)
    out = norm.eval()(rows)
    torch.testing.assert_close(out.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    # training moves the statistics by `momentum` towards the batch's, from valid rows only
    norm.train()
    batch = rows[:10] + 1.0
    valid = torch.zeros(10, dtype=torch.bool)
    valid[:6] = True
    before = norm.mean.clone()
    norm(batch, valid)
    torch.testing.assert_close(norm.mean, before.lerp(batch[:6].mean(0), 0.01))
    # evaluation never moves them
    after = norm.mean.clone()
    norm.eval()(batch + 100)
    assert torch.equal(norm.mean, after)


def test_head_reads_the_standardised_state_and_starts_from_text_and_popularity():
    g = torch.Generator().manual_seed(1)
    n_items, dim = 6, 16
    align = torch.randn(n_items, dim, generator=g) + 30.0  # shared offset
    seq = torch.randn(40, dim, generator=g) - 5.0
    counts = torch.tensor([0, 10, 0, 3, 1, 50])
    head = ItemHead(dim, n_items).eval()
    head.init_from_data(seq, align, counts, scale=10.0)
    # W_item row i: item i's standardised [ALIGN] state, unit length x scale (padding row 0)
    z = (align[1:] - align[1:].mean(0)) / align[1:].var(0, unbiased=False).add(1e-5).sqrt()
    expected = torch.nn.functional.normalize(z, dim=-1) * 10.0
    torch.testing.assert_close(head.weight[1:], expected, atol=1e-4, rtol=0)
    assert head.weight[0].abs().sum() == 0
    # b_item: log of the add-one smoothed popularity, so the order of the bias is Pop's
    assert torch.argsort(head.bias[1:], descending=True).tolist() == [4, 0, 2, 3, 1]
    torch.testing.assert_close(head.bias[5] - head.bias[1], torch.tensor(math.log(51 / 11)))
    # the [SEQ] input is standardised with the [SEQ] statistics, then scaled by 1/sqrt(d)
    logits = head(seq, "seq")
    z_seq = (seq - seq.mean(0)) / seq.var(0, unbiased=False).add(1e-5).sqrt() / math.sqrt(dim)
    torch.testing.assert_close(logits, z_seq @ head.weight.T + head.bias, atol=1e-4, rtol=0)
    # an item's own aligned state scores it highest among items of equal popularity
    aligned = (head(align[1:], "align") - head.bias)[:, 1:]
    assert (aligned.argmax(1) == torch.arange(n_items - 1)).all()
    # raw input: the plain linear head of the paper
    raw = ItemHead(dim, n_items, head_input="raw")
    torch.testing.assert_close(raw(seq), seq @ raw.weight.T + raw.bias)


def test_head_dropout_drops_input_dimensions_in_training_only():
    torch.manual_seed(2)
    dim, n_items = 64, 5
    states = torch.randn(32, dim)
    head = ItemHead(dim, n_items, head_input="raw", dropout=0.5)
    # training: each of W_item's input dimensions is zeroed or doubled (inverted dropout)
    x = head.train().dropout(states)
    assert ((x == 0) | torch.isclose(x, 2 * states)).all()
    assert 0.35 < (x == 0).float().mean() < 0.65
    assert not torch.allclose(head(states), states @ head.weight.T + head.bias)
    # evaluation reads every dimension
    torch.testing.assert_close(head.eval()(states), states @ head.weight.T + head.bias)


def test_prepare_training_sets_the_head_from_the_data(ml100k_config, ml100k_splits):
    torch.manual_seed(0)
    model = MixRec(ml100k_config, ml100k_splits[0]._dataset)
    train = ml100k_splits[0]
    model.prepare_training(train)
    assert model.training  # restored
    head = model.item_projection
    assert bool(head.seq_norm.initialised) and bool(head.align_norm.initialised)
    rows = head.weight[1:].norm(dim=1)
    torch.testing.assert_close(rows, torch.full_like(rows, model.head_init_scale), atol=1e-4, rtol=0)
    counts = torch.bincount(model.train_pair_items, minlength=model.n_items)
    most, least = int(counts[1:].argmax()) + 1, int(counts[1:].argmin()) + 1
    assert head.bias[most] > head.bias[least]


def test_cf_loss_draws_from_every_training_pair(tiny_config_dict, ml100k_splits):
    """L_cf's BPR samples (user, item) pairs from the whole training matrix, not only the
    targets of the batch; the valid and test items are never among them."""
    config = build_config("MixRec", "ml-100k", config_dict={**tiny_config_dict, "cf_batch_size": 50000})
    torch.manual_seed(0)
    model = MixRec(config, ml100k_splits[0]._dataset)
    drawn = []
    original = model.cf_model.score

    def record(users, items):
        drawn.append((users.clone(), items.clone()))
        return original(users, items)

    model.cf_model.score = record
    model._cf_loss()
    users, positives = drawn[0]
    pairs = set(zip(model.train_pair_users.tolist(), model.train_pair_items.tolist()))
    sampled = set(zip(users.tolist(), positives.tolist()))
    assert sampled <= pairs
    assert len(sampled) > 0.3 * len(pairs)  # 50,000 draws from ~97k pairs: far beyond one batch
    held_out = set()
    for split in ml100k_splits[1:]:
        feat = split._dataset.inter_feat
        held_out |= set(zip(feat["user_id"].tolist(), feat["item_id"].tolist()))
    assert not held_out & pairs


def test_gate_starts_near_the_causal_expert(ml100k_config, ml100k_splits):
    torch.manual_seed(0)
    model = MixRec(ml100k_config, ml100k_splits[0]._dataset)
    q, p = torch.randn(3, 7, model.hidden_size), torch.randn(3, 7, model.hidden_size)
    for layer in model.damoe_layers:
        beta = layer.gate_weights(q, p)
        torch.testing.assert_close(beta[..., 0], torch.full((3, 7), model.gate_init_causal))
