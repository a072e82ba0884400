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

Layout: q/k/v come token-major, ``[B, L, H, d]`` (as the projections produce them), and every
re-ordering (blocks, interleave, back to tokens) is a row ``index_select`` of ``[B * L, H * d]``:
whole contiguous rows are copied, and the backward is a row ``index_add``. Both are several times
cheaper than an element-wise ``gather`` / ``scatter_add`` on ``[B, H, L, d]`` (measured on CPU
and H100), and the experts' outputs come back as ``[B, T, H * d]``, ready for the output
projection without a transpose copy.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recbole_mixrec.model.masks import causal_mask, context_mask


@dataclass
class ContextBlocks:
    """Token positions of each segment (prefix block first, then item slots).

    index ``[B, NB, Lb]`` positions into the sequence; valid ``[B, NB, Lb]``;
    cf_slot ``[B, NB]`` the item CF slot a block may see (-1: none, the prefix block);
    rows ``[B * NB * Lb]`` the same positions as rows of ``[B * T, ...]``;
    token_rows ``[B * T]`` each token's row in the block layout (padding tokens: row 0,
    whose output is never read).
    """

    index: torch.Tensor
    valid: torch.Tensor
    cf_slot: torch.Tensor
    rows: torch.Tensor
    token_rows: torch.Tensor


def context_blocks(segments, n_slots):
    """Blocks from ``segments`` ``[B, T]``: tokens of one segment are contiguous and segments
    come in order (prefix, slot 0, slot 1, ..., padding), as ``pack_items`` lays them out."""
    batch, length = segments.shape
    device = segments.device
    n_blocks = n_slots + 1
    one_hot = F.one_hot((segments + 1).clamp(min=0), n_blocks + 1)[..., :n_blocks]
    lengths = (one_hot * (segments >= -1).unsqueeze(-1)).sum(1)  # [B, NB]
    starts = lengths.cumsum(1) - lengths
    width = max(int(lengths.max()), 1)
    offsets = torch.arange(width, device=device)
    index = starts.unsqueeze(-1) + offsets
    valid = offsets < lengths.unsqueeze(-1)
    index = torch.where(valid, index, torch.zeros_like(index))
    cf_slot = torch.arange(-1, n_slots, device=device).expand(batch, -1)
    rows = index + _batch_offsets(batch, length, device).unsqueeze(-1)
    # inverse map; entries of unused block places go to a spare row that is cut off
    target = torch.where(valid, rows, torch.full_like(rows, batch * length)).reshape(-1)
    token_rows = torch.zeros(batch * length + 1, dtype=torch.long, device=device)
    token_rows.scatter_(0, target, torch.arange(target.numel(), device=device))
    return ContextBlocks(index, valid, cf_slot, rows.reshape(-1), token_rows[:-1])


def _batch_offsets(batch, length, device):
    """``[B, 1]`` first row of each sequence in a ``[B * length, ...]`` row layout."""
    return (torch.arange(batch, device=device) * length).unsqueeze(1)


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
    """Everything the experts need about one packed batch, built once per forward pass.

    ``causal_rows`` ``[B * (T + C)]``: rows of ``[tokens; CF]`` in the causal expert's
    interleaved order; ``causal_token_rows`` ``[B * T]``: each token's row in that order.
    """

    blocks: ContextBlocks
    segments: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    cf_valid: torch.Tensor | None  # [B, C]
    causal_rows: torch.Tensor | None
    causal_token_rows: torch.Tensor | None

    @classmethod
    def build(cls, segments, attention_mask, cf_valid=None, n_slots=None, cf_in_causal=False):
        """``cf_in_causal``: build the causal expert's interleaved order of tokens and CF keys
        (only needed when that expert sees the CF vectors)."""
        n_slots = n_slots if n_slots is not None else int(segments.max()) + 1
        rows = token_rows = None
        if cf_valid is not None and cf_in_causal:
            order, positions = causal_interleave(segments, cf_valid)
            offsets = _batch_offsets(segments.size(0), order.size(1), segments.device)
            rows, token_rows = (order + offsets).reshape(-1), (positions + offsets).reshape(-1)
        return cls(context_blocks(segments, n_slots), segments, attention_mask, cf_valid, rows, token_rows)

    def causal_dense(self, with_cf=True):
        """The dense ``[B, T, T + C]`` causal mask (``[B, T, T]`` without CF; reference path only)."""
        return causal_mask(self.segments, self.attention_mask, self.cf_valid if with_cf else None)


def _rows(x):
    """Token-major ``[B, L, H, d]`` -> ``[B * L, H * d]`` (a view when ``x`` is contiguous)."""
    return x.reshape(-1, x.size(-2) * x.size(-1))


def repeat_kv(x, heads):
    """Grouped-query attention: ``[N, L, Hkv, d]`` -> ``[N, L, heads, d]``, key/value head
    ``h // (heads / Hkv)`` serving query head ``h`` (as the backbones do)."""
    batch, length, kv_heads, dim = x.shape
    if kv_heads == heads:
        return x
    groups = heads // kv_heads
    return x.unsqueeze(3).expand(-1, -1, -1, groups, -1).reshape(batch, length, heads, dim)


def _sdpa_rows(q, k, v, **kwargs):
    """SDPA on token-major inputs, q ``[N, L, H, d]``, k/v ``[N, S, Hkv, d]``; output as rows
    ``[N * L, H * d]``. On CPU the flash kernel takes grouped K/V as they are; the CUDA fp32
    kernels do not (they would fall back to the slow math path), so K/V are repeated there."""
    gqa = k.size(2) != q.size(2)
    if gqa and q.device.type != "cpu":
        k, v, gqa = repeat_kv(k, q.size(2)), repeat_kv(v, q.size(2)), False
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), enable_gqa=gqa, **kwargs
    )
    return _rows(out.transpose(1, 2))


def context_attention(q, k, v, k_cf, v_cf, masks, scale):
    """Context expert: per-block SDPA. q ``[B, T, H, d]``; k/v ``[B, T, Hkv, d]``; k_cf/v_cf
    ``[B, C, Hkv, d]`` or None. Returns ``[B, T, H * d]``."""
    batch, length, heads, dim = q.shape
    blocks = masks.blocks
    n_blocks, width = blocks.index.shape[1:]

    def per_block(x):
        return _rows(x).index_select(0, blocks.rows).view(batch * n_blocks, width, x.size(2), dim)

    qb, kb, vb = per_block(q), per_block(k), per_block(v)
    key_valid = blocks.valid.reshape(batch * n_blocks, width)
    if k_cf is not None:
        # each block also sees the user's CF key and its own item's CF key
        n_cf = k_cf.size(1)
        slot = blocks.cf_slot.clamp(min=0) + 1  # CF position of the block's item
        pick = torch.stack([torch.zeros_like(slot), slot], dim=-1)  # [B, NB, 2]
        extra_valid = masks.cf_valid.gather(1, pick.view(batch, -1)).view(batch, n_blocks, 2)
        extra_valid = extra_valid & torch.stack(
            [torch.ones_like(slot, dtype=torch.bool), blocks.cf_slot >= 0], dim=-1
        )
        cf_rows = (pick + _batch_offsets(batch, n_cf, q.device).unsqueeze(-1)).reshape(-1)
        kb, vb = (
            torch.cat([xb, _rows(x_cf).index_select(0, cf_rows).view(batch * n_blocks, 2, x_cf.size(2), dim)], dim=1)
            for xb, x_cf in ((kb, k_cf), (vb, v_cf))
        )
        key_valid = torch.cat([key_valid, extra_valid.view(batch * n_blocks, 2)], dim=1)
    # empty blocks (unused slots) stay finite; their output is never read. Not in place:
    # key_valid may be a view of blocks.valid, which later layers read again.
    first = torch.zeros_like(key_valid)
    first[:, 0] = True
    key_valid = key_valid | first
    out = _sdpa_rows(qb, kb, vb, attn_mask=key_valid[:, None, None, :], scale=scale)
    return out.index_select(0, blocks.token_rows).view(batch, length, heads * dim)


def causal_attention(q, k, v, k_cf, v_cf, masks, scale):
    """Causal expert: one mask-free causal SDPA call over tokens and interleaved CF keys.
    q ``[B, T, H, d]``; k/v ``[B, T, Hkv, d]``; k_cf/v_cf ``[B, C, Hkv, d]`` or None.
    Returns ``[B, T, H * d]``."""
    batch, length, heads, dim = q.shape
    if k_cf is None:
        return _sdpa_rows(q, k, v, is_causal=True, scale=scale).view(batch, length, heads * dim)
    total = length + k_cf.size(1)

    def interleaved(x, x_cf):
        return _rows(torch.cat([x, x_cf], dim=1)).index_select(0, masks.causal_rows).view(batch, total, -1, dim)

    # CF positions also act as queries here (a handful of rows); their outputs are dropped
    q_cf = q.new_zeros(batch, k_cf.size(1), heads, dim)
    out = _sdpa_rows(
        interleaved(q, q_cf), interleaved(k, k_cf), interleaved(v, v_cf),
        is_causal=True, scale=scale,
    )
    return out.index_select(0, masks.causal_token_rows).view(batch, length, heads * dim)


def dense_reference_attention(q, k, v, k_cf, v_cf, mask, scale):
    """The straightforward version: a per-head ``[B, H, T, T + C]`` mask and explicit softmax.
    Same layouts as the experts: token-major in, ``[B, T, H * d]`` out."""
    batch, length, heads, dim = q.shape
    if k_cf is not None:
        k, v = torch.cat([k, k_cf], dim=1), torch.cat([v, v_cf], dim=1)
    else:
        mask = mask[..., :length]
    k, v = repeat_kv(k, heads), repeat_kv(v, heads)
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    per_head = mask.unsqueeze(1).expand(-1, heads, -1, -1).contiguous()
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~per_head, float("-inf"))
    out = scores.softmax(-1) @ v
    return out.transpose(1, 2).reshape(batch, length, heads * dim)


def expert_attention(q, k, v, k_cf, v_cf, masks, scale, impl="blocks", context_is_causal=False,
                     cf_in_causal=False):
    """Both experts' attention outputs ``(causal, context)``, each ``[B, T, H * d]``, from
    token-major q ``[B, T, H, d]``, k/v ``[B, T, Hkv, d]`` and CF keys/values ``[B, C, Hkv, d]``
    (or None); ``Hkv`` < ``H`` is grouped-query attention.

    The CF keys enter the context expert; the causal one sees them only with ``cf_in_causal``
    (the paper's MASK_causal is false on the CF column). ``context_is_causal`` gives the
    paper's parameter-matched control (both experts causal).
    """
    causal_cf = (k_cf, v_cf) if cf_in_causal else (None, None)
    if impl == "dense":
        causal_mask_ = masks.causal_dense(with_cf=cf_in_causal)
        causal = dense_reference_attention(q, k, v, *causal_cf, causal_mask_, scale)
        if context_is_causal:
            return causal, causal
        ctx = context_mask(masks.segments, masks.attention_mask, masks.cf_valid)
        return causal, dense_reference_attention(q, k, v, k_cf, v_cf, ctx, scale)
    causal = causal_attention(q, k, v, *causal_cf, masks, scale)
    if context_is_causal:
        return causal, causal
    return causal, context_attention(q, k, v, k_cf, v_cf, masks, scale)
