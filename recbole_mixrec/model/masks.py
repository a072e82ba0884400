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


def _cf_key_valid(cf_valid, batch, n_slots, device):
    if cf_valid is None:
        return torch.zeros(batch, 1 + n_slots, dtype=torch.bool, device=device)
    return cf_valid


def causal_mask(segments, attention_mask, cf_valid=None):
    """``[B, T, T + C]`` boolean, True = may attend.

    Args:
        segments (LongTensor): ``[B, T]``.
        attention_mask (LongTensor): ``[B, T]`` 1 for real tokens.
        cf_valid (BoolTensor | None): ``[B, C]`` which CF positions exist (user, item slots).
    """
    batch, length = segments.shape
    device = segments.device
    keys_valid = attention_mask.bool()
    tokens = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    tokens = tokens.unsqueeze(0) & keys_valid.unsqueeze(1)
    n_slots = (cf_valid.size(1) - 1) if cf_valid is not None else 0
    cf_valid = _cf_key_valid(cf_valid, batch, n_slots, device)
    slot = torch.arange(n_slots, device=device)
    item_cf = slot.view(1, 1, -1) <= segments.unsqueeze(2)  # slot j visible from segment >= j
    cf = torch.cat([torch.ones_like(item_cf[..., :1]), item_cf], dim=2) & cf_valid.unsqueeze(1)
    return _with_self(torch.cat([tokens, cf], dim=2))


def context_mask(segments, attention_mask, cf_valid=None):
    """``[B, T, T + C]`` boolean: same-segment tokens, the user vector, the own item's vector."""
    batch, _ = segments.shape
    device = segments.device
    keys_valid = attention_mask.bool()
    tokens = (segments.unsqueeze(2) == segments.unsqueeze(1)) & keys_valid.unsqueeze(1)
    n_slots = (cf_valid.size(1) - 1) if cf_valid is not None else 0
    cf_valid = _cf_key_valid(cf_valid, batch, n_slots, device)
    slot = torch.arange(n_slots, device=device)
    item_cf = slot.view(1, 1, -1) == segments.unsqueeze(2)
    cf = torch.cat([torch.ones_like(item_cf[..., :1]), item_cf], dim=2) & cf_valid.unsqueeze(1)
    return _with_self(torch.cat([tokens, cf], dim=2))


def _with_self(mask):
    length = mask.size(1)
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    mask[:, :, :length] |= eye
    return mask
