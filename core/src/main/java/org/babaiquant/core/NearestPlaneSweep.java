package org.babaiquant.core;

import java.util.Arrays;
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
 * inside the block the same idea recurses on halves down to {@link #LEAF}-column strips, the only Java loops:
 * row-parallel over the cores, the block held column by column so that every loop runs over contiguous rows
 * (vectorised by the JIT), {@code 1/Ũ_kk} computed once per column.
 *
 * <p>Memory: one accumulator array per slab of rows (≤ {@link #MAX_SLAB} elements), three float64 {@code rows × bs}
 * panels and the block's int codes; the original weights are read from W (processing order gathered per block),
 * codes and dequantized values are scattered into the results after each block.
 */
final class NearestPlaneSweep {
    /** Columns at most this wide run as per-row loops; wider ranges split in two with a product between. */
    static final int LEAF = 32;
    /**
     * Elements of one slab's accumulator (128 MiB of float64). Smaller slabs cost a re-read of Ũ per slab in the lazy
     * products but touch less fresh memory: at 11008×4096 (3 slabs instead of 1) the whole quantize-layer process took
     * 9.9 s instead of 10.8 s (2026-12-04, idle 2-core EPYC; 2²³: 9.7 s), with the same codes (slabs are independent
     * row ranges: {@code SolverAgreementTest.slabsOfRowsChangeNothing}).
     */
    static final long MAX_SLAB = 1L << 24;
    /** Rows per parallel task of a strip: at least this many, and about four tasks per core. */
    private static final int MIN_ROWS_PER_TASK = 16;
    /**
     * Rows a strip sweeps at a time: its three panels over a {@link #LEAF}-column strip are then 3·32·128·8 B = 96 KiB,
     * inside a core's L2, instead of streaming every column's passes from memory when a task has thousands of rows.
     * Each row's arithmetic is unchanged (rows are independent inside a strip), so the codes do not depend on it.
     */
    static final int STRIP_ROWS = 128;
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
    /** The current slab: first row, rows, rows per task, accumulators (m × n row-major, processing order). */
    private int r0;
    private int m;
    /** The panels' column stride for this slab: {@link #panelStride}(m). */
    private int ld;
    private int rowsPerTask;
    private double[] acc;
    /** This slab's grid by group: {@code scaleT[g][r]}, {@code zeroT[g][r]} (contiguous over rows). */
    private double[][] scaleT;
    private double[][] zeroT;
    /**
     * The current block, each stored column by column ({@code bs × ld}: entry (row r, column i of the block) at
     * {@code i·ld + r}, {@code ld ≥ m}), so that every step of the column loop runs over contiguous rows: accumulators a, original
     * weights w, residuals δ.
     */
    private final double[] panel;
    private final double[] orig;
    private final double[] delta;
    /** The current block's codes, stored as the panels. */
    private final int[] blockCodes;
    private final double[] loss;
    private final double[] bound;
    private final int[] clipped;
    private final SweepTimings time;

    private NearestPlaneSweep(double[][] w, DampedFactor.Upper f, int[] perm, QuantGrid grid, boolean clip, int block,
                              int slab, int[][] codes, double[][] dq, LayerReport rep, DenseKernels kernels,
                              SweepTimings time) {
        this.w = w;
        this.time = time;
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
        int panelSize = Math.multiplyExact(panelStride(slab), bs);
        this.panel = new double[panelSize];
        this.orig = new double[panelSize];
        this.delta = new double[panelSize];
        this.blockCodes = new int[panelSize];
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
        run(w, f, perm, grid, clip, block, -1, codes, dq, rep, kernels, new SweepTimings());
    }

    /** As above, {@code slab} rows at a time ({@code -1}: as many as {@link #MAX_SLAB} allows). */
    static void run(double[][] w, DampedFactor.Upper f, int[] perm, QuantGrid grid, boolean clip, int block, int slab,
                    int[][] codes, double[][] dq, LayerReport rep, DenseKernels kernels, SweepTimings time) {
        int rows = w.length;
        int n = f.n();
        int s = slab > 0 ? Math.min(slab, rows) : (int) Math.max(1, Math.min(rows, MAX_SLAB / n));
        NearestPlaneSweep sweep = new NearestPlaneSweep(w, f, perm, grid, clip, block, s, codes, dq, rep, kernels,
                time);
        for (int r0 = 0; r0 < rows; r0 += s) {
            sweep.slab(r0, Math.min(s, rows - r0));
        }
    }

    private void slab(int first, int rows) {
        long t = System.nanoTime();
        r0 = first;
        m = rows;
        ld = panelStride(m);
        int perCore = (m + 4 * CORES - 1) / (4 * CORES);
        rowsPerTask = Math.max(MIN_ROWS_PER_TASK, (perCore + 7) / 8 * 8);
        long size = (long) m * n;
        if (acc == null || acc.length < size) {
            acc = null;
            acc = new double[Dense.checkedSize(m, n)];
        } else {
            forRows((lo, hi) -> Arrays.fill(acc, lo * n, hi * n, 0.0));
        }
        int groups = grid.groups();
        scaleT = new double[groups][m];
        zeroT = new double[groups][m];
        for (int r = 0; r < m; r++) {
            for (int g = 0; g < groups; g++) {
                scaleT[g][r] = grid.scale[r0 + r][g];
                zeroT[g][r] = grid.zero[r0 + r][g];
            }
        }
        Arrays.fill(loss, 0);
        Arrays.fill(bound, 0);
        Arrays.fill(clipped, 0);
        time.setup += System.nanoTime() - t;
        for (int i1 = 0; i1 < n; i1 += bs) {
            int b1 = i1;
            int width = Math.min(n, i1 + bs) - i1;
            t = System.nanoTime();
            forRows((lo, hi) -> {
                for (int r = lo; r < hi; r++) {
                    double[] src = w[r0 + r];
                    int a = r * n + b1;
                    for (int i = 0; i < width; i++) {
                        panel[i * ld + r] = acc[a + i];
                        orig[i * ld + r] = src[perm[b1 + i]];
                    }
                }
            });
            time.gather += System.nanoTime() - t;
            sweepColumns(i1, i1, i1 + width);
            t = System.nanoTime();
            forRows((lo, hi) -> {
                for (int r = lo; r < hi; r++) {
                    int[] rowCodes = codes[r0 + r];
                    double[] rowDq = dq[r0 + r];
                    for (int i = 0; i < width; i++) {
                        int col = perm[b1 + i];
                        rowCodes[col] = blockCodes[i * ld + r];
                        rowDq[col] = panel[i * ld + r];
                    }
                }
            });
            // lazy update of everything right of the block, one product over the slab: A[:, i2:] += Δ·Ũ[i1:i2, i2:]
            int i2 = i1 + width;
            time.scatter += System.nanoTime() - t;
            t = System.nanoTime();
            kernels.gemm(true, false, m, n - i2, width, 1.0, delta, 0, ld, ut, i1 * n + i2, n, acc, i2, n);
            time.lazyProducts += System.nanoTime() - t;
        }
        for (int r = 0; r < m; r++) {
            rep.rowLoss[r0 + r] = loss[r];
            rep.rowBound[r0 + r] = bound[r];
            rep.rowClipped[r0 + r] = clipped[r];
        }
    }

    /**
     * The panels' column stride for {@code m} rows: {@code m} rounded up to an odd number of 64-byte lines. With
     * {@code ld = m = 4096} (slabs of {@link #MAX_SLAB} at n = 4096) the copies into the block wrote 128 columns 32 KiB
     * apart, all in one L1 set: at 11008×4096 "block copies in" took 1.37 s; an odd number of lines spreads the
     * columns over every set. Layout only: each row's arithmetic, and so the codes, are unchanged.
     */
    static int panelStride(int m) {
        int lines = (m + 7) / 8;
        return 8 * (lines | 1);
    }

    private interface RowRange {
        void accept(int lo, int hi);
    }

    /** {@code body} over the slab's rows, in tasks of {@link #rowsPerTask} contiguous rows run in parallel. */
    private void forRows(RowRange body) {
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
            long t = System.nanoTime();
            forRows((lo, hi) -> strip(lo, hi, i1, c1, c2));
            time.strips += System.nanoTime() - t;
            return;
        }
        int mid = c1 + (c2 - c1) / 2;
        sweepColumns(i1, c1, mid);
        // A[:, mid:c2] += Δ[:, c1:mid]·Ũ[c1:mid, mid:c2], in the panels' transposed storage
        long t = System.nanoTime();
        kernels.gemm(true, false, c2 - mid, m, mid - c1, 1.0, ut, c1 * n + mid, n, delta, (c1 - i1) * ld, ld,
                panel, (mid - i1) * ld, ld);
        time.blockProducts += System.nanoTime() - t;
        sweepColumns(i1, mid, c2);
    }

    /**
     * Rows {@code [lo, hi)} (slab-relative) over columns {@code [c1, c2)} of the block starting at {@code i1},
     * left-looking: column j first receives the residuals of the strip's earlier columns (four at a time, one pass over
     * the rows per four), then takes its step of the class comment. Every loop runs over contiguous rows. The column's
     * accumulators, dead after its step, then hold q; the codes go to {@link #blockCodes}.
     */
    private void strip(int lo, int hi, int i1, int c1, int c2) {
        for (int a = lo; a < hi; a += STRIP_ROWS) {
            stripRows(a, Math.min(hi, a + STRIP_ROWS), i1, c1, c2);
        }
    }

    /** {@link #strip} on at most {@link #STRIP_ROWS} rows: the strip's panels of those rows stay in the core's cache. */
    private void stripRows(int lo, int hi, int i1, int c1, int c2) {
        double[] p = panel;
        double[] dl = delta;
        int maxq = grid.maxq;
        for (int j = c1; j < c2; j++) {
            int pj = (j - i1) * ld;
            int i = c1;
            for (; i + 3 < j; i += 4) {
                double u0 = ut[i * n + j];
                double u1 = ut[(i + 1) * n + j];
                double u2 = ut[(i + 2) * n + j];
                double u3 = ut[(i + 3) * n + j];
                int p0 = (i - i1) * ld;
                int p1 = p0 + ld;
                int p2 = p1 + ld;
                int p3 = p2 + ld;
                for (int r = lo; r < hi; r++) {
                    p[pj + r] += dl[p0 + r] * u0 + dl[p1 + r] * u1 + dl[p2 + r] * u2 + dl[p3 + r] * u3;
                }
            }
            for (; i < j; i++) {
                double u = ut[i * n + j];
                int pi = (i - i1) * ld;
                for (int r = lo; r < hi; r++) {
                    p[pj + r] += dl[pi + r] * u;
                }
            }
            int g = groupOf[j];
            double[] sT = scaleT[g];
            double[] zT = zeroT[g];
            double d = ut[j * n + j];
            double d2 = d * d;
            double r1 = inv[j];
            for (int r = lo; r < hi; r++) {
                double s = sT[r];
                double z = zT[r];
                double wk = orig[pj + r];
                double x = wk + p[pj + r] * r1;
                double c = Math.rint(x / s) + z;
                if (clip && (c < 0 || c > maxq)) {
                    c = Math.min(Math.max(c, 0), maxq);
                    clipped[r]++;
                }
                double q = s * (c - z);
                double e = d * (x - q);
                loss[r] += e * e;
                bound[r] += 0.25 * s * s * d2;
                dl[pj + r] = wk - q;
                p[pj + r] = q;
                blockCodes[pj + r] = (int) c;
            }
        }
    }
}
