"""MixRec_base on ml-100k with the random 2-layer backbone: freezing, identity at init,
leave-one-out inputs, losses."""

import numpy as np
import pytest
import torch

from recbole_mixrec.backbone import load_backbone
from recbole_mixrec.model.mixrec import MixRec
from recbole_mixrec.quick_start import build_config


@pytest.fixture(scope="module")
def splits(ml100k_splits):
    return ml100k_splits


@pytest.fixture(scope="module")
def base_config(tiny_config_dict):
    return build_config("MixRec_base", "ml-100k", config_dict=tiny_config_dict)


@pytest.fixture()
def model(base_config, splits):
    """MixRec_base: plain adapters, L_seq + L_align."""
    torch.manual_seed(0)
    return MixRec(base_config, splits[0]._dataset)


def _first_batch(loader):
    return next(iter(loader))


def test_only_adapters_new_tokens_and_head_get_gradients(model, splits):
    model.train()
    loss = sum(model.calculate_loss(_first_batch(splits[0])))
    loss.backward()
    trainable_prefixes = ("special_token_embedding.", "item_projection.")
    for name, param in model.named_parameters():
        is_new = name.startswith(trainable_prefixes) or ".adapter." in name
        assert param.requires_grad == is_new, name
        assert (param.grad is not None) == is_new, name
    assert model.item_projection.weight.grad.abs().sum() > 0
    assert model.special_token_embedding.weight.grad.abs().sum() > 0
    ups = [p for n, p in model.named_parameters() if n.endswith("adapter.up.weight")]
    assert len(ups) == 2 * 2  # two adapters in each of the 2 layers
    assert all(p.grad.abs().sum() > 0 for p in ups)


def test_fresh_adapters_reproduce_the_backbone(model, ml100k_config):
    reference, _ = load_backbone("tiny-random", ml100k_config["backbone_cache_dir"])
    reference = reference.base_model.eval()
    model.eval()
    input_ids = torch.randint(0, model.vocab_size, (3, 17))
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        ours = model.llm(input_ids=input_ids, attention_mask=mask).last_hidden_state
        theirs = reference(input_ids=input_ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # and a trained (non-zero) adapter does change them
    with torch.no_grad():
        next(a for n, a in model.named_modules() if n.endswith("adapter")).up.weight.fill_(0.1)
        changed = model.llm(input_ids=input_ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(changed, theirs, atol=1e-3)


def test_leave_one_out_inputs_never_contain_the_predicted_item(splits, ml100k_dataset):
    """Per user, train predicts the 3rd-last item, valid the 2nd-last, test the last, and each
    input is exactly the history before its target (users with untruncated histories)."""
    uid, iid = ml100k_dataset.uid_field, ml100k_dataset.iid_field
    train, valid, test = (s._dataset.inter_feat for s in splits)
    assert len(valid) == len(test) == 943
    # whole chronological history: the longest augmented prefix of each user plus its target
    raw = ml100k_dataset.inter_feat
    histories = {}
    for u, seq, length, target in zip(
        raw[uid].tolist(), raw["item_id_list"].tolist(), raw["item_length"].tolist(), raw[iid].tolist()
    ):
        if length >= len(histories.get(u, [])):
            histories[u] = seq[:length] + [target]
    checked = 0
    for split, back in ((test, 1), (valid, 2), (train, None)):
        for u, seq, length, target in zip(
            split[uid].tolist(), split["item_id_list"].tolist(), split["item_length"].tolist(), split[iid].tolist()
        ):
            full = histories[u]
            if len(full) >= 50:  # RecBole truncated this user's prefixes to 50 items
                continue
            index = len(full) - back if back else length
            assert index <= len(full) - 3 or back  # training targets are never valid/test items
            assert target == full[index]
            assert seq[:length] == full[:index]
            assert target not in seq[:length]  # ml-100k has no repeated user-item pairs
            checked += 1
    assert checked > 3 * 300  # 375 of the 943 users have fewer than 50 ratings
    assert len(train) == 943  # train_samples: last (the default): one sample per user


def test_model_reads_the_end_of_the_test_history(splits, model):
    batch = _first_batch(splits[2])[0]  # test loader yields (interaction, history, pos_u, pos_i)
    from recbole_mixrec.model.inputs import last_items

    window, count = last_items(batch["item_id_list"], batch["item_length"], model.max_seq_items)
    for row in range(len(count)):
        history = batch["item_id_list"][row, : batch["item_length"][row]].tolist()
        assert window[row, : count[row]].tolist() == history[-model.max_seq_items:]
        assert batch["item_id"][row].item() not in history


def test_losses_are_finite_and_full_sort_scores_every_item(model, splits):
    losses = model.calculate_loss(_first_batch(splits[0]))
    assert len(losses) == len(model.loss_names) == 4
    assert all(torch.isfinite(l) and l > 0 for l in losses[:2])
    assert losses[2] == 0 and losses[3] == 0  # MixRec_base: no L_cl, no L_cf
    model.eval()
    batch = _first_batch(splits[2])[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        single = model.predict(batch)
    assert scores.shape == (len(batch), model.n_items)
    torch.testing.assert_close(single, scores.gather(1, batch["item_id"].unsqueeze(1)).squeeze(1))


def test_llmrec_variant_has_no_adapters_and_no_align_loss(tiny_config_dict, splits):
    from recbole_mixrec.model.variants import LLMRec

    config = build_config("LLMRec", "ml-100k", config_dict=tiny_config_dict)
    llmrec = LLMRec(config, splits[0]._dataset)
    assert not any(".adapter." in n for n, _ in llmrec.named_parameters())
    assert sum(llmrec.calculate_loss(_first_batch(splits[0]))[1:]).item() == 0.0
    trainable = {n.split(".")[0] for n, p in llmrec.named_parameters() if p.requires_grad}
    assert trainable == {"special_token_embedding", "item_projection"}


def test_state_dict_holds_only_trainable_weights_and_loads_back(model, base_config, splits):
    state = model.state_dict()
    head_statistics = {
        f"item_projection.{norm}.{name}"
        for norm in ("seq_norm", "align_norm") for name in ("mean", "var", "initialised")
    }
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad} | head_statistics
    torch.manual_seed(1)
    other = MixRec(base_config, splits[0]._dataset)
    assert not torch.equal(other.item_projection.weight, model.item_projection.weight)
    other.load_state_dict(state)
    assert torch.equal(other.item_projection.weight, model.item_projection.weight)
    with pytest.raises(RuntimeError, match="does not match"):
        other.load_state_dict({**state, "bogus.weight": torch.zeros(1)})
    assert np.isfinite(sum(v.sum().item() for v in state.values()))


TRAIN_SAMPLE_CASES = {  # case -> (train_samples, train_max_windows, train_window_stride)
    "windows": ("windows", None, None),
    "windows-2": ("windows", 2, None),
    "windows-stride-2": ("windows", None, 2),
    "windows-stride-1": ("windows", None, 1),
    "last": ("last", None, None),
    "all": ("all", None, None),
}


@pytest.mark.parametrize("case", list(TRAIN_SAMPLE_CASES))
def test_train_samples_cover_the_training_transitions(tmp_path, tiny_config_dict, case):
    """``windows``: the windows of max_seq_items read by the kept prefixes supervise every
    training transition exactly once (``train_max_windows`` 2: the last 6); with
    ``train_window_stride`` N they overlap, still supervise each transition once, and every
    supervised transition but a user's first few is read after at least max_seq_items - N + 1
    items; ``last`` one window per user; ``all`` every prefix. The supervised positions are
    the ones the models' own labels keep."""
    from recbole.data import data_preparation

    from recbole_mixrec.model.inputs import last_items, next_item_labels, supervised_positions
    from recbole_mixrec.quick_start import load_dataset
    from tests.conftest import write_atomic

    mode, max_windows, stride = TRAIN_SAMPLE_CASES[case]
    lengths = {1: 4, 2: 5, 3: 7, 4: 9, 5: 12, 6: 20}  # interactions per user
    inter = [(u, 100 + (u * 7 + t) % 30, t) for u, n in lengths.items() for t in range(n)]
    items = [(100 + i, f"item {i}", "brand") for i in range(30)]
    write_atomic(str(tmp_path), "windows", inter, items)
    config = build_config("MixRec", "windows", config_dict=dict(
        tiny_config_dict, data_path=str(tmp_path), train_samples=mode, max_seq_items=3,
        train_max_windows=max_windows, train_window_stride=stride,
        lambda_cl=0.0, load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "brand"]},
        item_text_fields=["title", "brand"],
    ))
    train = data_preparation(config, load_dataset(config))[0]._dataset
    feat = train.inter_feat
    window, count = last_items(feat["item_id_list"], feat["item_length"], 3)
    labels = next_item_labels(window, count, feat["item_id"], supervised_positions(config))
    supervised = {}  # user -> [(target index in the user's history, items read before it)]
    for user, length, row in zip(feat["user_id"].tolist(), feat["item_length"].tolist(), labels.tolist()):
        raw_user = int(train.id2token("user_id", user))
        first = length - min(length, 3) + 1  # target index of the window's first position
        kept = [(first + j, j + 1) for j, label in enumerate(row) if label > 0]  # position j read j + 1 items
        supervised.setdefault(raw_user, []).extend(kept)
    for user, n in lengths.items():
        expected = list(range(1, n - 2))  # targets 1 .. n-3 (n-2: valid, n-1: test)
        got = sorted(target for target, _ in supervised.get(user, []))
        if mode == "windows" and max_windows:
            assert got == expected[-6:], user
        elif mode == "last":
            assert got == expected[-3:], user
        elif mode == "all":  # every prefix supervises every position it reads: some more than once
            assert sorted(set(got)) == expected, user
            assert user != 6 or len(got) > len(expected)
        else:
            assert got == expected, user
        if stride and n - 3 >= 3:  # a full window (target 3 on) reads at least max_seq_items - N + 1 items
            read = [items_read for target, items_read in supervised[user] if target >= 3]
            assert read and min(read) >= 3 - stride + 1, user
