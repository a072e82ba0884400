"""MixRec's losses, one function per equation (spec sections 2 and 3.5)."""

import torch.nn.functional as F


def next_item_loss(logits, labels):
    """L_seq (spec 2, "Link next item"): every ``[SEQ]`` position predicts its next item.

    Args:
        logits (FloatTensor): ``[B, n, n_items]`` scores at each item's ``[SEQ]``.
        labels (LongTensor): ``[B, n]`` the next item at each position, 0 where there is none.
    Returns:
        The mean cross-entropy over the supervised positions (the paper sums; the mean keeps
        the scale independent of batch size and history length).
    """
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=0)


def alignment_loss(logits, items):
    """L_align (spec 2, "Semantic alignment"): ``[ALIGN]`` after an item's text predicts its id.

    Args:
        logits (FloatTensor): ``[A, n_items]``.
        items (LongTensor): ``[A]``.
    """
    return F.cross_entropy(logits, items)
