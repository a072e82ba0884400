r"""
MixRec
################################################

Reference:
    "Beyond Inter-Item Relations: Dynamic Adaptive Mixture-of-Experts for LLM-Based Sequential
    Recommendation" (arXiv 2408.07427); restated in ``shared/spec/mixrec.md``.

This file is MixRec_base (spec section 2): a frozen decoder-only LLM with bottleneck adapters,
two new tokens ``[ALIGN]`` and ``[SEQ]`` and an item projection head, trained with
L_seq + lambda_align * L_align.
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_mixrec.backbone import load_backbone, sequence_prefix_ids
from recbole_mixrec.model.adapters import insert_adapters
from recbole_mixrec.model.inputs import last_items, pack_items
from recbole_mixrec.model.losses import alignment_loss, next_item_loss


class MixRec(SequentialRecommender):
    r"""MixRec_base: an LLM reads item sentences, ``[SEQ]`` after each item predicts the next.

    NOTE: the frozen backbone's weights are not part of ``state_dict()``; checkpoints hold the
    trainable weights only and the backbone is rebuilt from the ``backbone`` config key.
    L_seq and L_align are means, not sums (see ``losses.py``). The alignment items of a batch
    are the items the batch predicts, at most ``align_batch_size`` of them.
    """

    input_type = InputType.POINTWISE
    loss_names = ("seq", "align")

    def __init__(self, config, dataset):
        super(MixRec, self).__init__(config, dataset)

        # load parameters info
        self.backbone_name = config["backbone"]
        self.backbone_layers = config["backbone_layers"]
        self.use_adapters = config["use_adapters"]
        self.adapter_bottleneck = config["adapter_bottleneck"]
        self.adapter_act = config["adapter_act"]
        self.adapter_init_std = config["adapter_init_std"]
        self.max_seq_items = config["max_seq_items"]
        self.lambda_align = config["lambda_align"] if self.use_adapters else 0.0
        self.align_batch_size = config["align_batch_size"]
        self.initializer_range = config["initializer_range"]

        # define layers and loss
        causal_lm, tokenizer = load_backbone(
            self.backbone_name, config["backbone_cache_dir"], self.backbone_layers
        )
        self.llm = causal_lm.base_model  # the LM head is never used: scores come from the item head
        backbone_params = {id(p) for p in self.llm.parameters()}
        self.vocab_size = self.llm.get_input_embeddings().num_embeddings
        self.hidden_size = self.llm.config.hidden_size
        if self.use_adapters:
            insert_adapters(
                self.llm, self.adapter_bottleneck, self.adapter_act, self.adapter_init_std
            )
        # [SEQ] and [ALIGN] get their own trainable table instead of resizing the frozen one
        self.special_token_embedding = nn.Embedding(2, self.hidden_size)
        self.seq_token_id, self.align_token_id = self.vocab_size, self.vocab_size + 1
        self.item_projection = nn.Linear(self.hidden_size, self.n_items)
        self._init_new_weights()

        item_tokens = dataset.item_tokens
        self.register_buffer("item_token_ids", item_tokens.token_ids, persistent=False)
        self.register_buffer("item_token_lengths", item_tokens.lengths, persistent=False)
        prefix = sequence_prefix_ids(tokenizer)
        prompt = tokenizer(config["align_prompt"], add_special_tokens=False)["input_ids"]
        self.register_buffer("seq_prefix_ids", torch.tensor(prefix, dtype=torch.long), persistent=False)
        self.register_buffer(
            "align_prefix_ids", torch.tensor(prefix + prompt, dtype=torch.long), persistent=False
        )
        self.frozen_backbone_keys = {
            name for name, p in self.named_parameters() if id(p) in backbone_params
        }

    def _init_new_weights(self):
        # new tokens start at the mean input embedding: an in-distribution vector
        mean = self.llm.get_input_embeddings().weight.mean(0)
        self.special_token_embedding.weight.data.copy_(mean.expand(2, -1))
        nn.init.normal_(self.item_projection.weight, std=self.initializer_range)
        nn.init.zeros_(self.item_projection.bias)

    # ----- checkpoints: trainable weights only -------------------------------------------
    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        state = super().state_dict(
            *args, destination=destination, prefix=prefix, keep_vars=keep_vars
        )
        for key in self.frozen_backbone_keys:
            state.pop(prefix + key, None)
        return state

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Load trainable weights; frozen backbone weights may be absent (rebuilt at init)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in self.frozen_backbone_keys]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"MixRec checkpoint does not match the model: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]} (different backbone or config?)"
            )
        return result

    # ----- the LLM over item sentences ----------------------------------------------------
    def _embed(self, input_ids):
        """Frozen token embeddings, with ``[SEQ]``/``[ALIGN]`` from the trainable table."""
        is_special = input_ids >= self.vocab_size
        embeds = self.llm.get_input_embeddings()(input_ids.masked_fill(is_special, 0))
        special = self.special_token_embedding((input_ids - self.vocab_size).clamp(min=0))
        return torch.where(is_special.unsqueeze(-1), special, embeds)

    def _hidden_at(self, input_ids, attention_mask, positions):
        """Last-layer hidden states ``[B, k, d]`` at ``positions`` ``[B, k]``."""
        hidden = self.llm(
            inputs_embeds=self._embed(input_ids), attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))

    def forward(self, item_seq, item_seq_len):
        """h^SEQ after each of the last ``max_seq_items`` history items.

        Returns:
            hidden ``[B, m, d]``, window ``[B, m]`` (the items read), count ``[B]``.
        """
        window, count = last_items(item_seq, item_seq_len, self.max_seq_items)
        input_ids, attention_mask, seq_positions = pack_items(
            window, count, self.item_token_ids, self.item_token_lengths,
            self.seq_token_id, self.seq_prefix_ids,
        )
        return self._hidden_at(input_ids, attention_mask, seq_positions), window, count

    def item_representation(self, items):
        """h^ALIGN of each item ``[A] -> [A, d]``: prompt, item sentence, ``[ALIGN]``."""
        ones = torch.ones_like(items)
        input_ids, attention_mask, positions = pack_items(
            items.unsqueeze(1), ones, self.item_token_ids, self.item_token_lengths,
            self.align_token_id, self.align_prefix_ids,
        )
        return self._hidden_at(input_ids, attention_mask, positions).squeeze(1)

    # ----- RecBole interface ----------------------------------------------------------------
    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        hidden, window, count = self.forward(item_seq, item_seq_len)
        # position j predicts window item j+1; the last read item predicts the target
        labels = torch.cat([window[:, 1:], window.new_zeros(window.size(0), 1)], dim=1)
        labels.scatter_(1, (count - 1).unsqueeze(1), target.unsqueeze(1))
        loss_seq = next_item_loss(self.item_projection(hidden), labels)
        if self.lambda_align <= 0:
            return loss_seq, torch.zeros_like(loss_seq)
        items = labels[labels > 0].unique()
        if items.numel() > self.align_batch_size:
            items = items[torch.randperm(items.numel(), device=items.device)[: self.align_batch_size]]
        loss_align = alignment_loss(self.item_projection(self.item_representation(items)), items)
        return loss_seq, self.lambda_align * loss_align

    def _last_hidden(self, interaction):
        hidden, _, count = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return hidden[torch.arange(hidden.size(0), device=hidden.device), count - 1]

    def predict(self, interaction):
        scores = self.item_projection(self._last_hidden(interaction))
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)

    def full_sort_predict(self, interaction):
        return self.item_projection(self._last_hidden(interaction))  # [B, n_items]
