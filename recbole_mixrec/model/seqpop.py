r"""
SeqPop
################################################

Popularity as a sequential model: every user gets the items ranked by their number of training
interactions, whatever the history. It is the sanity row of a comparison of sequential models:
RecBole's ``Pop`` is a general model, and RecBole's full ranking leaves a general model's user's
training items out of the candidates while a sequential model ranks every item, so ``Pop``'s
figures are not on the sequential models' footing (ml-100k test NDCG@10: Pop 0.0403, SeqPop 0.0226).
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_mixrec.errors import MixRecError


class SeqPop(SequentialRecommender):
    r"""Scores item i by log(1 + training interactions of i) for every user.

    NOTE: the counts come from the dataset's ``train_pairs`` (``PluginSequentialDataset``) when
    the model is built, so training changes nothing; the one parameter exists because RecBole's
    sequential trainer needs something to optimise, and its loss is zero.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super(SeqPop, self).__init__(config, dataset)

        # define layers and loss
        pairs = getattr(dataset, "train_pairs", None)
        if pairs is None:
            raise MixRecError("SeqPop needs the training split of a PluginSequentialDataset (train_pairs)")
        counts = torch.bincount(pairs[1], minlength=self.n_items).float()
        self.register_buffer("item_score", counts.log1p())
        self.fake_loss = nn.Parameter(torch.zeros(1))

    def forward(self, item_seq, item_seq_len):
        return self.item_score.repeat(item_seq.size(0), 1)  # a copy: the evaluator writes into it

    def calculate_loss(self, interaction):
        return self.fake_loss.sum() * 0.0

    def predict(self, interaction):
        return self.item_score[interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
