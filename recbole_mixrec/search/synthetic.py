"""A synthetic black box over ``{0,1}^d`` with a known optimum, for tests and measurements.

``f(z) = sum_i w_i z_i + sum_{(i,j) in P} v_ij z_i z_j`` with Gaussian ``w`` and interactions
on a random set ``P`` of ``d // 2`` pairs (scale 1.0), so that the best design is not the
coordinate-wise best one. For ``d <= 20`` the optimum is found by enumeration.
"""

import itertools

import torch


class SyntheticProblem:
    def __init__(self, d=12, seed=1, n_pairs=None, interaction_scale=1.0):
        gen = torch.Generator().manual_seed(seed)
        self.d = d
        self.weights = torch.randn(d, generator=gen, dtype=torch.double)
        pairs = list(itertools.combinations(range(d), 2))
        chosen = torch.randperm(len(pairs), generator=gen)[: (n_pairs or d // 2)]
        self.pairs = torch.tensor([pairs[i] for i in chosen.tolist()], dtype=torch.long)
        self.interactions = interaction_scale * torch.randn(len(self.pairs), generator=gen, dtype=torch.double)
        self._optimum = None

    def __call__(self, z):
        """``z``: ``n x d`` (or ``d``) 0/1 tensor -> ``n`` (or scalar) values."""
        z = torch.as_tensor(z, dtype=torch.double)
        pair_terms = z[..., self.pairs[:, 0]] * z[..., self.pairs[:, 1]]
        return z @ self.weights + pair_terms @ self.interactions

    def all_designs(self):
        if self.d > 20:
            raise ValueError("enumeration needs d <= 20")
        return torch.tensor(list(itertools.product((0, 1), repeat=self.d)), dtype=torch.double)

    @property
    def optimum(self):
        """``(best_value, best_z)`` by enumeration."""
        if self._optimum is None:
            designs = self.all_designs()
            values = self(designs)
            best = int(values.argmax())
            self._optimum = (float(values[best]), designs[best])
        return self._optimum

    def objective(self, z, seed=None, trial_dir=None):
        """The BO objective interface: ``(z, seed, trial_dir) -> float``."""
        return float(self(torch.as_tensor(z, dtype=torch.double)))
