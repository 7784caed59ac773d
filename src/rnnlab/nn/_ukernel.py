r"""A register-blocked matrix product for the numba time loops: out = A @ W, A (M, K), W (K, N), out (M, N).

The recurrent product of a small layer ((8, 64) x (64, 256) per step) runs inside the numba loop over time, where
a oneDNN call per step would cost more than the product itself. A plain numba loop over it reaches 60-110 GFLOP/s:
LLVM keeps no tile of the output in registers across the loop over k (numba has no stack arrays), so every
multiply-add also loads and stores a row of ``out``. This kernel is the BLIS micro-kernel (Van Zee & van de Geijn,
2015, "BLIS: A Framework for Rapidly Instantiating BLAS Functionality", §3) written out in LLVM IR:

    for each panel p of NR columns of W (packed once per sequence call: (P, K, NR), zero-padded; NR = 32 float32),
      for each tile of up to MR rows of A:
        acc[r][v] = 0                                   MR·NV vector registers, NV = NR / lanes
        for k in 0..K-1:
          w[v] = Wp[p, k, v·lanes:(v+1)·lanes]          NV vector loads
          a = broadcast(A[r, k])                        one scalar load per row
          acc[r][v] = fma(a, w[v], acc[r][v])           MR·NV fused multiply-adds
        out[rows, p·NR:(p+1)·NR] = acc                  stored once

The accumulators are SSA values (phi nodes) of ``<lanes x float>``, which LLVM keeps in registers: MR = 8 rows
× NV = 2 vectors of 16 floats use 16 of the 32 zmm registers of AVX-512, plus 2 for the panel's row and one for
the broadcast. Vector IR of 16 floats is legal on any x86-64 (LLVM splits it into two ymm registers for AVX2);
where numba compiles without AVX-512 the tile is 6 x 1 (12 of the 16 ymm registers), since 8 x 2 would spill
(measured, compiled for Haswell, run on this CPU: 30-76 GFLOP/s for 8 x 2 against 94-118 for 6 x 1 and 61-92
for the plain loop). A tile of fewer than MR rows (M % MR) has its own unrolled body (a
switch on the row count), so nothing is computed twice; a panel narrower than NR (N % NR) is computed on W's
zero padding and stored element by element. Float64 runs the same code with 8 lanes (NR = 16).

Measured (benchmarks/ukernel.py --clock cpu --rounds 11, one thread, AMD EPYC Zen 5, AVX-512, float32, at the per-step
products of benchmarks/layers.py' five shapes): 191-242 GFLOP/s, e.g. (8, 64) x (64, 256) 1.19 µs, (8, 256) x
(256, 64) 1.08 µs, (64, 128) x (128, 512) 36 µs, (64, 512) x (512, 2048) 704 µs. The others take, at the fifteen
products, 1.5-2.7x as long (the plain numba loop it replaced, kept as ``matmul_8rows`` in benchmarks/ukernel.py),
2.9-7.6x (the axpy loop, ``axpy_product`` there), 1.3-2.0x (packed oneDNN called from Python; 11-16x at batch 8,
its fixed cost) and 2.4-4.8x (torch.mm, MKL, called from Python).
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, config, types
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

__all__ = ["AVX512", "MR", "NV", "lanes", "panel_width", "pack_panels", "matmul_packed"]


def _avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512 (32 vector registers of 64 bytes), from the target features it
    uses itself (``NUMBA_CPU_FEATURES`` when set, else the host's)."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return "+avx512f" in features.split(",")


AVX512 = _avx512()
MR, NV = (8, 2) if AVX512 else (6, 1)
"""MR: rows of A per micro-tile; NV: 64-byte vectors per panel row, NR = NV·lanes columns of W per panel (32 float32,
16 float64 with AVX-512). With AVX-512, MR·NV = 16 accumulators + NV panel vectors + a broadcast stay within the 32
zmm registers; eight rows make the batch of the smallest benchmark layer one tile. Measured (GFLOP/s, one thread,
float32, (M, K, N) = (8, 64, 256) / (8, 256, 64) / (16, 256, 1024) / (64, 512, 128) / (4, 128, 512)), MR x NV:
4x4 223/235/224/236/240, 6x4 213/204/230/239/238, 8x3 205/155/218/213/230, 8x2 227/227/235/240/206, 12x2
226/229/224/237/203, 4x6 200/151/221/160/211, 3x8 186/86/153/170/126: all tiles of 16-24 accumulators within noise
of each other where W's panel stays in L1; 8x2 is never far behind, and its narrower panel wastes less on a width
N % 32. Without AVX-512 (16 registers of 32 bytes: a 64-byte vector takes two), 6 x 1: 12 registers of
accumulators, as the 6 x 16 tile of BLIS's Haswell kernel."""


def lanes(dtype) -> int:
    """Elements per 64-byte vector: 16 float32, 8 float64."""
    return 64 // np.dtype(dtype).itemsize


def panel_width(dtype) -> int:
    """NR, the columns of W per packed panel, for ``dtype``."""
    return NV * lanes(dtype)


def pack_panels(W: np.ndarray) -> np.ndarray:
    """W (K, N) float32/float64 -> Wp (P, K, NR), P = ceil(N / NR): panel p holds columns p·NR .. p·NR + NR - 1 of W,
    row k contiguous, zero past column N. Done once per sequence call, outside the time loop."""
    if W.ndim != 2 or W.dtype not in (np.float32, np.float64):
        raise TypeError(f"pack_panels: W must be a 2-D float32/float64 array, got {W.ndim}-D {W.dtype}")
    K, N = W.shape
    NR = panel_width(W.dtype)
    P = max(1, -(-N // NR))
    Wp = np.zeros((P, K, NR), dtype=W.dtype)
    for p in range(P):
        cols = W[:, p * NR:(p + 1) * NR]  # (K, ≤ NR)
        Wp[p, :, :cols.shape[1]] = cols
    return Wp


def _elem_and_lanes(context, dtype):
    elem = context.get_data_type(dtype)
    return elem, (16 if dtype == types.float32 else 8)


@intrinsic
def _tile(typingctx, A, r0, m, Wp, p, out, ncols):
    """out[r0:r0+m, p·NR : p·NR + ncols] = A[r0:r0+m] @ Wp[p] for 1 ≤ m ≤ MR rows, 1 ≤ ncols ≤ NR columns.
    A (M, K) any strides; Wp (P, K, NR) C-contiguous; out (M, N) with contiguous rows."""
    if not (isinstance(A, types.Array) and isinstance(Wp, types.Array) and isinstance(out, types.Array)):
        return None
    if A.dtype not in (types.float32, types.float64) or Wp.dtype != A.dtype or out.dtype != A.dtype:
        return None
    sig = types.void(A, types.intp, types.intp, Wp, types.intp, out, types.intp)

    def codegen(context, builder, signature, args):
        a_arr, r0_v, m_v, w_arr, p_v, o_arr, nc_v = args
        aty, _, _, wty, _, oty, _ = signature.args
        elem, L = _elem_and_lanes(context, aty.dtype)
        isz = 4 if aty.dtype == types.float32 else 8
        NR = NV * L
        vec = ir.VectorType(elem, L)
        i64 = ir.IntType(64)
        i8p = ir.IntType(8).as_pointer()
        c = lambda v: ir.Constant(i64, v)  # noqa: E731
        splat = ir.Constant(ir.VectorType(ir.IntType(32), L), None)  # the shuffle mask <0, 0, ..., 0>
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                             f"llvm.fma.v{L}{'f32' if isz == 4 else 'f64'}")

        A_ = context.make_array(aty)(context, builder, value=a_arr)
        W_ = context.make_array(wty)(context, builder, value=w_arr)
        O_ = context.make_array(oty)(context, builder, value=o_arr)
        a_s0, a_s1 = cgutils.unpack_tuple(builder, A_.strides, 2)
        o_s0 = cgutils.unpack_tuple(builder, O_.strides, 2)[0]
        K = cgutils.unpack_tuple(builder, W_.shape, 3)[1]
        a_data = builder.bitcast(A_.data, i8p)
        o_data = builder.bitcast(O_.data, i8p)
        w_data = builder.bitcast(W_.data, i8p)
        # panel p starts p·K·NR elements in; output column p·NR
        w_base = builder.gep(w_data, [builder.mul(p_v, builder.mul(K, c(NR * isz)))])
        o_col = builder.mul(p_v, c(NR * isz))
        spill = cgutils.alloca_once(builder, elem, size=MR * NR)  # the tile of a narrow panel, stored from here

        def byte_ptr(base, offset, ty):
            return builder.bitcast(builder.gep(base, [offset]), ty.as_pointer())

        def emit_rows(R):
            """The tile of R rows: the loop over k with R·NV accumulators, then the stores."""
            a_rows = [builder.gep(a_data, [builder.mul(builder.add(r0_v, c(r)), a_s0)]) for r in range(R)]
            pre = builder.block
            head = builder.append_basic_block(f"uk{R}.head")
            body = builder.append_basic_block(f"uk{R}.body")
            done = builder.append_basic_block(f"uk{R}.done")
            builder.branch(head)
            builder.position_at_end(head)
            k = builder.phi(i64)
            k.add_incoming(c(0), pre)
            acc = [[builder.phi(vec) for _ in range(NV)] for _ in range(R)]
            for row in acc:
                for a in row:
                    a.add_incoming(ir.Constant(vec, None), pre)  # zeroinitializer
            builder.cbranch(builder.icmp_signed("<", k, K), body, done)

            builder.position_at_end(body)
            w_row = builder.gep(w_base, [builder.mul(k, c(NR * isz))])
            w = [builder.load(byte_ptr(w_row, c(v * L * isz), vec), align=isz) for v in range(NV)]
            k_off = builder.mul(k, a_s1)
            new = []
            for r in range(R):
                s = builder.load(byte_ptr(a_rows[r], k_off, elem), align=isz)
                s = builder.insert_element(ir.Constant(vec, ir.Undefined), s, c(0))
                s = builder.shuffle_vector(s, ir.Constant(vec, ir.Undefined), splat)  # broadcast lane 0
                new.append([builder.call(fma, [s, w[v], acc[r][v]]) for v in range(NV)])
            k_next = builder.add(k, c(1))
            end = builder.block
            builder.branch(head)
            k.add_incoming(k_next, end)
            for r in range(R):
                for v in range(NV):
                    acc[r][v].add_incoming(new[r][v], end)

            builder.position_at_end(done)
            o_rows = [builder.gep(o_data, [builder.add(builder.mul(builder.add(r0_v, c(r)), o_s0), o_col)])
                      for r in range(R)]
            full = builder.icmp_signed("==", nc_v, c(NR))
            with builder.if_else(full) as (whole, narrow):
                with whole:
                    for r in range(R):
                        for v in range(NV):
                            builder.store(acc[r][v], byte_ptr(o_rows[r], c(v * L * isz), vec), align=isz)
                with narrow:  # the last panel of a width N % NR: through the stack, ncols elements per row
                    for r in range(R):
                        for v in range(NV):
                            builder.store(acc[r][v], builder.bitcast(
                                builder.gep(spill, [c(r * NR + v * L)]), vec.as_pointer()), align=isz)
                    for r in range(R):
                        dst = builder.bitcast(o_rows[r], elem.as_pointer())
                        with cgutils.for_range(builder, nc_v) as loop:
                            x = builder.load(builder.gep(spill, [builder.add(loop.index, c(r * NR))]))
                            builder.store(x, builder.gep(dst, [loop.index]))

        end = builder.append_basic_block("uk.end")
        switch = builder.switch(m_v, end)
        for R in range(1, MR + 1):
            block = builder.append_basic_block(f"uk{R}")
            switch.add_case(c(R), block)
            builder.position_at_end(block)
            emit_rows(R)
            builder.branch(end)
        builder.position_at_end(end)
        return context.get_dummy_value()

    return sig, codegen


_JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(**_JIT)  # not inlined: compiled once per signature, not again at every call site
def matmul_packed(A, Wp, out):
    """out = A @ W for Wp = pack_panels(W): A (M, K) with any strides, W (K, N), out (M, N) with contiguous rows
    (its row stride free); N is out's width. Unchecked: the drivers pack W for A's K once per call. Panel by panel,
    a tile of MR rows at a time: a panel (K·NR elements) is read from cache once per tile of rows."""
    M, N = out.shape
    NR = Wp.shape[2]
    for p in range(Wp.shape[0]):
        ncols = min(NR, N - p * NR)
        for r0 in range(0, M, MR):
            _tile(A, r0, min(MR, M - r0), Wp, p, out, ncols)
