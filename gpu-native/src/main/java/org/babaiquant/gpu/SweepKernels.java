package org.babaiquant.gpu;

/**
 * The two kernels of the GPTQ sweep, as {@link LatticeSweep} drives them: {@link CudaSweep} runs them on the GPU
 * ({@code src/main/cuda/solver.cu}), {@link HostSweep} is the same arithmetic in Java (the reference the CUDA results
 * must equal bit for bit, and what lets the driving loop be tested without a GPU).
 *
 * <p>State: W (m × n, processing order; column i holds q_i once swept), the codes, E (m × bs, the current block's
 * errors e_k), U (n × n), per-row grid (scale, zero: m × groups), the group of each processing column, and per row
 * the running loss, bound and clipped count.
 */
interface SweepKernels extends AutoCloseable {
    /** U (row-major n × n, upper triangle), the group of each processing column, the block size and the grid's rule. */
    void setFactor(double[] u, int n, int[] groupOf, int bs, boolean clip, int maxq);

    /** A slab of rows: W permuted (m × n), scales and zeros (m × groups); resets codes, loss, bound, clipped. */
    void setRows(double[] wp, int m, double[] scale, double[] zero, int groups);

    /**
     * Columns {@code [c1, c1 + width)} ({@code width ≤ }{@link #STRIP}) of the block starting at {@code i1}: quantize
     * each column, record its error in E, propagate it to the strip's later columns (solver.cu {@code gptq_strip}).
     */
    void strip(int i1, int c1, int width);

    /**
     * The lazy update {@code W[:, j0:j1] −= E[:, c1−i1 : c1−i1+k] · U[c1:c1+k, j0:j1]} (solver.cu
     * {@code dgemm_sub}).
     */
    void update(int i1, int c1, int k, int j0, int j1);

    /** Copies the slab's results to the host: q in processing order, codes, loss, bound, clipped. */
    void download(double[] wp, int[] codes, double[] loss, double[] bound, int[] clipped);

    @Override
    void close();

    /** Strip width of {@code gptq_strip} (its register array). */
    int STRIP = 32;
}
