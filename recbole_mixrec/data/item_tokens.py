"""The tokenised item store: every item sentence tokenised once, cached on disk."""

import json
import logging
import os

import torch

from recbole_mixrec.disk_cache import cache_key, load_or_build

logger = logging.getLogger(__name__)


class ItemTokenStore:
    """Token ids of every item sentence, right-padded.

    Attributes:
        token_ids (LongTensor): ``[n_items, max_tokens]``, padding positions hold 0.
        lengths (LongTensor): ``[n_items]``, number of real tokens (0 for the padding item).
    """

    def __init__(self, token_ids, lengths):
        self.token_ids = token_ids
        self.lengths = lengths

    @classmethod
    def from_sentences(cls, sentences, tokenizer, max_tokens):
        encoded = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        lengths = torch.tensor([min(len(ids), max_tokens) for ids in encoded], dtype=torch.long)
        token_ids = torch.zeros(len(sentences), max(int(lengths.max()), 1), dtype=torch.long)
        for row, ids in enumerate(encoded):
            token_ids[row, : lengths[row]] = torch.tensor(ids[: lengths[row]], dtype=torch.long)
        return cls(token_ids, lengths)

    @staticmethod
    def cache_key(sentences, tokenizer_id, max_tokens):
        """Changes whenever the text (fields, items), the tokenizer or the cap changes."""
        return cache_key(json.dumps([tokenizer_id, max_tokens]), "".join(s + "\0" for s in sentences))

    @classmethod
    def cached(cls, sentences, tokenizer, tokenizer_id, max_tokens, cache_dir):
        """Load the store from ``cache_dir`` if its key matches, else tokenise and save it
        (see ``recbole_mixrec.disk_cache``: a corrupt file is rebuilt)."""
        key = cls.cache_key(sentences, tokenizer_id, max_tokens)
        path = os.path.join(cache_dir, f"item_tokens-{key}.pt")

        def build():
            store = cls.from_sentences(sentences, tokenizer, max_tokens)
            return {"token_ids": store.token_ids, "lengths": store.lengths}

        def usable(saved):
            ids, lengths = saved["token_ids"], saved["lengths"]
            return (
                isinstance(ids, torch.Tensor) and isinstance(lengths, torch.Tensor)
                and ids.dim() == 2 and ids.size(0) == len(sentences) and lengths.shape == (len(sentences),)
            )

        saved, loaded = load_or_build(path, build, "item tokens", usable)
        logger.info("item tokens loaded from cache %s" if loaded else "item tokens cached in %s", path)
        return cls(saved["token_ids"], saved["lengths"])
