"""The tokenised item store: every item sentence tokenised once, cached on disk."""

import hashlib
import json
import logging
import os

import torch

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
        digest = hashlib.sha256()
        digest.update(json.dumps([tokenizer_id, max_tokens]).encode())
        for sentence in sentences:
            digest.update(sentence.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    @classmethod
    def cached(cls, sentences, tokenizer, tokenizer_id, max_tokens, cache_dir):
        """Load the store from ``cache_dir`` if its key matches, else tokenise and save it."""
        key = cls.cache_key(sentences, tokenizer_id, max_tokens)
        path = os.path.join(cache_dir, f"item_tokens-{key}.pt")
        if os.path.isfile(path):
            saved = torch.load(path, weights_only=True)
            logger.info("item tokens loaded from cache %s", path)
            return cls(saved["token_ids"], saved["lengths"])
        store = cls.from_sentences(sentences, tokenizer, max_tokens)
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save({"token_ids": store.token_ids, "lengths": store.lengths}, tmp)
        os.replace(tmp, path)  # atomic: parallel trials may build the same cache
        logger.info("item tokens cached in %s", path)
        return store
