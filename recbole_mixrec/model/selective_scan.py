"""Selective state-space scan (Mamba's S6) over several latent heads, for Hydra.

Shapes (``H`` heads, ``P`` channels per head, ``N`` state size):

* ``u``, ``delta``: ``[b, L, H, P]`` input and step size (already positive);
* ``A``: ``[H, P, N]`` diagonal state matrix (negative entries);
* ``B``, ``C``: ``[b, L, H, N]`` input-dependent input / output projections (one per head,
  shared by the head's channels, Mamba's "groups");
* ``D``: ``[H, P]`` skip connection or ``None``.

Recurrence (zero-order hold for A, Euler for B, as in Mamba), per channel and state entry::

    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t u_t
    y_t = <C_t, h_t> + D u_t

``selective_scan_reference`` runs it step by step; ``selective_scan`` (what Hydra uses) is a
chunked scan: chunks of ``chunk`` steps run one after another, each from the previous chunk's end
state, with a Hillis-Steele doubling scan inside a chunk (``log2(chunk)`` vectorised steps, only
products of factors in (0, 1], hence stable). In training each chunk is recomputed in backward,
so the state-sized ``[b, chunk, H, P, N]`` tensors exist for one chunk at a time: work is linear
in ``L`` and the working set does not grow with it. On CUDA, ``mamba_ssm``'s fused kernel is used when it
is importable (not a dependency).
"""

import torch
from torch.utils.checkpoint import checkpoint

try:  # optional fused CUDA kernel
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_scan_fn
except ImportError:  # pragma: no cover - depends on the environment
    _mamba_scan_fn = None


def selective_scan_reference(u, delta, A, B, C, D=None):
    """Naive step-by-step recurrence (the definition); see the module docstring for shapes."""
    b, length, heads, p = u.shape
    h = u.new_zeros(b, heads, p, A.size(-1))
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, t, :, :, None] * A)
        h = decay * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, :, None, :]
        y = (h * C[:, t, :, None, :]).sum(-1)
        if D is not None:
            y = y + D * u[:, t]
        ys.append(y)
    return torch.stack(ys, dim=1)


def _doubling_scan(a, x):
    """Inclusive scan of h_t = a_t h_{t-1} + x_t along dim 1 (Hillis-Steele, any length).

    Returns ``(prod_{s<=t} a_s, h_t with h_{-1} = 0)``, both shaped like the inputs.
    """
    offset = 1
    while offset < a.size(1):
        x = torch.cat([x[:, :offset], a[:, offset:] * x[:, :-offset] + x[:, offset:]], 1)
        a = torch.cat([a[:, :offset], a[:, offset:] * a[:, :-offset]], 1)
        offset *= 2
    return a, x


def _scan_chunk(state, u, delta, A, B, C):
    """One chunk of steps from its start ``state`` ``[b, H, P, N]``: ``(y without D, end state)``.

    The ``[b, T, H, P, N]`` decay/input tensors exist for this chunk only.
    """
    decay = torch.exp(delta.unsqueeze(-1) * A)
    inputs = (delta * u).unsqueeze(-1) * B.unsqueeze(3)
    cumulative, local = _doubling_scan(decay, inputs)  # from a zero state
    states = cumulative * state.unsqueeze(1) + local
    # clone: a view would keep the whole chunk alive as the next checkpoint's input
    return (states * C.unsqueeze(3)).sum(-1), states[:, -1].clone()


def selective_scan(u, delta, A, B, C, D=None, chunk=16, use_kernel=True):
    """Chunked selective scan; same result as :func:`selective_scan_reference`.

    Args:
        chunk (int): steps per chunk (the last one may be shorter).
        use_kernel (bool): use ``mamba_ssm``'s CUDA kernel when available.
    Returns:
        y ``[b, L, H, P]``.
    """
    if use_kernel and _mamba_scan_fn is not None and u.is_cuda:  # pragma: no cover
        return _kernel_scan(u, delta, A, B, C, D)
    b, length, heads, p = u.shape
    state = u.new_zeros(b, heads, p, A.size(-1))
    # Training recomputes each chunk in backward (activation checkpointing): only the chunk
    # start states stay alive, and forward + backward of a chunk touch a chunk-sized working set,
    # so the cost per step does not grow with L once the full [b, L, H, P, N] tensors would
    # outgrow the CPU cache. ``split`` (not per-chunk indexing) keeps the backward linear.
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    ys = []
    for u_c, delta_c, B_c, C_c in zip(*(t.split(chunk, dim=1) for t in (u, delta, B, C))):
        if recompute:
            y_c, state = checkpoint(_scan_chunk, state, u_c, delta_c, A, B_c, C_c,
                                    use_reentrant=False, preserve_rng_state=False)
        else:
            y_c, state = _scan_chunk(state, u_c, delta_c, A, B_c, C_c)
        ys.append(y_c)
    y = torch.cat(ys, 1)
    if D is not None:
        y = y + D * u
    return y


def _kernel_scan(u, delta, A, B, C, D):  # pragma: no cover - needs mamba_ssm and CUDA
    """``mamba_ssm`` layout: channels ``H*P`` first, time last; B/C as ``[b, H, N, L]`` groups."""
    b, length, heads, p = u.shape
    y = _mamba_scan_fn(
        u.reshape(b, length, heads * p).transpose(1, 2).contiguous(),
        delta.reshape(b, length, heads * p).transpose(1, 2).contiguous(),
        A.reshape(heads * p, -1).contiguous(),
        B.permute(0, 2, 3, 1).contiguous(),
        C.permute(0, 2, 3, 1).contiguous(),
        None if D is None else D.reshape(-1).float(),
    )
    return y.transpose(1, 2).reshape(b, length, heads, p)
