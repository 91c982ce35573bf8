"""Array operations of the convolutional network, shared by the float reference and the integer model.

Layout ``NCHW``: maps are ``(B, C, H, W)``, convolution weights ``(O, C, k, k)``. Every
function works on float arrays; on integer arrays (``int64``) it is exact: the products are
summed through float64 BLAS and rounded back (:func:`_exact`), which is exact because every
partial sum stays below 2**53 (:class:`eqfpga.config.Config` checks the bound).

Definitions (``k`` kernel size, valid convolution, stride 1)::

    conv(a, W)[b, o, y, x]       = sum_{c,i,j} a[b, c, y+i, x+j] * W[o, c, i, j]
    conv_t(g, W)[b, c, Y, X]     = sum_{o,i,j} g[b, o, Y-i, X-j] * W[o, c, i, j]   (adjoint of conv)
    weight_grad(a, g)[o, c, i, j] = sum_{b,y,x} a[b, c, y+i, x+j] * g[b, o, y, x]
    pool_sum(a)[b, c, y, x]      = sum_{dy,dx < p} a[b, c, p*y+dy, p*x+dx]
    upsample(a)[b, c, Y, X]      = a[b, c, Y // p, X // p]                          (adjoint of pool_sum)
    max_pool(a)                  = (max over each window, index of the first maximum in
                                    raster order dy*p + dx)
    unpool(a, idx)[.., p*y+dy, p*x+dx] = a[.., y, x] if dy*p + dx == idx[.., y, x] else 0

so ``<conv(a, W), g> == <a, conv_t(g, W)>`` and ``<pool_sum(a), g> == <a, upsample(g)>``
exactly; ``unpool(., idx)`` is the adjoint of selecting the entries ``idx`` names. A
line-buffer RTL computes ``conv`` by streaming ``a`` row by row through ``k - 1`` line
buffers; ``conv_t`` is the same engine on the zero-padded map with the kernel flipped
and ``O``/``C`` swapped (:func:`flip`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


#: float32 holds every integer below 2**24 exactly
_F32_EXACT = 1 << 24


def _blas_type(a: np.ndarray, b: np.ndarray, inner: int):
    """The float type whose BLAS sums integer products of ``a`` and ``b`` over ``inner`` terms
    exactly: float32 when no partial sum can reach 2**24 (spikes times weights), else float64."""
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * inner
    return np.float32 if bound < _F32_EXACT else np.float64


def _exact(a: np.ndarray, b: np.ndarray, integer: bool) -> np.ndarray:
    """``a @ b``; exact for integers (through :func:`_blas_type`)."""
    if integer:
        ft = _blas_type(a, b, a.shape[-1])
        return np.rint(a.astype(ft) @ b.astype(ft)).astype(np.int64)
    return a @ b


def _is_int(*arrays) -> bool:
    return all(np.issubdtype(np.asarray(a).dtype, np.integer) for a in arrays)


def im2col(a: np.ndarray, k: int) -> np.ndarray:
    """``(B, C, H, W)`` -> ``(B*Ho*Wo, C*k*k)`` patches, rows in (b, y, x) order, columns in
    (c, i, j) order (the order of ``W.reshape(O, -1)``)."""
    B, C, H, W = a.shape
    win = sliding_window_view(a, (k, k), axis=(2, 3))          # (B, C, Ho, Wo, k, k)
    Ho, Wo = H - k + 1, W - k + 1
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(B * Ho * Wo, C * k * k)


def conv(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Valid convolution (cross-correlation), stride 1: ``(B,C,H,W) x (O,C,k,k) -> (B,O,Ho,Wo)``."""
    B, C, H, W = a.shape
    O, _, k, _ = w.shape
    Ho, Wo = H - k + 1, W - k + 1
    integer = _is_int(a, w)
    if integer:   # convert the (small) map once, not the (k*k times larger) patch matrix
        a, w = a.astype(np.float64), w.astype(np.float64)
    out = im2col(a, k) @ w.reshape(O, -1).T                     # (B*Ho*Wo, O)
    if integer:
        out = np.rint(out).astype(np.int64)
    return out.reshape(B, Ho, Wo, O).transpose(0, 3, 1, 2)


def pooled_kernel(w: np.ndarray, p: int) -> np.ndarray:
    """``(O,C,k,k) -> (O,C,k+p-1,k+p-1)``: the kernel summed over the ``p x p`` offsets of a
    pooling window, so that ``pool_sum(conv(a, w), p)`` is a stride-``p`` convolution with it."""
    O, C, k, _ = w.shape
    out = np.zeros((O, C, k + p - 1, k + p - 1), w.dtype)
    for dy in range(p):
        for dx in range(p):
            out[:, :, dy:dy + k, dx:dx + k] += w
    return out


def pooled_kernels(ws: list, geometry) -> list:
    """:func:`pooled_kernel` of every average-pooled convolution's weights (layers of
    ``geometry``), None for the others: computed once for phases during which the weights do
    not change."""
    return [pooled_kernel(w, ly.pool) if ly.kind == "conv" and ly.pooling == "avg" else None
            for w, ly in zip(ws, geometry)]


class FixedWeights:
    """For the models' parameter classes (fields ``w``, ``b``, ``pooled``): :meth:`fixed` gives
    the same arrays with every pooled kernel computed once, for phases during which the
    weights do not change (the update goes to the original); :meth:`kernel` is layer ``l``'s
    pooled kernel then, else None (computed at each use)."""

    def fixed(self, c):
        if not any(ly.kind == "conv" and ly.pooling == "avg" for ly in c.geometry):
            return self
        return type(self)(self.w, self.b, pooled_kernels(self.w, c.geometry))

    def kernel(self, l: int) -> np.ndarray | None:
        return None if self.pooled is None else self.pooled[l]


def pooled_conv(a: np.ndarray, w: np.ndarray, p: int, we: np.ndarray | None = None) -> np.ndarray:
    """``pool_sum(conv(a, w), p)`` as one stride-``p`` convolution with :func:`pooled_kernel`
    (``p*p / ((k+p-1)/k)**2`` times fewer products; exact for integers). ``we``: that kernel,
    when the caller has it already."""
    B, C, H, W = a.shape
    we = pooled_kernel(w, p) if we is None else we
    O, _, K, _ = we.shape
    Hp, Wp = (H - w.shape[2] + 1) // p, (W - w.shape[3] + 1) // p
    integer = _is_int(a, w)
    if integer:   # convert the (small) map once, not the patch matrix
        ft = _blas_type(a, we, C * K * K)
        a, we = a.astype(ft), we.astype(ft)
    win = sliding_window_view(a, (K, K), axis=(2, 3))[:, :, ::p, ::p][:, :, :Hp, :Wp]
    out = win.transpose(0, 2, 3, 1, 4, 5).reshape(B * Hp * Wp, C * K * K) @ we.reshape(O, -1).T
    if integer:
        out = np.rint(out).astype(np.int64)
    return out.reshape(B, Hp, Wp, O).transpose(0, 3, 1, 2)


def upsampled_conv_t(g: np.ndarray, w: np.ndarray, p: int, we: np.ndarray | None = None) -> np.ndarray:
    """``conv_t(upsample(g, p), w)``, the adjoint of :func:`pooled_conv`: ``(B,O,Hp,Wp) ->
    (B,C,p*Hp+k-1,p*Wp+k-1)``; ``we`` as in :func:`pooled_conv`."""
    B, O, Hp, Wp = g.shape
    we = pooled_kernel(w, p) if we is None else we
    _, C, K, _ = we.shape
    # (C*K*K, O) x (O, B*Hp*Wp): the K*K shifted additions below then move whole (C, B) planes
    cols = _exact(we.reshape(O, -1).T, g.transpose(1, 0, 2, 3).reshape(O, -1), _is_int(g, w))
    cols = cols.reshape(C, K, K, B, Hp, Wp)
    out = np.zeros((C, B, p * (Hp - 1) + K, p * (Wp - 1) + K), cols.dtype)
    for i in range(K):
        for j in range(K):
            out[:, :, i:i + p * Hp:p, j:j + p * Wp:p] += cols[:, i, j]
    return out.transpose(1, 0, 2, 3)


def flip(w: np.ndarray) -> np.ndarray:
    """The kernel of the transposed convolution: channels swapped, rotated by 180 degrees."""
    return w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]


def conv_t(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Transposed convolution, the exact adjoint of :func:`conv`: ``(B,O,Ho,Wo) -> (B,C,Ho+k-1,Wo+k-1)``.

    Computed as one product ``g @ W`` per position (``(B*Ho*Wo, O) x (O, C*k*k)``) followed by
    the ``k*k`` shifted additions of col2im; equal to ``conv(pad(g, k-1), flip(W))``."""
    B, O, Ho, Wo = g.shape
    _, C, k, _ = w.shape
    integer = _is_int(g, w)
    gm = g.transpose(0, 2, 3, 1).reshape(-1, O)
    cols = _exact(gm, w.reshape(O, -1), integer).reshape(B, Ho, Wo, C, k, k)
    out = np.zeros((B, C, Ho + k - 1, Wo + k - 1), cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, :, i:i + Ho, j:j + Wo] += cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return out


def conv_t_reference(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`conv_t` as the convolution of the zero-padded map with the flipped kernel."""
    k = w.shape[2]
    gp = np.pad(g, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    return conv(gp, np.ascontiguousarray(flip(w)))


def weight_grad(a: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """``d<conv(a, W), g>/dW``: ``(B,C,H,W), (B,O,Ho,Wo) -> (O,C,k,k)``, summed over the batch."""
    B, C = a.shape[:2]
    O = g.shape[1]
    cols = im2col(a, k)                                         # (B*Ho*Wo, C*k*k)
    gm = g.transpose(0, 2, 3, 1).reshape(-1, O)                 # (B*Ho*Wo, O)
    return _exact(gm.T, cols, _is_int(a, g)).reshape(O, C, k, k)


def pool_sum(a: np.ndarray, p: int) -> np.ndarray:
    B, C, H, W = a.shape
    return a.reshape(B, C, H // p, p, W // p, p).sum(axis=(3, 5))


def upsample(a: np.ndarray, p: int) -> np.ndarray:
    """Nearest-neighbour upsampling by ``p`` (the adjoint of :func:`pool_sum`)."""
    return np.repeat(np.repeat(a, p, axis=2), p, axis=3)


def _windows(a: np.ndarray, p: int) -> np.ndarray:
    B, C, H, W = a.shape
    return a.reshape(B, C, H // p, p, W // p, p).transpose(0, 1, 2, 4, 3, 5).reshape(
        B, C, H // p, W // p, p * p)


def max_pool(a: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Window maxima and the raster index ``dy*p + dx`` of the first maximum of each window."""
    win = _windows(a, p)
    idx = np.argmax(win, axis=-1)
    return np.take_along_axis(win, idx[..., None], -1)[..., 0], idx


def unpool(a: np.ndarray, idx: np.ndarray, p: int) -> np.ndarray:
    """Put each ``a[.., y, x]`` at the window position ``idx`` names, zeros elsewhere."""
    B, C, Hp, Wp = a.shape
    onehot = (np.arange(p * p) == idx[..., None])               # (B, C, Hp, Wp, p*p)
    win = onehot * a[..., None]
    return win.reshape(B, C, Hp, Wp, p, p).transpose(0, 1, 2, 4, 3, 5).reshape(B, C, Hp * p, Wp * p)
