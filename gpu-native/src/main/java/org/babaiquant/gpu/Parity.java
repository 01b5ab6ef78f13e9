package org.babaiquant.gpu;

import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.serving.PackedGptq;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;

import java.util.stream.IntStream;

import java.util.Locale;

/**
 * The parity criteria of issue 6, as numbers, shared by the JUnit contract suite and {@link GpuCheck}: one place
 * defines what "equal" means between two backends.
 */
public final class Parity {
    private Parity() {}

    /** Codes allowed to differ (rounding ties decided the other way by a different summation order). */
    public static final double MAX_CODE_DIFF_FRACTION = 1e-4;
    /** Relative difference allowed between the two total losses. */
    public static final double MAX_LOSS_REL = 1e-5;
    /** Hessians: |ΔH_ij| ≤ this · sqrt(H_ii·H_jj) (the entry's Cauchy–Schwarz scale). */
    public static final double MAX_HESSIAN_REL = 1e-6;
    /**
     * GEMV: |Δy| ≤ this · Σ_i |x_i·w_i| (the scale of the sum's rounding). float32 accumulation of the ≤ 1024-input
     * slices and a few hundred partial sums: ~sqrt(terms)·2^-24 in practice, bounded well below 1e-5.
     */
    public static final double MAX_GEMV_REL = 1e-5;

    /** Two quantized layers compared. */
    public record Layers(long codes, long differing, double lossRef, double lossGot, long boundViolationsRef,
                         long boundViolationsGot) {
        public double differingFraction() {
            return codes == 0 ? 0 : (double) differing / codes;
        }

        public double lossRel() {
            return Math.abs(lossGot - lossRef) / Math.max(Math.abs(lossRef), Double.MIN_NORMAL);
        }

        /**
         * Within the criteria: ties &lt; 1e-4 of codes, loss within 1e-5, and the Babai bound broken in no
         * more rows than by the reference (none, for GPTQ without clipping; RTN has no such guarantee).
         */
        public boolean ok() {
            return differingFraction() < MAX_CODE_DIFF_FRACTION && lossRel() <= MAX_LOSS_REL
                    && boundViolationsGot <= boundViolationsRef;
        }

        /** Identical codes and bit-identical loss (CUDA against its host emulation). */
        public boolean exact() {
            return differing == 0 && lossRef == lossGot;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "codes differing %d / %d (%.2e), loss %.10g vs %.10g (rel %.2e)",
                    differing, codes, differingFraction(), lossRef, lossGot, lossRel());
        }
    }

    public static Layers layers(QuantizedLayer ref, QuantizedLayer got) {
        int[][] a = ref.codes();
        int[][] b = got.codes();
        if (a.length != b.length || a[0].length != b[0].length) {
            throw new IllegalArgumentException("layers of different shapes");
        }
        long diff = 0;
        for (int r = 0; r < a.length; r++) {
            for (int j = 0; j < a[r].length; j++) {
                if (a[r][j] != b[r][j]) {
                    diff++;
                }
            }
        }
        return new Layers((long) a.length * a[0].length, diff, ref.report().loss(), got.report().loss(),
                ref.report().boundViolations(), got.report().boundViolations());
    }

    /** max_ij |ΔH_ij| / sqrt(H_ii·H_jj) over the upper triangle; +∞ when the token counts differ. */
    public static double hessian(HessianAccumulator ref, HessianAccumulator got) {
        if (ref.dim() != got.dim() || ref.tokens() != got.tokens()) {
            return Double.POSITIVE_INFINITY;
        }
        double[][] a = ref.hessian();
        double[][] b = got.hessian();
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            for (int j = i; j < a.length; j++) {
                double scale = Math.sqrt(a[i][i] * a[j][j]);
                double d = Math.abs(a[i][j] - b[i][j]);
                worst = Math.max(worst, scale > 0 ? d / scale : d);
            }
        }
        return worst;
    }

    /** max_o |y_ref − y_got| / Σ_i |x_i·w_oi| given that scale per output ({@code absScale}, [batch·out]). */
    public static double gemv(float[] ref, float[] got, double[] absScale) {
        double worst = 0;
        for (int i = 0; i < ref.length; i++) {
            double d = Math.abs((double) ref[i] - got[i]);
            worst = Math.max(worst, absScale[i] > 0 ? d / absScale[i] : d);
        }
        return worst;
    }

    /** Σ_i |x_i·w_oi| per (row of x, output) of a packed GPTQ layer (2/4/8 bits), [batch·out]. */
    public static double[] absScale(PackedGptq p, float[] x, int batch) {
        int bits = p.bits();
        int mask = (1 << bits) - 1;
        int out = p.out();
        int in = p.in();
        int zeroWords = out * bits / 32;
        double[] scale = new double[batch * out];
        IntStream.range(0, out).parallel().forEach(o -> {
            for (int i = 0; i < in; i++) {
                int g = i / p.groupSize();
                int zb = o * bits;
                int z = ((p.qzeros()[g * zeroWords + (zb >>> 5)] >>> (zb & 31) & mask) + (p.zerosV1() ? 1 : 0)) & mask;
                int ib = i * bits;
                int q = p.qweight()[(ib >>> 5) * out + o] >>> (ib & 31) & mask;
                double w = Math.abs(Half.toFloat(p.scales()[g * out + o]) * (double) (q - z));
                for (int b = 0; b < batch; b++) {
                    scale[b * out + o] += Math.abs(x[b * in + i]) * w;
                }
            }
        });
        return scale;
    }

    /** Σ_j |x_j·w_oj| per (row of x, output) of an SSQR layer, [batch·out]. */
    public static double[] absScale(SsqrLayer l, float[] x, int batch) {
        float[] w = l.dequantize();
        int in = l.cols();
        int out = l.rows();
        double[] scale = new double[batch * out];
        IntStream.range(0, out).parallel().forEach(o -> {
            for (int b = 0; b < batch; b++) {
                double s = 0;
                for (int j = 0; j < in; j++) {
                    s += Math.abs((double) x[b * in + j] * w[o * in + j]);
                }
                scale[b * out + o] = s;
            }
        });
        return scale;
    }
}
