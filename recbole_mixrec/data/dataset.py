"""MixRecDataset: RecBole's sequential dataset plus item text (spec sections 1 and 2)."""

import os

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.utils import set_color

from recbole_mixrec.backbone import default_cache_dir, load_tokenizer
from recbole_mixrec.data.hard_negatives import cached_hard_negatives
from recbole_mixrec.data.item_text import configured_item_sentences
from recbole_mixrec.data.item_tokens import ItemTokenStore
from recbole_mixrec.properties import fill_defaults


class MixRecDataset(SequentialDataset):
    """A :class:`SequentialDataset` whose items carry a tokenised sentence.

    Config keys read: ``item_text_fields``, ``item_text_max_tokens``, ``item_text_missing``,
    ``backbone``, ``backbone_cache_dir``, ``train_one_sample_per_user``, and for the hard
    negatives of L_cl (mined when ``lambda_cl > 0``) ``text_encoder``, ``mf_dim``,
    ``hard_negative_ratio``.

    Attributes:
        item_sentences (list[str]): the sentence of every internal item id ("" for padding 0).
        item_tokens (ItemTokenStore): those sentences tokenised by the backbone's tokenizer.

    NOTE: MixRec's L_seq supervises every position of a history in one pass, so by default the
    training split keeps one sample per user (its whole training history, RecBole's last
    augmented prefix) instead of one sample per prefix. Validation and test are RecBole's.
    """

    def __init__(self, config):
        fill_defaults(config, config["model"])
        super().__init__(config)
        self._build_item_text()

    def _build_item_text(self):
        config = self.config
        self.item_sentences = configured_item_sentences(self, config, self.logger)
        cache_dir = config["backbone_cache_dir"] or default_cache_dir()
        tokenizer = load_tokenizer(config["backbone"], cache_dir)
        max_tokens = config["item_text_max_tokens"]
        tokenizer_id = [config["backbone"], getattr(tokenizer, "name_or_path", ""), len(tokenizer)]
        self.item_tokens = ItemTokenStore.cached(
            self.item_sentences,
            tokenizer,
            tokenizer_id,
            max_tokens,
            os.path.join(cache_dir, "item_tokens", config["dataset"]),
        )
        lengths = self.item_tokens.lengths[1:].float()
        self.logger.info(
            set_color("item sentences", "blue")
            + f": {len(self.item_sentences) - 1} items, fields {list(config['item_text_fields'])}, tokens/item "
            f"mean {lengths.mean():.1f} max {int(lengths.max())} (cap {max_tokens}); "
            f"e.g. '{self.item_sentences[1]}'"
        )

    def build(self):
        datasets = super().build()
        pairs = self._training_pairs(datasets[0])
        if self.config["train_one_sample_per_user"]:
            datasets[0] = self._last_sample_per_user(datasets[0])
        # CF pre-training and hard-negative mining need every training interaction, also
        # those beyond MAX_ITEM_LIST_LENGTH that the kept samples no longer show
        datasets[0].train_pairs = pairs
        if (self.config["lambda_cl"] or 0) > 0:
            cache_dir = self.config["backbone_cache_dir"] or default_cache_dir()
            datasets[0].hard_negatives = cached_hard_negatives(
                self, pairs, self.config, os.path.join(cache_dir, "hard_negatives", self.dataset_name)
            )
        return datasets

    def _training_pairs(self, train):
        """Every training (user, item) interaction, in time order per user: ``([N], [N])``.

        Each augmented training row's target is one; a user's first item only appears as the
        history of its first row (``item_length == 1``).
        """
        inter = train.inter_feat
        first = inter["item_length"] == 1
        users = torch.cat([inter[self.uid_field][first], inter[self.uid_field]])
        items = torch.cat([inter[self.item_id_list_field][first, 0], inter[self.iid_field]])
        order = torch.cat([torch.full((int(first.sum()),), -1.0), inter[self.time_field].double()])
        index = np.lexsort((order.numpy(), users.numpy()))
        return users[index], items[index]

    def _last_sample_per_user(self, train):
        """Keep each user's last training sample: its longest history and last training target."""
        uids = train.inter_feat[self.uid_field].numpy()
        # within a user, rows are in time order (RecBole's TO ordering): take the last occurrence
        _, first_from_end = np.unique(uids[::-1], return_index=True)
        last = np.sort(len(uids) - 1 - first_from_end)
        self.logger.info(
            set_color("training samples", "blue")
            + f": {len(uids)} prefixes -> {len(last)} (one whole history per user)"
        )
        return train.copy(train.inter_feat[last])
