r"""
LiteLLM4Rec
################################################

Reference:
    Hanbing Wang et al. "Rethinking Large Language Model Architectures for Sequential
    Recommendations" (Lite-LLM4Rec, arXiv 2402.09543; seed ``shared/seeds/003_fbf896e809d03ae5.txt``,
    spec section 8). The authors' code was announced, not found; this follows the abstract.

Hierarchical LLM: an item-level LLM compresses each item's sentence into one vector, a
sequence-level encoder runs causally over the history's item vectors, and a plain item
projection head scores every item (no generation, no beam search). Training: next-item
cross-entropy at every history position (``losses.next_item_loss``), one sample per user.
"""

import json
import logging
import os
from collections import OrderedDict

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_mixrec.backbone import (
    default_cache_dir, decoder_layers, keep_layers, load_backbone, sequence_prefix_ids,
)
from recbole_mixrec.disk_cache import cache_key, load_or_build
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.adapters import insert_adapters
from recbole_mixrec.model.frozen_backbone import FrozenBackboneMixin
from recbole_mixrec.model.inputs import last_items, next_item_labels, pack_items, supervised_positions
from recbole_mixrec.model.losses import next_item_loss

logger = logging.getLogger(__name__)

_MEMORY_CACHE = OrderedDict()  # item-vector key -> FloatTensor [n_items, d] (CPU)
_MEMORY_CACHE_SIZE = 4


def item_vector_key(backbone, backbone_layers, pooling, token_ids, lengths):
    """Cache key of frozen item vectors: changes with the backbone, its depth, the pooling and
    the item token ids (which change with the text fields, the items or the tokenizer)."""
    return cache_key(
        json.dumps([str(backbone), backbone_layers, pooling]), str(tuple(token_ids.shape)), token_ids, lengths
    )


def keep_top_layers(causal_lm, num_layers):
    """Keep only the last ``num_layers`` decoder layers of ``causal_lm`` (in place;
    ``backbone.keep_layers`` renumbers them from 0)."""
    total = len(decoder_layers(causal_lm))
    if not 0 < num_layers <= total:
        raise MixRecError(f"sequence_layers={num_layers}: the backbone has {total} layers")
    keep_layers(causal_lm, range(total - num_layers, total))


class LiteLLM4Rec(FrozenBackboneMixin, SequentialRecommender):
    r"""Lite-LLM4Rec: item LLM -> item vectors -> causal sequence encoder -> item projection head.

    NOTE: item LLM = the frozen backbone (first ``backbone_layers`` layers). The item vector is
    the last hidden state at an ``[ITEM]`` token appended to the item sentence
    (``item_pooling: last``) or the mean over the sentence's tokens (``mean``).
    NOTE: ``item_encoder_trainable: False`` (default): nothing in the item LLM trains, the
    ``[ITEM]`` embedding stays at its init (the mean input embedding), so item vectors are a
    pure function of backbone and item tokens: computed once, cached in memory and on disk
    (key: ``item_vector_key``), never recomputed per epoch. ``True``: bottleneck adapters in the
    item LLM and the ``[ITEM]`` embedding train; a training batch encodes its distinct history
    items with gradients; evaluation encodes all items once without gradients and keeps them
    until the next ``train()`` call.
    NOTE: ``sequence_encoder: transformer``: item vectors -> linear -> + learned positions ->
    LayerNorm -> pre-LN causal ``nn.TransformerEncoder`` (GELU, 4x inner width) -> final LayerNorm.
    ``upper_layers``: the top ``sequence_layers`` decoder layers of a second frozen copy of the
    full-depth backbone (with adapters), fed item vectors through a trainable linear map
    initialised to the identity; the backbone's rotary positions and causal mask apply.
    NOTE: the head is ``Linear(width, n_items)`` over the sequence encoder's output; the paper
    does not say whether it is tied to item vectors (here not).
    NOTE: like MixRec, the last ``max_seq_items`` history items are read, training keeps one
    sample per user and every position predicts its next item (mean cross-entropy).
    NOTE: the frozen backbone's weights are not part of ``state_dict()`` (``FrozenBackboneMixin``).
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super(LiteLLM4Rec, self).__init__(config, dataset)

        # load parameters info
        self.backbone_name = config["backbone"]
        self.backbone_layers = config["backbone_layers"]
        self.backbone_cache_dir = config["backbone_cache_dir"] or default_cache_dir()
        self.item_pooling = config["item_pooling"]
        self.item_encoder_trainable = config["item_encoder_trainable"]
        self.item_encode_batch_size = config["item_encode_batch_size"]
        self.item_vector_disk_cache = config["item_vector_disk_cache"]
        self.sequence_encoder = config["sequence_encoder"]
        self.sequence_layers = config["sequence_layers"]
        self.sequence_hidden_size = config["sequence_hidden_size"]
        self.sequence_heads = config["sequence_heads"]
        self.sequence_dropout = config["sequence_dropout"]
        self.max_seq_items = config["max_seq_items"]
        self.supervised_positions = supervised_positions(config)
        self.adapter_bottleneck = config["adapter_bottleneck"]
        self.adapter_act = config["adapter_act"]
        self.adapter_init_std = config["adapter_init_std"]
        self.initializer_range = config["initializer_range"]
        if self.item_pooling not in ("last", "mean"):
            raise MixRecError(f"item_pooling '{self.item_pooling}' is not one of ['last', 'mean']")
        if self.sequence_encoder not in ("transformer", "upper_layers"):
            raise MixRecError(
                f"sequence_encoder '{self.sequence_encoder}' is not one of ['transformer', 'upper_layers']"
            )

        # define layers and loss
        adapter_args = (self.adapter_bottleneck, self.adapter_act, self.adapter_init_std)
        causal_lm, tokenizer = load_backbone(self.backbone_name, self.backbone_cache_dir, self.backbone_layers)
        self.item_llm = causal_lm.base_model
        frozen = [self.item_llm]
        self.vocab_size = self.item_llm.get_input_embeddings().num_embeddings
        self.item_hidden_size = self.item_llm.config.hidden_size
        if self.item_encoder_trainable:
            insert_adapters(self.item_llm, *adapter_args)
        mean_embedding = self.item_llm.get_input_embeddings().weight.mean(0, keepdim=True)
        self.item_token_embedding = nn.Parameter(
            mean_embedding.clone(), requires_grad=bool(self.item_encoder_trainable)
        )  # [ITEM]: id vocab_size in the packed inputs
        if self.sequence_encoder == "transformer":
            width = self.sequence_hidden_size
            self.input_projection = nn.Linear(self.item_hidden_size, width)
            self.position_embedding = nn.Embedding(self.max_seq_items, width)
            self.input_norm = nn.LayerNorm(width)
            self.dropout = nn.Dropout(self.sequence_dropout)
            layer = nn.TransformerEncoderLayer(
                width, self.sequence_heads, 4 * width, self.sequence_dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )
            self.sequence_model = nn.TransformerEncoder(
                layer, self.sequence_layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
            )
        else:
            upper_lm, _ = load_backbone(self.backbone_name, self.backbone_cache_dir, None)
            keep_top_layers(upper_lm, self.sequence_layers)
            self.sequence_model = upper_lm.base_model
            frozen.append(self.sequence_model)
            insert_adapters(self.sequence_model, *adapter_args)
            width = self.sequence_model.config.hidden_size
            self.input_projection = nn.Linear(self.item_hidden_size, width)
        self.item_projection = nn.Linear(width, self.n_items)
        self._init_new_weights()

        item_tokens = dataset.item_tokens
        self.register_buffer("item_token_ids", item_tokens.token_ids, persistent=False)
        self.register_buffer("item_token_lengths", item_tokens.lengths, persistent=False)
        self.register_buffer(
            "item_prefix_ids", torch.tensor(sequence_prefix_ids(tokenizer), dtype=torch.long),
            persistent=False,
        )
        self._item_vectors = None  # [n_items, d_item], no gradients
        self.mark_frozen_backbone(*frozen)

    def _init_new_weights(self):
        nn.init.normal_(self.item_projection.weight, std=self.initializer_range)
        nn.init.zeros_(self.item_projection.bias)
        if self.sequence_encoder == "transformer":
            nn.init.normal_(self.position_embedding.weight, std=self.initializer_range)
        elif self.item_hidden_size == self.input_projection.out_features:
            nn.init.eye_(self.input_projection.weight)  # start from the backbone's own space
            nn.init.zeros_(self.input_projection.bias)

    def train(self, mode=True):
        super().train(mode)
        self.item_llm.eval()  # frozen backbones never switch to training behaviour
        if self.sequence_encoder == "upper_layers":
            self.sequence_model.eval()
        if mode and self.item_encoder_trainable:
            self._item_vectors = None  # the adapters will change: re-encode at the next eval
        return self

    # ----- item level ----------------------------------------------------------------------
    @property
    def item_vector_key(self):
        return item_vector_key(
            self.backbone_name, self.backbone_layers, self.item_pooling,
            self.item_token_ids, self.item_token_lengths,
        )

    def encode_items(self, items):
        """Item vectors ``[A] -> [A, d_item]`` from the item LLM (gradients if enabled)."""
        input_ids, attention_mask, marker, segments = pack_items(
            items.unsqueeze(1), torch.ones_like(items), self.item_token_ids, self.item_token_lengths,
            self.vocab_size, self.item_prefix_ids,
        )
        is_item_token = input_ids >= self.vocab_size
        embeds = self.item_llm.get_input_embeddings()(input_ids.masked_fill(is_item_token, 0))
        embeds = torch.where(is_item_token.unsqueeze(-1), self.item_token_embedding.to(embeds.dtype), embeds)
        hidden = self.item_llm(
            inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        if self.item_pooling == "last":
            return hidden.gather(1, marker.unsqueeze(-1).expand(-1, -1, hidden.size(-1))).squeeze(1)
        words = (segments == 0) & ~is_item_token  # the sentence's tokens, not prefix or [ITEM]
        total = (hidden * words.unsqueeze(-1)).sum(1)
        return total / words.sum(1, keepdim=True).clamp(min=1)

    @torch.no_grad()
    def _encode_all_items(self):
        items = torch.arange(self.n_items, device=self.item_token_ids.device)
        parts = [self.encode_items(chunk) for chunk in items.split(self.item_encode_batch_size)]
        vectors = torch.cat(parts)
        vectors[0] = 0.0  # padding item
        return vectors

    def _usable_item_vectors(self, saved):
        """Whether a tensor read from the disk cache has the shape of this model's item vectors."""
        return (
            isinstance(saved, torch.Tensor) and saved.is_floating_point()
            and saved.shape == (self.n_items, self.item_hidden_size)
        )

    def all_item_vectors(self):
        """``[n_items, d_item]`` item vectors without gradients (cached, see the NOTE)."""
        if self._item_vectors is not None:
            return self._item_vectors
        if self.item_encoder_trainable:
            self._item_vectors = self._encode_all_items()
            return self._item_vectors
        key = self.item_vector_key
        path = os.path.join(self.backbone_cache_dir, "item_vectors", f"item_vectors-{key}.pt")
        vectors = _MEMORY_CACHE.get(key)
        if vectors is None:
            loaded = False
            if self.item_vector_disk_cache:  # a corrupt file is encoded anew (disk_cache)
                vectors, loaded = load_or_build(
                    path, lambda: self._encode_all_items().cpu(), "item vectors", self._usable_item_vectors
                )
            else:
                vectors = self._encode_all_items().cpu()
            if loaded:
                logger.info("item vectors loaded from %s", path)
            else:
                logger.info("item vectors encoded: %d items (key %s)", self.n_items, key)
        _MEMORY_CACHE[key] = vectors
        _MEMORY_CACHE.move_to_end(key)
        while len(_MEMORY_CACHE) > _MEMORY_CACHE_SIZE:
            _MEMORY_CACHE.popitem(last=False)
        self._item_vectors = vectors.to(self.item_token_ids.device)
        return self._item_vectors

    def _window_vectors(self, window):
        """Item vectors of a window ``[B, m] -> [B, m, d_item]``."""
        if self.item_encoder_trainable and self.training and torch.is_grad_enabled():
            items, inverse = torch.unique(window, return_inverse=True)
            return self.encode_items(items)[inverse]
        return self.all_item_vectors()[window]

    # ----- sequence level ------------------------------------------------------------------
    def forward(self, item_seq, item_seq_len):
        """Sequence states after each of the last ``max_seq_items`` history items.

        Returns:
            hidden ``[B, m, width]`` (position j sees items <= j only), window ``[B, m]``,
            count ``[B]``.
        """
        window, count = last_items(item_seq, item_seq_len, self.max_seq_items)
        valid = torch.arange(window.size(1), device=window.device) < count.unsqueeze(1)
        vectors = self._window_vectors(window) * valid.unsqueeze(-1)
        x = self.input_projection(vectors)
        if self.sequence_encoder == "transformer":
            positions = torch.arange(window.size(1), device=window.device)
            x = self.dropout(self.input_norm(x + self.position_embedding(positions)))
            causal = nn.Transformer.generate_square_subsequent_mask(window.size(1), device=x.device)
            hidden = self.sequence_model(x, mask=causal, is_causal=True)
        else:
            hidden = self.sequence_model(
                inputs_embeds=x, attention_mask=valid.long(), use_cache=False
            ).last_hidden_state
        return hidden, window, count

    # ----- RecBole interface ---------------------------------------------------------------
    def calculate_loss(self, interaction):
        target = interaction[self.POS_ITEM_ID]
        hidden, window, count = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        labels = next_item_labels(window, count, target, self.supervised_positions)
        return next_item_loss(self.item_projection(hidden), labels)

    def _last_hidden(self, interaction):
        hidden, _, count = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.gather_indexes(hidden, count - 1)  # RecBole's last-position pick

    def full_sort_predict(self, interaction):
        return self.item_projection(self._last_hidden(interaction))  # [B, n_items]

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
