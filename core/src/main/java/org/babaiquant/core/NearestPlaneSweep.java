package org.babaiquant.core;

import java.util.function.IntConsumer;
import java.util.stream.IntStream;

/**
 * The GPTQ column sweep as Babai's nearest plane on the one-Cholesky factor {@code Ũ} ({@link DampedFactor.Upper}:
 * {@code H_P + λI = Ũ·Ũᵀ}, GPTQ's {@code U = Ũ⁻¹}). GPTQ's step {@code e_k = (w̃_k − q_k)/U_kk},
 * {@code w̃_j −= e_k·U_kj} says {@code Uᵀe = w − q}, so {@code e = Ũᵀ(w − q)}: with the residuals
 * {@code δ_j = w_j − q_j} (original weight minus its quantized value),
 * <pre>
 *   for k = 0 … n−1:                   (columns in processing order)
 *     w̃_k = w_k + a_k / Ũ_kk           a_k = Σ_{j&lt;k} Ũ_jk·δ_j   (the rounding errors fed forward through Ũ)
 *     q_k  = s_k · (clamp(rint(w̃_k/s_k) + z_k, 0, maxq) − z_k)
 *     δ_k = w_k − q_k                   e_k = Ũ_kk·(w̃_k − q_k)   loss += e_k²   bound += ¼ s_k²·Ũ_kk²
 * </pre>
 * which is the same arithmetic as GPTQ up to float64 rounding (codes differ only where a rounding tie is decided
 * the other way). Blocked: the accumulators {@code A} of the columns right of a block of {@code bs} get the lazy
 * product {@code A[:, i2:] += Δ[:, i1:i2]·Ũ[i1:i2, i2:]} (one {@link DenseKernels#gemm} over a whole slab of rows);
 * inside the block the same idea recurses on halves down to {@link #LEAF}-column strips, the only Java loops
 * (row-parallel, four contiguous rows at a time, {@code 1/Ũ_kk} computed once per column).
 *
 * <p>Memory: one accumulator array per slab of rows (≤ {@link #MAX_SLAB} elements) and three {@code rows × bs}
 * panels; the original weights are read from W (processing order gathered per block), codes and dequantized values
 * are written straight into the results.
 */
final class NearestPlaneSweep {
    /** Columns at most this wide run as per-row loops; wider ranges split in two with a product between. */
    static final int LEAF = 32;
    /** Elements of one slab's accumulator (1 GiB of float64). */
    static final long MAX_SLAB = 1L << 27;
    /** Rows per parallel task of a strip: at least this many, and about four tasks per core. */
    private static final int MIN_ROWS_PER_TASK = 16;
    private static final int CORES = Runtime.getRuntime().availableProcessors();

    private final double[][] w;
    private final int n;
    private final int bs;
    private final double[] ut;
    private final double[] inv;
    private final int[] perm;
    private final int[] groupOf;
    private final QuantGrid grid;
    private final boolean clip;
    private final DenseKernels kernels;
    private final int leaf;
    private final int[][] codes;
    private final double[][] dq;
    private final LayerReport rep;
    /** The current slab: first row, rows, rows per task, accumulators (m × n, processing order). */
    private int r0;
    private int m;
    private int rowsPerTask;
    private double[] acc;
    /** The current block, each m × bs: accumulators a, original weights w, residuals δ. */
    private final double[] panel;
    private final double[] orig;
    private final double[] delta;
    private final double[] loss;
    private final double[] bound;
    private final int[] clipped;

    private NearestPlaneSweep(double[][] w, DampedFactor.Upper f, int[] perm, QuantGrid grid, boolean clip, int block,
                              int slab, int[][] codes, double[][] dq, LayerReport rep, DenseKernels kernels) {
        this.w = w;
        this.n = f.n();
        this.bs = Math.min(block, n);
        this.ut = f.ut();
        this.perm = perm;
        this.grid = grid;
        this.clip = clip;
        this.kernels = kernels;
        this.leaf = kernels instanceof Dense ? bs : LEAF;
        this.codes = codes;
        this.dq = dq;
        this.rep = rep;
        this.inv = new double[n];
        this.groupOf = new int[n];
        for (int k = 0; k < n; k++) {
            inv[k] = 1.0 / ut[k * n + k];
            groupOf[k] = grid.groupOf(perm[k]);
        }
        this.panel = new double[slab * bs];
        this.orig = new double[slab * bs];
        this.delta = new double[slab * bs];
        this.loss = new double[slab];
        this.bound = new double[slab];
        this.clipped = new int[slab];
    }

    /**
     * Sweeps every row of {@code w} ([rows][n], original column order) in processing order {@code perm} on the factor
     * {@code f}, writing codes, dequantized values (original order) and the per-row loss, bound and clipped count.
     */
    static void run(double[][] w, DampedFactor.Upper f, int[] perm, QuantGrid grid, boolean clip, int block,
                    int[][] codes, double[][] dq, LayerReport rep, DenseKernels kernels) {
        run(w, f, perm, grid, clip, block, -1, codes, dq, rep, kernels);
    }

    /** As above, {@code slab} rows at a time ({@code -1}: as many as {@link #MAX_SLAB} allows). */
    static void run(double[][] w, DampedFactor.Upper f, int[] perm, QuantGrid grid, boolean clip, int block, int slab,
                    int[][] codes, double[][] dq, LayerReport rep, DenseKernels kernels) {
        int rows = w.length;
        int n = f.n();
        int s = slab > 0 ? Math.min(slab, rows) : (int) Math.max(1, Math.min(rows, MAX_SLAB / n));
        NearestPlaneSweep sweep = new NearestPlaneSweep(w, f, perm, grid, clip, block, s, codes, dq, rep, kernels);
        for (int r0 = 0; r0 < rows; r0 += s) {
            sweep.slab(r0, Math.min(s, rows - r0));
        }
    }

    private void slab(int first, int rows) {
        r0 = first;
        m = rows;
        int perCore = (m + 4 * CORES - 1) / (4 * CORES);
        rowsPerTask = Math.max(MIN_ROWS_PER_TASK, (perCore + 3) / 4 * 4);
        long size = (long) m * n;
        if (acc == null || acc.length < size) {
            acc = null;
            acc = new double[Dense.checkedSize(m, n)];
        } else {
            forRows(r -> java.util.Arrays.fill(acc, r * n, (r + 1) * n, 0.0));
        }
        java.util.Arrays.fill(loss, 0);
        java.util.Arrays.fill(bound, 0);
        java.util.Arrays.fill(clipped, 0);
        for (int i1 = 0; i1 < n; i1 += bs) {
            int b1 = i1;
            int width = Math.min(n, i1 + bs) - i1;
            forRows(r -> {
                System.arraycopy(acc, r * n + b1, panel, r * bs, width);
                double[] src = w[r0 + r];
                int o = r * bs;
                for (int i = 0; i < width; i++) {
                    orig[o + i] = src[perm[b1 + i]];
                }
            });
            sweepColumns(i1, i1, i1 + width);
            // lazy update of everything right of the block, one product over the slab
            int i2 = i1 + width;
            kernels.gemm(false, false, m, n - i2, width, 1.0, delta, 0, bs, ut, i1 * n + i2, n, acc, i2, n);
        }
        for (int r = 0; r < m; r++) {
            rep.rowLoss[r0 + r] = loss[r];
            rep.rowBound[r0 + r] = bound[r];
            rep.rowClipped[r0 + r] = clipped[r];
        }
    }

    /** {@code body} for every row of the slab, in tasks of {@link #rowsPerTask} rows run in parallel. */
    private void forRows(IntConsumer body) {
        forTasks((lo, hi) -> {
            for (int r = lo; r < hi; r++) {
                body.accept(r);
            }
        });
    }

    private interface RowRange {
        void accept(int lo, int hi);
    }

    private void forTasks(RowRange body) {
        int tasks = (m + rowsPerTask - 1) / rowsPerTask;
        IntStream range = IntStream.range(0, tasks);
        if (tasks > 1) {
            range = range.parallel();
        }
        range.forEach(t -> body.accept(t * rowsPerTask, Math.min(m, (t + 1) * rowsPerTask)));
    }

    /** Columns {@code [c1, c2)} of the block that starts at {@code i1} (in the panels), every row of the slab. */
    private void sweepColumns(int i1, int c1, int c2) {
        if (c2 - c1 <= leaf) {
            forTasks((lo, hi) -> {
                int r = lo;
                for (; r + 3 < hi; r += 4) {
                    strip4(r, i1, c1, c2);
                }
                for (; r < hi; r++) {
                    strip1(r, i1, c1, c2);
                }
            });
            return;
        }
        int mid = c1 + (c2 - c1) / 2;
        sweepColumns(i1, c1, mid);
        kernels.gemm(false, false, m, c2 - mid, mid - c1, 1.0, delta, c1 - i1, bs, ut, c1 * n + mid, n,
                panel, mid - i1, bs);
        sweepColumns(i1, mid, c2);
    }

    /** Rows {@code r..r+3} (slab-relative) over columns {@code [c1, c2)}. */
    private void strip4(int r, int i1, int c1, int c2) {
        int x0 = r * bs - i1;
        int x1 = x0 + bs;
        int x2 = x1 + bs;
        int x3 = x2 + bs;
        for (int i = c1; i < c2; i++) {
            int ui = i * n;
            double d0 = column(r, x0, i);
            double d1 = column(r + 1, x1, i);
            double d2 = column(r + 2, x2, i);
            double d3 = column(r + 3, x3, i);
            for (int j = i + 1; j < c2; j++) {
                double uij = ut[ui + j];
                panel[x0 + j] += d0 * uij;
                panel[x1 + j] += d1 * uij;
                panel[x2 + j] += d2 * uij;
                panel[x3 + j] += d3 * uij;
            }
        }
    }

    /** Row {@code r} (slab-relative) over columns {@code [c1, c2)}. */
    private void strip1(int r, int i1, int c1, int c2) {
        int x0 = r * bs - i1;
        for (int i = c1; i < c2; i++) {
            int ui = i * n;
            double d0 = column(r, x0, i);
            for (int j = i + 1; j < c2; j++) {
                panel[x0 + j] += d0 * ut[ui + j];
            }
        }
    }

    /**
     * Column i of row r, whose block entries sit at {@code [x + i]} of the panels: the step of the class comment;
     * returns the residual δ.
     */
    private double column(int r, int x, int i) {
        int row = r0 + r;
        int g = groupOf[i];
        double s = grid.scale[row][g];
        double z = grid.zero[row][g];
        double d = ut[i * n + i];
        double wk = orig[x + i];
        double xi = wk + panel[x + i] * inv[i];
        double c = QuantGrid.quantizeUnclipped(xi, s, z);
        if (clip && (c < 0 || c > grid.maxq)) {
            c = Math.min(Math.max(c, 0), grid.maxq);
            clipped[r]++;
        }
        double q = QuantGrid.dequantize(c, s, z);
        double ek = d * (xi - q);
        loss[r] += ek * ek;
        bound[r] += 0.25 * s * s * (d * d);
        double res = wk - q;
        delta[x + i] = res;
        codes[row][perm[i]] = (int) c;
        dq[row][perm[i]] = q;
        return res;
    }
}
