r"""
Hydra
################################################

Reference:
    "A Novel Mamba-based Sequential Recommendation Method" (Hydra; summary in
    ``shared/seeds/002_aa1c47c5619f374e.txt``, spec section 8): multi-head latent Mamba, i.e.
    several low-dimensional Mamba (selective state space) layers plus fully connected layers
    with positional encoding, each in its own latent subspace; linear in sequence length.

No reference implementation is public; this one follows Mamba (Gu and Dao, 2023) for the
selective SSM block. One Hydra layer::

    x_h   = x W_h                          (H latent heads of width head_size)
    x_h  += Mamba_h(LN_h(x_h))             (gated selective SSM, causal depthwise conv)
    x_h  += FC_h(LN_h(x_h))                (per-head feed-forward)
    x     = LN(x + Dropout([x_1..x_H] W_o))

The scan is ``selective_scan.selective_scan`` (chunk after chunk, parallel inside a chunk, each
chunk recomputed in backward: linear in L).
"""

import math

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.selective_scan import selective_scan, selective_scan_reference
from recbole_mixrec.properties import fill_defaults


class HeadLinear(nn.Module):
    """``H`` independent linear maps applied to ``[..., H, in]`` -> ``[..., H, out]``."""

    def __init__(self, heads, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(heads, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(heads, out_features)) if bias else None
        nn.init.uniform_(self.weight, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))

    def forward(self, x):
        out = torch.einsum("...hi,hio->...ho", x, self.weight)
        return out if self.bias is None else out + self.bias


class HeadLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a separate affine per head."""

    def __init__(self, heads, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, size))
        self.bias = nn.Parameter(torch.zeros(heads, size))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class LatentMamba(nn.Module):
    """Mamba blocks of all heads at once: ``[b, L, H, d] -> [b, L, H, d]``.

    in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> selective scan with input-dependent
    (delta, B, C) and diagonal A -> gated by SiLU(z) -> out_proj.
    """

    def __init__(self, heads, size, d_state, d_conv, expand, dt_rank, scan_chunk, scan_impl):
        super().__init__()
        inner = expand * size
        self.heads, self.inner, self.d_state, self.dt_rank = heads, inner, d_state, dt_rank
        self.scan_chunk, self.scan_impl = scan_chunk, scan_impl
        self.in_proj = HeadLinear(heads, size, 2 * inner, bias=False)
        # depthwise over the H * inner channels, left padding only: causal
        self.conv = nn.Conv1d(heads * inner, heads * inner, d_conv, groups=heads * inner, padding=d_conv - 1)
        self.x_proj = HeadLinear(heads, inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = HeadLinear(heads, dt_rank, inner)
        # Mamba's initialisation: A = -[1..N] per channel, delta in [1e-3, 1e-1] (log-uniform)
        a = torch.arange(1, d_state + 1, dtype=torch.float).repeat(heads, inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(heads, inner))
        dt = torch.exp(torch.rand(heads, inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_proj.bias.data.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.out_proj = HeadLinear(heads, inner, size, bias=False)

    def forward(self, x):
        b, length, heads, _ = x.shape
        xz = self.in_proj(x)
        u, z = xz.split(self.inner, dim=-1)
        u = self.conv(u.reshape(b, length, -1).transpose(1, 2))[..., :length]
        u = F.silu(u.transpose(1, 2).reshape(b, length, heads, self.inner))
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log)
        if self.scan_impl == "reference":
            y = selective_scan_reference(u, delta, A, B, C, self.D)
        else:
            y = selective_scan(u, delta, A, B, C, self.D, chunk=self.scan_chunk)
        return self.out_proj(y * F.silu(z))


class HydraLayer(nn.Module):
    """One multi-head latent Mamba layer (see the module docstring)."""

    def __init__(self, hidden_size, heads, head_size, ffn_expand, dropout, eps, mamba_args):
        super().__init__()
        self.heads, self.head_size = heads, head_size
        self.split = nn.Linear(hidden_size, heads * head_size)
        self.mamba_norm = HeadLayerNorm(heads, head_size, eps)
        self.mamba = LatentMamba(heads, head_size, *mamba_args)
        self.ffn_norm = HeadLayerNorm(heads, head_size, eps)
        self.ffn_in = HeadLinear(heads, head_size, ffn_expand * head_size)
        self.ffn_out = HeadLinear(heads, ffn_expand * head_size, head_size)
        self.merge = nn.Linear(heads * head_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x):
        b, length, _ = x.shape
        h = self.split(x).view(b, length, self.heads, self.head_size)
        h = h + self.dropout(self.mamba(self.mamba_norm(h)))
        h = h + self.dropout(self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(h)))))
        return self.norm(x + self.dropout(self.merge(h.reshape(b, length, -1))))


class Hydra(SequentialRecommender):
    r"""Hydra: item embeddings + learned positions through ``n_layers`` multi-head latent Mamba
    layers; the last valid position scores every item (dot product with the item embeddings).

    NOTE: the summary leaves the block layout open; decisions taken here (also in
    ``properties/model/Hydra.yaml``):
    NOTE: heads come from one linear split of the hidden state (not a reshape) and are merged by
    concat + linear, with a residual and LayerNorm around the whole multi-head layer.
    NOTE: inside a head, pre-LN residual Mamba block then pre-LN residual feed-forward (GELU).
    NOTE: Mamba details follow Mamba-1 (causal depthwise conv, SiLU gate, delta via a
    low-rank projection + softplus, A = -exp(A_log) initialised to -[1..N], D skip); B and C are
    per head (shared by the head's channels).
    NOTE: positions are learned absolute embeddings added to the item embeddings (SASRec-style)
    although the SSM itself is order-aware; the paper pairs them, so both are kept.
    NOTE: scores use the item embedding table (tied output); loss_type CE only (a softmax over
    all items, the project's common setting), so ``input_type`` is POINTWISE and RecBole's Config
    can be built by name without ``loss_type``.
    NOTE: ``hydra_text_features: True`` (the paper's LLM extension, details not given): every
    item's sentence (``item_text_fields``) is encoded once by the frozen ``text_encoder``
    (all-MiniLM-L6-v2 by default, mean pooling); a trained linear projection of that vector is
    added to the item's ID embedding, for the inputs and for the tied output scores alike.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        # a Hydra built from a Config made elsewhere; run_recbole(model="Hydra") already has them
        # from PluginSequentialDataset, before the loaders were built
        fill_defaults(config, "Hydra")
        super(Hydra, self).__init__(config, dataset)

        # load parameters info
        self.hidden_size = config["hidden_size"]
        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.head_size = config["head_size"]
        self.d_state = config["d_state"]
        self.d_conv = config["d_conv"]
        self.expand = config["expand"]
        self.dt_rank = config["dt_rank"] or math.ceil(self.head_size / 16)
        self.ffn_expand = config["ffn_expand"]
        self.scan_chunk = config["scan_chunk"]
        self.scan_impl = config["scan_impl"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.loss_type = config["loss_type"]
        self.text_features = bool(config["hydra_text_features"])
        if self.scan_impl not in ("chunked", "reference"):
            raise MixRecError(f"scan_impl '{self.scan_impl}' is not one of ['chunked', 'reference']")
        if not isinstance(self.scan_chunk, int) or self.scan_chunk < 1:
            raise MixRecError(f"scan_chunk={self.scan_chunk}: must be an integer >= 1")

        # define layers and loss
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        if self.text_features:
            from recbole_mixrec.data.item_text import item_text_vectors

            # frozen and rebuilt from the item text at load time: not part of the checkpoint
            vectors = item_text_vectors(dataset, config, self.logger)
            self.register_buffer("item_text_vectors", vectors, persistent=False)
            self.text_projection = nn.Linear(vectors.size(1), self.hidden_size)
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
        self.dropout = nn.Dropout(self.hidden_dropout_prob)
        mamba_args = (self.d_state, self.d_conv, self.expand, self.dt_rank, self.scan_chunk, self.scan_impl)
        self.layers = nn.ModuleList(
            HydraLayer(self.hidden_size, self.n_heads, self.head_size, self.ffn_expand,
                       self.hidden_dropout_prob, self.layer_norm_eps, mamba_args)
            for _ in range(self.n_layers)
        )
        if self.loss_type != "CE":
            raise MixRecError(f"Hydra supports loss_type 'CE' only, not '{self.loss_type}'")
        self.loss_fct = nn.CrossEntropyLoss()

        # parameters initialization
        nn.init.normal_(self.item_embedding.weight, std=self.initializer_range)
        nn.init.normal_(self.position_embedding.weight, std=self.initializer_range)

    def forward(self, item_seq, item_seq_len, item_table=None):
        """Hidden state at the last valid position ``[B, d]`` (histories are left-aligned).
        ``item_table``: ``item_vectors()`` when the caller already has it (one per step)."""
        return self.gather_indexes(self.sequence_states(item_seq, item_table), item_seq_len - 1)

    def sequence_states(self, item_seq, item_table=None):
        """Hidden states at every position ``[B, L, d]``; position t sees items <= t only."""
        table = self.item_vectors() if item_table is None else item_table
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        # padding_idx: no gradient into the padding row, as nn.Embedding(padding_idx=0) gives
        x = F.embedding(item_seq, table, padding_idx=0) + self.position_embedding(positions)
        x = self.dropout(self.LayerNorm(x))
        for layer in self.layers:
            x = layer(x)
        return x

    def item_vectors(self):
        """Item representations ``[n_items, d]``: the ID embeddings, plus the projected text
        vectors with text features."""
        table = self.item_embedding.weight
        if self.text_features:
            table = table + self.text_projection(self.item_text_vectors)
        return table

    def calculate_loss(self, interaction):
        table = self.item_vectors()
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], table)
        return self.loss_fct(seq_output @ table.t(), interaction[self.POS_ITEM_ID])

    def predict(self, interaction):
        table = self.item_vectors()
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], table)
        return (seq_output * table[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        table = self.item_vectors()
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], table)
        return seq_output @ table.t()  # [B, n_items]
