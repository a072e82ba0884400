"""Item identity on the input side (``item_id_embedding``): a vector per history item, added to
the input embedding of the ``[SEQ]`` marker that follows the item's sentence.

Why: MixRec reads an item only through its text, and on ml-100k it never ranks a target with
fewer than 50 training interactions into the top 10, while SASRec, whose item embeddings are
both its input and its output, does (README "Where MixRec loses to SASRec"). Two modes:

- ``separate``: an ``n_items x d`` table of its own, zero at the start.
- ``tied``: the item head's own row of the item (W_item, as SASRec ties its embeddings) times a
  trainable scalar that starts at zero; so an item's head row also learns from the histories
  that contain it, not only from the few samples that predict it.

Both start at zero, so an untrained model is the model without them (the same ranking, the same
first loss). ``[ALIGN]`` inputs get nothing: L_align must tie the head rows to text alone.
"""

import torch
import torch.nn.functional as F
from torch import nn

from recbole_mixrec.errors import MixRecError

ITEM_ID_MODES = ("none", "separate", "tied")


class ItemIdInput(nn.Module):
    """Vectors ``[B, n, d]`` to add at the ``[SEQ]`` markers of items ``[B, n]`` (0 for padding).

    Args:
        mode (str): one of ``ITEM_ID_MODES``.
        n_items (int): RecBole's ``n_items`` (id 0 is padding).
        hidden_size (int): d.
    """

    def __init__(self, mode, n_items, hidden_size):
        super().__init__()
        if mode not in ITEM_ID_MODES:
            raise MixRecError(f"item_id_embedding '{mode}' is not one of {list(ITEM_ID_MODES)}")
        self.mode = mode
        if mode == "separate":
            self.embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
            nn.init.zeros_(self.embedding.weight)
        elif mode == "tied":
            self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, items, head_weight):
        """``head_weight``: the item head's W_item ``[n_items, d]`` (read in ``tied`` mode)."""
        if self.mode == "none":
            return None
        if self.mode == "separate":
            vectors = self.embedding(items)
        else:
            vectors = self.scale * F.embedding(items, head_weight)
        return vectors * (items > 0).unsqueeze(-1)
