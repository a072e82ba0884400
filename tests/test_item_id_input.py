"""Item identity on the input side (``item_id_embedding``): where it enters, that it starts as
the model without it, and what trains it (tied: the item head's own rows)."""

import pytest
import torch

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.inputs import last_items, next_item_labels
from recbole_mixrec.model.item_id_input import ItemIdInput
from recbole_mixrec.model.losses import next_item_loss
from recbole_mixrec.model.mixrec import MixRec
from recbole_mixrec.quick_start import build_config


def test_item_id_input_modes():
    items = torch.tensor([[3, 1, 0], [2, 0, 0]])
    head = torch.randn(5, 4)
    separate = ItemIdInput("separate", 5, 4)
    assert separate(items, head).abs().sum() == 0  # zero at the start
    with torch.no_grad():
        separate.embedding.weight.normal_()
    out = separate(items, head)
    torch.testing.assert_close(out[0, 0], separate.embedding.weight[3])
    assert out[0, 2].abs().sum() == 0 and out[1, 1:].abs().sum() == 0  # padding adds nothing
    tied = ItemIdInput("tied", 5, 4)
    assert tied(items, head).abs().sum() == 0
    with torch.no_grad():
        tied.scale.fill_(0.5)
    torch.testing.assert_close(tied(items, head)[0, :2], 0.5 * head[[3, 1]])
    assert ItemIdInput("none", 5, 4)(items, head) is None
    assert not list(ItemIdInput("none", 5, 4).parameters())
    with pytest.raises(MixRecError, match="item_id_embedding"):
        ItemIdInput("shared", 5, 4)


def _model(tiny_config_dict, splits, mode):
    config = build_config("MixRec_base", "ml-100k", config_dict={**tiny_config_dict, "item_id_embedding": mode})
    torch.manual_seed(0)
    return MixRec(config, splits[0]._dataset)


@pytest.mark.parametrize("mode", ["separate", "tied"])
def test_item_ids_start_as_the_model_without_them_and_enter_at_seq_markers_only(
    tiny_config_dict, ml100k_splits, mode
):
    batch = next(iter(ml100k_splits[0]))
    plain = _model(tiny_config_dict, ml100k_splits, "none").eval()
    model = _model(tiny_config_dict, ml100k_splits, mode).eval()
    model.load_state_dict(plain.state_dict(), strict=False)  # same weights; the new ones stay at zero
    items = torch.arange(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch), plain.full_sort_predict(batch))
        align_before = model.item_representation(items)
        if mode == "separate":
            model.item_id_input.embedding.weight.normal_()
        else:
            model.item_id_input.scale.fill_(1.0)
        # a [SEQ] state reads the ids of the items before it; an [ALIGN] state does not
        assert not torch.allclose(model.full_sort_predict(batch), plain.full_sort_predict(batch), atol=1e-4)
        torch.testing.assert_close(model.item_representation(items), align_before)
        # it enters at the markers: a history whose window items have zero vectors is unchanged
        if mode == "separate":
            window, _ = last_items(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], model.max_seq_items)
            model.item_id_input.embedding.weight[window.unique()] = 0
            reference, _, _ = plain.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.USER_ID])
            torch.testing.assert_close(
                model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.USER_ID])[0], reference
            )


def test_tied_item_ids_train_the_head_rows_of_the_items_read(tiny_config_dict, ml100k_splits):
    model = _model(tiny_config_dict, ml100k_splits, "tied").eval()  # eval: the head's statistics stay put
    with torch.no_grad():
        model.item_id_input.scale.fill_(1.0)
    batch = next(iter(ml100k_splits[0]))
    hidden, window, count = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.USER_ID])
    labels = next_item_labels(window, count, batch[model.POS_ITEM_ID])
    weight = model.item_projection.weight

    def loss_seq(states):
        return next_item_loss(model.item_projection(states, "seq", labels > 0), labels)

    grad_all, grad_scale = torch.autograd.grad(loss_seq(hidden), (weight, model.item_id_input.scale))
    (grad_head,) = torch.autograd.grad(loss_seq(hidden.detach()), weight)
    # what the tied input adds to W_item's gradient lands on the rows of the items read, only there
    through_input = (grad_all - grad_head).abs().sum(1)
    read = torch.zeros(weight.size(0), dtype=torch.bool)
    read[window[window > 0]] = True
    assert through_input[read].min() > 0
    assert through_input[~read].max() == 0
    assert grad_scale.abs() > 0
