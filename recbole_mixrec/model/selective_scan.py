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
chunked parallel scan: inside chunks of ``chunk`` steps a Hillis-Steele doubling scan
(``log2(chunk)`` vectorised steps, only products of factors in (0, 1], hence stable), then one
sequential pass over the ``L / chunk`` chunk boundaries to carry the state. Work and memory are
linear in ``L`` (for a fixed chunk size). On CUDA, ``mamba_ssm``'s fused kernel is used when it
is importable (not a dependency).
"""

import torch

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
    """Inclusive scan of h_t = a_t h_{t-1} + x_t along dim 2 (length a power of two).

    Returns ``(prod_{s<=t} a_s, h_t with h_{-1} = 0)``, both shaped like the inputs.
    """
    offset = 1
    while offset < a.size(2):
        x = torch.cat([x[:, :, :offset], a[:, :, offset:] * x[:, :, :-offset] + x[:, :, offset:]], 2)
        a = torch.cat([a[:, :, :offset], a[:, :, offset:] * a[:, :, :-offset]], 2)
        offset *= 2
    return a, x


def selective_scan(u, delta, A, B, C, D=None, chunk=16, use_kernel=True):
    """Chunked parallel selective scan; same result as :func:`selective_scan_reference`.

    Args:
        chunk (int): steps per chunk (rounded up to a power of two, halved while it would pad
            the sequence by more than 25%).
        use_kernel (bool): use ``mamba_ssm``'s CUDA kernel when available.
    Returns:
        y ``[b, L, H, P]``.
    """
    if use_kernel and _mamba_scan_fn is not None and u.is_cuda:  # pragma: no cover
        return _kernel_scan(u, delta, A, B, C, D)
    b, length, heads, p = u.shape
    n = A.size(-1)
    chunk = 1 << max(0, (min(chunk, length) - 1).bit_length())
    while chunk > 1 and (-length % chunk) * 4 > length:  # keep padding under 25%
        chunk //= 2
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    decay = torch.exp(delta.unsqueeze(-1) * A)  # [b, L, H, P, N]
    inputs = (delta * u).unsqueeze(-1) * B.unsqueeze(3)  # [b, L, H, P, N]
    if pad:  # identity steps: decay 1, input 0
        decay = torch.cat([decay, decay.new_ones(b, pad, heads, p, n)], 1)
        inputs = torch.cat([inputs, inputs.new_zeros(b, pad, heads, p, n)], 1)
    decay = decay.view(b, n_chunks, chunk, heads, p, n)
    inputs = inputs.view(b, n_chunks, chunk, heads, p, n)
    cumulative, local = _doubling_scan(decay, inputs)  # within each chunk, from a zero state
    # carry the state across chunk boundaries (L / chunk sequential steps)
    # (unbind once: indexing the big tensors per chunk would make each backward step allocate
    # and zero a gradient of their full size, quadratic in L)
    carried = [u.new_zeros(b, heads, p, n)]
    chunk_decay, chunk_state = cumulative[:, :, -1].unbind(1), local[:, :, -1].unbind(1)
    for c in range(n_chunks - 1):
        carried.append(chunk_decay[c] * carried[-1] + chunk_state[c])
    start = torch.stack(carried, dim=1).unsqueeze(2)  # [b, n_chunks, 1, H, P, N]
    states = (cumulative * start + local).view(b, n_chunks * chunk, heads, p, n)[:, :length]
    y = (states * C.unsqueeze(3)).sum(-1)
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
