"""The benchmark's peer: GPTQ as the reference implementation runs it (IST-DASLab gptq.py, GPTQ.fasterquant), in
NumPy float32 on OpenBLAS, on the same W and H as babai-quant's solver.

Structure kept from the reference: dead columns, damping, the Cholesky-inverse trick (cholesky -> cholesky_inverse ->
upper cholesky), blocks of 128 columns with the column loop inside a block and the lazy batch update
W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] after it. Groups are static (fitted on the original W, the reference's
static_groups), min-max asymmetric, as babai-quant's default grid. Within a block the columns are kept contiguous
(Fortran order), which only helps the peer.

usage: python3 gptq_numpy_peer.py W.npy H.npy OUT_DIR BITS GROUP_SIZE BLOCK PERCDAMP
writes OUT_DIR/codes.npy (uint8 [out, in]), scales.npy, zeros.npy (float32 [out, groups]) and prints one JSON line of
timings (seconds) and the summed loss.
"""
import json
import os
import sys
import time

t_start = time.perf_counter()
import numpy as np  # noqa: E402

try:  # LAPACK's potri is what torch.cholesky_inverse runs; without SciPy, an explicit triangular inverse
    from scipy.linalg import lapack as _lapack
except ImportError:  # pragma: no cover
    _lapack = None


def cholesky_inverse(L):
    """(L L^T)^-1 from the lower Cholesky factor L."""
    if _lapack is not None:
        inv, info = _lapack.spotri(L, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("potri failed: %d" % info)
        return np.tril(inv) + np.tril(inv, -1).T
    Linv = np.linalg.inv(L)
    return Linv.T @ Linv


def main(argv):
    w_path, h_path, out = argv[1], argv[2], argv[3]
    bits, groupsize, blocksize, percdamp = int(argv[4]), int(argv[5]), int(argv[6]), float(argv[7])
    maxq = 2 ** bits - 1
    t0 = time.perf_counter()
    W = np.load(w_path).astype(np.float32)
    H = np.load(h_path).astype(np.float32)
    rows, columns = W.shape
    if groupsize == -1:
        groupsize = columns
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    # static groups: min-max asymmetric grid per (row, group), 0 always inside the range
    groups = (columns + groupsize - 1) // groupsize
    scale = np.empty((rows, groups), np.float32)
    zero = np.empty((rows, groups), np.float32)
    for g in range(groups):
        x = W[:, g * groupsize:(g + 1) * groupsize]
        xmin = np.minimum(x.min(1), 0)
        xmax = np.maximum(x.max(1), 0)
        both0 = (xmin == 0) & (xmax == 0)
        xmin[both0] = -1
        xmax[both0] = 1
        scale[:, g] = (xmax - xmin) / maxq
        zero[:, g] = np.round(-xmin / scale[:, g])

    damp = percdamp * np.mean(np.diag(H))
    H[np.diag_indices(columns)] += damp
    L = np.linalg.cholesky(H)
    Hinv = np.linalg.cholesky(cholesky_inverse(L)).T.copy()  # upper: Hinv = U, U^T U = H^-1
    del L, H
    t_factor = time.perf_counter() - t0

    t0 = time.perf_counter()
    Q = np.empty((rows, columns), np.uint8)
    losses = np.zeros(rows, np.float32)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = np.asfortranarray(W[:, i1:i2])
        Err1 = np.empty((rows, count), np.float32, order="F")
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            g = (i1 + i) // groupsize
            s = scale[:, g]
            z = zero[:, g]
            c = np.clip(np.round(w / s) + z, 0, maxq)
            q = s * (c - z)
            Q[:, i1 + i] = c
            err1 = (w - q) / d
            losses += err1 * err1
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    t_sweep = time.perf_counter() - t0

    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "codes.npy"), Q)
    np.save(os.path.join(out, "scales.npy"), scale)
    np.save(os.path.join(out, "zeros.npy"), zero)
    t_save = time.perf_counter() - t0
    print(json.dumps({"load_s": t_load, "factor_s": t_factor, "sweep_s": t_sweep, "save_s": t_save,
                      "total_s": time.perf_counter() - t_start, "loss": float(losses.sum()),
                      "numpy": np.__version__, "cholesky_inverse": "potri" if _lapack is not None else "inv"}))


if __name__ == "__main__":
    main(sys.argv)
