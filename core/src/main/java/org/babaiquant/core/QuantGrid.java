package org.babaiquant.core;

/**
 * The quantization grid of one weight matrix: a scale and an integer zero point per output row and per group of
 * {@code groupSize} input columns (original column indices: group of column j is {@code j / groupSize}).
 *
 * <p>Grids are fixed before the GPTQ pass ("static groups"): the lattice {@code X·diag(s)} must be known up front
 * for GPTQ to be Babai's algorithm on it. Construction follows the reference quantizer (IST-DASLab {@code quant.py}
 * {@code find_params}): min-max over the group with 0 always inside the range, symmetric or asymmetric, and an
 * optional MSE shrink search (grid 100, max shrink 0.8, norm 2.4). One deliberate difference: a symmetric grid of an
 * all-positive group spans [−max, max] (the reference uses [0, max] with the mid zero point, which cannot represent
 * the group's maximum).
 */
public final class QuantGrid {
    public final int bits;
    public final int maxq;
    /** Columns per group; equals {@code cols} for one group per row ({@code --group-size -1}). */
    public final int groupSize;
    public final int rows;
    public final int cols;
    /** [rows][groups] */
    public final double[][] scale;
    /** [rows][groups], integers */
    public final double[][] zero;

    private QuantGrid(int bits, int groupSize, int rows, int cols, double[][] scale, double[][] zero) {
        this.bits = bits;
        this.maxq = (1 << bits) - 1;
        this.groupSize = groupSize;
        this.rows = rows;
        this.cols = cols;
        this.scale = scale;
        this.zero = zero;
    }

    /** Grid parameters as the user gives them. {@code groupSize = -1}: one group per output row. */
    public record Spec(int bits, int groupSize, boolean sym, boolean mse) implements java.io.Serializable {
        public Spec {
            if (bits < 2 || bits > 8) {
                throw new IllegalArgumentException("bits must be in 2..8, got " + bits);
            }
            if (groupSize == 0 || groupSize < -1) {
                throw new IllegalArgumentException("group size must be -1 (per row) or positive, got " + groupSize);
            }
        }
    }

    public int groups() {
        return scale[0].length;
    }

    /** Group of original column {@code j}. */
    public int groupOf(int j) {
        return j / groupSize;
    }

    public double scale(int row, int col) {
        return scale[row][col / groupSize];
    }

    public double zero(int row, int col) {
        return zero[row][col / groupSize];
    }

    /** Min-max (optionally MSE-refined) grid of {@code w} [rows][cols]. */
    public static QuantGrid fit(double[][] w, Spec spec) {
        int rows = w.length;
        int cols = w[0].length;
        int gs = spec.groupSize() == -1 ? cols : Math.min(spec.groupSize(), cols);
        int groups = (cols + gs - 1) / gs;
        int maxq = (1 << spec.bits()) - 1;
        double[][] scale = new double[rows][groups];
        double[][] zero = new double[rows][groups];
        double[] sz = new double[2];
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < groups; g++) {
                int c0 = g * gs;
                int c1 = Math.min(cols, c0 + gs);
                fitGroup(w[r], c0, c1, maxq, spec.sym(), spec.mse(), sz);
                scale[r][g] = sz[0];
                zero[r][g] = sz[1];
            }
        }
        return new QuantGrid(spec.bits(), gs, rows, cols, scale, zero);
    }

    /** A grid given explicitly (tests, Babai oracle, reading a stored layer). */
    public static QuantGrid of(int bits, int groupSize, int cols, double[][] scale, double[][] zero) {
        int gs = groupSize == -1 ? cols : groupSize;
        return new QuantGrid(bits, gs, scale.length, cols, scale, zero);
    }

    private static void fitGroup(double[] x, int c0, int c1, int maxq, boolean sym, boolean mse, double[] out) {
        double xmin = 0;
        double xmax = 0;
        for (int j = c0; j < c1; j++) {
            xmin = Math.min(xmin, x[j]);
            xmax = Math.max(xmax, x[j]);
        }
        if (sym) {
            // Symmetric means [−xmax, xmax] always. (The reference keeps xmin = 0 for an all-positive group, whose
            // codes then cannot reach its maximum; real weight rows always have both signs, so results agree there.)
            xmax = Math.max(-xmin, xmax);
            xmin = -xmax;
        }
        if (xmin == 0 && xmax == 0) {
            xmin = -1;
            xmax = 1;
        }
        double scale = (xmax - xmin) / maxq;
        double zero = sym ? (maxq + 1) / 2 : Math.rint(-xmin / scale);
        if (mse) {
            double best = Double.POSITIVE_INFINITY;
            for (int i = 0; i < 80; i++) { // maxshrink 0.8 × grid 100
                double p = 1 - i / 100.0;
                double lo = p * xmin;
                double hi = p * xmax;
                double s1 = (hi - lo) / maxq;
                double z1 = sym ? zero : Math.rint(-lo / s1);
                double err = 0;
                for (int j = c0; j < c1; j++) {
                    double q = dequantize(quantize(x[j], s1, z1, maxq), s1, z1) - x[j];
                    err += Math.pow(Math.abs(q), 2.4);
                }
                if (err < best) {
                    best = err;
                    scale = s1;
                    zero = z1;
                }
            }
        }
        out[0] = scale;
        out[1] = zero;
    }

    /**
     * The reference quantizer's {@code quantize}: the integer code {@code clamp(rint(x/scale) + zero, 0, maxq)}.
     * {@code rint} rounds half to even, like {@code torch.round}.
     */
    public static double quantize(double x, double scale, double zero, int maxq) {
        return Math.min(Math.max(Math.rint(x / scale) + zero, 0), maxq);
    }

    /** The unclipped code {@code rint(x/scale) + zero} (no-clip mode: the integer lattice point itself). */
    public static double quantizeUnclipped(double x, double scale, double zero) {
        return Math.rint(x / scale) + zero;
    }

    public static double dequantize(double code, double scale, double zero) {
        return scale * (code - zero);
    }
}
