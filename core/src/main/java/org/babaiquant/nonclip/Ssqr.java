package org.babaiquant.nonclip;

import org.babaiquant.core.Half;
import org.babaiquant.BadInputException;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;

import java.util.Map;

/**
 * SSQR, scale-adjusted SpQR (Chen et al. 2025, §5): GPTQ without clipping on a group grid whose scales are all
 * shrunk or grown by one multiplier, the codes that overflow {@code [0, maxq]} kept exactly as sparse outliers.
 *
 * <p>Why one multiplier: with clipping, an overflowing code is pulled back to the grid's edge and the Babai bound
 * {@code ¼ Σ s_k² D_k} no longer holds; enlarging the scales until nothing overflows keeps the bound but makes it
 * (and the error) larger for every weight. SSQR keeps the scales small, lets GPTQ's error feedback run unclipped, and
 * pays for the few codes that leave the grid by storing them in CSR form; the bound holds for the lattice point, which
 * is exactly what is stored.
 *
 * <p>Procedure: fit the asymmetric MSE grid (the reference quantizer's shrink search), then search a multiplier m
 * ({@link ScaleSearch} on {@code log2 m}, from m = 1) for the smallest m whose outlier density after GPTQ without
 * clipping, on the scales {@code fp16(m·s)} and the original zero points, is at most the target rate r. The search
 * ends with the density in {@code [(1 − band)·r, r]} (default band {@value #DEFAULT_RELATIVE_BAND}) unless it
 * jumps over that band, which {@link Result#inBand()} reports; it always ends on a multiplier meeting the target next
 * to a smaller one that does not. Scales are rounded to fp16 before the GPTQ pass so that the lattice searched is the
 * lattice stored.
 */
public final class Ssqr {
    private Ssqr() {}

    public static final double DEFAULT_RELATIVE_BAND = 0.05;
    public static final int DEFAULT_GROUP_SIZE = 128;
    public static final double DEFAULT_OUTLIER_RATE = 0.01;

    /**
     * @param groupSize    columns per scale, −1 for one per row
     * @param outlierRate  target outlier density r, in (0, 1)
     * @param gptq         order, damping, block size and tries of the GPTQ pass (method, grid and clip are set here)
     * @param relativeBand accepted density range {@code [(1 − band)·r, r]}
     */
    public record Options(int bits, int groupSize, double outlierRate, GptqSolver.Options gptq, double relativeBand,
                          int maxEvals) {
        public Options {
            if (bits < 2 || bits > 8) {
                throw new IllegalArgumentException("SSQR bits must be in 2..8, got " + bits);
            }
            if (groupSize == 0 || groupSize < -1) {
                throw new IllegalArgumentException("group size must be -1 (per row) or positive, got " + groupSize);
            }
            if (!(outlierRate > 0 && outlierRate < 1)) {
                throw new IllegalArgumentException("outlier rate must be in (0, 1), got " + outlierRate);
            }
            if (!(relativeBand > 0 && relativeBand < 1)) {
                throw new IllegalArgumentException("relative band must be in (0, 1), got " + relativeBand);
            }
            if (maxEvals < 2) {
                throw new IllegalArgumentException("max evaluations must be ≥ 2, got " + maxEvals);
            }
        }

        public static Options of(int bits, int groupSize, double outlierRate, GptqSolver.Options gptq) {
            return new Options(bits, groupSize, outlierRate, gptq, DEFAULT_RELATIVE_BAND, 40);
        }
    }

    /**
     * @param bytes          the layer as {@link SsqrFormat} writes it
     * @param lattice        the GPTQ pass (no clipping) at the chosen multiplier; its report's {@code bitsPerWeight}
     *                       is the measured one
     * @param multiplier     m, applied to every MSE scale before fp16 rounding
     * @param multiplierBelow the largest multiplier tried below m that missed the target (NaN if none)
     * @param seconds        wall time of the whole search, grid fit and writing included
     */
    public record Result(SsqrLayer layer, byte[] bytes, QuantizedLayer lattice, double bitsPerWeight,
                         double outlierRate, double multiplier, int evaluations, boolean inBand,
                         double multiplierBelow, double densityBelow, double seconds) {
        public double density() {
            return layer.density();
        }

        /** The lattice report's summary, relabelled, with the measured size and the search. */
        public Map<String, Object> summary() {
            Map<String, Object> m = lattice.report().summary();
            m.put("method", "ssqr");
            m.put("bits_per_weight", bitsPerWeight);
            m.put("bytes", bytes.length);
            m.put("outlier_rate_target", outlierRate);
            m.put("outlier_density", density());
            m.put("outliers", layer.outliers());
            m.put("scale_multiplier", multiplier);
            m.put("search_evaluations", evaluations);
            m.put("search_in_band", inBand);
            m.put("multiplier_below", multiplierBelow);
            m.put("outlier_density_below", densityBelow);
            m.put("last_pass_seconds", lattice.report().seconds);
            m.put("seconds", seconds);
            return m;
        }
    }

    private record Trial(double multiplier, QuantGrid grid, QuantizedLayer lattice, double density) {}

    public static Result quantize(double[][] w, double[][] h, Options opt) {
        long t0 = System.nanoTime();
        int rows = w.length;
        int cols = w[0].length;
        double n = (double) rows * cols;
        QuantGrid.Spec spec = new QuantGrid.Spec(opt.bits(), opt.groupSize(), false, true);
        GptqSolver.Options solver = opt.gptq().withMethod(Method.GPTQ).withClip(false).withGrid(spec);
        // the MSE grid of the weights GPTQ will see: inputs that never fired (H_jj = 0) are zeroed, as the solver does
        double[][] live = new double[rows][];
        for (int r = 0; r < rows; r++) {
            live[r] = w[r].clone();
            for (int j = 0; j < cols; j++) {
                if (h[j][j] == 0) {
                    live[r][j] = 0;
                }
            }
        }
        QuantGrid mse = QuantGrid.fit(live, spec);
        int maxq = mse.maxq;
        // log density: the tail mass of the codes falls roughly exponentially in the multiplier, so the secant works
        // on it; a density of 0 is scored as half a weight so that it stays finite
        double floor = 0.5 / n;

        ScaleSearch.Outcome<Trial> found = ScaleSearch.smallestMeeting(x -> {
            double m = Math.pow(2, x);
            QuantGrid grid = scaled(mse, m);
            QuantizedLayer q = GptqSolver.quantize(w, h, solver, grid);
            long outliers = 0;
            for (int[] row : q.codes()) {
                for (int c : row) {
                    if (c < 0 || c > maxq) {
                        outliers++;
                    }
                }
            }
            return new Trial(m, grid, q, outliers / n);
        }, trial -> Math.log(Math.max(trial.density(), floor)), 0, -5, Math.log(opt.outlierRate()),
                -Math.log(1 - opt.relativeBand()), 1.0 / 4096, opt.maxEvals(), "SSQR multiplier search");

        Trial t = found.result();
        SsqrLayer layer = SsqrLayer.fromLattice(t.lattice().codes(), t.grid());
        byte[] bytes = SsqrFormat.write(layer);
        double bpw = 8.0 * bytes.length / n;
        LayerReport rep = t.lattice().report();
        rep.bitsPerWeight = bpw;
        double below = Double.isNaN(found.xBelow()) ? Double.NaN : Math.pow(2, found.xBelow());
        double densityBelow = Double.isNaN(found.valueBelow()) ? Double.NaN : Math.exp(found.valueBelow());
        return new Result(layer, bytes, t.lattice(), bpw, opt.outlierRate(), t.multiplier(), found.evaluations(),
                found.inBand(), below, densityBelow, (System.nanoTime() - t0) / 1e9);
    }

    /** The MSE grid with every scale multiplied by m and rounded to fp16, zero points unchanged. */
    static QuantGrid scaled(QuantGrid mse, double m) {
        double[][] scale = new double[mse.rows][mse.groups()];
        for (int r = 0; r < mse.rows; r++) {
            for (int g = 0; g < scale[r].length; g++) {
                float s = Half.round((float) (m * mse.scale[r][g]));
                if (!(s > 0) || Float.isInfinite(s)) {
                    throw new BadInputException("SSQR scale " + m + " × " + mse.scale[r][g] + " (row " + r + ", group "
                            + g + ") is outside fp16 (6e-8 … 65504)");
                }
                scale[r][g] = s;
            }
        }
        double[][] zero = new double[mse.rows][];
        for (int r = 0; r < mse.rows; r++) {
            zero[r] = mse.zero[r].clone();
        }
        return QuantGrid.of(mse.bits, mse.groupSize, mse.cols, scale, zero);
    }
}
