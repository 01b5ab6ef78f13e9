package org.babaiquant.core;

import org.babaiquant.BadInputException;

import java.util.stream.IntStream;

/**
 * GPTQ, blocked with lazy updates, as Babai's nearest-plane algorithm (Chen et al., "The Geometry of LLM
 * Quantization: GPTQ as Babai's Nearest Plane Algorithm", arXiv 2507.18553). Also RTN and Babai on the same grid,
 * so that every method shares the validation, the dead-column rule, the damping and the report.
 *
 * <p>Weights W are [out, in] (nn.Linear layout), H = XᵀX is [in, in]. For one output row w and processing order P,
 * GPTQ's own statement, with U = GPTQ's {@code Hinv} (upper Cholesky factor of the permuted damped H⁻¹), is
 * <pre>
 *   for k = 0 … n−1:                     (columns in order P)
 *     q_k  = s_k · (clamp(rint(w̃_k/s_k) + z_k, 0, maxq) − z_k)
 *     e_k  = (w̃_k − q_k) / U_kk          loss += e_k²        bound += ¼ s_k²/U_kk²
 *     w̃_j −= e_k · U_kj   for j > k      (projection onto the nearest hyperplane)
 * </pre>
 * It runs here on one Cholesky factor instead of GPTQ's chain (Cholesky, inverse, Cholesky): with J the reversal,
 * {@code Ũ = J·chol(J·(H_P+λI)·J)·J} is upper triangular with {@code H_P + λI = Ũ·Ũᵀ} and {@code U = Ũ⁻¹}, so the
 * step feeds the residuals {@code w − q} forward through Ũ's own entries ({@link NearestPlaneSweep}); the lazy block
 * update becomes a product with residuals, one {@link DenseKernels#gemm} over all rows. One n³/3 factorisation, no
 * inverse, one n² array (factorised in place by {@link #quantizeInPlace}); for min-pivot the pivoted factorisation
 * that chooses the order is that factor. All arithmetic is float64, whichever kernels run it.
 */
public final class GptqSolver {
    private GptqSolver() {}

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
        Factored setup = setup(w0, h0, opt, fixedGrid, opt.method() == Method.GPTQ, kernels);
        if (opt.method() == Method.GPTQ) {
            return sweep(setup, opt, kernels, t0, new SweepTimings());
        }
        Prepared p = setup.prepared();
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
                DampedFactor.Upper f = DampedFactor.upper(h, perm, opt.percdamp(), opt.maxDampTries(), kernels);
                record(rep, f.percdamp(), f.lambda(), f.attempts(), f.traceD());
                roundToNearest(w, h, f, perm, grid, opt.clip(), codes, dq, rep, kernels);
            }
            default -> throw new AssertionError(opt.method()); // GPTQ returned above
        }
        rep.bitsPerWeight = checkpointBitsPerWeight(rows, n, grid, opt.order() != ColumnOrder.NATURAL);
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        return new QuantizedLayer(codes, grid, perm, dq, rep);
    }

    /**
     * GPTQ with H given flat (row-major n×n, symmetric, both triangles) and consumed: the factor is computed in its
     * memory, so that the caller's array is the only n² one (a 28672-wide H is 6.6 GB). Same codes, loss and report
     * as {@link #quantize(double[][], double[][], Options, QuantGrid, DenseKernels)} on the same H, bit for bit.
     * Only {@link Method#GPTQ}; on return {@code h} holds the factor, not H.
     */
    public static QuantizedLayer quantizeInPlace(double[][] w0, double[] h, Options opt, QuantGrid fixedGrid,
                                                 DenseKernels kernels) {
        if (opt.method() != Method.GPTQ) {
            throw new IllegalArgumentException("the in-place solver runs GPTQ only, not " + opt.method());
        }
        long t0 = System.nanoTime();
        Validation.weights(w0, "W");
        int n = w0[0].length;
        Validation.hessian(h, n);
        double[][] w = w0;
        double[] diag = new double[n];
        int dead = 0;
        for (int j = 0; j < n; j++) {
            if (h[j * n + j] == 0) {
                if (dead++ == 0) {
                    w = Dense.copy(w0);
                }
                h[j * n + j] = 1;
                for (double[] row : w) {
                    row[j] = 0;
                }
            }
            diag[j] = h[j * n + j];
        }
        QuantGrid grid = grid(w, opt, fixedGrid);
        int[] perm;
        DampedFactor.Upper f;
        if (opt.order() == ColumnOrder.MIN_PIVOT) {
            DampedFactor.Pivoted pf = DampedFactor.minPivotInPlace(h, n, opt.percdamp(), opt.maxDampTries(), kernels);
            perm = pf.perm();
            f = pf.factor();
        } else {
            perm = opt.order().fromDiagonal(diag);
            f = DampedFactor.upperInPlace(h, n, perm, opt.percdamp(), opt.maxDampTries(), kernels);
        }
        LayerReport rep = report(opt, grid, w.length, n, dead);
        record(rep, f.percdamp(), f.lambda(), f.attempts(), f.traceD());
        int[][] codes = new int[w.length][n];
        double[][] dq = new double[w.length][n];
        NearestPlaneSweep.run(w, f, perm, grid, opt.clip(), opt.blockSize(), codes, dq, rep, kernels);
        rep.bitsPerWeight = checkpointBitsPerWeight(w.length, n, grid, opt.order() != ColumnOrder.NATURAL);
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
        return setup(w0, h0, opt, fixedGrid, false, DenseKernels.get()).prepared();
    }

    /**
     * {@link Prepared} and the factor {@code Ũ} of the damped, permuted H ({@link DampedFactor#upper}; for min-pivot the
     * pivoted factorisation that chose the order), its damping recorded in the report: everything before a sweep.
     */
    public record Factored(Prepared prepared, DampedFactor.Upper factor) {}

    /**
     * The GPTQ sweep on a {@link #prepareAndFactor} result: what {@link #quantize} runs after it, so that the two phases
     * can be timed apart (the benchmark) with the same codes, loss and report, bit for bit. The prepared W is only
     * read; the factor is only read.
     */
    public static QuantizedLayer sweep(Factored setup, Options opt, DenseKernels kernels) {
        return sweep(setup, opt, kernels, new SweepTimings());
    }

    /** As {@link #sweep(Factored, Options, DenseKernels)}, recording where the time goes in {@code timings}. */
    public static QuantizedLayer sweep(Factored setup, Options opt, DenseKernels kernels, SweepTimings timings) {
        return sweep(setup, opt, kernels, System.nanoTime(), timings);
    }

    private static QuantizedLayer sweep(Factored setup, Options opt, DenseKernels kernels, long t0,
                                        SweepTimings timings) {
        if (opt.method() != Method.GPTQ || setup.factor() == null) {
            throw new IllegalArgumentException("the sweep runs GPTQ on a factor, not " + opt.method());
        }
        Prepared p = setup.prepared();
        double[][] w = p.w();
        int rows = w.length;
        int n = w[0].length;
        // the results' rows allocated (and zeroed, page by page) on every core
        int[][] codes = new int[rows][];
        double[][] dq = new double[rows][];
        IntStream.range(0, rows).parallel().forEach(r -> {
            codes[r] = new int[n];
            dq[r] = new double[n];
        });
        DampedFactor.Upper f = setup.factor();
        LayerReport rep = p.report(); // its damping fields were recorded with the factor
        NearestPlaneSweep.run(w, f, p.perm(), p.grid(), opt.clip(), opt.blockSize(), -1, codes, dq, rep, kernels,
                timings);
        rep.bitsPerWeight = checkpointBitsPerWeight(rows, n, p.grid(), opt.order() != ColumnOrder.NATURAL);
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        return new QuantizedLayer(codes, p.grid(), p.perm(), dq, rep);
    }

    /** See {@link Factored}: what the CPU sweep and a device backend's sweep start from. */
    public static Factored prepareAndFactor(double[][] w0, double[][] h0, Options opt, QuantGrid fixedGrid,
                                            DenseKernels kernels) {
        return setup(w0, h0, opt, fixedGrid, true, kernels);
    }

    private static Factored setup(double[][] w0, double[][] h0, Options opt, QuantGrid fixedGrid, boolean factorise,
                                  DenseKernels kernels) {
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
        QuantGrid grid = grid(w, opt, fixedGrid);
        int[] perm;
        DampedFactor.Upper factor = null;
        if (factorise && opt.order() == ColumnOrder.MIN_PIVOT) {
            DampedFactor.Pivoted pf = DampedFactor.minPivot(h, opt.percdamp(), opt.maxDampTries(), kernels);
            perm = pf.perm();
            factor = pf.factor();
        } else {
            perm = permutation(h, opt);
            if (factorise) {
                factor = DampedFactor.upper(h, perm, opt.percdamp(), opt.maxDampTries(), kernels);
            }
        }
        LayerReport rep = report(opt, grid, rows, n, dead);
        if (factor != null) {
            record(rep, factor.percdamp(), factor.lambda(), factor.attempts(), factor.traceD());
        }
        return new Factored(new Prepared(w, h, grid, perm, rep), factor);
    }

    private static QuantGrid grid(double[][] w, Options opt, QuantGrid fixedGrid) {
        QuantGrid grid = fixedGrid != null ? fixedGrid : QuantGrid.fit(w, opt.grid());
        if (grid.rows != w.length || grid.cols != w[0].length) {
            throw new IllegalArgumentException("grid is " + grid.rows + "x" + grid.cols + " but W is " + w.length + "x"
                    + w[0].length);
        }
        return grid;
    }

    private static LayerReport report(Options opt, QuantGrid grid, int rows, int n, int dead) {
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
        return rep;
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

    /** RTN on the same grid; its loss is measured directly as (q−w)ᵀ(H+λI)(q−w). */
    private static void roundToNearest(double[][] w, double[][] h, DampedFactor.Upper f, int[] perm, QuantGrid grid,
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
                double d = f.ut(i, i); // 1/U_ii
                double s = grid.scale(r, perm[i]);
                rep.rowBound[r] += 0.25 * s * s * (d * d);
            }
        });
        // loss_r = δ_r ᵀ (H + λI) δ_r with δ = Q − W: per slab of rows, δ·H as products over panels of H's rows
        int slab = (int) Math.max(1, Math.min(rows, NearestPlaneSweep.MAX_SLAB / n));
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
