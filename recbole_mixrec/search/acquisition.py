"""Acquisition optimisation by probabilistic reparameterization (spec section 3.4).

Daulton et al. (NeurIPS 2022) replace the discrete problem ``max_z alpha(z)``, ``z in {0,1}^d``,
by the continuous one ``max_theta E_{z ~ p(z|theta)}[alpha(z)]`` where ``theta in [0,1]^d``
holds the success probabilities of independent Bernoullis. Here ``theta = sigmoid(logits)`` and
the logits are trained with Adam on the Monte-Carlo score-function (REINFORCE) estimate

    grad_logits E[alpha] ~= mean_m (alpha(z_m) - b) * grad_logits log p(z_m | theta),
    log p(z | theta) = sum_i z_i log theta_i + (1 - z_i) log(1 - theta_i),

with the baseline ``b`` = mean of ``alpha`` over the MC batch (variance reduction). ``alpha`` is a
BoTorch acquisition function evaluated on the sampled binary ``z`` only (no gradient through it).
Several restarts (rows of ``logits``) are optimised together. Then ``q`` designs are drawn from
``p(z | theta*)`` and de-duplicated against the evaluated designs and each other.

Shapes: ``d`` design dimensions, ``n`` evaluated designs, ``R`` restarts, ``M`` MC samples.
"""

import itertools

import torch
from botorch.acquisition import (
    ExpectedImprovement,
    LogExpectedImprovement,
    UpperConfidenceBound,
)

from recbole_mixrec.errors import MixRecError

ACQUISITIONS = ("logei", "ei", "ucb")
DTYPE = torch.double


def make_acquisition(model, train_Y, kind="logei", ucb_beta=2.0):
    """BoTorch analytic acquisition ``alpha`` for a fitted GP (maximisation).

    ``train_Y``: ``n x 1`` observed values; EI's incumbent is their maximum."""
    kind = str(kind).lower()
    best_f = torch.as_tensor(train_Y, dtype=DTYPE).max()
    if kind == "logei":
        return LogExpectedImprovement(model, best_f=best_f)
    if kind == "ei":
        return ExpectedImprovement(model, best_f=best_f)
    if kind == "ucb":
        return UpperConfidenceBound(model, beta=float(ucb_beta))
    raise MixRecError(f"bo_acquisition must be one of {ACQUISITIONS}, got '{kind}'")


def evaluate_acquisition(acqf, z):
    """``alpha`` on binary designs ``z`` (``... x d``) -> ``...`` values (no gradient)."""
    shape = z.shape[:-1]
    with torch.no_grad():
        values = acqf(z.reshape(-1, 1, z.shape[-1]).to(DTYPE))
    return values.reshape(shape)


def bernoulli_log_prob(z, logits):
    """``log p(z | sigmoid(logits))`` summed over the last dim; ``z``: ``M x R x d``,
    ``logits``: ``R x d`` -> ``M x R``."""
    return -torch.nn.functional.binary_cross_entropy_with_logits(
        logits.expand_as(z), z, reduction="none"
    ).sum(-1)


def initial_logits(acqf, d, restarts=4, raw_samples=256, confidence=1.5, generator=None):
    """``R x d`` starting logits: half of the restarts start near the best of ``raw_samples``
    uniform random designs under ``alpha`` (``theta = sigmoid(+-confidence)``), the others near
    ``theta = 0.5`` (small random logits)."""
    logits = 0.5 * torch.randn(restarts, d, generator=generator, dtype=DTYPE)
    n_top = min(restarts // 2 + restarts % 2, raw_samples)
    if raw_samples and n_top:
        raw = torch.bernoulli(torch.full((raw_samples, d), 0.5, dtype=DTYPE), generator=generator)
        top = evaluate_acquisition(acqf, raw).topk(n_top).indices
        logits[:n_top] = confidence * (2 * raw[top] - 1)
    return logits


def optimize_pr(acqf, d, mc_samples=256, steps=100, lr=0.1, restarts=4, init_logits=None,
                raw_samples=256, generator=None):
    """Maximise ``E_{z~p(z|theta)}[alpha(z)]`` over ``theta`` by score-function gradient ascent.

    Returns ``(theta, expected)``: ``theta`` is ``d`` (the best restart, by a fresh MC estimate of
    the expectation), ``expected`` that estimate. ``init_logits``: optional ``R x d`` start
    (default: ``initial_logits``)."""
    if init_logits is None:
        init_logits = initial_logits(acqf, d, restarts, raw_samples, generator=generator)
    logits = init_logits.clone().to(DTYPE).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    for _ in range(int(steps)):
        theta = torch.sigmoid(logits.detach())
        z = torch.bernoulli(theta.expand(mc_samples, *theta.shape), generator=generator)  # M x R x d
        alpha = evaluate_acquisition(acqf, z)  # M x R
        advantage = alpha - alpha.mean(0, keepdim=True)  # baseline: MC-batch mean per restart
        surrogate = -(advantage * bernoulli_log_prob(z, logits)).mean(0).sum()
        optimizer.zero_grad()
        surrogate.backward()
        optimizer.step()
    theta = torch.sigmoid(logits.detach())
    z = torch.bernoulli(theta.expand(mc_samples, *theta.shape), generator=generator)
    expected = evaluate_acquisition(acqf, z).mean(0)  # R
    best = int(expected.argmax())
    return theta[best], float(expected[best])


def _key(z):
    return tuple(int(v) for v in z.tolist())


def most_probable_unseen(theta, seen, count):
    """Up to ``count`` designs not in ``seen`` (a set of tuples), most probable under
    ``p(z | theta)`` first: the mode, then the mode with the least-confident bits flipped
    (single flips, then pairs, then triples among the 10 least confident bits)."""
    mode = (theta > 0.5).to(DTYPE)
    cost = (torch.logit(theta.clamp(1e-6, 1 - 1e-6))).abs()  # log-odds lost by flipping each bit
    order = cost.argsort().tolist()
    candidates = [((), 0.0)]
    for size in (1, 2, 3):
        for bits in itertools.combinations(order[:10] if size > 1 else order, size):
            candidates.append((bits, float(cost[list(bits)].sum())))
    candidates.sort(key=lambda c: c[1])
    found = []
    for bits, _ in candidates:
        z = mode.clone()
        z[list(bits)] = 1 - z[list(bits)]
        if _key(z) not in seen:
            seen.add(_key(z))
            found.append(z)
            if len(found) == count:
                break
    return found


def sample_designs(theta, q, seen=(), acqf=None, n_candidates=512, max_draws=64, generator=None):
    """``q`` distinct designs (``q x d``) drawn from ``p(z | theta)`` that are not in ``seen``
    (an iterable of 0/1 sequences).

    With ``acqf``: draw ``n_candidates`` designs from ``p(z | theta)`` and keep the ``q`` unseen
    ones with the highest ``alpha`` (the discretisation step of probabilistic
    reparameterization). Without: keep the first ``q`` unseen draws, resampling up to
    ``max_draws`` rounds. Either way, missing rows are filled with the most probable unseen
    designs; fewer than ``q`` rows come back only when the space is exhausted."""
    seen = {tuple(int(v) for v in z) for z in seen}
    chosen = []
    if acqf is not None:
        draws = torch.bernoulli(theta.expand(n_candidates, -1), generator=generator).unique(dim=0)
        draws = [z for z in draws if _key(z) not in seen]
        if draws:
            draws = torch.stack(draws)
            for i in evaluate_acquisition(acqf, draws).argsort(descending=True)[:q].tolist():
                seen.add(_key(draws[i]))
                chosen.append(draws[i])
    for _ in range(max_draws):
        if len(chosen) == q:
            break
        draws = torch.bernoulli(theta.expand(4 * q, -1), generator=generator)
        for z in draws:
            if _key(z) not in seen:
                seen.add(_key(z))
                chosen.append(z)
                if len(chosen) == q:
                    break
    if len(chosen) < q:
        chosen += most_probable_unseen(theta, seen, q - len(chosen))
    if len(chosen) < q and theta.numel() <= 16:  # tiny spaces: anything left
        for bits in itertools.product((0, 1), repeat=theta.numel()):
            if bits not in seen:
                seen.add(bits)
                chosen.append(torch.tensor(bits, dtype=DTYPE))
                if len(chosen) == q:
                    break
    return torch.stack(chosen) if chosen else torch.empty(0, theta.numel(), dtype=DTYPE)


def random_designs(n, d, seen=(), generator=None, sobol_seed=None):
    """``n`` distinct unseen designs (``n x d``): scrambled Sobol points rounded to {0,1}
    when ``sobol_seed`` is given (space-filling initial designs), uniform bits otherwise."""
    seen = {tuple(int(v) for v in z) for z in seen}
    chosen = []
    if sobol_seed is not None:
        engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=int(sobol_seed))
        for z in (engine.draw(4 * n + 8).to(DTYPE) > 0.5).to(DTYPE):
            if _key(z) not in seen:
                seen.add(_key(z))
                chosen.append(z)
                if len(chosen) == n:
                    break
    uniform = torch.full((d,), 0.5, dtype=DTYPE)
    if len(chosen) < n:
        rest = sample_designs(uniform, n - len(chosen), seen, generator=generator)
        chosen += list(rest)
    return torch.stack(chosen) if chosen else torch.empty(0, d, dtype=DTYPE)
