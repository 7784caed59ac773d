"""How the golden numbers in test_golden.py were computed: the equations in pure Python (math only).

No rnnlab, no torch: a second, independent statement of each cell's maths. Run it to print the numbers:

    python tests/nn/golden_derivation.py

The weights are constants given by formulas (so that every gate and unit sees different values and a
swapped gate order or a misplaced reset gate changes the output): for a matrix with G·H rows,

    W_ih[r][j] = 0.05 * (r + 1) * (-1)**j       W_hh[r][j] = 0.02 * (r - j)
    b_ih[r]    = 0.01 * r                        b_hh[r]    = -0.005 * r

Inputs x: one sequence (B = 1) of T = 3 steps, I = 2; H = 2; the initial state is zeros.
"""
import math

X = [[0.5, -1.0], [0.25, 0.75], [-0.5, 0.125]]
I, H = 2, 2
EPS = 1e-5


def w_ih(rows):
    return [[0.05 * (r + 1) * (-1) ** j for j in range(I)] for r in range(rows)]


def w_hh(rows):
    return [[0.02 * (r - j) for j in range(H)] for r in range(rows)]


def b_ih(rows):
    return [0.01 * r for r in range(rows)]


def b_hh(rows):
    return [-0.005 * r for r in range(rows)]


def matvec(W, v):
    return [sum(w * x for w, x in zip(row, v)) for row in W]


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def layer_norm(v, gain=None, shift=None):
    """(v - mean) / sqrt(var + eps), biased variance; gain 1 and shift 0 unless given."""
    n = len(v)
    mean = sum(v) / n
    var = sum((a - mean) ** 2 for a in v) / n
    out = [(a - mean) / math.sqrt(var + EPS) for a in v]
    if gain is not None:
        out = [o * g for o, g in zip(out, gain)]
    if shift is not None:
        out = [o + s for o, s in zip(out, shift)]
    return out


def rnn_tanh():
    h, ys = [0.0] * H, []
    for x in X:
        a = [p + q + b + c for p, q, b, c in zip(matvec(w_ih(H), x), matvec(w_hh(H), h), b_ih(H), b_hh(H))]
        h = [math.tanh(v) for v in a]
        ys.append(h)
    return ys


def gru():
    # torch's GRU: r, z, n; the reset gate multiplies (W_hn h + b_hn)
    h, ys = [0.0] * H, []
    for x in X:
        xh = [p + b for p, b in zip(matvec(w_ih(3 * H), x), b_ih(3 * H))]
        hh = [q + b for q, b in zip(matvec(w_hh(3 * H), h), b_hh(3 * H))]
        r = [sigmoid(xh[k] + hh[k]) for k in range(H)]
        z = [sigmoid(xh[H + k] + hh[H + k]) for k in range(H)]
        n = [math.tanh(xh[2 * H + k] + r[k] * hh[2 * H + k]) for k in range(H)]
        h = [(1 - z[k]) * n[k] + z[k] * h[k] for k in range(H)]
        ys.append(h)
    return ys


def lstm(ln=False):
    # gates i, f, g, o. With ln: a = LN(W_ih x) + LN(W_hh h) + b_ih + b_hh, h = o tanh(LN(c)); gains 1, shift 0
    h, c, ys = [0.0] * H, [0.0] * H, []
    for x in X:
        xp, hp = matvec(w_ih(4 * H), x), matvec(w_hh(4 * H), h)
        if ln:
            xp, hp = layer_norm(xp), layer_norm(hp)
        a = [p + q + b + d for p, q, b, d in zip(xp, hp, b_ih(4 * H), b_hh(4 * H))]
        i = [sigmoid(a[k]) for k in range(H)]
        f = [sigmoid(a[H + k]) for k in range(H)]
        g = [math.tanh(a[2 * H + k]) for k in range(H)]
        o = [sigmoid(a[3 * H + k]) for k in range(H)]
        c = [f[k] * c[k] + i[k] * g[k] for k in range(H)]
        c_out = layer_norm(c) if ln else c
        h = [o[k] * math.tanh(c_out[k]) for k in range(H)]
        ys.append(h)
    return ys, c


def min_gru():
    # one Linear I -> 2H (weight W_ih's formula, bias b_ih's): k_z, k_h; z = σ(k_z), h̃ = g(k_h)
    def g(v):
        return v + 0.5 if v >= 0 else sigmoid(v)

    h, ys = [0.0] * H, []
    for x in X:
        k = [p + b for p, b in zip(matvec(w_ih(2 * H), x), b_ih(2 * H))]
        z = [sigmoid(k[j]) for j in range(H)]
        h_tilde = [g(k[H + j]) for j in range(H)]
        h = [(1 - z[j]) * h[j] + z[j] * h_tilde[j] for j in range(H)]
        ys.append(h)
    return ys


if __name__ == "__main__":
    for name, value in (("RNN_TANH", rnn_tanh()), ("GRU", gru()), ("LSTM", lstm()), ("LN_LSTM", lstm(ln=True)),
                        ("MIN_GRU", min_gru())):
        print(f"{name} = {value!r}")
