package org.babaiquant.serving;

import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;

import java.util.stream.IntStream;

/**
 * Float64 references for the GEMV parity criterion {@code max |Δy| / Σ|x·w| ≤ 1e-5}: per (batch row, output) the
 * product {@code Σ_i x_i·w_i} and its magnitude {@code Σ_i |x_i·w_i|}, straight from the stored formats (the same
 * decoding as the CPU serving kernels). Results are {@code [batch][out]} row-major.
 */
public final class ServingReference {
    private ServingReference() {}

    /** A product and its magnitude. */
    public record Products(double[] y, double[] abs) {
        /** {@code max_i |got_i − y_i| / abs_i} (0/0 counts as 0). */
        public double maxRelative(float[] got) {
            double worst = 0;
            for (int i = 0; i < y.length; i++) {
                double d = Math.abs(got[i] - y[i]);
                if (d > 0) {
                    worst = Math.max(worst, abs[i] > 0 ? d / abs[i] : Double.POSITIVE_INFINITY);
                }
            }
            return worst;
        }
    }

    /** A GPTQ checkpoint layer; {@code gIdx} null for {@code i / groupSize}. */
    public static Products gptq(PackedGptq p, int[] gIdx, float[] x, int batch) {
        int in = p.in();
        int out = p.out();
        int bits = p.bits();
        int mask = (1 << bits) - 1;
        int zeroWords = out * bits / 32;
        double[] y = new double[batch * out];
        double[] abs = new double[batch * out];
        IntStream.range(0, out).parallel().forEach(o -> {
            for (int i = 0; i < in; i++) {
                int g = gIdx == null ? i / p.groupSize() : gIdx[i];
                double s = Half.toFloat(p.scales()[g * out + o]);
                int z = (CpuServingKernels.element(p.qzeros(), g * zeroWords, 1, o, bits) + (p.zerosV1() ? 1 : 0)) & mask;
                double w = s * (CpuServingKernels.element(p.qweight(), o, out, i, bits) - z);
                for (int b = 0; b < batch; b++) {
                    double v = x[b * in + i] * w;
                    y[b * out + o] += v;
                    abs[b * out + o] += Math.abs(v);
                }
            }
        });
        return new Products(y, abs);
    }

    /** An SSQR layer: dense codes plus CSR outliers. */
    public static Products ssqr(SsqrLayer l, float[] x, int batch) {
        int cols = l.cols();
        int out = l.rows();
        int groups = l.groups();
        double[] y = new double[batch * out];
        double[] abs = new double[batch * out];
        IntStream.range(0, out).parallel().forEach(o -> {
            for (int j = 0; j < cols; j++) {
                int g = o * groups + j / l.groupSize();
                add(y, abs, x, batch, cols, out, o, j, Half.toFloat(l.scale()[g]) * (double) (l.codes()[o * cols + j] - l.zero()[g]));
            }
            for (int k = l.rowPtr()[o]; k < l.rowPtr()[o + 1]; k++) {
                int j = l.col()[k];
                add(y, abs, x, batch, cols, out, o, j, Half.toFloat(l.scale()[o * groups + j / l.groupSize()]) * (double) l.offset()[k]);
            }
        });
        return new Products(y, abs);
    }

    private static void add(double[] y, double[] abs, float[] x, int batch, int in, int out, int o, int j, double w) {
        for (int b = 0; b < batch; b++) {
            double v = x[b * in + j] * w;
            y[b * out + o] += v;
            abs[b * out + o] += Math.abs(v);
        }
    }
}
