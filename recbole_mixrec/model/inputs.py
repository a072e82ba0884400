"""Token sequences built from item ids (spec section 2).

A history becomes ``prefix T_1 [SEQ] T_2 [SEQ] ... T_n [SEQ]``; an alignment input becomes
``prefix prompt T_i [ALIGN]``. Special tokens are written as ids >= the backbone's vocabulary
size (``vocab_size + k``) and embedded by MixRec's own trainable table.
"""

import torch


def last_items(item_seq, item_len, max_items):
    """The last ``max_items`` items of each left-aligned history, left-aligned.

    Args:
        item_seq (LongTensor): ``[B, N]`` item ids, padding 0 after ``item_len``.
        item_len (LongTensor): ``[B]``.
    Returns:
        (LongTensor ``[B, m]``, LongTensor ``[B]``): the window (padding 0) and its lengths.
    """
    width = min(max_items, item_seq.size(1))
    start = (item_len - width).clamp(min=0)
    slots = torch.arange(width, device=item_seq.device)
    index = (start.unsqueeze(1) + slots).clamp(max=item_seq.size(1) - 1)
    count = item_len - start
    window = item_seq.gather(1, index) * (slots < count.unsqueeze(1))
    return window, count


def pack_items(items, item_count, token_ids, token_lengths, marker_id, prefix_ids):
    """Concatenate item sentences, each followed by a marker token, into right-padded rows.

    Args:
        items (LongTensor): ``[B, n]`` item ids, the first ``item_count[b]`` valid.
        item_count (LongTensor): ``[B]``.
        token_ids (LongTensor): ``[n_items, T]`` the tokenised item store.
        token_lengths (LongTensor): ``[n_items]``.
        marker_id (int): id written after each item (``[SEQ]`` or ``[ALIGN]``).
        prefix_ids (LongTensor): ``[P]`` tokens put before the first item (BOS, prompt).
    Returns:
        input_ids ``[B, L]`` (padding 0), attention_mask ``[B, L]``, marker_positions ``[B, n]``
        (position of the marker after each item; 0 for invalid slots), segments ``[B, L]``
        (the item slot of each token, its marker included; -1 for prefix tokens, -2 for padding).
    """
    batch, n_slots = items.shape
    tokens = token_ids[items]  # [B, n, T]
    lengths = token_lengths[items] * (
        torch.arange(n_slots, device=items.device) < item_count.unsqueeze(1)
    )
    width = tokens.size(2) + 1
    pieces = torch.cat([tokens, tokens.new_zeros(batch, n_slots, 1)], dim=2)
    pieces.scatter_(2, lengths.unsqueeze(2), marker_id)
    offsets = torch.arange(width, device=items.device)
    valid = offsets.view(1, 1, -1) <= lengths.unsqueeze(2)  # item tokens and the marker
    valid &= (torch.arange(n_slots, device=items.device) < item_count.unsqueeze(1)).unsqueeze(2)

    prefix = prefix_ids.to(items.device).expand(batch, -1)
    flat_ids = torch.cat([prefix, pieces.view(batch, -1)], dim=1)
    flat_valid = torch.cat(
        [torch.ones_like(prefix, dtype=torch.bool), valid.view(batch, -1)], dim=1
    )
    # position of each valid token once the gaps are squeezed out
    packed_pos = flat_valid.long().cumsum(1) - 1
    seq_len = int(flat_valid.sum(1).max())
    input_ids = flat_ids.new_zeros(batch, seq_len)
    rows = torch.arange(batch, device=items.device).unsqueeze(1).expand_as(flat_ids)
    input_ids[rows[flat_valid], packed_pos[flat_valid]] = flat_ids[flat_valid]
    attention_mask = torch.arange(seq_len, device=items.device) < flat_valid.sum(1, keepdim=True)

    flat_segments = torch.cat(
        [torch.full_like(prefix, -1), torch.arange(n_slots, device=items.device).repeat_interleave(width).expand(batch, -1)],
        dim=1,
    )
    segments = torch.full_like(input_ids, -2)
    segments[rows[flat_valid], packed_pos[flat_valid]] = flat_segments[flat_valid]

    marker_flat = prefix.size(1) + torch.arange(n_slots, device=items.device) * width
    marker_index = marker_flat.unsqueeze(0) + lengths  # [B, n] index into the flat layout
    marker_positions = packed_pos.gather(1, marker_index) * (lengths > 0)
    return input_ids, attention_mask.long(), marker_positions, segments


def length_groups(lengths, ratio):
    """Rows of a batch in groups of similar length, longest first: a row starts a new group when
    it is shorter than ``ratio`` times its group's longest, so padding at most ``1 / ratio``-folds
    a group's tokens. ``ratio`` None: one group, the batch as it is.

    Args:
        lengths (LongTensor): ``[B]`` tokens of each row.
    Returns:
        list of LongTensor: row indices of each group.
    """
    if ratio is None:
        return [torch.arange(lengths.numel(), device=lengths.device)]
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    groups, start = [], 0  # a group's longest row is its first
    for i in range(1, len(sorted_lengths)):
        if sorted_lengths[i] < ratio * sorted_lengths[start]:
            groups.append(order[start:i])
            start = i
    groups.append(order[start:])
    return groups


def next_item_labels(window, count, target, supervised=None):
    """L_seq labels ``[B, m]``: position j predicts window item j+1, the last read item
    predicts the sample's target; 0 (ignored) after ``count``. ``supervised`` N: only each
    row's last N positions keep their label, the earlier ones being an overlapping earlier
    window's (``train_window_stride``)."""
    labels = torch.cat([window[:, 1:], window.new_zeros(window.size(0), 1)], dim=1)
    labels = labels.scatter(1, (count - 1).unsqueeze(1), target.unsqueeze(1))
    if supervised is not None:
        positions = torch.arange(window.size(1), device=window.device)
        labels = labels.masked_fill(positions < (count - supervised).unsqueeze(1), 0)
    return labels


def supervised_positions(config):
    """How many last positions of a training window L_seq supervises: ``train_window_stride``
    where ``windows`` overlap (see ``MixRecDataset``), else None (every position)."""
    stride = config["train_window_stride"]
    if config["train_samples"] != "windows" or stride is None or stride >= config["max_seq_items"]:
        return None
    return stride
