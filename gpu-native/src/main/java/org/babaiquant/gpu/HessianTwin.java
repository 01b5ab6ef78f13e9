package org.babaiquant.gpu;

/**
 * The CPU twin of {@code hessian_dmma.cu}'s arithmetic: activations (float32, float16 or bfloat16, all exact in
 * float64) widened to float64, then per launch of {@code tokens ≤ perLaunch} rows the DMMA tile sums each entry's
 * products in k-steps of 4 in token order (the DMMA unit's order inside a step is not documented; modelled as
 * sequential) into a float64 accumulator that starts at 0, and adds it to H once ({@code dmma_f64_tile}'s
 * {@code C + alpha·acc}).
 *
 * <p>Error contract (every product is exact in float64, so only the sums round; Higham's bound for recursive
 * summation): per entry, after N tokens in L launches,
 * {@code |H_ij − Σ_t x_ti·x_tj| ≤ (N + L)·2⁻⁵³·Σ_t |x_ti·x_tj|} (≤ (N + L)·2⁻⁵³·sqrt(H_ii·H_jj) by Cauchy–Schwarz),
 * whatever the order the hardware uses inside a k-step. {@link #bound} is that figure; the contract test checks the
 * twin against exact sums, and the GPU check checks the kernel against float64 sums with it.
 */
public final class HessianTwin {
    private HessianTwin() {}

    /** Upper triangle of Σ XᵀX (row-major n×n, lower left 0) of {@code x[t·n + j]} in the kernel's order. */
    public static double[] xtx(float[] x, int tokens, int n, int perLaunch) {
        double[] h = new double[n * n];
        double[] acc = new double[n * n];
        for (int t0 = 0; t0 < tokens; t0 += perLaunch) {
            int t1 = Math.min(tokens, t0 + perLaunch);
            java.util.Arrays.fill(acc, 0.0);
            for (int t = t0; t < t1; t++) {
                int row = t * n;
                for (int i = 0; i < n; i++) {
                    double xi = x[row + i];
                    for (int j = i; j < n; j++) {
                        acc[i * n + j] += xi * (double) x[row + j];
                    }
                }
            }
            for (int k = 0; k < h.length; k++) {
                h[k] += acc[k];
            }
        }
        return h;
    }

    /** The contract's bound for one entry: {@code (N + L)·2⁻⁵³·Σ_t |x_ti·x_tj|}. */
    public static double bound(long tokens, long launches, double absSum) {
        return (tokens + launches) * 0x1p-53 * absSum;
    }
}
