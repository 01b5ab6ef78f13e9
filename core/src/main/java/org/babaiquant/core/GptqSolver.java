package org.babaiquant.core;

import org.babaiquant.BadInputException;

import java.util.stream.IntStream;

/**
 * GPTQ, blocked with lazy updates, as Babai's nearest-plane algorithm (Chen et al., "The Geometry of LLM
 * Quantization: GPTQ as Babai's Nearest Plane Algorithm", arXiv 2507.18553). Also RTN and Babai on the same grid,
 * so that every method shares the validation, the dead-column rule, the damping and the report.
 *
 * <p>Weights W are [out, in] (nn.Linear layout), H = XᵀX is [in, in]. For one output row w and processing order P,
 * with U = GPTQ's {@code Hinv} (upper Cholesky factor of the permuted damped H⁻¹, see {@link DampedFactor}):
 * <pre>
 *   for k = 0 … n−1:                     (columns in order P)
 *     q_k  = s_k · (clamp(rint(w̃_k/s_k) + z_k, 0, maxq) − z_k)
 *     e_k  = (w̃_k − q_k) / U_kk          loss += e_k²        bound += ¼ s_k²/U_kk²
 *     w̃_j −= e_k · U_kj   for j > k      (projection onto the nearest hyperplane)
 * </pre>
 * The update of columns beyond the current block of 128 is deferred and applied as one matrix product
 * {@code W[:, i2:] −= E · U[i1:i2, i2:]} (GPTQ's lazy batch update), one {@link DenseKernels#gemm} over all rows,
 * which is where native BLAS earns its keep; the column loop inside a block runs rows in parallel. All arithmetic is
 * float64, whichever kernels run it.
 */
public final class GptqSolver {
    private GptqSolver() {}

    /** Rows per parallel task of a strip's column loop: at least this many, and about four tasks per core. */
    private static final int MIN_ROWS_PER_TASK = 16;
    /** Elements of one flat slab of W (1 GiB of float64). */
    private static final long MAX_SLAB = 1L << 27;

    /** Every option of the single-layer quantizer, validated. Defaults are the reference GPTQ's. */
    public record Options(Method method, QuantGrid.Spec grid, ColumnOrder order, boolean clip, double percdamp,
                          int blockSize, int maxDampTries) {
        public Options {
            if (!(percdamp >= 0) || Double.isInfinite(percdamp)) {
                throw new IllegalArgumentException("damping must be a finite number ≥ 0, got " + percdamp);
            }
            if (blockSize < 1) {
                throw new IllegalArgumentException("block size must be ≥ 1, got " + blockSize);
            }
            if (maxDampTries < 1) {
                throw new IllegalArgumentException("max damping tries must be ≥ 1, got " + maxDampTries);
            }
        }

        /** GPTQ, 4-bit asymmetric per-row min-max grid, natural order, clipping, 1% damping, block 128. */
        public static Options defaults() {
            return new Options(Method.GPTQ, new QuantGrid.Spec(4, -1, false, false), ColumnOrder.NATURAL, true,
                    0.01, 128, 6);
        }

        public Options withMethod(Method m) {
            return new Options(m, grid, order, clip, percdamp, blockSize, maxDampTries);
        }

        public Options withGrid(QuantGrid.Spec g) {
            return new Options(method, g, order, clip, percdamp, blockSize, maxDampTries);
        }

        public Options withOrder(ColumnOrder o) {
            return new Options(method, grid, o, clip, percdamp, blockSize, maxDampTries);
        }

        public Options withClip(boolean c) {
            return new Options(method, grid, order, c, percdamp, blockSize, maxDampTries);
        }

        public Options withDamp(double d) {
            return new Options(method, grid, order, clip, d, blockSize, maxDampTries);
        }

        public Options withBlockSize(int b) {
            return new Options(method, grid, order, clip, percdamp, b, maxDampTries);
        }
    }

    /**
     * Quantize W [out][in] against the Hessian H [in][in] (H = XᵀX summed over calibration tokens, or any positive
     * multiple of it: codes do not depend on the scale of H, the loss is in its units).
     */
    public static QuantizedLayer quantize(double[][] w, double[][] h, Options opt) {
        return quantize(w, h, opt, null);
    }

    /**
     * As {@link #quantize(double[][], double[][], Options)}, with the grid given (static, fitted elsewhere: e.g. a
     * scale search); {@code grid == null} fits the min-max/MSE grid of {@code opt.grid()} on W.
     */
    public static QuantizedLayer quantize(double[][] w0, double[][] h0, Options opt, QuantGrid fixedGrid) {
        return quantize(w0, h0, opt, fixedGrid, DenseKernels.get());
    }

    /**
     * As {@link #quantize(double[][], double[][], Options, QuantGrid)}, with the dense kernels given (the contract
     * test runs every available implementation through the same identities).
     */
    public static QuantizedLayer quantize(double[][] w0, double[][] h0, Options opt, QuantGrid fixedGrid,
                                          DenseKernels kernels) {
        long t0 = System.nanoTime();
        Prepared p = prepare(w0, h0, opt, fixedGrid);
        double[][] w = p.w();
        double[][] h = p.h();
        QuantGrid grid = p.grid();
        int[] perm = p.perm();
        LayerReport rep = p.report();
        int rows = w.length;
        int n = w[0].length;

        int[][] codes = new int[rows][n];
        double[][] dq = new double[rows][n];
        switch (opt.method()) {
            case GPTQ -> {
                DampedFactor.Flat f = DampedFactor.flat(h, perm, opt.percdamp(), opt.maxDampTries(), kernels);
                record(rep, f.percdamp(), f.lambda(), f.attempts(), f.traceD());
                sweep(w, f, perm, grid, opt.clip(), opt.blockSize(), codes, dq, rep, kernels);
            }
            case BABAI -> {
                DampedFactor.Lower lo = DampedFactor.choleskyBabaiOrder(h, perm, opt.percdamp(), opt.maxDampTries(),
                        kernels);
                BabaiNearestPlane babai = BabaiNearestPlane.fromCholesky(lo.l(), perm);
                record(rep, lo.percdamp(), lo.lambda(), lo.attempts(), babai.traceD());
                double[][] wf = w;
                IntStream.range(0, rows).parallel().forEach(r -> {
                    BabaiNearestPlane.Row res = babai.solveRow(wf[r], grid, r, opt.clip());
                    codes[r] = res.codes();
                    rep.rowLoss[r] = res.loss();
                    rep.rowBound[r] = res.bound();
                    rep.rowClipped[r] = res.clipped();
                    for (int j = 0; j < n; j++) {
                        dq[r][j] = QuantGrid.dequantize(codes[r][j], grid.scale(r, j), grid.zero(r, j));
                    }
                });
            }
            case RTN -> {
                DampedFactor.Flat f = DampedFactor.flat(h, perm, opt.percdamp(), opt.maxDampTries(), kernels);
                record(rep, f.percdamp(), f.lambda(), f.attempts(), f.traceD());
                roundToNearest(w, h, f, perm, grid, opt.clip(), codes, dq, rep, kernels);
            }
            default -> throw new AssertionError(opt.method());
        }
        rep.bitsPerWeight = checkpointBitsPerWeight(rows, n, grid, opt.order() != ColumnOrder.NATURAL);
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        return new QuantizedLayer(codes, grid, perm, dq, rep);
    }

    /**
     * What every solver (this class's and a device backend's) does before its sweep: the checks, dead inputs, the grid,
     * the processing order and the report's fixed fields. {@code w}/{@code h} are the inputs, or copies when there
     * are dead inputs (H_jj = 0, the column never fired: as GPTQ, H_jj = 1 and W[:, j] = 0; the inputs are only read).
     */
    public record Prepared(double[][] w, double[][] h, QuantGrid grid, int[] perm, LayerReport report) {}

    /** See {@link Prepared}; {@code fixedGrid == null} fits the grid of {@code opt.grid()} on W. */
    public static Prepared prepare(double[][] w0, double[][] h0, Options opt, QuantGrid fixedGrid) {
        Validation.weights(w0, "W");
        Validation.hessian(h0, w0[0].length);
        int rows = w0.length;
        int n = w0[0].length;
        double[][] w = w0;
        double[][] h = h0;
        int dead = 0;
        for (int j = 0; j < n; j++) {
            if (h0[j][j] == 0) {
                if (dead++ == 0) {
                    w = Dense.copy(w0);
                    h = Dense.copy(h0);
                }
                h[j][j] = 1;
                for (double[] row : w) {
                    row[j] = 0;
                }
            }
        }
        QuantGrid grid = fixedGrid != null ? fixedGrid : QuantGrid.fit(w, opt.grid());
        if (grid.rows != rows || grid.cols != n) {
            throw new IllegalArgumentException("grid is " + grid.rows + "x" + grid.cols + " but W is " + rows + "x" + n);
        }
        int[] perm = permutation(h, opt);
        LayerReport rep = new LayerReport();
        rep.method = opt.method();
        rep.order = opt.order();
        rep.bits = grid.bits;
        rep.groupSize = opt.grid().groupSize();
        rep.sym = opt.grid().sym();
        rep.mse = opt.grid().mse();
        rep.clip = opt.clip();
        rep.rows = rows;
        rep.cols = n;
        rep.deadColumns = dead;
        rep.percdampRequested = opt.percdamp();
        rep.rowLoss = new double[rows];
        rep.rowBound = new double[rows];
        rep.rowClipped = new int[rows];
        return new Prepared(w, h, grid, perm, rep);
    }

    private static void record(LayerReport rep, double percdamp, double lambda, int attempts, double traceD) {
        rep.percdampUsed = percdamp;
        rep.lambda = lambda;
        rep.dampAttempts = attempts;
        rep.traceD = traceD;
    }

    /** The order, with min-pivot run on H + λI at the same escalating damping as the factorisation. */
    private static int[] permutation(double[][] h, Options opt) {
        if (opt.order() != ColumnOrder.MIN_PIVOT) {
            return opt.order().permutation(h, 0);
        }
        double mean = 0;
        for (int j = 0; j < h.length; j++) {
            mean += h[j][j];
        }
        mean /= h.length;
        double pd = opt.percdamp();
        for (int t = 0; t < opt.maxDampTries(); t++, pd *= 10) {
            try {
                return ColumnOrder.MIN_PIVOT.permutation(h, pd * mean);
            } catch (ArithmeticException notPd) {
                // escalate, as the factorisation will
            }
        }
        throw new NotPositiveDefiniteException("min-pivot order: Hessian is not positive definite even with damping "
                + pd / 10 + " × mean(diag H)");
    }

    /** Rows per flat slab of W: one lazy update covers a whole slab, and a slab fits one Java array. */
    private static int slabRows(int rows, int n) {
        return (int) Math.max(1, Math.min(rows, MAX_SLAB / n));
    }

    /**
     * The GPTQ column sweep over all rows, slab by slab (one slab unless W would pass {@link #MAX_SLAB} elements):
     * see {@link Sweep}.
     */
    private static void sweep(double[][] w, DampedFactor.Flat f, int[] perm, QuantGrid grid, boolean clip, int block,
                              int[][] codes, double[][] dq, LayerReport rep, DenseKernels kernels) {
        int rows = w.length;
        int n = perm.length;
        int[] groupOf = new int[n];
        for (int i = 0; i < n; i++) {
            groupOf[i] = grid.groupOf(perm[i]);
        }
        int slab = slabRows(rows, n);
        for (int r0 = 0; r0 < rows; r0 += slab) {
            new Sweep(w, r0, Math.min(slab, rows - r0), f.u(), n, Math.min(block, n), perm, groupOf, grid, clip,
                    kernels).run(codes, dq, rep);
        }
    }

    /**
     * One slab of rows through the GPTQ sweep. W is held permuted in one flat row-major array, so that the lazy update
     * of everything right of a block is one product over all the slab's rows, {@code W[:, i2:] −= E·U[i1:i2, i2:]}.
     * The block itself is copied into a contiguous panel (rows × block, so that its work does not stride over W's long
     * rows), and there the same lazy idea recurses: columns {@code [c1, c2)} are swept as the left half, then
     * {@code P[:, mid:c2] −= E[:, c1:mid]·U[c1:mid, mid:c2]}, then the right half. That is the column loop's
     * projection regrouped, the same arithmetic moved into products, and only {@link #LEAF}-column strips remain as
     * Java loops (with native kernels; pure-Java products are no faster than the strips, so there a strip is the whole
     * block). A strip runs four rows at a time: each column's quantize-and-divide chain is serial within a row, so
     * independent rows are what keeps a core busy. Results stay in processing order (the quantized value over the
     * consumed weight, the code in {@code cp}) and are scattered to the original order row by row at the end.
     */
    private static final class Sweep {
        private final int r0;
        private final int m;
        private final int n;
        private final int bs;
        /** W, this slab's rows in processing order; column i holds q_i once it has been swept. */
        private final double[] wp;
        /** Codes in processing order. */
        private final int[] cp;
        /** The current block of W, m × bs (leading dimension bs). */
        private final double[] panel;
        /** The current block's codes, m × bs. */
        private final int[] panelCodes;
        /** E of the current block, m × bs. */
        private final double[] err;
        private final double[] u;
        private final int[] perm;
        private final int[] groupOf;
        private final QuantGrid grid;
        private final boolean clip;
        private final DenseKernels kernels;
        /** Strip width. */
        private final int leaf;
        private final double[] loss;
        private final double[] bound;
        private final int[] clipped;
        /** Rows per parallel task. */
        private final int rowsPerTask;

        Sweep(double[][] w, int r0, int m, double[] u, int n, int bs, int[] perm, int[] groupOf, QuantGrid grid,
              boolean clip, DenseKernels kernels) {
            this.r0 = r0;
            this.m = m;
            this.n = n;
            this.bs = bs;
            this.u = u;
            this.perm = perm;
            this.groupOf = groupOf;
            this.grid = grid;
            this.clip = clip;
            this.kernels = kernels;
            this.leaf = kernels instanceof Dense ? bs : LEAF;
            this.wp = new double[m * n];
            this.cp = new int[m * n];
            this.panel = new double[m * bs];
            this.panelCodes = new int[m * bs];
            this.err = new double[m * bs];
            this.loss = new double[m];
            this.bound = new double[m];
            this.clipped = new int[m];
            int perCore = (m + 4 * CORES - 1) / (4 * CORES);
            this.rowsPerTask = Math.max(MIN_ROWS_PER_TASK, (perCore + 3) / 4 * 4);
            IntStream.range(0, m).parallel().forEach(r -> {
                double[] src = w[r0 + r];
                int off = r * n;
                for (int i = 0; i < n; i++) {
                    wp[off + i] = src[perm[i]];
                }
            });
        }

        void run(int[][] codes, double[][] dq, LayerReport rep) {
            int tasks = (m + rowsPerTask - 1) / rowsPerTask;
            for (int i1 = 0; i1 < n; i1 += bs) {
                int b1 = i1;
                int width = Math.min(n, i1 + bs) - i1;
                forRows(tasks, r -> System.arraycopy(wp, r * n + b1, panel, r * bs, width));
                sweepColumns(i1, i1, i1 + width);
                forRows(tasks, r -> {
                    System.arraycopy(panel, r * bs, wp, r * n + b1, width);
                    System.arraycopy(panelCodes, r * bs, cp, r * n + b1, width);
                });
                // lazy batch update of everything right of the block, one product over the slab
                int i2 = i1 + width;
                kernels.gemm(false, false, m, n - i2, width, -1.0, err, 0, bs, u, i1 * n + i2, n, wp, i2, n);
            }
            IntStream.range(0, m).parallel().forEach(r -> {
                int row = r0 + r;
                int[] rowCodes = codes[row];
                double[] rowDq = dq[row];
                int off = r * n;
                for (int i = 0; i < n; i++) {
                    rowCodes[perm[i]] = cp[off + i];
                    rowDq[perm[i]] = wp[off + i];
                }
                rep.rowLoss[row] = loss[r];
                rep.rowBound[row] = bound[r];
                rep.rowClipped[row] = clipped[r];
            });
        }

        /** {@code body} for every row of the slab, {@code tasks} tasks of {@link #rowsPerTask} rows in parallel. */
        private void forRows(int tasks, java.util.function.IntConsumer body) {
            IntStream range = IntStream.range(0, tasks);
            if (tasks > 1) {
                range = range.parallel();
            }
            range.forEach(t -> {
                int end = Math.min(m, (t + 1) * rowsPerTask);
                for (int r = t * rowsPerTask; r < end; r++) {
                    body.accept(r);
                }
            });
        }

        /** Columns {@code [c1, c2)} of the block that starts at {@code i1} (in the panel), every row of the slab. */
        private void sweepColumns(int i1, int c1, int c2) {
            if (c2 - c1 <= leaf) {
                int tasks = (m + rowsPerTask - 1) / rowsPerTask;
                IntStream range = IntStream.range(0, tasks);
                if (tasks > 1) {
                    range = range.parallel();
                }
                range.forEach(t -> {
                    int end = Math.min(m, (t + 1) * rowsPerTask);
                    int r = t * rowsPerTask;
                    for (; r + 3 < end; r += 4) {
                        strip4(r, i1, c1, c2);
                    }
                    for (; r < end; r++) {
                        strip1(r, i1, c1, c2);
                    }
                });
                return;
            }
            int mid = c1 + (c2 - c1) / 2;
            sweepColumns(i1, c1, mid);
            kernels.gemm(false, false, m, c2 - mid, mid - c1, -1.0, err, c1 - i1, bs, u, c1 * n + mid, n,
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
                double d = u[ui + i];
                double e0 = column(r, x0, i, d);
                double e1 = column(r + 1, x1, i, d);
                double e2 = column(r + 2, x2, i, d);
                double e3 = column(r + 3, x3, i, d);
                for (int j = i + 1; j < c2; j++) {
                    double uij = u[ui + j];
                    panel[x0 + j] -= e0 * uij;
                    panel[x1 + j] -= e1 * uij;
                    panel[x2 + j] -= e2 * uij;
                    panel[x3 + j] -= e3 * uij;
                }
            }
        }

        /** Row {@code r} (slab-relative) over columns {@code [c1, c2)}. */
        private void strip1(int r, int i1, int c1, int c2) {
            int x0 = r * bs - i1;
            for (int i = c1; i < c2; i++) {
                int ui = i * n;
                double e0 = column(r, x0, i, u[ui + i]);
                for (int j = i + 1; j < c2; j++) {
                    panel[x0 + j] -= e0 * u[ui + j];
                }
            }
        }

        /**
         * Column i of row r, whose block is at {@code panel[x + i]} (and its error at {@code err[x + i]}),
         * {@code d = U_ii}: the step of the class comment, {@code q = s·(clamp(rint(w̃/s) + z) − z)},
         * {@code e = (w̃ − q)/U_ii}; returns e.
         */
        private double column(int r, int x, int i, double d) {
            int row = r0 + r;
            int g = groupOf[i];
            double s = grid.scale[row][g];
            double z = grid.zero[row][g];
            double xi = panel[x + i];
            double c = QuantGrid.quantizeUnclipped(xi, s, z);
            if (clip && (c < 0 || c > grid.maxq)) {
                c = Math.min(Math.max(c, 0), grid.maxq);
                clipped[r]++;
            }
            double q = QuantGrid.dequantize(c, s, z);
            double ek = (xi - q) / d;
            loss[r] += ek * ek;
            bound[r] += 0.25 * s * s / (d * d);
            panel[x + i] = q;
            panelCodes[x + i] = (int) c;
            err[x + i] = ek;
            return ek;
        }
    }

    /** Columns at most this wide run as per-row loops; wider ranges split in two with a product between. */
    private static final int LEAF = 32;
    private static final int CORES = Runtime.getRuntime().availableProcessors();

    /** RTN on the same grid; its loss is measured directly as (q−w)ᵀ(H+λI)(q−w). */
    private static void roundToNearest(double[][] w, double[][] h, DampedFactor.Flat f, int[] perm, QuantGrid grid,
                                       boolean clip, int[][] codes, double[][] dq, LayerReport rep,
                                       DenseKernels kernels) {
        int rows = w.length;
        int n = h.length;
        IntStream.range(0, rows).parallel().forEach(r -> {
            int clipped = 0;
            for (int j = 0; j < n; j++) {
                double s = grid.scale(r, j);
                double z = grid.zero(r, j);
                double c = QuantGrid.quantizeUnclipped(w[r][j], s, z);
                if (clip && (c < 0 || c > grid.maxq)) {
                    c = Math.min(Math.max(c, 0), grid.maxq);
                    clipped++;
                }
                codes[r][j] = (int) c;
                dq[r][j] = QuantGrid.dequantize(c, s, z);
            }
            rep.rowClipped[r] = clipped;
            for (int i = 0; i < n; i++) {
                double d = f.u(i, i);
                double s = grid.scale(r, perm[i]);
                rep.rowBound[r] += 0.25 * s * s / (d * d);
            }
        });
        // loss_r = δ_r ᵀ (H + λI) δ_r with δ = Q − W: per slab of rows, δ·H as products over panels of H's rows
        int slab = slabRows(rows, n);
        int panel = Math.max(1, Math.min(n, (1 << 20) / n));
        double[] hPanel = new double[panel * n];
        for (int s0 = 0; s0 < rows; s0 += slab) {
            int m = Math.min(slab, rows - s0);
            double[] delta = new double[m * n];
            for (int r = 0; r < m; r++) {
                for (int j = 0; j < n; j++) {
                    delta[r * n + j] = dq[s0 + r][j] - w[s0 + r][j];
                }
            }
            double[] dh = new double[m * n];
            for (int p0 = 0; p0 < n; p0 += panel) {
                int k = Math.min(panel, n - p0);
                for (int p = 0; p < k; p++) {
                    System.arraycopy(h[p0 + p], 0, hPanel, p * n, n);
                }
                kernels.gemm(false, false, m, n, k, 1.0, delta, p0, n, hPanel, 0, n, dh, 0, n);
            }
            for (int r = 0; r < m; r++) {
                double s = 0;
                for (int j = 0; j < n; j++) {
                    double dj = delta[r * n + j];
                    s += (dh[r * n + j] + f.lambda() * dj) * dj;
                }
                rep.rowLoss[s0 + r] = s;
            }
        }
    }

    /**
     * Bits per weight of the GPTQ checkpoint layout: int32-packed codes along the input dimension, int32-packed
     * zeros along the output dimension, one fp16 scale per (group, row), and an int32 g_idx per input column when the
     * order is not natural (act-order checkpoints store it).
     */
    public static double checkpointBitsPerWeight(int rows, int cols, QuantGrid grid, boolean gIdx) {
        long codeWords = ((long) cols * grid.bits + 31) / 32 * rows;
        long zeroWords = (long) grid.groups() * (((long) rows * grid.bits + 31) / 32);
        long scaleBits = (long) grid.groups() * rows * 16;
        long bits = 32 * (codeWords + zeroWords) + scaleBits + (gIdx ? 32L * cols : 0);
        return (double) bits / ((double) rows * cols);
    }

    /** Relative output error ‖Xe·Wᵀ − Xe·Qᵀ‖_F / ‖Xe·Wᵀ‖_F on held-out inputs Xe [tokens][in]. */
    public static double relativeOutputError(double[][] xe, double[][] w, double[][] q) {
        if (xe[0].length != w[0].length) {
            throw new BadInputException("eval inputs have " + xe[0].length + " columns but W has " + w[0].length
                    + " input columns");
        }
        double[] numDen = IntStream.range(0, w.length).parallel().mapToObj(r -> {
            double num = 0;
            double den = 0;
            double[] wr = w[r];
            double[] qr = q[r];
            for (double[] x : xe) {
                double y = 0;
                double yq = 0;
                for (int j = 0; j < wr.length; j++) {
                    y += x[j] * wr[j];
                    yq += x[j] * qr[j];
                }
                num += (y - yq) * (y - yq);
                den += y * y;
            }
            return new double[] {num, den};
        }).reduce(new double[2], (a, b) -> new double[] {a[0] + b[0], a[1] + b[1]});
        return Math.sqrt(numDen[0] / numDen[1]);
    }
}
