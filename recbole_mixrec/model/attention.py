"""Attention of the two DAMoE experts over tokens plus CF key/value positions (spec 3.1-3.3).

``expert_attention`` computes both experts from one set of Q/K/V:

* causal expert: the CF key/value positions are interleaved into the sequence (the user's
  vector first, item j's vector right before item j's tokens), where plain causal order gives
  exactly the causal mask of ``masks.py``; so one mask-free ``is_causal`` SDPA call does it;
* context expert: its attention is block-diagonal per item, so each item's tokens attend
  within their own block (plus the user's and the item's CF keys) in one batched SDPA call
  over ``[B * blocks, H, block_len, d]``: cost O(T * block_len), no ``[B, H, T, T]`` tensor.

``dense_reference_attention`` is the straightforward version (explicit per-head dense masks and
softmax) that tests and benchmarks compare against.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recbole_mixrec.model.masks import causal_mask, context_mask


@dataclass
class ContextBlocks:
    """Token positions of each segment (prefix block first, then item slots).

    index ``[B, NB, Lb]`` positions into the sequence; valid ``[B, NB, Lb]``;
    cf_slot ``[B, NB]`` the item CF slot a block may see (-1: none, the prefix block).
    """

    index: torch.Tensor
    valid: torch.Tensor
    cf_slot: torch.Tensor


def context_blocks(segments, n_slots):
    """Blocks from ``segments`` ``[B, T]``: tokens of one segment are contiguous and segments
    come in order (prefix, slot 0, slot 1, ..., padding), as ``pack_items`` lays them out."""
    batch = segments.size(0)
    n_blocks = n_slots + 1
    one_hot = F.one_hot((segments + 1).clamp(min=0), n_blocks + 1)[..., :n_blocks]
    lengths = (one_hot * (segments >= -1).unsqueeze(-1)).sum(1)  # [B, NB]
    starts = lengths.cumsum(1) - lengths
    width = max(int(lengths.max()), 1)
    offsets = torch.arange(width, device=segments.device)
    index = starts.unsqueeze(-1) + offsets
    valid = offsets < lengths.unsqueeze(-1)
    index = torch.where(valid, index, torch.zeros_like(index))
    cf_slot = torch.arange(-1, n_slots, device=segments.device).expand(batch, -1)
    return ContextBlocks(index, valid, cf_slot)


def causal_interleave(segments, cf_valid):
    """Order of the keys for the causal expert: ``[B, T + C]`` indices into ``[tokens; CF]``.

    The valid user vector goes first, each valid item vector right before its item's first
    token; invalid CF positions go last, after the padding, where no real token sees them.
    Returns the order and the interleaved position of every token ``[B, T]``.
    """
    batch, length = segments.shape
    n_cf = cf_valid.size(1)
    user = cf_valid[:, :1].long()  # [B, 1]
    item_valid = cf_valid[:, 1:].long()  # [B, n]
    seen = item_valid.cumsum(1)  # valid item vectors up to and including slot j
    n_valid = seen[:, -1:] if n_cf > 1 else user.new_zeros(batch, 1)
    t = torch.arange(length, device=segments.device).expand(batch, -1)
    slot = segments.clamp(min=0)
    before_token = torch.where(
        segments >= 0, seen.gather(1, slot) if n_cf > 1 else torch.zeros_like(t), torch.zeros_like(t)
    )
    before_token = torch.where(segments == -2, n_valid.expand(-1, length), before_token)
    token_pos = user + t + before_token
    # first token of each item slot, in the original layout
    first = torch.full((batch, n_cf - 1), length, device=segments.device, dtype=torch.long)
    first = first.scatter_reduce(1, slot.masked_fill(segments < 0, 0), t.masked_fill(segments < 0, length), "amin")
    item_pos = user + first + seen - 1
    invalid = ~cf_valid
    tail = length + user + n_valid + (invalid.long().cumsum(1) - 1)  # ranks among invalid ones
    cf_pos = torch.cat([torch.zeros_like(user), item_pos], dim=1)
    cf_pos = torch.where(invalid, tail, cf_pos)
    order = torch.empty(batch, length + n_cf, dtype=torch.long, device=segments.device)
    order.scatter_(1, token_pos, t)
    order.scatter_(1, cf_pos, length + torch.arange(n_cf, device=segments.device).expand(batch, -1))
    return order, token_pos


@dataclass
class ExpertMasks:
    """Everything the experts need about one packed batch, built once per forward pass."""

    blocks: ContextBlocks
    segments: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    cf_valid: torch.Tensor | None  # [B, C]
    causal_order: torch.Tensor | None  # [B, T + C] (see causal_interleave)
    token_positions: torch.Tensor | None  # [B, T]

    @classmethod
    def build(cls, segments, attention_mask, cf_valid=None, n_slots=None):
        n_slots = n_slots if n_slots is not None else int(segments.max()) + 1
        order = positions = None
        if cf_valid is not None:
            order, positions = causal_interleave(segments, cf_valid)
        return cls(context_blocks(segments, n_slots), segments, attention_mask, cf_valid, order, positions)

    def causal_dense(self):
        """The dense ``[B, T, T + C]`` causal mask (reference path only)."""
        return causal_mask(self.segments, self.attention_mask, self.cf_valid)


def _gather_blocks(x, index):
    """``x`` ``[B, H, T, d]`` -> ``[B * NB, H, Lb, d]`` at block positions ``index`` ``[B, NB, Lb]``."""
    batch, heads, _, dim = x.shape
    n_blocks, width = index.shape[1:]
    flat = index.reshape(batch, 1, n_blocks * width, 1).expand(batch, heads, -1, dim)
    out = x.gather(2, flat).view(batch, heads, n_blocks, width, dim)
    return out.transpose(1, 2).reshape(batch * n_blocks, heads, width, dim)


def context_attention(q, k, v, k_cf, v_cf, masks, scale):
    """Context expert: per-block SDPA. q/k/v ``[B, H, T, d]``; k_cf/v_cf ``[B, H, C, d]`` or None."""
    batch, heads, length, dim = q.shape
    blocks = masks.blocks
    n_blocks, width = blocks.index.shape[1:]
    qb, kb, vb = (_gather_blocks(x, blocks.index) for x in (q, k, v))
    key_valid = blocks.valid.reshape(batch * n_blocks, width)
    if k_cf is not None:
        # each block also sees the user's CF key and its own item's CF key
        slot = blocks.cf_slot.clamp(min=0) + 1  # CF position of the block's item
        pick = torch.stack([torch.zeros_like(slot), slot], dim=-1)  # [B, NB, 2]
        extra_valid = masks.cf_valid.gather(1, pick.view(batch, -1)).view(batch, n_blocks, 2)
        extra_valid = extra_valid & torch.stack(
            [torch.ones_like(slot, dtype=torch.bool), blocks.cf_slot >= 0], dim=-1
        )
        kb = torch.cat([kb, _gather_blocks(k_cf, pick)], dim=2)
        vb = torch.cat([vb, _gather_blocks(v_cf, pick)], dim=2)
        key_valid = torch.cat([key_valid, extra_valid.view(batch * n_blocks, 2)], dim=1)
    key_valid[:, 0] = True  # empty blocks (unused slots) stay finite; their output is dropped
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=key_valid[:, None, None, :], scale=scale)
    # scatter block outputs back to their positions; invalid block entries go to a spare row
    out = out.view(batch, n_blocks, heads, width, dim).transpose(1, 2).reshape(batch, heads, -1, dim)
    target = torch.where(blocks.valid, blocks.index, torch.full_like(blocks.index, length))
    result = q.new_zeros(batch, heads, length + 1, dim)
    result.scatter_(2, target.view(batch, 1, -1, 1).expand(batch, heads, -1, dim), out)
    return result[:, :, :length]


def causal_attention(q, k, v, k_cf, v_cf, masks, scale):
    """Causal expert: one mask-free causal SDPA call over tokens and interleaved CF keys."""
    if k_cf is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    batch, heads, length, dim = q.shape
    index = masks.causal_order.view(batch, 1, -1, 1).expand(-1, heads, -1, dim)
    # CF positions also act as queries here (a handful of rows); their outputs are dropped
    q_all = torch.cat([q, torch.zeros_like(k_cf)], dim=2).gather(2, index)
    k_all = torch.cat([k, k_cf], dim=2).gather(2, index)
    v_all = torch.cat([v, v_cf], dim=2).gather(2, index)
    out = F.scaled_dot_product_attention(q_all, k_all, v_all, is_causal=True, scale=scale)
    back = masks.token_positions.view(batch, 1, -1, 1).expand(-1, heads, -1, dim)
    return out.gather(2, back)


def dense_reference_attention(q, k, v, k_cf, v_cf, mask, scale):
    """The straightforward version: a per-head ``[B, H, T, T + C]`` mask and explicit softmax."""
    if k_cf is not None:
        k, v = torch.cat([k, k_cf], dim=2), torch.cat([v, v_cf], dim=2)
    else:
        mask = mask[..., : q.size(2)]
    per_head = mask.unsqueeze(1).expand(-1, q.size(1), -1, -1).contiguous()
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~per_head, float("-inf"))
    return scores.softmax(-1) @ v


def expert_attention(q, k, v, k_cf, v_cf, masks, scale, impl="blocks", context_is_causal=False):
    """Both experts' attention outputs ``(causal, context)``, each ``[B, H, T, d]``.

    ``context_is_causal`` gives the paper's parameter-matched control (both experts causal).
    """
    if impl == "dense":
        causal = dense_reference_attention(q, k, v, k_cf, v_cf, masks.causal_dense(), scale)
        if context_is_causal:
            return causal, causal
        ctx = context_mask(masks.segments, masks.attention_mask, masks.cf_valid)
        return causal, dense_reference_attention(q, k, v, k_cf, v_cf, ctx, scale)
    causal = causal_attention(q, k, v, k_cf, v_cf, masks, scale)
    if context_is_causal:
        return causal, causal
    return causal, context_attention(q, k, v, k_cf, v_cf, masks, scale)
