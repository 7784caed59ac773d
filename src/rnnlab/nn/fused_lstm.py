r"""A whole-sequence LSTM for the options torch's fused kernels cannot run: layer norm inside the cell
(Ba et al., 2016, "Layer Normalization", §3.1 eq. 20-22) and variational recurrent dropout (Gal &
Ghahramani, 2016, "A Theoretically Grounded Application of Dropout in Recurrent Neural Networks", §4).

Shapes (batch first): x (B, T, I); h0, c0 (B, H); weight_ih (4H, I), weight_hh (4H, H), biases (4H,),
gates stacked i, f, g, o as in ``torch.nn.LSTM``; y (B, T, H). G = 4H.

.. math::
    \hat x_t &= W_{ih} x_t                      &&\text{(all t at once, one matrix product)} \\
    \hat x_t &\leftarrow LN(\hat x_t)\,\gamma_{ih} &&\text{(layer norm only)} \\
    \hat h_t &= W_{hh} (h_{t-1} \odot m)         &&\text{(m: dropout mask, the same at every step; 1 when off)} \\
    \hat h_t &\leftarrow LN(\hat h_t)\,\gamma_{hh} &&\text{(layer norm only)} \\
    a_t &= \hat x_t + \hat h_t + b_{ih} + b_{hh}, \quad i, f, g, o = \mathrm{split}(a_t, 4) \\
    i &= \sigma(i) \quad f = \sigma(f) \quad g = \tanh(g) \quad o = \sigma(o) \\
    c_t &= f \odot c_{t-1} + i \odot g \\
    h_t &= o \odot \tanh(LN(c_t)\,\gamma_c + \beta_c) \quad\text{(layer norm) or}\quad o \odot \tanh(c_t) \\
    y_t &= h_t

LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over the last dim (biased variance); the LN of the products has
no shift (the biases are the shift), the LN of c_t has one. The carried c_t is not normalised. With
``lengths``, a row past its length keeps its state and outputs zeros, so (hT, cT) is the state at its last
real step.

Implementation (CPU, float32/float64): a ``torch.autograd.Function`` with a hand-written backward through
time. The forward does the input product for all steps at once (oneDNN), then per
step the recurrent product and one serial numba kernel for everything element-wise (LN of ĥ_t, gates, cell,
LN of c, h, lengths), writing into buffers allocated once and saving what the backward needs. Steps past the
longest row are skipped. The per-step product runs on oneDNN with W_hh reordered once per call
(``_gemm.pack``) on a contiguous operand that the kernel writes (h_t ⊙ m); where it is small enough
(:func:`_splits`: rows·4H·H ≤ 2^26 multiply-adds per thread) the whole loop over time is one numba call with its
own product instead (the register-blocked ``_ukernel.matmul_packed``, on W_hh packed once per call), since a
oneDNN call and the Python around it cost more than such a product. With more than one torch thread the batch
is split into one range of rows per thread (at least 4 rows each) and each range runs its own whole loop, at
once, on torch's OpenMP team (``_parallel.run_split``): rows never interact, so the ranges need no
synchronisation; each range sums its own parameter gradients, added up at the end. Inference (no grad) keeps
nothing: in the whole loop both products run inside it, x_t W_ihᵀ for the range's rows right before ĥ_t (no
(B, T, 4H) buffer, no torch call); on the per-step path x̂ is computed time-major, a chunk of steps (~1 MB) at a
time right before they run (in cache), and its own kernel normalises x̂ and ĥ per row and writes only h, c and y.
What the forward saves for the backward comes from memory reused once nothing references it
(``_workspace.saved_buffer``: no page faults per call).
Training runs time-major, (T, B, ·): x, x̂, h ⊙ m, y, the saved rows and the gradients, so that a step's B rows
are one contiguous block the hardware prefetcher streams (batch-major they lie T·K apart); y comes back as a
(B, T, H) view. The forward kernel normalises x̂_t in place (LN(x̂), saved) with the moments of ĥ_t.
The backward runs one kernel and one product per step likewise; the parameter gradients of the layer norms and
the biases are summed per step in the kernel's dtype and added to float64 totals once per step. Large layers
collect the pre-activation gradients of all steps, so dW_ih, dW_hh and dx are single products at the end; small
ones (the whole loop in numba and T·B·4H ≤ 2^20, :data:`_IN_LOOP_WEIGHT_GRAD_MAX`) keep them in rings of one
chunk of steps (~256 KB, in cache) and take each chunk's share of dW_ih, dW_hh and dx on the micro-kernel inside
the loop, so that no (T, B, 4H) gradient array goes to memory and back. In float32 the kernels use a rational
tanh (Eigen's, error ~1e-7) that the compiler vectorises; sigmoid(x) = (1 + tanh(x/2)) / 2. The kernels slice no
array inside their loop over rows (each slice costs numba a reference-count increment and decrement, ~100-200 ns
per row with the dozen a row needed, as much as a row's arithmetic at H = 64); they index the per-call arrays by
loop variables, or by unsigned offsets (an offset signed index gets numba's negative-index wraparound, which
keeps LLVM from vectorising the loop), and an inner loop stores into one section of an array only (stores at
several offsets of one array kept it scalar). Anything else (another device or dtype) runs
:func:`lstm_sequence_reference`, the plain autograd loop. Double backward is not supported.
The kernels are compiled on first use per dtype (~10-20 s) and cached on disk (numba ``cache=True``).

Inference on the per-step path copies its inputs time-major one chunk of steps at a time, just before that chunk's
product (a copy of the whole sequence at once left the heap to be trimmed and refilled: ~2000 page faults per
call at (64, 200, 64, 128)); its kernel takes the moments of x̂ and ĥ in one pass, sums about each row's first element
(no cancellation when a row's mean is large against its spread).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba.extending import overload
from torch import Tensor

from ._checks import check_sequence_args, check_state_tensor
from ._gemm import linear, linear_into, linear_packed, pack, weight_grad
from ._parallel import aligned_empty, aligned_rows, row_splits, run_split
from ._ukernel import matmul_packed, pack_panels, panel_width
from ._workspace import saved_buffer, scratch
from .masking import lengths_to_mask

__all__ = ["lstm_sequence", "lstm_sequence_reference"]


# ----------------------------------------------------------------------------------------------------
# Reference: the equations, one step at a time, under autograd.
# ----------------------------------------------------------------------------------------------------


def lstm_sequence_reference(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, *,
                            ln_ih=None, ln_hh=None, ln_c=None, eps=1e-5, mask=None, lengths=None):
    """The module's equations as a plain autograd loop over time. Same contract as :func:`lstm_sequence`."""
    x, h, c, lengths = _check_args(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, ln_c, mask, lengths)
    B, T, _ = x.shape
    G = weight_hh.shape[0]
    H = G // 4
    x_hat = x @ weight_ih.t()  # (B, T, G)
    if ln_ih is not None:
        x_hat = torch.nn.functional.layer_norm(x_hat, (G,), ln_ih, None, eps)
    active = lengths_to_mask(lengths, T, device=x.device)  # (B, T) or None
    ys = []
    for t in range(T):
        h_hat = (h if mask is None else h * mask) @ weight_hh.t()  # (B, G)
        if ln_hh is not None:
            h_hat = torch.nn.functional.layer_norm(h_hat, (G,), ln_hh, None, eps)
        a = x_hat[:, t] + h_hat
        if bias_ih is not None:
            a = a + bias_ih
        if bias_hh is not None:
            a = a + bias_hh
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        i = torch.sigmoid(a_i)  # input gate
        f = torch.sigmoid(a_f)  # forget gate
        g = torch.tanh(a_g)  # candidate
        o = torch.sigmoid(a_o)  # output gate
        c_new = f * c + i * g
        c_out = c_new if ln_c is None else torch.nn.functional.layer_norm(c_new, (H,), ln_c[0], ln_c[1], eps)
        h_new = o * torch.tanh(c_out)
        if active is None:
            h, c, y = h_new, c_new, h_new
        else:
            m_t = active[:, t].unsqueeze(1)  # (B, 1)
            h, c = torch.where(m_t, h_new, h), torch.where(m_t, c_new, c)
            y = h_new * m_t.to(h_new.dtype)
        ys.append(y)
    return torch.stack(ys, dim=1), h, c  # (B, T, H), (B, H), (B, H)


# ----------------------------------------------------------------------------------------------------
# Public entry point.
# ----------------------------------------------------------------------------------------------------


def lstm_sequence(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, *,
                  ln_ih=None, ln_hh=None, ln_c=None, eps=1e-5, mask=None, lengths=None):
    """Run the LSTM of this module's equations over a whole sequence.

    x (B, T, I); h0, c0 (B, H) or None (zeros); weight_ih (4H, I); weight_hh (4H, H); bias_ih, bias_hh (4H,)
    or None (zero). Layer norm is on iff ``ln_ih`` is given: ln_ih, ln_hh gains γ (4H,), ln_c = (γ_c, β_c)
    each (H,). ``mask`` (B, H): the recurrent dropout mask on h_{t-1} (0 or 1/(1-p)), gets no gradient.
    ``lengths`` (B,) integers in [1, T]. Returns y (B, T, H), hT (B, H), cT (B, H).

    On the CPU in float32/float64 this runs the fused kernels; otherwise the reference loop.
    """
    x, h0, c0, lengths = _check_args(
        x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, ln_c, mask, lengths
    )
    tensors = [x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, mask]
    if ln_c is not None:
        tensors += list(ln_c)
    fused = all(t is None or (t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)) for t in tensors)
    if not fused:
        return lstm_sequence_reference(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh,
                                       ln_ih=ln_ih, ln_hh=ln_hh, ln_c=ln_c, eps=eps, mask=mask, lengths=lengths)
    g_c, b_c = (None, None) if ln_c is None else ln_c
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _FusedLSTM.apply(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, g_c, b_c,
                                mask, lengths, float(eps))
    with torch.no_grad():  # inference: nothing kept for a backward pass
        Y, ST = _infer(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, g_c, b_c, mask, lengths,
                       float(eps))
    return Y, ST[0].clone(), ST[1].clone()


def _check_args(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_ih, ln_hh, ln_c, mask, lengths):
    """Validate shapes and dtypes; returns x, h0, c0 (zeros for None) and lengths (CPU int64 or None)."""
    x, (h0, c0), lengths = check_sequence_args(
        x, {"h0": h0, "c0": c0}, weight_ih, weight_hh,
        {"bias_ih": bias_ih, "bias_hh": bias_hh, "ln_ih": ln_ih, "ln_hh": ln_hh}, mask, lengths, num_gates=4)
    if (ln_ih is None) != (ln_hh is None) or (ln_ih is None) != (ln_c is None):
        raise ValueError("layer norm needs ln_ih, ln_hh and ln_c together (or none of them)")
    if ln_c is not None:
        if not isinstance(ln_c, (tuple, list)) or len(ln_c) != 2:
            raise TypeError("ln_c must be a tuple (gamma_c, beta_c) of two (H,) tensors")
        H = weight_hh.shape[1]
        check_state_tensor("ln_c[0] (gamma_c)", ln_c[0], (H,), weight_hh)
        check_state_tensor("ln_c[1] (beta_c)", ln_c[1], (H,), weight_hh)
    return x, h0, c0, lengths


# ----------------------------------------------------------------------------------------------------
# Autograd function: the Python side of the fused kernels.
# ----------------------------------------------------------------------------------------------------


def _layout(G: int, H: int, ln: bool) -> int:
    """Width K of the per-(b, t) saved row: [gates G | c_{t-1} H | tanh(ĉ_t) H | (LN) ĥ_n G | c_n H | rstd 3]. With
    layer norm the tanh(ĉ_t) section is left unwritten (the backward recomputes it from c_n: its cache lines are
    never touched, ~9% less memory traffic per row; measured 0.97x the training step at (8, 500, 32, 64))."""
    return G + 2 * H + ((G + H + 3) if ln else 0)


def sequence_buffers(x, h0, W_ih, H: int, mask, lengths, work):
    """What the forward pass of every sequence kernel starts from, shared by the LSTM and the GRU.

    -> XP (B, T, G) x̂ = x W_ihᵀ for all steps; HM (B, T, H) h_{t-1} ⊙ m with step 0 filled in; Y (B, T, H) the
    outputs, zero past the steps that run; m (B, H) the mask (ones without dropout); L (B,) lengths; T_run the
    steps any row needs (none past the longest row does work). With ``work`` (inference), XP and HM are views of
    that scratch of B·T·(G + H) elements instead of fresh tensors kept for the backward pass.
    """
    B, T, I = x.shape
    G = W_ih.shape[0]
    dtype = x.dtype
    x = x.detach().contiguous()
    m = torch.ones(B, H, dtype=dtype) if mask is None else mask.detach().contiguous()
    L = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.contiguous()
    T_run = int(L.max())
    if work is None:
        XP = linear(x.view(B * T, I), W_ih.detach()).view(B, T, G)
        HM = torch.empty(B, T, H, dtype=dtype)
    else:
        XP = linear_into(x.view(B * T, I), W_ih.detach(), work[:B * T * G].view(B * T, G)).view(B, T, G)
        HM = work[B * T * G:].view(B, T, H)
    HM[:, 0] = h0.detach() * m
    Y = torch.empty(B, T, H, dtype=dtype)
    if T_run < T:
        HM[:, T_run:].zero_()
        Y[:, T_run:].zero_()
    return XP, HM, Y, m, L, T_run


def _forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, mask, lengths, eps):
    """The forward pass of training under no_grad. Returns Y (T, B, H), ST (2, B, H) the final (h, c), and what the
    backward needs, all time-major (see :func:`_time_major_buffers`). (Inference runs :func:`_infer`.)"""
    B, T, _ = x.shape
    G, H = W_hh.shape
    ln = g_ih is not None
    dtype = x.dtype
    W_hh = W_hh.contiguous()
    XT, XP, HM, Y, m, L, T_run = _time_major_buffers(x, h0, W_ih, H, mask, lengths)
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, g_c, b_c, G, H, dtype)
    ST = torch.stack([h0.detach(), c0.detach()])  # (2, B, H): running h, c
    HP = torch.empty(B, G, dtype=dtype)  # ĥ_t
    K = _layout(G, H, ln)
    SV = saved_buffer(T * B * K, dtype).view(T, B, K)  # kept for the backward pass, in memory reused between calls
    SC = _scalars(eps, G, H, dtype)

    HN = HM[0].clone()  # (B, H) h_{t-1} ⊙ m, the operand of the next product
    XP_, HP_, P_, M_, L_, ST_, Y_, HM_, HN_, SV_ = (
        a.detach().numpy() for a in (XP, HP, P, m, L, ST, Y, HM, HN, SV))
    with torch.no_grad():
        splits = _splits(B, G, H)
        if splits is not None:  # the whole loop in numba, no Python per step; one thread per range of rows
            Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, G) in panels, once per call
            run_split(_forward_loop, [(T_run, Wp, XP_, HP_, P_, M_, L_, ST_, Y_, HM_, HN_, SV_, SC, ln, b0, b1)
                                      for b0, b1 in splits], fresh=(Y_, HM_))
        else:
            W_p = pack(W_hh, B)  # reordered once for oneDNN: no reorder per step
            for t in range(T_run):
                HP_ = linear_packed(HN, W_p).numpy()  # ĥ_t (B, G)
                _forward_step(t, XP_, HP_, P_, M_, L_, ST_, Y_, HM_, HN_, SV_, SC, ln, 0, B)
    return Y, ST, (XT, m, L, P, XP, HM, SV, T_run)


def _time_major_buffers(x, h0, W_ih, H: int, mask, lengths):
    """What the training forward pass starts from, time-major: a step's B rows are one contiguous block, which the
    hardware prefetcher streams, forward and backward in time; batch-major they lie T·K apart, B streams at once
    (measured at (8, 500, 32, 64), layer norm: the per-step kernels ran ~2x their in-cache time batch-major).

    -> XT (T, B, I) x time-major (the input product's operand, and dW_ih's); XP (T, B, G) x̂ = x W_ihᵀ; HM (T, B, H)
    h_{t-1} ⊙ m with step 0 filled in; Y (T, B, H) the outputs, zero past the steps that run; m (B, H) the mask
    (ones without dropout); L (B,) lengths; T_run the steps any row needs. x̂ comes from oneDNN (into fresh
    memory: no ``out=`` there; ``torch.mm(out=)`` runs MKL, slower on this AMD CPU)."""
    B, T, I = x.shape
    G = W_ih.shape[0]
    dtype = x.dtype
    XT = x.detach().transpose(0, 1).contiguous()
    m = torch.ones(B, H, dtype=dtype) if mask is None else mask.detach().contiguous()
    L = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.contiguous()
    T_run = int(L.max())
    XP = linear(XT.view(T * B, I), W_ih.detach()).view(T, B, G)
    HM = torch.empty(T, B, H, dtype=dtype)
    HM[0] = h0.detach() * m
    Y = torch.empty(T, B, H, dtype=dtype)
    if T_run < T:
        HM[T_run:].zero_()
        Y[T_run:].zero_()
    return XT, XP, HM, Y, m, L, T_run


def _infer(x, h0, c0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, mask, lengths, eps):
    """The forward pass for inference (no grad): Y (B, T, H) and ST (2, B, H) the final (h, c); nothing else kept.

    x̂ = x W_ihᵀ is computed time-major, (T, B, G), into reused scratch memory (no first-touch page faults), so
    that the rows a step reads are one contiguous block the prefetcher streams (batch-major, the B rows of a step
    lie T·G apart); the kernel (:func:`_infer_step`) normalises x̂ and ĥ per row while they are in cache, keeps
    the gates in one (G,) scratch row and writes only h, c, y and the next product's operand."""
    B, T, I = x.shape
    G, H = W_hh.shape
    dtype = x.dtype
    ln = g_ih is not None
    m = torch.ones(B, H, dtype=dtype) if mask is None else mask.detach().contiguous()
    L = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.contiguous()
    T_run = int(L.max())
    P = _pack_params(b_ih, b_hh, g_ih, g_hh, g_c, b_c, G, H, dtype)
    ST = torch.stack([h0.detach(), c0.detach()])  # (2, B, H): running h, c
    HN = (h0.detach() * m).contiguous()  # (B, H) h_{t-1} ⊙ m, the operand of the recurrent product
    Y = torch.empty(T, B, H, dtype=dtype)  # time-major: a step writes one contiguous block; returned as a view
    if T_run < T:
        Y[T_run:].zero_()
    SC = _scalars(eps, G, H, dtype)
    x = x.detach()
    W_ih = W_ih.detach()
    HP = torch.empty(B, G, dtype=dtype)  # ĥ_t in the whole-loop path
    P_, M_, L_, ST_, Y_, HN_ = (a.numpy() for a in (P, m, L, ST, Y, HN))
    splits = _splits(B, G, H)
    if splits is not None:  # the whole loop in numba, both products inside; one thread per range of rows
        Wxp = pack_panels(W_ih.t().numpy())  # W_ihᵀ (I, G) in panels, once per call
        Wp = pack_panels(W_hh.detach().t().numpy())  # W_hhᵀ (H, G)
        XH = aligned_empty((1, B, G), Y_.dtype)  # x̂_t (aligned: no cache line shared across a range boundary)
        A = aligned_rows(len(splits), G, Y_.dtype)  # one row's gates, per range (own cache lines)
        X = x.contiguous().numpy()
        run_split(_infer_rows, [(T_run, X, Wxp, Wp, XH, HP.numpy(), P_, M_, L_, ST_, Y_, HN_, A[s], SC, ln, b0, b1)
                                for s, (b0, b1) in enumerate(splits)], fresh=(Y_,))
        return Y.transpose(0, 1), ST
    W_p = pack(W_hh.contiguous(), B)
    A_ = np.empty(G, dtype=Y_.dtype)  # one row's gates
    chunk = _infer_chunk(B, G)
    for t0 in range(0, T_run, chunk):  # x̂ of `chunk` steps at a time, consumed while in cache
        t1 = min(t0 + chunk, T_run)
        x_tm = x[:, t0:t1].transpose(0, 1).reshape((t1 - t0) * B, I)  # time-major copy of the chunk's inputs
        XP_ = linear(x_tm, W_ih).numpy().reshape(t1 - t0, B, G)  # (t1 - t0, B, G)
        for t in range(t0, t1):
            HP_ = linear_packed(HN, W_p).numpy()  # ĥ_t (B, G)
            _infer_step(t, t - t0, XP_, HP_, P_, M_, L_, ST_, Y_, HN_, A_, SC, ln, 0, B)
    return Y.transpose(0, 1), ST  # (B, T, H), not contiguous (as torch.nn.LSTM's batch_first output)


def _infer_chunk(B: int, G: int) -> int:
    """Steps of x̂ computed per input product in inference: about _INFER_CHUNK_BYTES of float32 (in L2 when the
    kernel reads it), at least one step. Against x̂ of all steps at once, written to memory and read back, and
    first-touched when tens of megabytes, this measured ~0.8x (one thread); a product of fewer rows costs little
    as long as it has a few hundred."""
    return max(1, _INFER_CHUNK_BYTES // (4 * B * G))


_INFER_CHUNK_BYTES = 1 << 20


def _splits(B: int, G: int, H: int) -> list[tuple[int, int]] | None:
    """The ranges of rows [b0, b1) the whole loop over time runs on, one numba call per range, each on its own
    thread (:func:`rnnlab.nn._parallel.run_split`: rows never interact, so the ranges need no synchronisation); or
    None: a oneDNN product per step from Python instead (fixed cost ~10-30 µs, but on all of torch's threads).

    One range per torch thread, of at least :data:`_SPLIT_MIN_ROWS` rows. Where every thread has a range, the loop
    runs up to :data:`_WHOLE_LOOP_MAX` multiply-adds per step and range (rows · G · H). Measured for one thread
    (benchmarks/ukernel.py --thresholds --clock cpu --rounds 9: layer-norm LSTM, I = H, T = 50, loop time / per-step
    time, median of per-round ratios, this thread's CPU time), train / infer by (B, H): (8, 64) 0.50 / 0.35;
    (16, 128) 0.67 / 0.63; (64, 64) 0.79 / 0.69; (16, 256) 0.76 / 0.81; (64, 128) 0.86 / 0.90; (32, 256) 0.92 / 0.86;
    (64, 256) 0.97 / 0.94; (32, 512) 0.98 / 0.98; (64, 512) 0.93 / 0.94: the loop never loses, and gains less as the
    products per step become a smaller part of a layer's time (the micro-kernel itself is 1.3-1.9x faster than
    packed oneDNN at these products, benchmarks/ukernel.py). The limit is the largest shape measured, (64, 512).
    Where some threads would have no range (fewer rows than threads · :data:`_SPLIT_MIN_ROWS`), the loop stays below
    :data:`_WHOLE_LOOP_MAX_THREADED`, the limit measured before the micro-kernel ((8, 64) x (64, 256) 7 µs in numba
    against 13 µs packed oneDNN + ~8 µs of Python per step), since oneDNN's product uses all threads."""
    threads = torch.get_num_threads()
    splits = row_splits(B, _SPLIT_MIN_ROWS, threads)
    rows = max(b1 - b0 for b0, b1 in splits)
    limit = _WHOLE_LOOP_MAX if len(splits) == threads else _WHOLE_LOOP_MAX_THREADED
    return splits if rows * G * H <= limit else None


_SPLIT_MIN_ROWS = 4
_WHOLE_LOOP_MAX = 1 << 26  # rows·G·H multiply-adds per step and range, every thread with a range
_WHOLE_LOOP_MAX_THREADED = 1 << 20  # the same where some threads have none


class _FusedLSTM(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # bf16 autocast: the kernel runs in float32
    def forward(ctx, x, h0, c0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, g_c, b_c, mask, lengths, eps):
        Y, ST, (XT, m, L, P, XP, HM, SV, T_run) = _forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, g_ih, g_hh, g_c,
                                                           b_c, mask, lengths, eps)
        T, B, I = XT.shape
        G, H = W_hh.shape
        ctx.save_for_backward(XT, W_ih, W_hh, m, L, XP, HM, SV)
        ctx.P = P
        ctx.shape = (B, T, I, G, H, T_run, g_ih is not None, eps)
        return Y.transpose(0, 1), ST[0].clone(), ST[1].clone()  # y (B, T, H), not contiguous (as in inference)

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, dY, dhT, dcT):
        XT, W_ih, W_hh, m, L, XP, HM, SV = ctx.saved_tensors
        B, T, I, G, H, T_run, ln, eps = ctx.shape
        dtype = XT.dtype
        dY = dY.transpose(0, 1).contiguous()  # (T, B, H)
        splits = _splits(B, G, H)
        S = 1 if splits is None else len(splits)
        Bs = B if splits is None else max(b1 - b0 for b0, b1 in splits)  # rows of the largest range
        C = _grad_chunk(Bs, G, dtype, ln) if splits is not None and T * B * G <= _IN_LOOP_WEIGHT_GRAD_MAX else 0
        Tp = -(-T // C) * C if C else T  # T padded to whole chunks
        ring = C * Bs * G  # elements of one range's ring of C steps
        n = ring * S if C else T * B * G  # elements of DXP (and of DHP)
        with scratch((2 if ln else 1) * n, dtype) as buf:  # reused: fresh pages cost more than the kernel
            DXP = buf[:n]  # dL/d(W_ih x_t), pre-LN: (T, B, G), or one ring (C, rows, G) per range
            DHP = buf[n:] if ln else DXP  # dL/d(W_hh (h_{t-1} ⊙ m)), pre-LN
            if C:  # the steps of the first chunk past T_run stay zero
                buf.zero_()
            else:
                DXP, DHP = DXP.view(T, B, G), DHP.view(T, B, G)
                if T_run < T:
                    DXP[T_run:].zero_()
                    DHP[T_run:].zero_()
            DS = torch.stack([dhT, dcT]).contiguous()  # (2, B, H): dL/dh_t, dL/dc_t carried back in time
            DHM = torch.empty(B, H, dtype=dtype)  # dL/d(h_t ⊙ m) through the next step's product
            acc_dtype = np.float32 if dtype == torch.float32 else np.float64
            # per range, each on its own cache lines: [db | dγ_ih | dγ_hh | dγ_c | dβ_c]
            ACC = aligned_rows(S, 3 * G + 2 * H, np.float64)
            PART = aligned_rows(S, 3 * G + 2 * H, acc_dtype)
            SC = _scalars(eps, G, H, dtype)

            dY_, DHM_, M_, L_, SV_, XP_, DS_ = (a.numpy() for a in (dY, DHM, m, L, SV, XP, DS))
            P_ = ctx.P.numpy()
            need = ctx.needs_input_grad
            if splits is not None:
                Wp = pack_panels(W_hh.detach().numpy())  # (G, H) in panels: DHM = DHP_t W_hh
                # with C > 0, dW_ih, dW_hh (and dx) chunk by chunk inside the loop (else empty, and at the end below)
                f = dY_.dtype
                DWX = np.zeros((S, G, I) if C else (S, 0, 0), dtype=f)
                DWH = np.zeros((S, G, H) if C else (S, 0, 0), dtype=f)
                Wx = pack_panels(W_ih.detach().numpy()) if C else np.zeros((0, 0, 1), dtype=f)  # (G, I): dx = DXP W_ih
                XT_, HM_ = XT.numpy(), HM.numpy()
                DXs = []  # per range: (Tp, rows, I), x's gradient time-major
                calls = []
                for s, (b0, b1) in enumerate(splits):
                    if C:
                        rows = b1 - b0
                        DXP_ = DXP[s * ring:s * ring + C * rows * G].view(C, rows, G).numpy()
                        DHP_ = DHP[s * ring:s * ring + C * rows * G].view(C, rows, G).numpy()
                        WX = _pack_chunks(XT_[:, b0:b1], C, Tp)
                        WH = _pack_chunks(HM_[:, b0:b1], C, Tp)
                        DX = torch.empty(Tp if need[0] else 0, rows, I, dtype=dtype)
                        DX[T_run:].zero_()  # the loop writes the chunks up to the one of step T_run - 1
                        DXs.append(DX)
                        rb = b0
                    else:
                        DXP_, DHP_ = DXP.numpy(), DHP.numpy()
                        WX = WH = np.zeros((0, 0, 0, 1), dtype=f)
                        DX = torch.empty(0, 1, I, dtype=dtype)
                        rb = 0
                    calls.append((T_run, Wp, dY_, DHM_, P_, M_, L_, SV_, XP_, DXP_, DHP_, DS_, ACC[s], PART[s], SC,
                                  ln, C, WX, WH, Wx, DX.view(-1, I).numpy(), DWX[s], DWH[s], b0, b1, rb))
                run_split(_backward_loop, calls)
            else:
                W_p = pack(W_hh.detach().t().contiguous(), B)  # (H, G): DHM = DHP_t W_hh as linear(DHP_t, W_hh_T)
                DXP_, DHP_ = DXP.numpy(), DHP.numpy()
                for t in range(T_run - 1, -1, -1):
                    _backward_step(t, t, dY_, DHM_, P_, M_, L_, SV_, XP_, DXP_, DHP_, DS_, ACC[0], PART[0], SC, ln,
                                   0, B, 0)
                    DHM = linear_packed(DHP[t], W_p)
                    DHM_ = DHM.numpy()

            dx = None  # (B, T, I), a view of the time-major product
            dh0 = DHM * m if need[1] else None
            dc0 = DS[1].clone() if need[2] else None
            if C:
                if need[0]:
                    dx = DXs[0][:T].transpose(0, 1) if S == 1 else torch.cat([d[:T].transpose(0, 1) for d in DXs])
                dW_ih = torch.from_numpy(DWX.sum(0) if S > 1 else DWX[0]) if need[3] else None
                dW_hh = torch.from_numpy(DWH.sum(0) if S > 1 else DWH[0]) if need[4] else None
            else:
                DXP, DHP = DXP.view(T * B, G), DHP.view(T * B, G)
                if need[0]:
                    dx = linear(DXP, W_ih.detach().t().contiguous()).view(T, B, I).transpose(0, 1)
                dW_ih = weight_grad(DXP, XT.view(T * B, I)) if need[3] else None  # oneDNN: ~0.55x MKL
                dW_hh = weight_grad(DHP, HM.view(T * B, H)) if need[4] else None
        ACC = ACC.sum(0)
        acc = torch.from_numpy(ACC).to(dtype)
        db = acc[:G]
        db_ih = db.clone() if need[5] else None
        db_hh = db.clone() if need[6] else None
        dg_ih = acc[G:2 * G].clone() if need[7] else None
        dg_hh = acc[2 * G:3 * G].clone() if need[8] else None
        dg_c = acc[3 * G:3 * G + H].clone() if need[9] else None
        db_c = acc[3 * G + H:].clone() if need[10] else None
        return dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh, dg_ih, dg_hh, dg_c, db_c, None, None, None


_IN_LOOP_WEIGHT_GRAD_MAX = 1 << 20
"""Up to this many elements of the pre-activation gradients (T·B·4H), with the whole loop in numba, dW_ih and dW_hh
are summed inside the backward loop, a chunk of steps at a time (:func:`_grad_chunk`) on the micro-kernel, while
that chunk's gradients are in cache; above it they are two oneDNN products over all T·B rows at the end
(:func:`rnnlab.nn._gemm.weight_grad`), which read 2·T·B·4H elements back from memory. Measured (one thread,
thread CPU time, inside a training step) at (B, T, I, H) = (8, 500, 32, 64): ~2.2 ms for the two end products
(0.40 + 0.75 ms each alone, operands in cache); the micro-kernel on all rows at once (dᵀ read in place) was no
faster inside the step (~2.0-2.4 ms: dᵀ's strided rows are read from memory once per panel). The limit keeps
the larger shapes on oneDNN: at (32, 100, 128, 256) the micro-kernel with dᵀ's rows 4 KB apart ran at half
oneDNN's speed (9.7 + 19.6 ms against 5.5 + 9.8 ms)."""

_GRAD_CHUNK_BYTES = 1 << 18


def _grad_chunk(B: int, G: int, dtype, ln: bool) -> int:
    """Steps C per chunk of the in-loop weight gradients: the chunk's pre-activation gradients, B·C·G elements of
    ``dtype`` per ring (two with layer norm, DXP and DHP; one without), about _GRAD_CHUNK_BYTES in all (256 KB, in
    L2). Measured at (8, 500, 32, 64), training step time against 256 KB per ring: layer norm 64 KB 0.97, 128 KB 0.96,
    512 KB 1.01; dropout 64 KB 1.02, 128 KB 1.02, 512 KB 1.02 (one thread, interleaved, noise ~2-3%)."""
    per_step = (2 if ln else 1) * B * G * torch.empty(0, dtype=dtype).element_size()
    return max(1, _GRAD_CHUNK_BYTES // per_step)


def _pack_chunks(A: np.ndarray, C: int, Tp: int) -> np.ndarray:
    """A (T, B, N) time-major -> (Tp / C, P, C·B, NR): chunk c (steps c·C .. c·C + C - 1, as C·B rows) packed in
    panels as :func:`rnnlab.nn._ukernel.pack_panels` does, zero past step T and past column N."""
    T, B, N = A.shape
    NR = panel_width(A.dtype)
    Pn = -(-N // NR)
    src = np.zeros((Tp, B, Pn * NR), dtype=A.dtype)
    src[:T, :, :N] = A
    return np.ascontiguousarray(src.reshape(Tp // C, C * B, Pn, NR).transpose(0, 2, 1, 3))


def _pack_params(b_ih, b_hh, g_ih, g_hh, g_c, b_c, G, H, dtype) -> Tensor:
    """[b_ih + b_hh (G) | γ_ih (G) | γ_hh (G) | γ_c (H) | β_c (H)] as one flat vector (fewer kernel arguments)."""
    P = torch.zeros(3 * G + 2 * H, dtype=dtype)
    with torch.no_grad():
        for b in (b_ih, b_hh):
            if b is not None:
                P[:G] += b
        if g_ih is not None:
            P[G:2 * G] = g_ih
            P[2 * G:3 * G] = g_hh
            P[3 * G:3 * G + H] = g_c
            P[3 * G + H:] = b_c
    return P


def _scalars(eps: float, G: int, H: int, dtype) -> np.ndarray:
    """eps, 1/G, 1/H in the kernels' dtype, so float32 arithmetic stays float32."""
    return np.array([eps, 1.0 / G, 1.0 / H], dtype=np.float32 if dtype == torch.float32 else np.float64)


# ----------------------------------------------------------------------------------------------------
# numba kernels: one time step of the element-wise work, forward and backward.
# ----------------------------------------------------------------------------------------------------

_JIT = dict(cache=True, fastmath=True, error_model="numpy", nogil=True)

# Eigen's rational approximation of tanh on [-c, c] (generic_fast_tanh_float), float32 constants.
_TANH_CLAMP = np.float32(7.90531110763549805)
_A1, _A3, _A5 = np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04), np.float32(1.48572235717979e-05)
_A7, _A9 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11)
_A11, _A13 = np.float32(2.00018790482477e-13), np.float32(-2.76076847742355e-16)
_B0, _B2 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03)
_B4, _B6 = np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06)
_ZERO, _HALF, _ONE = np.float32(0.0), np.float32(0.5), np.float32(1.0)


def _tanh(v):
    return math.tanh(v)


@overload(_tanh, inline="always", jit_options=dict(fastmath=True))
def _tanh_impl(v):
    if v == numba.types.float32:
        def fast(v):
            v = min(max(v, -_TANH_CLAMP), _TANH_CLAMP)
            v2 = v * v
            p = ((((((_A13 * v2 + _A11) * v2 + _A9) * v2 + _A7) * v2 + _A5) * v2 + _A3) * v2 + _A1) * v
            q = ((_B6 * v2 + _B4) * v2 + _B2) * v2 + _B0
            return p / q
        return fast
    return lambda v: math.tanh(v)


@numba.njit(inline="always", **_JIT)
def _sigmoid(v):
    return _HALF + _HALF * _tanh(_HALF * v)


@numba.njit(inline="always", **_JIT)
def _normalize(v, out, inv_n, eps):
    """out = (v - mean(v)) * rstd; returns rstd = 1 / sqrt(var(v) + eps). ``out`` may be ``v``."""
    n = v.shape[0]
    s = _ZERO * v[0]
    for k in range(n):
        s += v[k]
    mu = s * inv_n
    s2 = _ZERO * v[0]
    for k in range(n):
        d = v[k] - mu
        s2 += d * d
    rstd = _ONE / np.sqrt(s2 * inv_n + eps)
    for k in range(n):
        out[k] = (v[k] - mu) * rstd
    return rstd


@numba.njit(inline="always", **_JIT)
def _u(i):
    """``i`` as an unsigned index: numba wraps a signed index that may be negative (``P[3 * G + j]``), and that
    select in every iteration stops LLVM vectorising the loop; an unsigned one it leaves alone."""
    return np.uint64(i)


@numba.njit(**_JIT)
def _forward_step(t, XP, HP, P, M, L, ST, Y, HM, HN, SV, SC, ln, b0, b1):
    """Step t of training for rows b0 <= b < b1 (all: 0, B; a thread's share: :func:`_splits`). Time-major (a step's
    rows are one contiguous block, which the hardware prefetcher streams; batch-major, the B rows of a step lie T·K
    apart): XP (T, B, G) x̂, with layer norm replaced by LN(x̂) (its rstd in SV); HP (B, G) ĥ_t; P packed params; M
    (B, H) mask; L (B,) lengths; ST (2, B, H) h, c (updated); Y (T, B, H) and HM (T, B, H) h ⊙ m written at t and
    t+1; HN (B, H) h_t ⊙ m for the next product (left as is for a row past its end); SV (T, B, K) what the backward
    pass reads (:func:`_layout`). No array is sliced inside the loop over rows (a slice costs numba a
    reference-count increment and decrement, ~10 ns each); a saved row's sections are offsets into SV[t, b], as unsigned
    indices (:func:`_u`), so that every inner loop runs contiguous and vectorises."""
    T, G = XP.shape[0], XP.shape[2]
    H = G // 4
    eps, inv_g, inv_h = SC[0], SC[1], SC[2]
    bias, g_ih, g_hh = P[0:G], P[G:2 * G], P[2 * G:3 * G]
    g_c, b_c = P[3 * G:3 * G + H], P[3 * G + H:3 * G + 2 * H]
    # sections of a saved row: [i f g o (G) | c_{t-1} (H) | tanh(ĉ_t) (H) | (LN) ĥ_n (G) | c_n (H) | rstd (3)]
    o_f, o_g, o_o, o_cp, o_th = _u(H), _u(2 * H), _u(3 * H), _u(G), _u(G + H)
    o_hn, o_cn, o_rs = _u(G + 2 * H), _u(2 * G + 2 * H), _u(2 * G + 3 * H)
    last = t + 1 == T
    tn = min(t + 1, T - 1)
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # past this row's end: state frozen, output zero
            for j in range(H):
                Y[t, b, j] = zero
            if not last:
                for j in range(H):
                    HM[tn, b, j] = HM[t, b, j]
            continue
        if ln:  # the moments of x̂_t and ĥ_t together, two passes (mean, then squared deviations)
            sx, sh = zero, zero
            for k in range(G):
                sx += XP[t, b, k]
                sh += HP[b, k]
            mx, mh = sx * inv_g, sh * inv_g
            qx, qh = zero, zero
            for k in range(G):
                dx = XP[t, b, k] - mx
                dh = HP[b, k] - mh
                qx += dx * dx
                qh += dh * dh
            rx = _ONE / np.sqrt(qx * inv_g + eps)
            r1 = _ONE / np.sqrt(qh * inv_g + eps)
            SV[t, b, o_rs] = rx
            SV[t, b, o_rs + _u(1)] = r1
            for k in range(G):  # LN(ĥ), saved
                SV[t, b, o_hn + _u(k)] = (HP[b, k] - mh) * r1
            for k in range(G):  # LN(x̂) in place (saved) and the pre-activation; one store per array per loop
                xn = (XP[t, b, k] - mx) * rx
                XP[t, b, k] = xn
                SV[t, b, k] = g_ih[k] * xn + g_hh[k] * ((HP[b, k] - mh) * r1) + bias[k]
        else:
            for k in range(G):
                SV[t, b, k] = XP[t, b, k] + HP[b, k] + bias[k]
        for k in range(2 * H):
            SV[t, b, k] = _sigmoid(SV[t, b, k])  # i, f
        for j in range(H):
            SV[t, b, o_g + _u(j)] = _tanh(SV[t, b, o_g + _u(j)])
        for j in range(H):
            SV[t, b, o_o + _u(j)] = _sigmoid(SV[t, b, o_o + _u(j)])
        for j in range(H):
            SV[t, b, o_cp + _u(j)] = ST[1, b, j]  # c_{t-1}, saved
        sc = zero
        for j in range(H):  # one store into SV per loop: stores at several of its offsets keep the loop scalar
            u = _u(j)
            c = SV[t, b, o_f + u] * ST[1, b, j] + SV[t, b, j] * SV[t, b, o_g + u]  # c_t = f c_{t-1} + i g
            ST[1, b, j] = c
            sc += c
        if ln:
            mc = sc * inv_h
            vc = zero
            for j in range(H):
                d = ST[1, b, j] - mc
                vc += d * d
            rc = _ONE / np.sqrt(vc * inv_h + eps)
            SV[t, b, o_rs + _u(2)] = rc
            for j in range(H):
                SV[t, b, o_cn + _u(j)] = (ST[1, b, j] - mc) * rc
            for j in range(H):  # h_t = o tanh(ĉ_t); tanh(ĉ_t) not saved (the backward recomputes it from LN(c_t))
                ST[0, b, j] = SV[t, b, o_o + _u(j)] * _tanh(SV[t, b, o_cn + _u(j)] * g_c[j] + b_c[j])
        else:
            for j in range(H):
                SV[t, b, o_th + _u(j)] = _tanh(ST[1, b, j])
            for j in range(H):
                ST[0, b, j] = SV[t, b, o_o + _u(j)] * SV[t, b, o_th + _u(j)]  # h_t = o tanh(c_t)
        for j in range(H):
            h = ST[0, b, j]
            Y[t, b, j] = h
            HN[b, j] = h * M[b, j]
        if not last:
            for j in range(H):
                HM[tn, b, j] = HN[b, j]


@numba.njit(**_JIT)
def _infer_step(t, tx, XP, HP, P, M, L, ST, Y, HN, A, SC, ln, b0, b1):
    """Step t of inference for rows b0 <= b < b1, keeping nothing for a backward pass. XP (Tc, B, G) the raw x̂ of a
    chunk of steps (time-major), step t at XP[tx]; HP (B, G) ĥ_t; P packed params; M (B, H) mask; L (B,) lengths;
    ST (2, B, H) h, c (updated); Y (T, B, H) written at t; HN (B, H) h_t ⊙ m for the next product (left as is past
    a row's end); A (G,) scratch: one row's pre-activation.

    Per row, four contiguous passes: the moments of x̂ and ĥ together (sums about the row's first element, so no
    cancellation when |mean| >> std), the pre-activation, the gates and c_t with the sum for LN(c), then the
    variance of c_t and h_t, y_t, h_t ⊙ m in one loop (plus the variance pass). Arrays are sliced once per call,
    outside the loop over rows, and indexed [b, k] by loop variables only: a slice per row costs numba a
    reference-count increment and decrement (seven slices per row measured ~110 ns per row, as much as the
    arithmetic of a row at H = 64), and an offset index (``P[3 * G + j]``) gets numba's negative-index
    wraparound, which stops LLVM vectorising the loop (measured 2.7 -> 0.37 ns per element for the h_t loop)."""
    G = XP.shape[2]
    H = G // 4
    eps, inv_g, inv_h = SC[0], SC[1], SC[2]
    X, Yt, Hs, Cs = XP[tx], Y[t], ST[0], ST[1]  # (B, G), (B, H), (B, H), (B, H)
    bias, g_ih, g_hh = P[0:G], P[G:2 * G], P[2 * G:3 * G]
    g_c, b_c = P[3 * G:3 * G + H], P[3 * G + H:3 * G + 2 * H]
    a_i, a_f, a_g, a_o = A[0:H], A[H:2 * H], A[2 * H:3 * H], A[3 * H:G]
    zero = _ZERO * SC[0]
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        if t >= L[b]:  # past this row's end: state frozen, output zero
            for j in range(H):
                Yt[b, j] = zero
            continue
        if ln:
            x0, h0 = X[b, 0], HP[b, 0]
            sx, sh, qx, qh = zero, zero, zero, zero
            for k in range(G):
                dx = X[b, k] - x0
                dh = HP[b, k] - h0
                sx += dx
                sh += dh
                qx += dx * dx
                qh += dh * dh
            dmx, dmh = sx * inv_g, sh * inv_g  # mean minus the first element
            rx = _ONE / np.sqrt(max(qx * inv_g - dmx * dmx, zero) + eps)
            rh = _ONE / np.sqrt(max(qh * inv_g - dmh * dmh, zero) + eps)
            mx, mh = x0 + dmx, h0 + dmh
            for k in range(G):  # LN(x̂) γ_ih + LN(ĥ) γ_hh + b
                A[k] = g_ih[k] * ((X[b, k] - mx) * rx) + g_hh[k] * ((HP[b, k] - mh) * rh) + bias[k]
        else:
            for k in range(G):
                A[k] = X[b, k] + HP[b, k] + bias[k]
        sc = zero
        for j in range(H):  # c_t = σ(f) c_{t-1} + σ(i) tanh(g)
            cj = _sigmoid(a_f[j]) * Cs[b, j] + _sigmoid(a_i[j]) * _tanh(a_g[j])
            Cs[b, j] = cj
            sc += cj
        if ln:
            mc = sc * inv_h
            vc = zero
            for j in range(H):
                d = Cs[b, j] - mc
                vc += d * d
            rc = _ONE / np.sqrt(vc * inv_h + eps)
            for j in range(H):  # h_t = σ(o) tanh(LN(c_t) γ_c + β_c)
                hj = _sigmoid(a_o[j]) * _tanh((Cs[b, j] - mc) * rc * g_c[j] + b_c[j])
                Hs[b, j] = hj
                Yt[b, j] = hj
                HN[b, j] = hj * M[b, j]
        else:
            for j in range(H):
                hj = _sigmoid(a_o[j]) * _tanh(Cs[b, j])
                Hs[b, j] = hj
                Yt[b, j] = hj
                HN[b, j] = hj * M[b, j]


@numba.njit(inline="always", **_JIT)
def _layer_norm_backward(da, gain, v_n, rstd, inv_n, out, acc_gain):
    """out = d/dv of LN(v)·gain given da = dL/d(LN(v)·gain); acc_gain += da ⊙ v_n. ``out`` may be ``da``."""
    n = da.shape[0]
    s1 = _ZERO * da[0]
    s2 = _ZERO * da[0]
    for k in range(n):
        dn = da[k] * gain[k]
        s1 += dn
        s2 += dn * v_n[k]
        acc_gain[k] += da[k] * v_n[k]
    s1 *= inv_n
    s2 *= inv_n
    for k in range(n):
        out[k] = rstd * (da[k] * gain[k] - s1 - v_n[k] * s2)


@numba.njit(**_JIT)
def _backward_step(t, tr, DY, DHM, P, M, L, SV, XN, DXP, DHP, DS, ACC, PART, SC, ln, b0, b1, rb):
    """Backward of step t for rows b0 <= b < b1, time-major as :func:`_forward_step`; row b of DXP and DHP is b - rb
    (rb = 0 for arrays of all rows, b0 for a thread's own rings). DY (T, B, H); DHM (B, H) =
    dL/d(h_t ⊙ m) via step t+1's product; DS (2, B, H) dL/dh_t, dL/dc_t carried (updated to t-1); SV (T, B, K),
    XN (T, B, G) LN(x̂) (unused without layer norm); DXP, DHP (T, B, G), or (C, B, G) rings of C steps, written at
    tr (t, or t mod C; one array without layer norm; DHP[tr] is the operand of the product that makes the next
    DHM); ACC float64 parameter grads [db | dγ_ih | dγ_hh | dγ_c | dβ_c];
    PART (3G + 2H,) zeros in the kernel's dtype: the rows of this step add their terms here, and ACC gets the sum
    once per step (a float64 update per row costs a conversion, a load and a store per element: measured ~1.2 µs
    a step at (8, 64)); left zero. As in :func:`_forward_step`, no slice inside the loop over rows, saved
    sections by unsigned offsets, one array stored per inner loop; the gradients of both layer norms of the
    products and the bias in two passes over G."""
    G = DXP.shape[2]
    H = G // 4
    inv_g, inv_h = SC[1], SC[2]
    g_ih, g_hh = P[G:2 * G], P[2 * G:3 * G]
    g_c, b_c = P[3 * G:3 * G + H], P[3 * G + H:3 * G + 2 * H]
    acc_b, acc_ih, acc_hh = PART[0:G], PART[G:2 * G], PART[2 * G:3 * G]
    acc_gc, acc_bc = PART[3 * G:3 * G + H], PART[3 * G + H:3 * G + 2 * H]
    o_f, o_g, o_o, o_cp, o_th = _u(H), _u(2 * H), _u(3 * H), _u(G), _u(G + H)
    o_hn, o_cn, o_rs = _u(G + 2 * H), _u(2 * G + 2 * H), _u(2 * G + 3 * H)
    zero = _ZERO * SC[0]
    Dh, Dc = DS[0], DS[1]  # (B, H): dL/dh_t (then dĉ_t, dc_t), dL/dc_t
    for b in range(_u(b0), _u(b1)):  # unsigned: no negative-index wraparound on b
        r = b - _u(rb)  # this row's row of DXP and DHP
        if t >= L[b]:  # frozen step: the carried grads pass through unchanged
            for k in range(G):
                DXP[tr, r, k] = zero
            for k in range(G):
                DHP[tr, r, k] = zero
            continue
        if t + 1 < L[b]:  # dL/dh_t from step t+1's product and y_t
            for j in range(H):
                Dh[b, j] = DHM[b, j] * M[b, j] + DY[t, b, j]
        else:
            for j in range(H):
                Dh[b, j] += DY[t, b, j]
        if ln:  # h = o tanh(ĉ), ĉ = LN(c_t) γ_c + β_c, tanh(ĉ) recomputed (not saved: less memory traffic)
            for j in range(H):  # d(o pre-activation)
                o, th = SV[t, b, o_o + _u(j)], _tanh(SV[t, b, o_cn + _u(j)] * g_c[j] + b_c[j])
                DHP[tr, r, o_o + _u(j)] = Dh[b, j] * th * o * (_ONE - o)
            for j in range(H):  # Dh becomes dĉ
                o, th = SV[t, b, o_o + _u(j)], _tanh(SV[t, b, o_cn + _u(j)] * g_c[j] + b_c[j])
                Dh[b, j] = Dh[b, j] * o * (_ONE - th * th)
        else:  # h = o tanh(c_t)
            for j in range(H):
                o, th = SV[t, b, o_o + _u(j)], SV[t, b, o_th + _u(j)]
                DHP[tr, r, o_o + _u(j)] = Dh[b, j] * th * o * (_ONE - o)
            for j in range(H):
                o, th = SV[t, b, o_o + _u(j)], SV[t, b, o_th + _u(j)]
                Dh[b, j] = Dh[b, j] * o * (_ONE - th * th)
        if ln:  # through ĉ = LN(c_t) γ_c + β_c: Dh becomes dc_t (local)
            s1, s2 = zero, zero
            for j in range(H):
                d, cn = Dh[b, j], SV[t, b, o_cn + _u(j)]
                dn = d * g_c[j]
                s1 += dn
                s2 += dn * cn
            for j in range(H):
                acc_bc[j] += Dh[b, j]
            for j in range(H):
                acc_gc[j] += Dh[b, j] * SV[t, b, o_cn + _u(j)]
            s1 *= inv_h
            s2 *= inv_h
            rc = SV[t, b, o_rs + _u(2)]
            for j in range(H):
                Dh[b, j] = rc * (Dh[b, j] * g_c[j] - s1 - SV[t, b, o_cn + _u(j)] * s2)
        for j in range(H):  # dL/dc_t in all
            Dh[b, j] += Dc[b, j]
        for j in range(H):  # the gates' pre-activations, one section of DHP per loop
            i, g = SV[t, b, _u(j)], SV[t, b, o_g + _u(j)]
            DHP[tr, r, _u(j)] = Dh[b, j] * g * i * (_ONE - i)
        for j in range(H):
            f = SV[t, b, o_f + _u(j)]
            DHP[tr, r, o_f + _u(j)] = Dh[b, j] * SV[t, b, o_cp + _u(j)] * f * (_ONE - f)
        for j in range(H):
            i, g = SV[t, b, _u(j)], SV[t, b, o_g + _u(j)]
            DHP[tr, r, o_g + _u(j)] = Dh[b, j] * i * (_ONE - g * g)
        for j in range(H):
            Dc[b, j] = Dh[b, j] * SV[t, b, o_f + _u(j)]  # dL/dc_{t-1}
        if ln:  # da = DHP[t, b] through LN(x̂) γ_ih (-> DXP) and LN(ĥ) γ_hh (-> DHP)
            s1x, s2x, s1h, s2h = zero, zero, zero, zero
            for k in range(G):
                d, xn, hn = DHP[tr, r, k], XN[t, b, k], SV[t, b, o_hn + _u(k)]
                dx = d * g_ih[k]
                dh = d * g_hh[k]
                s1x += dx
                s2x += dx * xn
                s1h += dh
                s2h += dh * hn
            for k in range(G):
                acc_b[k] += DHP[tr, r, k]
            for k in range(G):
                acc_ih[k] += DHP[tr, r, k] * XN[t, b, k]
            for k in range(G):
                acc_hh[k] += DHP[tr, r, k] * SV[t, b, o_hn + _u(k)]
            s1x *= inv_g
            s2x *= inv_g
            s1h *= inv_g
            s2h *= inv_g
            rx, rh = SV[t, b, o_rs], SV[t, b, o_rs + _u(1)]
            for k in range(G):
                DXP[tr, r, k] = rx * (DHP[tr, r, k] * g_ih[k] - s1x - XN[t, b, k] * s2x)
            for k in range(G):
                DHP[tr, r, k] = rh * (DHP[tr, r, k] * g_hh[k] - s1h - SV[t, b, o_hn + _u(k)] * s2h)
        else:
            for k in range(G):
                acc_b[k] += DHP[tr, r, k]
    n = 3 * G + 2 * H if ln else G
    for k in range(n):  # this step's sums into the float64 totals
        ACC[k] += PART[k]
        PART[k] = zero


# ----------------------------------------------------------------------------------------------------
# numba loops over all time steps for small shapes: the recurrent product in numba too, no Python per step.
# ----------------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _forward_loop(T_run, Wp, XP, HP, P, M, L, ST, Y, HM, HN, SV, SC, ln, b0, b1):
    """Steps 0..T_run-1 of :func:`_forward_step` for rows b0..b1-1, each after ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ for those
    rows; Wp = pack_panels(W_hhᵀ) (W_hhᵀ (H, G)). Rows never interact: several threads run this at once, each on
    its own range (:func:`_splits`)."""
    for t in range(T_run):
        matmul_packed(HN[b0:b1], Wp, HP[b0:b1])
        _forward_step(t, XP, HP, P, M, L, ST, Y, HM, HN, SV, SC, ln, b0, b1)


@numba.njit(**_JIT)
def _backward_loop(T_run, Wp, DY, DHM, P, M, L, SV, XN, DXP, DHP, DS, ACC, PART, SC, ln, C, WX, WH, Wx, DX, DWX,
                   DWH, b0, b1, rb):
    """Steps T_run-1..0 of :func:`_backward_step` for rows b0..b1-1, each followed by DHM = DHP_t W_hh for those
    rows; Wp = pack_panels(W_hh) (W_hh (G, H)). ACC, PART, DWX, DWH, DX, WX, WH are this range's own (summed over
    the ranges after). With C = 0, DXP and DHP are (T, B, G), every step kept for the products at the end (rb = 0).

    With C > 0 they are this range's rings of C steps, (C, b1 - b0, G), zeros in (rb = b0), and once steps
    c·C .. c·C + C - 1 are done (their gradients in cache) their share of the products that would otherwise read
    all T·B rows back from memory at the end is taken, on the micro-kernel: DWX (G, I) += (their rows of DXP)ᵀ x and
    DWH (G, H) += (their rows of DHP)ᵀ (h ⊙ m), WX, WH = :func:`_pack_chunks` of the range's rows of XT (T, B, I) and
    HM (T, B, H); and, where DX (Tp·(b1 - b0), I) is not empty (x needs its gradient), DX[their rows] = (their rows
    of DXP) W_ih, Wx = pack_panels(W_ih). Tp = T padded to whole chunks; DWX, DWH zeros in."""
    Bs = DXP.shape[1]
    G = DXP.shape[2]
    I = DWX.shape[1]
    H = DWH.shape[1]
    TMP = np.empty((G, max(I, H)), dtype=DWX.dtype)
    for t in range(T_run - 1, -1, -1):
        tr = t % C if C > 0 else t
        _backward_step(t, tr, DY, DHM, P, M, L, SV, XN, DXP, DHP, DS, ACC, PART, SC, ln, b0, b1, rb)
        matmul_packed(DHP[tr, b0 - rb:b1 - rb], Wp, DHM[b0:b1])
        if C > 0 and tr == 0:  # this chunk's share of dW_ih, dW_hh (and dx)
            c = t // C
            DX2 = DXP.reshape(C * Bs, G)
            DH2 = DHP.reshape(C * Bs, G)
            matmul_packed(DX2.T, WX[c], TMP[:, :I])
            for g in range(G):
                for j in range(I):
                    DWX[g, j] += TMP[g, j]
            matmul_packed(DH2.T, WH[c], TMP[:, :H])
            for g in range(G):
                for j in range(H):
                    DWH[g, j] += TMP[g, j]
            if DX.shape[0] > 0:
                matmul_packed(DX2, Wx, DX[t * Bs:(t + C) * Bs])


@numba.njit(**_JIT)
def _infer_rows(T_run, X, Wxp, Wp, XH, HP, P, M, L, ST, Y, HN, A, SC, ln, b0, b1):
    """Steps 0..T_run-1 of :func:`_infer_step` for rows b0..b1-1 with both products in the loop: x̂_t = x_t W_ihᵀ
    (X (B, T, I) batch-major as given, Wxp = pack_panels(W_ihᵀ)) into XH (1, B, G) and ĥ_t = (h_{t-1} ⊙ m) W_hhᵀ
    into HP, for those rows only: no torch call, so that several threads run this at once on their own ranges."""
    for t in range(T_run):
        matmul_packed(X[b0:b1, t], Wxp, XH[0, b0:b1])
        matmul_packed(HN[b0:b1], Wp, HP[b0:b1])
        _infer_step(t, 0, XH, HP, P, M, L, ST, Y, HN, A, SC, ln, b0, b1)
