package org.babaiquant.gpu;

/**
 * The launch sequence of cholesky.cu (see its header): gather + damping, then per 64-column panel the diagonal block,
 * the panel solve and the tensor-core trailing update, all on the default stream; the host reads the pivot flag once
 * per attempt ({@link CudaSweep#factor}).
 */
final class DeviceCholesky {
    private DeviceCholesky() {}

    static final int NB = 64;

    /** A = lower Cholesky factor of (H[σ][σ] + λI), σ(a) = perm[n−1−a]; *flag = first failing column + 1, else 0. */
    static void run(CudaDevice dev, DeviceBuffer h, int n, DeviceBuffer perm, double lambda, DeviceBuffer a,
                    DeviceBuffer flag) {
        dev.launch("chol_gather", (n + 31) / 32, (n + 7) / 8, 256, 0, h, n, perm, lambda, a);
        for (int k0 = 0; k0 < n; k0 += NB) {
            int b = Math.min(NB, n - k0);
            int k2 = k0 + b;
            dev.launch("chol_diag", 1, 1, 256, 0, a, n, k0, flag);
            if (k2 < n) {
                dev.launch("chol_panel", (n - k2 + 127) / 128, 1, 128, 0, a, n, k0, flag);
                int t = (n - k2 + 63) / 64;
                dev.launch("chol_update", t, t, 128, 0, n - k2, b, a.at((long) k2 * n + k0, 8), (long) n,
                        a.at((long) k2 * n + k2, 8), flag);
            }
        }
    }

    /** Ũ[i][j] = L[n−1−i][n−1−j] (upper; zeros below) and Ũ's diagonal. */
    static void reverse(CudaDevice dev, DeviceBuffer l, int n, DeviceBuffer ut, DeviceBuffer diag) {
        dev.launch("chol_reverse", (n + 31) / 32, (n + 7) / 8, 256, 0, l, n, ut, diag);
    }
}
