"""Collaborative-filtering models whose vectors MixRec injects (spec section 3.2).

Both score a (user, item) pair from ``cf_embedding_size``-dimensional embeddings e_u, e_i;
MixRec projects e_u and e_i to the LLM width. Trained with BPR (``losses.bpr_loss``), jointly with
MixRec or beforehand (``cf_trainable: False``: pre-train, then freeze).
"""

import torch
from torch import nn

from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.losses import bpr_loss


class MFScorer(nn.Module):
    """Matrix factorisation: s(u, i) = e_u . e_i."""

    def __init__(self, n_users, n_items, dim):
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)

    def score(self, users, items):
        return (self.user_embedding(users) * self.item_embedding(items)).sum(-1)


class NCFScorer(MFScorer):
    """Neural CF (NeuMF with shared embeddings): s(u, i) = h . (e_u * e_i) + MLP([e_u; e_i]).

    NOTE: NeuMF keeps separate GMF and MLP embeddings; one shared table per side keeps a single
    e_u / e_i to inject.
    """

    def __init__(self, n_users, n_items, dim):
        super().__init__(n_users, n_items, dim)
        self.gmf_weight = nn.Linear(dim, 1, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def score(self, users, items):
        e_u, e_i = self.user_embedding(users), self.item_embedding(items)
        return (self.gmf_weight(e_u * e_i) + self.mlp(torch.cat([e_u, e_i], -1))).squeeze(-1)


CF_MODELS = {"MF": MFScorer, "NCF": NCFScorer}


def build_cf_model(name, n_users, n_items, dim):
    """``name`` in CF_MODELS, or 'none'/None for no CF injection (returns None)."""
    if name is None or str(name).lower() == "none":
        return None
    if name not in CF_MODELS:
        raise MixRecError(f"cf_model '{name}' is not one of {sorted(CF_MODELS)} or 'none'")
    return CF_MODELS[name](n_users, n_items, dim)


def pretrain_cf(cf_model, users, items, n_items, epochs, batch_size=1024, lr=1e-2, seed=0):
    """Fit ``cf_model`` with BPR on the given pairs (uniform negatives); returns the last loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(cf_model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        order = torch.randperm(len(users), generator=generator)
        for start in range(0, len(users), batch_size):
            # drawn on the CPU (a seeded generator of its own), used where the pairs live
            batch = order[start : start + batch_size].to(users.device)
            negatives = torch.randint(1, n_items, (len(batch),), generator=generator).to(users.device)
            loss = bpr_loss(cf_model.score(users[batch], items[batch]), cf_model.score(users[batch], negatives))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return loss.item()
