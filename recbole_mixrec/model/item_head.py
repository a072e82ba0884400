"""The item projection head W_item h + b_item (spec 2), with what its input needs to be learnable.

The last-layer states of a decoder LLM at a marker token are dominated by a few huge
dimensions shared by every input (measured on SmolLM2, 6 layers: norm about 40, 99.4% of the
squared norm shared by every user, mean cosine between two users' ``[SEQ]`` states 0.994). A
linear head on them sees nearly the same vector for everyone. So the head reads each state
standardised per dimension with running statistics, kept apart for the ``[SEQ]`` states that
rank items and the ``[ALIGN]`` states of L_align (different prompts, different means):

    logits = W_item standardise(h) / sqrt(d) + b_item

and can start from the data instead of noise (``ItemHead.init_from_data``): row i of W_item is
item i's own standardised ``[ALIGN]`` state (unit length, times ``head_init_scale``), so items
that are never a training target still score by their text; b_item starts at the log
popularity of the training items, so an untrained model ranks like ``Pop`` plus text similarity.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_mixrec.errors import MixRecError

HEAD_INPUTS = ("standardize", "raw")


class RunningStandardizer(nn.Module):
    """``(x - mean) / std`` per dimension, with running statistics.

    NOTE: not ``nn.BatchNorm1d``: batch statistics in training would normalise the 8-odd
    alignment items of a batch by themselves, and train and eval would see different maps.
    Here training and evaluation both use the running statistics (no gradient through them);
    training updates them after each batch, so they follow the adapters as they learn.
    """

    def __init__(self, dim, momentum, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def set_statistics(self, rows):
        """Statistics from ``rows`` ``[N, d]`` (overwrites the running ones)."""
        self.mean.copy_(rows.mean(0))
        self.var.copy_(rows.var(0, unbiased=False))
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, rows):
        if rows.size(0) < 2:
            return
        if not bool(self.initialised):  # the first batch sets them (no init pass was run)
            self.set_statistics(rows)
            return
        self.mean.lerp_(rows.mean(0), self.momentum)
        self.var.lerp_(rows.var(0, unbiased=False), self.momentum)

    def forward(self, x, valid=None):
        """``valid`` ``[...]``: which rows of ``x`` ``[..., d]`` count for the statistics."""
        if self.training:
            rows = x.detach()
            self.update(rows[valid] if valid is not None else rows.reshape(-1, x.size(-1)))
        return (x - self.mean) * torch.rsqrt(self.var + self.eps)


class ItemHead(nn.Linear):
    """Scores of every item ``[..., n_items]`` from last-layer states ``[..., d]``.

    A ``nn.Linear`` (W_item, b_item keep the parameter names of a plain head, so checkpoints
    of the plain head load with ``head_input: raw``) that standardises its input first.

    Args:
        hidden_size (int): d.
        n_items (int): RecBole's ``n_items`` (id 0 is padding).
        head_input (str): 'standardize' (default) or 'raw' (the plain linear head of the paper).
        momentum (float): running-statistics update per batch.
        init_std (float): std of the random init of W_item (before ``init_from_data``).
        dropout (float): dropout on what W_item multiplies, in training (the head is most of
            MixRec's trainable weights and the part that overfits first).
    """

    def __init__(self, hidden_size, n_items, head_input="standardize", momentum=0.01, init_std=0.02, dropout=0.0):
        super().__init__(hidden_size, n_items)
        if head_input not in HEAD_INPUTS:
            raise MixRecError(f"head_input '{head_input}' is not one of {list(HEAD_INPUTS)}")
        self.head_input = head_input
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.weight, std=init_std)
        nn.init.zeros_(self.bias)
        if head_input == "standardize":
            self.seq_norm = RunningStandardizer(hidden_size, momentum)
            self.align_norm = RunningStandardizer(hidden_size, momentum)

    def head_input_of(self, hidden, kind="seq", valid=None):
        """What W_item multiplies: the standardised state scaled to about unit length."""
        if self.head_input == "raw":
            return hidden
        norm = self.seq_norm if kind == "seq" else self.align_norm
        return norm(hidden, valid) / math.sqrt(hidden.size(-1))

    def forward(self, hidden, kind="seq", valid=None):
        """``kind``: 'seq' (``[SEQ]`` states, ranking) or 'align' (``[ALIGN]`` states, L_align);
        ``valid``: the rows that are real states (padding slots do not enter the statistics)."""
        return F.linear(self.dropout(self.head_input_of(hidden, kind, valid)), self.weight, self.bias)

    def text_rows(self, align_states):
        """Each item's standardised ``[ALIGN]`` state at unit length, row 0 (padding) zero: the
        rows W_item starts from with ``head_init: text``."""
        rows = F.normalize(self.head_input_of(align_states, "align"), dim=-1)
        rows[0] = 0
        return rows

    @torch.no_grad()
    def init_from_data(self, seq_states, align_states, item_counts, scale, text=True, popularity=True):
        """Start from the data (see the module docstring).

        Args:
            seq_states (Tensor | None): ``[N, d]`` ``[SEQ]`` states of training histories.
            align_states (Tensor | None): ``[n_items, d]`` ``[ALIGN]`` state of every item (row 0
                padding); needed for ``text`` and for a standardised input.
            item_counts (Tensor): ``[n_items]`` training interactions per item.
            scale (float): length of each W_item row when ``text``.
        Call it in eval mode (the statistics are set here, not updated).
        """
        if self.head_input == "standardize":
            self.align_norm.set_statistics(align_states[1:])
            self.seq_norm.set_statistics(seq_states if seq_states is not None else align_states[1:])
        if text:
            self.weight.copy_(self.text_rows(align_states) * scale)
        if popularity:
            # log of the add-one smoothed popularity: an untrained model ranks like Pop
            counts = item_counts.float() + 1
            bias = (counts / counts[1:].sum()).log()
            bias[0] = bias[1:].min()
            self.bias.copy_(bias)
