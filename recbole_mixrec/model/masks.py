"""Attention masks of MixRec's two experts (spec sections 3.1 and 3.2), dense form.

Keys are the ``T`` tokens followed by ``C = 1 + n`` collaborative (CF) positions: the user's
vector, then one vector per history item slot. ``segments[b, t]`` is the item slot of token t
(its ``[SEQ]``/``[ALIGN]`` included), -1 for prompt/prefix tokens, -2 for padding.

* causal: token t sees tokens s <= t, the user vector, and the CF vector of every item slot
  j <= segment(t) (item j's own tokens and all later items' tokens see it).
* context: token t sees the tokens of its own segment (bidirectional), the user vector and its
  own item's CF vector.

So no position sees the tokens or the CF vector of an item after its own, in particular not of
the item its ``[SEQ]`` predicts. Every query also sees itself, so padding rows stay finite.
These dense masks define the semantics; ``attention.py`` computes the same attention without
building them per head.
"""

import torch


def _with_cf(tokens, segments, cf_valid, item_visible):
    """Append the CF columns to a ``[B, T, T]`` token mask: the user's vector for every query,
    item slot j where ``item_visible(j, segment)``; only CF positions that exist."""
    batch = segments.size(0)
    n_slots = (cf_valid.size(1) - 1) if cf_valid is not None else 0
    if cf_valid is None:
        cf_valid = torch.zeros(batch, 1, dtype=torch.bool, device=segments.device)
    slot = torch.arange(n_slots, device=segments.device).view(1, 1, -1)
    item_cf = item_visible(slot, segments.unsqueeze(2))
    cf = torch.cat([torch.ones_like(item_cf[..., :1]), item_cf], dim=2) & cf_valid.unsqueeze(1)
    return _with_self(torch.cat([tokens, cf], dim=2))


def causal_mask(segments, attention_mask, cf_valid=None):
    """``[B, T, T + C]`` boolean, True = may attend.

    Args:
        segments (LongTensor): ``[B, T]``.
        attention_mask (LongTensor): ``[B, T]`` 1 for real tokens.
        cf_valid (BoolTensor | None): ``[B, C]`` which CF positions exist (user, item slots).
    """
    length = segments.size(1)
    tokens = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    tokens = tokens.unsqueeze(0) & attention_mask.bool().unsqueeze(1)
    # item slot j is visible from its own segment and every later one
    return _with_cf(tokens, segments, cf_valid, lambda slot, segment: slot <= segment)


def context_mask(segments, attention_mask, cf_valid=None):
    """``[B, T, T + C]`` boolean: same-segment tokens, the user vector, the own item's vector."""
    tokens = (segments.unsqueeze(2) == segments.unsqueeze(1)) & attention_mask.bool().unsqueeze(1)
    return _with_cf(tokens, segments, cf_valid, lambda slot, segment: slot == segment)


def _with_self(mask):
    length = mask.size(1)
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    mask[:, :, :length] |= eye
    return mask
