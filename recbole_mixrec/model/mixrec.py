r"""
MixRec
################################################

Reference:
    "Beyond Inter-Item Relations: Dynamic Adaptive Mixture-of-Experts for LLM-Based Sequential
    Recommendation" (arXiv 2408.07427); restated in ``shared/spec/mixrec.md``.

A frozen decoder-only LLM reads item sentences. MixRec_base (spec 2) adds bottleneck adapters,
two new tokens ``[ALIGN]`` and ``[SEQ]`` and an item projection head. Full MixRec (spec 3)
replaces decoder layers by DAMoE layers (causal and context experts, gate, recommendation
adapter; ``damoe.py``), injects CF vectors as extra key/value positions (``cf.py``), and adds
the hard-negative InfoNCE loss. Loss (spec 3.5):
L = L_seq + lambda_align L_align + lambda_cl L_cl + lambda_cf L_cf.
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_mixrec.backbone import load_backbone, sequence_prefix_ids
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.adapters import insert_adapters
from recbole_mixrec.model.attention import ExpertMasks
from recbole_mixrec.model.cf import build_cf_model, pretrain_cf
from recbole_mixrec.model.damoe import DAMoEInputs, insert_damoe_layers
from recbole_mixrec.model.frozen_backbone import FrozenBackboneMixin
from recbole_mixrec.model.inputs import (
    last_items,
    length_groups,
    next_item_labels,
    pack_items,
    supervised_positions,
)
from recbole_mixrec.model.item_head import ItemHead
from recbole_mixrec.model.item_id_input import ItemIdInput
from recbole_mixrec.model.losses import alignment_loss, bpr_loss, info_nce, next_item_loss


class MixRec(FrozenBackboneMixin, SequentialRecommender):
    r"""MixRec: an LLM reads item sentences, ``[SEQ]`` after each item predicts the next.

    NOTE: the frozen backbone's weights are not part of ``state_dict()``; checkpoints hold the
    trainable weights only and the backbone is rebuilt from the ``backbone`` config key.
    L_seq, L_align, L_cl and L_cf are means, not sums. The items encoded for L_align in a
    batch are the items the batch predicts (at most ``align_batch_size``); L_cl's anchors come
    from at most ``cl_batch_size`` sequences of the batch (None: all). CF vectors have no
    position (no rotary embedding); the context expert sees them, the causal expert only with
    ``cf_in_causal`` (the paper's MASK_causal excludes them). Alignment inputs see their own
    item's CF vector (``cf_in_align``, spec 3.2 decision). L_cf is BPR over ``cf_batch_size``
    pairs drawn from all training interactions. The item head reads standardised states and
    starts from the items' text and popularity (``item_head.py``; ``prepare_training``).
    """

    input_type = InputType.POINTWISE
    loss_names = ("seq", "align", "cl", "cf")

    def __init__(self, config, dataset):
        super(MixRec, self).__init__(config, dataset)

        # load parameters info
        self.backbone_name = config["backbone"]
        self.backbone_layers = config["backbone_layers"]
        self.use_adapters = config["use_adapters"]
        self.use_damoe = config["damoe"] and self.use_adapters
        self.architecture = config["architecture"]
        self.replace_freq = config["replace_freq"]
        self.attention_impl = config["attention_impl"]
        self.causal_experts = config["causal_experts"]
        self.adapter_bottleneck = config["adapter_bottleneck"]
        self.adapter_act = config["adapter_act"]
        self.adapter_init_std = config["adapter_init_std"]
        self.max_seq_items = config["max_seq_items"]
        self.supervised_positions = supervised_positions(config)
        self.length_group_ratio = config["length_group_ratio"]
        self.lambda_align = config["lambda_align"] if self.use_adapters else 0.0
        self.align_batch_size = config["align_batch_size"]
        self.lambda_cl = config["lambda_cl"] or 0.0
        self.cl_n_s = config["cl_n_s"]
        self.cl_n_neg = config["cl_n_neg"]
        self.cl_batch_size = config["cl_batch_size"]
        self.cl_temperature = config["cl_temperature"]
        self.cf_model_name = config["cf_model"] if self.use_damoe else "none"
        self.cf_embedding_size = config["cf_embedding_size"]
        self.cf_trainable = config["cf_trainable"]
        self.cf_warm_start = config["cf_warm_start"]
        self.lambda_cf = (config["lambda_cf"] or 0.0) if self.cf_trainable else 0.0
        self.cf_in_align = config["cf_in_align"]
        self.cf_in_causal = config["cf_in_causal"]
        self.cf_batch_size = config["cf_batch_size"]
        self.cf_seq_grad = config["cf_seq_grad"]
        self.gate_init_causal = config["gate_init_causal"]
        self.head_input = config["head_input"]
        self.head_init = config["head_init"]
        self.head_init_scale = config["head_init_scale"]
        self.head_bias_init = config["head_bias_init"]
        self.head_norm_momentum = config["head_norm_momentum"]
        self.head_dropout = config["head_dropout"]
        self.item_id_embedding = config["item_id_embedding"] or "none"
        self.initializer_range = config["initializer_range"]
        if config["cf_model"] not in (None, "none") and not self.use_damoe:
            raise MixRecError("cf_model needs DAMoE layers (damoe: True): CF vectors enter there")

        # define layers and loss
        causal_lm, tokenizer = load_backbone(
            self.backbone_name, config["backbone_cache_dir"], self.backbone_layers
        )
        self.llm = causal_lm.base_model  # the LM head is never used: scores come from the item head
        self.vocab_size = self.llm.get_input_embeddings().num_embeddings
        self.hidden_size = self.llm.config.hidden_size
        adapter_args = (self.adapter_bottleneck, self.adapter_act, self.adapter_init_std)
        self.damoe_layers = []
        if self.use_damoe:
            self.damoe_layers = insert_damoe_layers(
                self.llm, self.architecture, self.replace_freq, *adapter_args,
                gate_init_causal=self.gate_init_causal,
            )
        elif self.use_adapters:
            insert_adapters(self.llm, *adapter_args)
        # [SEQ] and [ALIGN] get their own trainable table instead of resizing the frozen one
        self.special_token_embedding = nn.Embedding(2, self.hidden_size)
        self.seq_token_id, self.align_token_id = self.vocab_size, self.vocab_size + 1
        self.item_projection = ItemHead(
            self.hidden_size, self.n_items, self.head_input, self.head_norm_momentum,
            self.initializer_range, self.head_dropout,
        )
        self.item_id_input = ItemIdInput(self.item_id_embedding, self.n_items, self.hidden_size)
        self.cf_model = build_cf_model(
            self.cf_model_name, dataset.user_num, self.n_items, self.cf_embedding_size
        )
        if self.cf_model is not None:
            self.cf_user_projection = nn.Linear(self.cf_embedding_size, self.hidden_size)
            self.cf_item_projection = nn.Linear(self.cf_embedding_size, self.hidden_size)
        self._init_new_weights()
        self.cf_pretrain_epochs = config["cf_pretrain_epochs"]
        if self.cf_model is not None and not self.cf_trainable:
            # pre-trained in prepare_training; frozen from the start, so the optimizer skips it
            self.cf_model.requires_grad_(False)

        item_tokens = dataset.item_tokens
        self.register_buffer("item_token_ids", item_tokens.token_ids, persistent=False)
        self.register_buffer("item_token_lengths", item_tokens.lengths, persistent=False)
        # every training (user, item) pair: L_cf's BPR samples and the head's popularity prior
        users, items = getattr(dataset, "train_pairs", (torch.zeros(0), torch.zeros(0)))
        self.register_buffer("train_pair_users", users.long(), persistent=False)
        self.register_buffer("train_pair_items", items.long(), persistent=False)
        prefix = sequence_prefix_ids(tokenizer)
        prompt = tokenizer(config["align_prompt"], add_special_tokens=False)["input_ids"]
        self.register_buffer("seq_prefix_ids", torch.tensor(prefix, dtype=torch.long), persistent=False)
        self.register_buffer(
            "align_prefix_ids", torch.tensor(prefix + prompt, dtype=torch.long), persistent=False
        )
        negatives, sizes = getattr(dataset, "hard_negatives", (torch.zeros(self.n_items, 1), None))
        self.register_buffer("hard_negatives", negatives.long(), persistent=False)
        self.register_buffer(
            "hard_negative_sizes",
            sizes if sizes is not None else torch.zeros(self.n_items, dtype=torch.long),
            persistent=False,
        )
        if self.cf_model is not None and self.lambda_cf > 0 and users.numel() == 0:
            raise MixRecError("lambda_cf > 0 needs the dataset's training pairs (MixRecDataset)")
        if self.lambda_cl > 0 and sizes is None:
            raise MixRecError("lambda_cl > 0 needs the dataset's hard negatives (MixRecDataset)")
        self.mark_frozen_backbone(self.llm)

    def _init_new_weights(self):
        # new tokens start at the mean input embedding: an in-distribution vector
        mean = self.llm.get_input_embeddings().weight.mean(0)
        self.special_token_embedding.weight.data.copy_(mean.expand(2, -1))

    def prepare_training(self, train_data):
        """What a fresh run does once before its first epoch (the trainer calls it; not on
        resume, whose checkpoint holds the result): pre-train the frozen CF model
        (``cf_trainable: False``) or warm-start the joint one (``cf_warm_start``), then start the
        item head from the data."""
        if self.cf_model is not None and (self.cf_warm_start or not self.cf_trainable):
            self._pretrain_cf(self.cf_pretrain_epochs)
        self._init_head_from_data(train_data)

    def _pretrain_cf(self, epochs):
        """Fit the CF model with BPR on all training pairs; frozen after unless ``cf_trainable``.

        Why a warm start: joint training gives L_cf ``cf_batch_size`` pairs a step, well under one
        pass over the training matrix per epoch, so the user vectors (the only part of MixRec that
        sees a user's whole history) would carry little for the first epochs.
        """
        self.cf_model.requires_grad_(True)
        loss = pretrain_cf(self.cf_model, self.train_pair_users, self.train_pair_items, self.n_items, epochs)
        self.cf_model.requires_grad_(self.cf_trainable)
        state = "then trained jointly" if self.cf_trainable else "frozen"
        self.logger.info(f"CF model pre-trained for {epochs} epochs (BPR {loss:.4f}), {state}")

    @torch.no_grad()
    def _init_head_from_data(self, train_data, n_batches=8, item_batch_size=64):
        """Start the item head from the data (``head_init``, ``head_bias_init``).

        Frozen passes encode what the head needs: every item's ``[ALIGN]`` state (text rows of
        W_item, and the standardiser's ``[ALIGN]`` statistics) and the ``[SEQ]`` states of the
        first ``n_batches`` training batches (its ``[SEQ]`` statistics). A raw head started at
        random needs neither pass.
        """
        standardize, text = self.head_input == "standardize", self.head_init == "text"
        was_training = self.training
        self.eval()
        device = self.item_token_ids.device
        align = seq = None
        if standardize or text:
            align = self.all_item_representations(item_batch_size)
        if standardize:
            states = []
            for index, batch in enumerate(train_data):
                if index >= n_batches:
                    break
                batch = batch.to(device)
                hidden, _, count = self.forward(batch[self.ITEM_SEQ], batch[self.ITEM_SEQ_LEN], batch[self.USER_ID])
                states.append(hidden[torch.arange(hidden.size(1), device=device) < count.unsqueeze(1)])
            seq = torch.cat(states) if states else None
        counts = torch.bincount(self.train_pair_items, minlength=self.n_items)
        self.item_projection.init_from_data(
            seq, align, counts, self.head_init_scale, text=text, popularity=self.head_bias_init == "popularity",
        )
        self.train(was_training)
        self.logger.info(
            f"item head initialised: W_item from {self.head_init}, b_item from {self.head_bias_init}, "
            f"input {self.head_input} ({0 if seq is None else len(seq)} [SEQ] states, "
            f"{0 if align is None else self.n_items - 1} [ALIGN] states)"
        )

    # ----- the LLM over item sentences ----------------------------------------------------
    def _embed(self, input_ids):
        """Frozen token embeddings, with ``[SEQ]``/``[ALIGN]`` from the trainable table."""
        is_special = input_ids >= self.vocab_size
        embeds = self.llm.get_input_embeddings()(input_ids.masked_fill(is_special, 0))
        special = self.special_token_embedding((input_ids - self.vocab_size).clamp(min=0))
        return torch.where(is_special.unsqueeze(-1), special, embeds)

    def _hidden_at(self, packed, positions, cf_states=None, cf_valid=None, marker_vectors=None):
        """Last-layer hidden states ``[B, k, d]`` at ``positions`` ``[B, k]``; ``marker_vectors``
        ``[B, k, d]`` (item identity, ``item_id_input.py``) are added to the input there.

        With ``length_group_ratio`` the rows go through the LLM in groups of similar length,
        each cut to its own longest row: a batch is padded to its longest row, and one
        20-item history among 4-item ones would make every row 5x longer.
        """
        lengths = packed[1].sum(1)
        groups = length_groups(lengths, self.length_group_ratio)
        if len(groups) == 1:
            return self._hidden_at_rows(packed, positions, cf_states, cf_valid, marker_vectors)
        parts = []
        for rows in groups:
            width = int(lengths[rows].max())
            part = (packed[0][rows, :width], packed[1][rows, :width], packed[2][rows], packed[3][rows, :width])
            parts.append(self._hidden_at_rows(
                part, positions[rows],
                None if cf_states is None else cf_states[rows], None if cf_valid is None else cf_valid[rows],
                None if marker_vectors is None else marker_vectors[rows],
            ))
        order = torch.cat(groups)
        return torch.cat(parts)[torch.argsort(order)]

    def _hidden_at_rows(self, packed, positions, cf_states=None, cf_valid=None, marker_vectors=None):
        input_ids, attention_mask, _, segments = packed
        embeds = self._embed(input_ids)
        if marker_vectors is not None:  # padding slots point at position 0 with a zero vector
            index = positions.unsqueeze(-1).expand(-1, -1, embeds.size(-1))
            embeds = embeds.scatter_add(1, index, marker_vectors.to(embeds.dtype))
        kwargs = {}
        if self.damoe_layers:
            masks = ExpertMasks.build(
                segments, attention_mask, cf_valid, positions.size(1), self.cf_in_causal
            )
            kwargs["damoe_inputs"] = DAMoEInputs(
                masks, cf_states, self.attention_impl, self.causal_experts, self.cf_in_causal
            )
        hidden = self.llm(
            inputs_embeds=embeds, attention_mask=attention_mask,
            use_cache=False, **kwargs,
        ).last_hidden_state
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))

    def _cf_vectors(self, users, items, item_valid):
        """Projected CF vectors ``[B, 1 + n, d]`` (user, then items) and their validity."""
        if self.cf_model is None:
            return None, None
        batch = items.size(0)
        user_table, item_table = self.cf_model.user_embedding, self.cf_model.item_embedding
        if users is None:  # alignment inputs: no user
            user_states = items.new_zeros(batch, 1, self.hidden_size, dtype=torch.float)
            user_valid = torch.zeros(batch, 1, dtype=torch.bool, device=items.device)
        else:
            user_states = self.cf_user_projection(self._cf_lookup(user_table, users)).unsqueeze(1)
            user_valid = torch.ones(batch, 1, dtype=torch.bool, device=items.device)
        item_states = self.cf_item_projection(self._cf_lookup(item_table, items))
        return torch.cat([user_states, item_states], 1), torch.cat([user_valid, item_valid], 1)

    def _cf_lookup(self, table, ids):
        """CF embeddings as the LLM reads them; without ``cf_seq_grad`` only L_cf trains them
        (L_seq could otherwise store each user's targets in the user vector)."""
        vectors = table(ids)
        return vectors if self.cf_seq_grad else vectors.detach()

    def forward(self, item_seq, item_seq_len, user=None):
        """h^SEQ after each of the last ``max_seq_items`` history items.

        Returns:
            hidden ``[B, m, d]``, window ``[B, m]`` (the items read), count ``[B]``.
        """
        window, count = last_items(item_seq, item_seq_len, self.max_seq_items)
        packed = pack_items(
            window, count, self.item_token_ids, self.item_token_lengths,
            self.seq_token_id, self.seq_prefix_ids,
        )
        slot_valid = torch.arange(window.size(1), device=window.device) < count.unsqueeze(1)
        cf_states, cf_valid = self._cf_vectors(user, window, slot_valid)
        id_vectors = self.item_id_input(window, self.item_projection.weight)
        return self._hidden_at(packed, packed[2], cf_states, cf_valid, id_vectors), window, count

    def item_representation(self, items):
        """h^ALIGN of each item ``[A] -> [A, d]``: prompt, item sentence, ``[ALIGN]``."""
        ones = torch.ones_like(items)
        packed = pack_items(
            items.unsqueeze(1), ones, self.item_token_ids, self.item_token_lengths,
            self.align_token_id, self.align_prefix_ids,
        )
        own_cf = torch.full_like(items.unsqueeze(1), self.cf_in_align, dtype=torch.bool)
        cf_states, cf_valid = self._cf_vectors(None, items.unsqueeze(1), own_cf)
        return self._hidden_at(packed, packed[2], cf_states, cf_valid).squeeze(1)

    def all_item_representations(self, item_batch_size=64):
        """h^ALIGN of every item ``[n_items, d]`` (row 0, padding, zero), ``item_batch_size`` items a pass."""
        items = torch.arange(1, self.n_items, device=self.item_token_ids.device)
        align = torch.cat([self.item_representation(chunk) for chunk in items.split(item_batch_size)])
        return torch.cat([align.new_zeros(1, align.size(1)), align])

    # ----- RecBole interface ----------------------------------------------------------------
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        target = interaction[self.POS_ITEM_ID]
        hidden, window, count = self.forward(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], user
        )
        labels = next_item_labels(window, count, target, self.supervised_positions)
        loss_seq = next_item_loss(self.item_projection(hidden, "seq", labels > 0), labels)
        zero = torch.zeros_like(loss_seq)

        align_items = labels[labels > 0].unique()
        if align_items.numel() > self.align_batch_size:
            keep = torch.randperm(align_items.numel(), device=align_items.device)
            align_items = align_items[keep[: self.align_batch_size]]
        if self.lambda_align <= 0:
            align_items = align_items[:0]
        cl_anchors, cl_items, cl_mask = self._sample_contrastive(hidden, labels)
        # one LLM pass encodes every item that L_align and L_cl need
        needed = torch.cat([align_items, cl_items.flatten()]).unique()
        loss_align, loss_cl = zero, zero
        if needed.numel() > 0:
            reps = self.item_representation(needed)
            lookup = torch.zeros(self.n_items, dtype=torch.long, device=needed.device)
            lookup[needed] = torch.arange(needed.numel(), device=needed.device)
            if align_items.numel() > 0:
                logits = self.item_projection(reps[lookup[align_items]], "align")
                loss_align = self.lambda_align * alignment_loss(logits, align_items)
            if cl_items.numel() > 0:
                item_reps = reps[lookup[cl_items]]  # [S, 1 + K, d]
                loss_cl = self.lambda_cl * info_nce(
                    cl_anchors, item_reps[:, 0], item_reps[:, 1:], cl_mask, self.cl_temperature
                )
        loss_cf = zero
        if self.cf_model is not None and self.lambda_cf > 0:
            loss_cf = self.lambda_cf * self._cf_loss()
        return loss_seq, loss_align, loss_cl, loss_cf

    def _cf_loss(self):
        """L_cf: BPR on ``cf_batch_size`` pairs drawn from the whole training matrix (spec 3.2),
        not only the targets of this batch; uniform negatives."""
        device = self.train_pair_items.device
        pick = torch.randint(0, self.train_pair_items.numel(), (self.cf_batch_size,), device=device)
        users = self.train_pair_users[pick]
        negatives = torch.randint(1, self.n_items, (self.cf_batch_size,), device=device)
        return bpr_loss(
            self.cf_model.score(users, self.train_pair_items[pick]), self.cf_model.score(users, negatives)
        )

    def _sample_contrastive(self, hidden, labels):
        """Pick ``cl_n_s`` positions per sequence whose next item has hard negatives, in at
        most ``cl_batch_size`` sequences (a random subset; None: every sequence).

        Returns anchors ``[S, d]`` (h^SEQ), items ``[S, 1 + K]`` (next item, then ``cl_n_neg``
        negatives drawn from its hard set, with replacement) and a mask ``[S, K]``.
        """
        empty = labels.new_zeros(0, 1 + self.cl_n_neg)
        if self.lambda_cl <= 0:
            return hidden.new_zeros(0, self.hidden_size), empty, empty[:, 1:].bool()
        sizes = self.hard_negative_sizes[labels] * (labels > 0)
        weights = (sizes > 0).float()
        has_any = weights.sum(1) > 0
        rows = has_any.nonzero().squeeze(1)
        if self.cl_batch_size is not None and rows.numel() > self.cl_batch_size:
            # every anchor costs 1 + cl_n_neg item passes through the LLM: with 16 sequences
            # of 5 items that item pass outweighs the batch's own (see properties/model/MixRec.yaml)
            keep = torch.randperm(rows.numel(), device=rows.device)[: self.cl_batch_size]
            rows = rows[keep.sort().values]
        if rows.numel() == 0:
            return hidden.new_zeros(0, self.hidden_size), empty, empty[:, 1:].bool()
        n_s = min(self.cl_n_s, int(weights[rows].sum(1).min()))
        cols = torch.multinomial(weights[rows], n_s)  # [R, n_s] without replacement
        rows = rows.unsqueeze(1).expand_as(cols).reshape(-1)
        cols = cols.reshape(-1)
        positives = labels[rows, cols]
        n_hard = self.hard_negative_sizes[positives]
        draw = (torch.rand(len(positives), self.cl_n_neg, device=labels.device) * n_hard.unsqueeze(1)).long()
        negatives = self.hard_negatives[positives.unsqueeze(1), draw]
        items = torch.cat([positives.unsqueeze(1), negatives], dim=1)
        return hidden[rows, cols], items, torch.ones_like(negatives, dtype=torch.bool)

    def _last_hidden(self, interaction):
        hidden, _, count = self.forward(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.USER_ID]
        )
        return self.gather_indexes(hidden, count - 1)  # RecBole's last-position pick

    def full_sort_predict(self, interaction):
        return self.item_projection(self._last_hidden(interaction))  # [B, n_items]

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
