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
 * {@code W[:, i2:] −= E · U[i1:i2, i2:]} (GPTQ's lazy batch update); rows are independent, so row chunks run in
 * parallel, each over the whole sweep.
 */
public final class GptqSolver {
    private GptqSolver() {}

    /** Rows per parallel task: a 32-row slice of a 256-column tile plus a 128×256 block of U fit in L2. */
    private static final int ROWS_PER_TASK = 32;

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
        long t0 = System.nanoTime();
        Validation.weights(w0, "W");
        Validation.hessian(h0, w0[0].length);
        int rows = w0.length;
        int n = w0[0].length;

        // Dead inputs (H_jj = 0, the column never fired): as GPTQ, set H_jj = 1 and W[:, j] = 0.
        double[][] w = Dense.copy(w0);
        double[][] h = Dense.copy(h0);
        int dead = 0;
        for (int j = 0; j < n; j++) {
            if (h[j][j] == 0) {
                h[j][j] = 1;
                for (double[] row : w) {
                    row[j] = 0;
                }
                dead++;
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

        int[][] codes = new int[rows][n];
        double[][] dq = new double[rows][n];
        switch (opt.method()) {
            case GPTQ -> {
                DampedFactor f = DampedFactor.of(h, perm, opt.percdamp(), opt.maxDampTries());
                record(rep, f.percdamp, f.lambda, f.attempts, f.traceD);
                sweep(w, f.u, perm, grid, opt.clip(), opt.blockSize(), codes, dq, rep);
            }
            case BABAI -> {
                DampedFactor.Lower lo = DampedFactor.choleskyBabaiOrder(h, perm, opt.percdamp(), opt.maxDampTries());
                BabaiNearestPlane babai = BabaiNearestPlane.fromCholesky(lo.l(), perm);
                record(rep, lo.percdamp(), lo.lambda(), lo.attempts(), babai.traceD());
                IntStream.range(0, rows).parallel().forEach(r -> {
                    BabaiNearestPlane.Row res = babai.solveRow(w[r], grid, r, opt.clip());
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
                DampedFactor f = DampedFactor.of(h, perm, opt.percdamp(), opt.maxDampTries());
                record(rep, f.percdamp, f.lambda, f.attempts, f.traceD);
                roundToNearest(w, h, f, perm, grid, opt.clip(), codes, dq, rep);
            }
            default -> throw new AssertionError(opt.method());
        }
        rep.bitsPerWeight = checkpointBitsPerWeight(rows, n, grid, opt.order() != ColumnOrder.NATURAL);
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        return new QuantizedLayer(codes, grid, perm, dq, rep);
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

    /** The GPTQ column sweep over all rows (row chunks in parallel). */
    private static void sweep(double[][] w, double[][] u, int[] perm, QuantGrid grid, boolean clip, int block,
                              int[][] codes, double[][] dq, LayerReport rep) {
        int rows = w.length;
        int n = perm.length;
        int[] groupOf = new int[n];
        for (int i = 0; i < n; i++) {
            groupOf[i] = grid.groupOf(perm[i]);
        }
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        IntStream.range(0, tasks).parallel().forEach(t -> {
            int r0 = t * ROWS_PER_TASK;
            int r1 = Math.min(rows, r0 + ROWS_PER_TASK);
            int m = r1 - r0;
            // this chunk's rows in processing order
            double[][] wp = new double[m][n];
            for (int r = 0; r < m; r++) {
                double[] src = w[r0 + r];
                for (int i = 0; i < n; i++) {
                    wp[r][i] = src[perm[i]];
                }
            }
            double[][] err = new double[m][block];
            for (int i1 = 0; i1 < n; i1 += block) {
                int i2 = Math.min(n, i1 + block);
                for (int r = 0; r < m; r++) {
                    int row = r0 + r;
                    double[] x = wp[r];
                    double[] e = err[r];
                    double[] scale = grid.scale[row];
                    double[] zero = grid.zero[row];
                    double loss = 0;
                    double bound = 0;
                    int clipped = 0;
                    for (int i = i1; i < i2; i++) {
                        double s = scale[groupOf[i]];
                        double z = zero[groupOf[i]];
                        double c = QuantGrid.quantizeUnclipped(x[i], s, z);
                        if (clip && (c < 0 || c > grid.maxq)) {
                            c = Math.min(Math.max(c, 0), grid.maxq);
                            clipped++;
                        }
                        double q = QuantGrid.dequantize(c, s, z);
                        double[] ui = u[i];
                        double d = ui[i];
                        double ek = (x[i] - q) / d;
                        loss += ek * ek;
                        bound += 0.25 * s * s / (d * d);
                        codes[row][perm[i]] = (int) c;
                        dq[row][perm[i]] = q;
                        e[i - i1] = ek;
                        for (int j = i + 1; j < i2; j++) {
                            x[j] -= ek * ui[j];
                        }
                    }
                    rep.rowLoss[row] += loss;
                    rep.rowBound[row] += bound;
                    rep.rowClipped[row] += clipped;
                }
                // lazy batch update of everything right of the block: W[:, i2:] −= E · U[i1:i2, i2:]
                Dense.gemm(-1.0, wp, 0, i2, err, 0, 0, u, i1, i2, m, n - i2, i2 - i1, Dense.Part.FULL);
            }
        });
    }

    /** RTN on the same grid; its loss is measured directly as (q−w)ᵀ(H+λI)(q−w). */
    private static void roundToNearest(double[][] w, double[][] h, DampedFactor f, int[] perm, QuantGrid grid,
                                       boolean clip, int[][] codes, double[][] dq, LayerReport rep) {
        int rows = w.length;
        int n = h.length;
        double[][] delta = new double[rows][n];
        for (int r = 0; r < rows; r++) {
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
                delta[r][j] = dq[r][j] - w[r][j];
            }
            rep.rowClipped[r] = clipped;
            for (int i = 0; i < n; i++) {
                double d = f.u[i][i];
                double s = grid.scale(r, perm[i]);
                rep.rowBound[r] += 0.25 * s * s / (d * d);
            }
        }
        // loss_r = δ_r ᵀ (H + λI) δ_r: one product (H is symmetric, so δ·H row-major is fine)
        double[][] dh = new double[rows][n];
        Dense.gemm(1.0, dh, 0, 0, delta, 0, 0, h, 0, 0, rows, n, n, Dense.Part.FULL);
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int j = 0; j < n; j++) {
                s += (dh[r][j] + f.lambda * delta[r][j]) * delta[r][j];
            }
            rep.rowLoss[r] = s;
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
