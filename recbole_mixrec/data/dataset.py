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
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.inputs import supervised_positions
from recbole_mixrec.properties import fill_defaults

TRAIN_SAMPLE_MODES = {
    "windows": "non-overlapping windows of max_seq_items",
    "last": "one whole history per user",
    "all": "every prefix",
}


def training_pairs(train):
    """Every training (user, item) interaction of RecBole's augmented training split ``train``,
    in time order per user: ``([N], [N])``.

    Each augmented training row's target is one; a user's first item only appears as the
    history of its first row (``item_length == 1``).
    """
    inter = train.inter_feat
    first = inter[train.item_list_length_field] == 1
    users = torch.cat([inter[train.uid_field][first], inter[train.uid_field]])
    items = torch.cat([inter[train.item_id_list_field][first, 0], inter[train.iid_field]])
    order = torch.cat([torch.full((int(first.sum()),), -1.0), inter[train.time_field].double()])
    index = np.lexsort((order.numpy(), users.numpy()))
    return users[index], items[index]


class PluginSequentialDataset(SequentialDataset):
    """RecBole's :class:`SequentialDataset` that first gives the plugin's yaml defaults to the
    config. ``run_recbole(model=...)`` by name builds the Config without our yaml files; the
    dataset is the first thing built from it, before the loaders read the batch size and the
    negative sampling, so every entry point trains with the model's own defaults."""

    def __init__(self, config):
        fill_defaults(config, config["model"])
        super().__init__(config)

    def build(self):
        """RecBole's splits; the training split also carries ``train_pairs``: every training
        (user, item) interaction (see ``training_pairs``)."""
        datasets = super().build()
        datasets[0].train_pairs = training_pairs(datasets[0])
        return datasets


class MixRecDataset(PluginSequentialDataset):
    """A :class:`SequentialDataset` whose items carry a tokenised sentence.

    Config keys read: ``item_text_fields``, ``item_text_max_tokens``, ``item_text_missing``,
    ``backbone``, ``backbone_cache_dir``, ``train_samples``, ``train_max_windows``,
    ``train_window_stride``, ``max_seq_items``,
    and for the hard
    negatives of L_cl (mined when ``lambda_cl > 0``) ``text_encoder``, ``mf_dim``,
    ``hard_negative_ratio``.

    Attributes:
        item_sentences (list[str]): the sentence of every internal item id ("" for padding 0).
        item_tokens (ItemTokenStore): those sentences tokenised by the backbone's tokenizer.

    NOTE: MixRec's L_seq supervises every position of the ``max_seq_items`` items it reads, so
    one sample per prefix (RecBole's augmentation, ``train_samples: all``) supervises each
    transition up to ``max_seq_items`` times per epoch. ``windows`` (default) keeps every
    ``max_seq_items``-th prefix counted back from a user's last one: the windows read do not
    overlap and together supervise every training transition once per epoch (or the last
    ``train_max_windows`` windows of each user, the most recent transitions). With
    ``train_window_stride`` N < ``max_seq_items`` a window starts every N transitions, so windows
    overlap and the models supervise only each window's last N positions (all of a user's first):
    still every transition once, now each predicted from at least ``max_seq_items - N + 1`` items
    read (non-overlapping windows: 1 to ``max_seq_items``; validation reads ``max_seq_items``),
    for ``max_seq_items / N`` times the tokens. ``last`` keeps one
    sample per user (its last window only: on ml-100k with 5 items read, 4.9% of the
    transitions). Validation and test are RecBole's.
    """

    def __init__(self, config):
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
        pairs = datasets[0].train_pairs
        datasets[0] = self._training_samples(datasets[0], self.config["train_samples"])
        # CF pre-training and hard-negative mining need every training interaction, also
        # those beyond MAX_ITEM_LIST_LENGTH that the kept samples no longer show
        datasets[0].train_pairs = pairs
        if (self.config["lambda_cl"] or 0) > 0:
            cache_dir = self.config["backbone_cache_dir"] or default_cache_dir()
            datasets[0].hard_negatives = cached_hard_negatives(
                self, pairs, self.config, os.path.join(cache_dir, "hard_negatives", self.dataset_name)
            )
        return datasets

    def _training_samples(self, train, mode):
        """The training prefixes to keep (``train_samples``, see the class NOTE)."""
        if mode == "all":
            return train
        if mode not in TRAIN_SAMPLE_MODES:
            raise MixRecError(f"train_samples '{mode}' is not one of {list(TRAIN_SAMPLE_MODES)}")
        uids = train.inter_feat[self.uid_field].numpy()
        # within a user, rows are in time order (RecBole's TO ordering); rank them from the end
        by_user = np.argsort(uids, kind="stable")
        sorted_uids = uids[by_user]
        first_row = np.r_[0, np.flatnonzero(sorted_uids[1:] != sorted_uids[:-1]) + 1]
        row_count = np.diff(np.r_[first_row, len(uids)])
        from_end = np.empty(len(uids), dtype=np.int64)
        from_end[by_user] = np.repeat(first_row + row_count - 1, row_count) - np.arange(len(uids))
        max_windows = self.config["train_max_windows"] if mode == "windows" else None
        # windows that overlap start every N transitions, N the positions the models supervise
        overlap = supervised_positions(self.config)
        if mode == "last":
            keep = from_end == 0
        else:  # the last prefix, then every stride-th one before it
            stride = overlap or self.config["max_seq_items"]
            keep = from_end % stride == 0
            if max_windows:  # the most recent windows only
                keep &= from_end < max_windows * stride
        keep = np.flatnonzero(keep)
        what = TRAIN_SAMPLE_MODES[mode]
        if overlap:
            what = f"windows of max_seq_items starting every {overlap} transitions, each supervising its last {overlap}"
        limit = f", each user's last {max_windows}" if max_windows else ""
        self.logger.info(
            set_color("training samples", "blue") + f": {len(uids)} prefixes -> {len(keep)} ({what}{limit})"
        )
        return train.copy(train.inter_feat[keep])
