"""Full MixRec (spec 3): masks and leakage, efficient vs dense attention, gate, experts,
architecture strings, InfoNCE, CF injection."""

import pytest
import torch

from recbole_mixrec.model.attention import ExpertMasks, expert_attention
from recbole_mixrec.model.damoe import AdapterExpert, damoe_layer_indices, parse_architecture
from recbole_mixrec.model.inputs import length_groups, next_item_labels, pack_items
from recbole_mixrec.model import mixrec
from recbole_mixrec.model.losses import alignment_loss, info_nce
from recbole_mixrec.model.masks import causal_mask, context_mask
from recbole_mixrec.model.mixrec import MixRec

# prefix token, item 0 (2 tokens + [SEQ]), item 1 (1 + [SEQ]), item 2 (2 + [SEQ]), padding
SEGMENTS = torch.tensor([[-1, 0, 0, 0, 1, 1, 2, 2, 2, -2]])
ATTENTION = (SEGMENTS > -2).long()
CF_VALID = torch.tensor([[True, True, True, True]])  # user, items 0..2
SEQ_POSITIONS = [3, 5, 8]


def _visible(mask, row):
    return set(mask[0, row].nonzero().squeeze(1).tolist())


def test_causal_mask_on_a_hand_written_case():
    mask = causal_mask(SEGMENTS, ATTENTION, CF_VALID)
    assert mask.shape == (1, 10, 10 + 4)
    # item 1's [SEQ] (position 5): tokens 0..5, the user (10), CF of items 0 and 1 (11, 12)
    assert _visible(mask, 5) == {0, 1, 2, 3, 4, 5, 10, 11, 12}
    # the prefix token sees itself and the user vector only
    assert _visible(mask, 0) == {0, 10}


def test_context_mask_on_a_hand_written_case():
    mask = context_mask(SEGMENTS, ATTENTION, CF_VALID)
    assert _visible(mask, 4) == {4, 5, 10, 12}  # own item (both ways), user, own CF
    assert _visible(mask, 5) == {4, 5, 10, 12}
    assert _visible(mask, 1) == {1, 2, 3, 10, 11}
    assert _visible(mask, 9) == {9, 10}  # padding: itself (finite rows) and the user


@pytest.mark.parametrize("build", [causal_mask, context_mask])
def test_no_position_sees_a_later_item_or_its_cf_vector(build):
    mask = build(SEGMENTS, ATTENTION, CF_VALID)
    for slot, position in enumerate(SEQ_POSITIONS):
        visible = _visible(mask, position)
        later_tokens = {t for t in range(10) if SEGMENTS[0, t] > slot}
        later_cf = {10 + 1 + j for j in range(slot + 1, 3)}
        assert not visible & (later_tokens | later_cf), (slot, visible)


def test_invalid_cf_positions_are_never_visible():
    cf_valid = torch.tensor([[True, True, False, False]])
    for build in (causal_mask, context_mask):
        mask = build(SEGMENTS, ATTENTION, cf_valid)
        assert not mask[0, :, 12:].any()


def _random_qkv(length=10, heads=3, dim=8, n_cf=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, length, heads, dim, generator=g) for _ in range(3))  # token-major
    k_cf, v_cf = (torch.randn(1, n_cf, heads, dim, generator=g) for _ in range(2))
    return q, k, v, k_cf, v_cf


@pytest.mark.parametrize(
    "cf_valid",
    [CF_VALID, None, torch.tensor([[False, True, True, True]]), torch.tensor([[True, True, False, False]])],
    ids=["all-cf", "no-cf", "no-user", "two-items-without-cf"],
)
@pytest.mark.parametrize("cf_in_causal", [False, True], ids=["paper-mask", "cf-in-causal"])
def test_block_attention_matches_the_dense_reference(cf_valid, cf_in_causal):
    q, k, v, k_cf, v_cf = _random_qkv()
    if cf_valid is None:
        k_cf = v_cf = None
    masks = ExpertMasks.build(SEGMENTS, ATTENTION, cf_valid, n_slots=3, cf_in_causal=cf_in_causal)
    fast = expert_attention(q, k, v, k_cf, v_cf, masks, 0.3, "blocks", cf_in_causal=cf_in_causal)
    dense = expert_attention(q, k, v, k_cf, v_cf, masks, 0.3, "dense", cf_in_causal=cf_in_causal)
    valid = ATTENTION[0].bool()
    for ours, reference in zip(fast, dense):
        torch.testing.assert_close(ours[:, valid], reference[:, valid], atol=1e-5, rtol=0)


def _dense_by_hand(q, k, v, mask, scale):
    """Masked softmax attention written out: q ``[1, T, H, d]``, k/v ``[1, S, H, d]``, mask ``[1, T, S]``."""
    scores = torch.einsum("bthd,bshd->bhts", q, k) * scale
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
    return torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).flatten(2)


def test_cf_vectors_are_invisible_to_the_causal_expert_by_default():
    """The paper's MASK_causal is false on the CF column: by default the causal expert equals
    plain causal attention over the tokens (whatever the CF vectors are), while the context
    expert attends to them; with cf_in_causal the causal expert sees them too."""
    q, k, v, k_cf, v_cf = _random_qkv()
    masks = ExpertMasks.build(SEGMENTS, ATTENTION, CF_VALID, n_slots=3)
    causal, context = expert_attention(q, k, v, k_cf, v_cf, masks, 0.3)
    valid = ATTENTION[0].bool()
    tokens_only = _dense_by_hand(q, k, v, causal_mask(SEGMENTS, ATTENTION), 0.3)
    torch.testing.assert_close(causal[:, valid], tokens_only[:, valid], atol=1e-5, rtol=0)
    with_cf = _dense_by_hand(
        q, torch.cat([k, k_cf], 1), torch.cat([v, v_cf], 1), context_mask(SEGMENTS, ATTENTION, CF_VALID), 0.3
    )
    torch.testing.assert_close(context[:, valid], with_cf[:, valid], atol=1e-5, rtol=0)
    other_cf = [torch.randn_like(x) for x in (k_cf, v_cf)]
    causal_other, context_other = expert_attention(q, k, v, *other_cf, masks, 0.3)
    torch.testing.assert_close(causal_other, causal)
    assert not torch.allclose(context_other[:, valid], context[:, valid], atol=1e-3)
    masks = ExpertMasks.build(SEGMENTS, ATTENTION, CF_VALID, n_slots=3, cf_in_causal=True)
    seeing = expert_attention(q, k, v, k_cf, v_cf, masks, 0.3, cf_in_causal=True)[0]
    assert not torch.allclose(seeing[:, valid], causal[:, valid], atol=1e-3)


def test_block_attention_with_grouped_key_value_heads_matches_the_dense_reference():
    # SmolLM2 has 9 query heads and 3 key/value heads: the experts take K/V un-repeated
    q, k, v, k_cf, v_cf = _random_qkv(heads=6)
    k, v, k_cf, v_cf = (x[:, :, :2] for x in (k, v, k_cf, v_cf))  # 2 key/value heads
    masks = ExpertMasks.build(SEGMENTS, ATTENTION, CF_VALID, n_slots=3)
    fast = expert_attention(q, k, v, k_cf, v_cf, masks, 0.3, impl="blocks")
    dense = expert_attention(q, k, v, k_cf, v_cf, masks, 0.3, impl="dense")
    # and by hand: query heads 0-2 use key/value head 0, heads 3-5 head 1
    rep = [x.repeat_interleave(3, dim=2) for x in (k, v, k_cf, v_cf)]
    by_hand = expert_attention(q, *rep, masks, 0.3, impl="dense")
    valid = ATTENTION[0].bool()
    for ours, reference, manual in zip(fast, dense, by_hand):
        torch.testing.assert_close(ours[:, valid], reference[:, valid], atol=1e-5, rtol=0)
        torch.testing.assert_close(reference, manual)


def test_block_attention_leaves_the_masks_unchanged_for_the_next_layer():
    # no CF and an unused item slot (a short history): the empty block must not leak into
    # the shared masks, or the next layer would write its output over token 0
    q, k, v, _, _ = _random_qkv()
    masks = ExpertMasks.build(SEGMENTS, ATTENTION, None, n_slots=4)
    valid_before = masks.blocks.valid.clone()
    dense = expert_attention(q, k, v, None, None, masks, 0.3, impl="dense")
    valid = ATTENTION[0].bool()
    for _ in range(2):  # two layers reading the same masks
        fast = expert_attention(q, k, v, None, None, masks, 0.3, impl="blocks")
        for ours, reference in zip(fast, dense):
            torch.testing.assert_close(ours[:, valid], reference[:, valid], atol=1e-5, rtol=0)
    assert torch.equal(masks.blocks.valid, valid_before)


def test_adapter_experts_follow_the_serial_and_parallel_formulas():
    torch.manual_seed(0)
    sub_out, sub_in = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    for parallel in (False, True):
        expert = AdapterExpert(16, 4, "gelu", 0.1, parallel)
        torch.nn.init.normal_(expert.adapter.up.weight)
        adapter = expert.adapter

        def formula(h):
            return adapter.up(torch.nn.functional.gelu(adapter.down(h))) + h

        expected = (sub_out + formula(sub_in)) / 2 if parallel else formula(sub_out)
        torch.testing.assert_close(expert(sub_out, sub_in), expected)


def test_architecture_strings():
    assert parse_architecture("spp", 1) == [(False, True, True)]
    assert parse_architecture([0, 1, 0, 1, 1, 1], 2) == [(False, True, False), (True, True, True)]
    assert parse_architecture(None, 2) == [(False, False, False)] * 2
    with pytest.raises(ValueError, match="has 4 choices but the model has 2 DAMoE layers"):
        parse_architecture("spps", 2)
    with pytest.raises(ValueError, match="only the characters"):
        parse_architecture("sxp", 1)
    assert damoe_layer_indices(6, 1) == [0, 1, 2, 3, 4, 5]
    assert damoe_layer_indices(6, 2) == [1, 3, 5]


def test_info_nce_equals_a_hand_computation():
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[1.0, 1.0]])  # cos = 1/sqrt(2)
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # cos = 0 and -1
    tau = 0.5
    f = [torch.exp(torch.tensor(c) / tau) for c in (2 ** -0.5, 0.0, -1.0)]
    expected = -torch.log(f[0] / (f[0] + f[1] + f[2]))
    got = info_nce(anchor, positive, negatives, torch.ones(1, 2, dtype=torch.bool), tau)
    torch.testing.assert_close(got, expected)
    masked = info_nce(anchor, positive, negatives, torch.tensor([[True, False]]), tau)
    torch.testing.assert_close(masked, -torch.log(f[0] / (f[0] + f[1])))


def test_alignment_loss_equals_a_hand_computation():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]])
    items = torch.tensor([2, 1])
    log_y_hat = [logits[0].softmax(0)[2].log(), logits[1].softmax(0)[1].log()]
    torch.testing.assert_close(alignment_loss(logits, items), -(log_y_hat[0] + log_y_hat[1]) / 2)


# ----- the whole model on ml-100k with the random 2-layer backbone ---------------------------
@pytest.fixture(scope="module")
def splits(ml100k_splits):
    return ml100k_splits


@pytest.fixture(scope="module")
def batch(splits):
    return next(iter(splits[0]))


def _model(config, splits, **overrides):
    saved = {key: config[key] for key in overrides}
    for key, value in overrides.items():
        config[key] = value
    try:
        torch.manual_seed(0)
        return MixRec(config, splits[0]._dataset)
    finally:
        for key, value in saved.items():
            config[key] = value


def test_full_model_trains_only_new_weights_and_every_layer_is_damoe(ml100k_config, splits, batch):
    model = _model(ml100k_config, splits, architecture="spppss")
    assert len(model.damoe_layers) == 2
    second = model.damoe_layers[1]  # "pss"
    assert [second.causal_expert.parallel, second.context_expert.parallel, second.rec_adapter.parallel] == [True, False, False]
    losses = model.calculate_loss(batch)
    assert all(torch.isfinite(l) for l in losses) and all(l > 0 for l in losses)
    sum(losses).backward()
    for name, param in model.named_parameters():
        if name in model.frozen_backbone_keys:
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad and param.grad is not None, name
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} >= {
        "llm", "special_token_embedding", "item_projection", "cf_model",
        "cf_user_projection", "cf_item_projection",
    }


def test_gate_weights_sum_to_one(ml100k_config, splits):
    layer = _model(ml100k_config, splits).damoe_layers[0]
    torch.nn.init.normal_(layer.gate.weight)
    beta = layer.gate_weights(torch.randn(3, 7, 64), torch.randn(3, 7, 64))
    torch.testing.assert_close(beta.sum(-1), torch.ones(3, 7))
    assert (beta[..., 0] != 0.5).any()


def test_efficient_model_matches_dense_reference_model(ml100k_config, splits, batch):
    model = _model(ml100k_config, splits, architecture="psspps").eval()
    for layer in model.damoe_layers:  # non-trivial experts and gate
        for p in layer.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.05)
    args = (batch["item_id_list"], batch["item_length"], batch["user_id"])
    with torch.no_grad():
        fast = model(*args)[0]
        model.attention_impl = "dense"
        dense = model(*args)[0]
    slots = torch.arange(fast.size(1)) < model(*args)[2].unsqueeze(1)
    torch.testing.assert_close(fast[slots], dense[slots], atol=1e-5, rtol=0)


def test_no_seq_position_depends_on_a_later_item(ml100k_config, splits, batch):
    """Changing item j+1 (its text and its CF vector) leaves h^SEQ at positions <= j unchanged,
    under both experts, through all layers."""
    model = _model(ml100k_config, splits, architecture="pppppp").eval()
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    seq, length, user = batch["item_id_list"][:8].clone(), batch["item_length"][:8], batch["user_id"][:8]
    with torch.no_grad():
        before, window, count = model(seq, length, user)
        changed = seq.clone()
        # replace the last read item of every row by another item
        last = (length - 1).unsqueeze(1)
        changed.scatter_(1, last, (seq.gather(1, last) % (model.n_items - 2)) + 1)
        after, _, _ = model(changed, length, user)
    for row in range(8):
        j = int(count[row]) - 1
        torch.testing.assert_close(after[row, :j], before[row, :j], atol=1e-5, rtol=0)
        assert not torch.allclose(after[row, j], before[row, j], atol=1e-4)


def test_frozen_cf_is_pretrained_then_never_changes(ml100k_config, splits, batch):
    torch.manual_seed(0)
    fresh = _model(ml100k_config, splits, cf_model="MF").cf_model.item_embedding.weight.clone()
    model = _model(ml100k_config, splits, cf_model="MF", cf_trainable=False, cf_pretrain_epochs=2)
    assert torch.equal(model.cf_model.item_embedding.weight, fresh)  # building it trains nothing
    assert not any(p.requires_grad for p in model.cf_model.parameters())  # kept out of the optimizer
    model.prepare_training(splits[0])  # what the trainer runs before a fresh run's first epoch
    frozen = model.cf_model.item_embedding.weight.clone()
    assert not torch.allclose(frozen, fresh)  # pre-trained
    assert not any(p.requires_grad for p in model.cf_model.parameters())
    assert model.calculate_loss(batch)[3] == 0  # no L_cf when frozen
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(model.calculate_loss(batch)).backward()
    optimizer.step()
    assert torch.equal(model.cf_model.item_embedding.weight, frozen)
    assert "cf_model.item_embedding.weight" in model.state_dict()  # saved: not rebuilt from the backbone


def test_warm_started_cf_is_pretrained_then_trained_jointly(ml100k_config, splits, batch):
    torch.manual_seed(0)
    fresh = _model(ml100k_config, splits, cf_model="MF").cf_model.item_embedding.weight.clone()
    model = _model(ml100k_config, splits, cf_model="MF", cf_warm_start=True, cf_pretrain_epochs=2)
    assert torch.equal(model.cf_model.item_embedding.weight, fresh)  # building it trains nothing
    model.prepare_training(splits[0])
    warm = model.cf_model.item_embedding.weight.clone()
    assert not torch.allclose(warm, fresh)  # pre-trained
    assert all(p.requires_grad for p in model.cf_model.parameters())  # still in the optimizer
    losses = model.calculate_loss(batch)
    assert losses[3] > 0  # L_cf keeps training it
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(losses).backward()
    optimizer.step()
    assert not torch.allclose(model.cf_model.item_embedding.weight, warm)


def test_replace_freq_keeps_the_other_layers_original(ml100k_config, splits, batch):
    model = _model(ml100k_config, splits, replace_freq=2, architecture="psp")
    assert [type(layer).__name__ for layer in model.llm.layers] == ["LlamaDecoderLayer", "DAMoELayer"]
    assert model.damoe_layers[0].layer is not None
    assert all(torch.isfinite(loss) for loss in model.calculate_loss(batch))


def test_full_mixrec_on_an_opt_backbone_folder(tiny_config_dict, ml100k_dataset, ml100k_splits, tmp_path):
    """The paper's backbone family (OPT), loaded from a local HuggingFace folder: DAMoE layers,
    efficient attention equal to the dense reference, no leakage from a later item."""
    from transformers import AutoModelForCausalLM, OPTConfig

    from recbole_mixrec.backbone import load_tokenizer
    from recbole_mixrec.quick_start import build_config

    tokenizer = load_tokenizer("tiny-random", tiny_config_dict["backbone_cache_dir"])
    config = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=1024, word_embed_proj_dim=32)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    mixrec_config = build_config("MixRec", "ml-100k", config_dict={
        **tiny_config_dict, "backbone": str(tmp_path), "lambda_cl": 0.0, "architecture": "pspssp"})
    model = MixRec(mixrec_config, ml100k_splits[0]._dataset).eval()
    assert len(model.damoe_layers) == 2 and model.damoe_layers[0].parts.rotary is False
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    batch = next(iter(ml100k_splits[0]))
    seq, length, user = batch["item_id_list"][:6], batch["item_length"][:6], batch["user_id"][:6]
    with torch.no_grad():
        fast, _, count = model(seq, length, user)
        model.attention_impl = "dense"
        dense, _, _ = model(seq, length, user)
        model.attention_impl = "blocks"
        changed = seq.clone()
        last = (length - 1).unsqueeze(1)
        changed.scatter_(1, last, (seq.gather(1, last) % (model.n_items - 2)) + 1)
        after, _, _ = model(changed, length, user)
    for row in range(6):
        j = int(count[row])
        torch.testing.assert_close(fast[row, :j], dense[row, :j], atol=1e-5, rtol=0)
        torch.testing.assert_close(after[row, : j - 1], fast[row, : j - 1], atol=1e-5, rtol=0)
    assert all(torch.isfinite(loss) for loss in model.train().calculate_loss(batch))


def test_calculate_loss_takes_l_align_and_l_cl_from_losses_py(ml100k_config, splits, batch, monkeypatch):
    model = _model(ml100k_config, splits, lambda_cl=0.5)
    monkeypatch.setattr(mixrec, "alignment_loss", lambda logits, items: torch.tensor(3.0))
    monkeypatch.setattr(mixrec, "info_nce", lambda *args: torch.tensor(5.0))
    _, loss_align, loss_cl, _ = model.calculate_loss(batch)
    assert loss_align.item() == pytest.approx(3.0 * model.lambda_align)
    assert loss_cl.item() == pytest.approx(5.0 * 0.5)


@pytest.mark.parametrize("cl_batch_size", [None, 2])
def test_l_cl_anchors_come_from_at_most_cl_batch_size_sequences(ml100k_config, splits, batch, cl_batch_size):
    model = _model(ml100k_config, splits, lambda_cl=0.5, cl_batch_size=cl_batch_size)
    seq, length = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    _, window, count = model(seq, length, batch[model.USER_ID])
    labels = next_item_labels(window, count, batch[model.POS_ITEM_ID])
    # a hidden state that names its own sequence, so each anchor tells where it was drawn
    rows = torch.arange(labels.shape[0], dtype=torch.float)
    hidden = rows.view(-1, 1, 1).expand(*labels.shape, model.hidden_size)
    eligible = ((model.hard_negative_sizes[labels] * (labels > 0)) > 0).any(1).nonzero().squeeze(1)
    assert eligible.numel() > 2
    anchors, items, _ = model._sample_contrastive(hidden, labels)
    drawn = anchors[:, 0].long()
    assert set(drawn.tolist()) <= set(eligible.tolist())
    assert len(drawn) == len(set(drawn.tolist())) == (eligible.numel() if cl_batch_size is None else 2)
    # every anchor's first item is the label at its position, the rest its hard negatives
    assert all(int(item) in labels[row].tolist() for item, row in zip(items[:, 0], drawn))


def test_length_groups_give_the_one_call_states_and_gradients(ml100k_config, splits, batch):
    seq, user, target = batch["item_id_list"][:12], batch["user_id"][:12], batch["item_id"][:12]
    length = (torch.arange(12) % 4 + 1).clamp(max=batch["item_length"][:12])  # 1-4 items: varied rows
    results = []
    for ratio in (None, 0.6):
        model = _model(ml100k_config, splits, lambda_cl=0.0, length_group_ratio=ratio).train()
        hidden, window, count = model(seq, length, user)
        labels = next_item_labels(window, count, target)
        loss = torch.nn.functional.cross_entropy(model.item_projection(hidden, "seq", labels > 0)[labels > 0],
                                                 labels[labels > 0])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((hidden.detach(), grads))
        if ratio is not None:  # the batch really went through in several groups
            packed = pack_items(window, count, model.item_token_ids, model.item_token_lengths,
                                model.seq_token_id, model.seq_prefix_ids)
            assert len(length_groups(packed[1].sum(1), ratio)) > 1
    (one_hidden, one_grads), (grouped_hidden, grouped_grads) = results
    torch.testing.assert_close(grouped_hidden, one_hidden, atol=1e-5, rtol=1e-4)
    assert one_grads.keys() == grouped_grads.keys() and len(one_grads) > 0
    for name in one_grads:
        torch.testing.assert_close(grouped_grads[name], one_grads[name], atol=1e-5, rtol=1e-3)
