package org.babaiquant.gpu;

/**
 * The two kernels of the nearest-plane sweep on the one-Cholesky factor Ũ, as {@link LatticeSweep} drives them:
 * {@link CudaSweep} runs them on the GPU ({@code src/main/cuda/solver.cu}), {@link HostSweep} is the same arithmetic in
 * Java (the reference the CUDA results must equal bit for bit on the exact update path, and what lets the driving loop
 * be tested without a GPU). The arithmetic is core's NearestPlaneSweep's, regrouped: per column k in processing order
 * {@code x = w_k + a_k·(1/Ũ_kk)}, {@code c = clamp(rint(x/s) + z)}, {@code q = s·(c − z)}, {@code e = Ũ_kk·(x − q)},
 * {@code δ_k = w_k − q}, and the accumulators {@code a_j += δ_k·Ũ_kj} of the later columns.
 *
 * <p>State: W (m × n, original weights in processing order), A (m × n accumulators, zero at the start), the codes
 * (m × n, {@link #codeBytes} each), Δ (m × bs, the current lazy block's residuals), Ũ (n × n, upper triangle), per-row
 * grid (scale, zero: m × groups), the group of each processing column, and per row the running loss, bound
 * (Σ ¼·s²·Ũ_kk²) and clipped count.
 */
interface SweepKernels extends AutoCloseable {
    /** Ũ (row-major n × n, upper triangle), the group of each processing column, the lazy block size, the grid's rule. */
    void setFactor(double[] ut, int n, int[] groupOf, int bs, boolean clip, int maxq);

    /**
     * Computes Ũ itself — core's DampedFactor.upper of {@code h} (flat n × n, original column order, dead columns
     * already set to 1) for the processing order {@code perm}, damping escalated by DampedFactor.escalate — then is
     * set up as by {@link #setFactor}. {@link CudaSweep}: on the device (cholesky.cu), H uploaded once and kept as the
     * copy every escalation restarts from; {@link HostSweep}: core's own factorisation. Returns the damping used and
     * tr(D) = Σ Ũ_kk² for the report.
     *
     * @throws org.babaiquant.core.NotPositiveDefiniteException when the last escalation fails
     */
    Factor factor(double[] h, int n, int[] perm, double percdamp, int maxTries, int[] groupOf, int bs, boolean clip,
                  int maxq);

    /** What {@link #factor} reports. */
    record Factor(org.babaiquant.core.DampedFactor.Damping damping, double traceD) {}

    /** A slab of rows: W permuted (m × n), scales and zeros (m × groups); resets A, codes, loss, bound, clipped. */
    void setRows(double[] wp, int m, double[] scale, double[] zero, int groups);

    /**
     * Columns {@code [c1, c1 + width)} ({@code width ≤ }{@link #STRIP}) of the lazy block starting at {@code i1}: the
     * step of each column, its residual into Δ, its δ·Ũ into the launch's later columns (solver.cu
     * {@code gptq_block}).
     */
    void strip(int i1, int c1, int width);

    /**
     * The lazy update {@code A[:, j0:j1] += Δ[:, c1−i1 : c1−i1+k] · Ũ[c1:c1+k, j0:j1]} (solver.cu {@code dgemm_add},
     * or {@code dgemm_tc} on the tensor cores).
     */
    void update(int i1, int c1, int k, int j0, int j1);

    /**
     * Copies the slab's results to the host: codes (processing order, m·n·{@link #codeBytes} bytes), loss, bound,
     * clipped.
     */
    void download(byte[] codes, double[] loss, double[] bound, int[] clipped);

    /**
     * Bytes per code: 1 (unsigned) when the grid clips (0 ≤ c ≤ maxq ≤ 255), else 4 (little-endian int32: an unclipped
     * code may leave [0, maxq]).
     */
    static int codeBytes(boolean clip) {
        return clip ? 1 : 4;
    }

    /** Code {@code i} of a downloaded code array. */
    static int code(byte[] codes, int i, boolean clip) {
        if (clip) {
            return codes[i] & 0xFF;
        }
        int b = 4 * i;
        return (codes[b] & 0xFF) | (codes[b + 1] & 0xFF) << 8 | (codes[b + 2] & 0xFF) << 16 | codes[b + 3] << 24;
    }

    @Override
    void close();

    /** Columns per {@code gptq_block} launch (4 per lane of a warp). */
    int STRIP = 128;
}
