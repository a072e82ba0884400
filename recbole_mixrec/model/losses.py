"""MixRec's losses, one function per equation (spec sections 2 and 3.5)."""

import torch
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

    y_hat_i = softmax(W_item h_i^ALIGN + b_item); L_align = cross-entropy with the item's own
    ID, -log y_hat_i[i].

    Args:
        logits (FloatTensor): ``[A, n_items]`` the item head's scores W_item h_i^ALIGN + b_item.
        items (LongTensor): ``[A]`` the items i whose text was read.
    Returns:
        The mean over the A items (the paper sums; the mean as for L_seq).
    """
    return F.cross_entropy(logits, items)


def info_nce(anchors, positives, negatives, negative_mask, temperature):
    """L_cl (spec 2, "Distinguish hard samples"): InfoNCE with f(a, b) = exp(cos(a, b) / tau),
    L_cl = - sum log f(h_{u,j}^SEQ, h_{j+}^ALIGN)
                / (f(h_{u,j}^SEQ, h_{j+}^ALIGN) + sum_{j-} f(h_{u,j}^SEQ, h_{j-}^ALIGN)).

    Args:
        anchors (FloatTensor): ``[S, d]`` h^SEQ at the sampled positions.
        positives (FloatTensor): ``[S, d]`` h^ALIGN of each position's next item.
        negatives (FloatTensor): ``[S, K, d]`` h^ALIGN of hard negatives of that next item.
        negative_mask (BoolTensor): ``[S, K]`` which negatives exist.
        temperature (float): tau.
    Returns:
        mean over S of -log f(a, p) / (f(a, p) + sum_n f(a, n)) (the paper sums).
    """
    pos = F.cosine_similarity(anchors, positives, dim=-1) / temperature
    neg = F.cosine_similarity(anchors.unsqueeze(1), negatives, dim=-1) / temperature
    neg = neg.masked_fill(~negative_mask, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return -(pos - logits.logsumexp(dim=1)).mean()


def bpr_loss(positive_scores, negative_scores):
    """L_cf (spec 3.2): BPR, -log sigmoid(s(u, i+) - s(u, i-)), mean over the triples.

    Args:
        positive_scores (FloatTensor): ``[N]`` CF scores of (user, interacted item).
        negative_scores (FloatTensor): ``[N]`` CF scores of (user, sampled item).
    """
    return -F.logsigmoid(positive_scores - negative_scores).mean()
