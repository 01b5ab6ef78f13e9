package org.babaiquant.serving;

import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;

import java.util.stream.IntStream;

/** The reference serving kernels: plain-Java products on the packed formats, one float64 dot per output. */
final class CpuServingKernels implements ServingKernels {
    static final CpuServingKernels INSTANCE = new CpuServingKernels();

    private CpuServingKernels() {}

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public Linear gptqLinear(PackedGptq layer) {
        return new ReferenceLinear(layer.in(), layer.out()) {
            @Override
            double dot(float[] x, int xOff, int o) {
                return gptqDot(layer, x, xOff, o);
            }
        };
    }

    @Override
    public Linear ssqrLinear(SsqrLayer layer) {
        return new ReferenceLinear(layer.cols(), layer.rows()) {
            @Override
            double dot(float[] x, int xOff, int o) {
                return ssqrDot(layer, x, xOff, o);
            }
        };
    }

    /** y = X·Wᵀ with one float64 dot product per (row of X, output), rounded once to float32. */
    private abstract static class ReferenceLinear implements Linear {
        private final int in;
        private final int out;

        ReferenceLinear(int in, int out) {
            this.in = in;
            this.out = out;
        }

        abstract double dot(float[] x, int xOff, int o);

        @Override
        public int in() {
            return in;
        }

        @Override
        public int out() {
            return out;
        }

        @Override
        public float[] apply(float[] x, int batch) {
            ServingKernels.checkBatch(x, batch, in);
            float[] y = new float[batch * out];
            IntStream.range(0, out).parallel().forEach(o -> {
                for (int b = 0; b < batch; b++) {
                    y[b * out + o] = (float) dot(x, b * in, o);
                }
            });
            return y;
        }

        @Override
        public void close() {
            // heap only
        }
    }

    /** Σ_i x_i·s·(q_i − z) for output o, decoding the checkpoint's bit streams (see {@link GptqPacking}). */
    static double gptqDot(PackedGptq p, float[] x, int xOff, int o) {
        int bits = p.bits();
        int mask = (1 << bits) - 1;
        int out = p.out();
        int zeroWords = out * bits / 32;
        double sum = 0;
        for (int g = 0; g < p.groups(); g++) {
            double s = Half.toFloat(p.scales()[g * out + o]);
            // qzeros row g is a stream along the outputs; v1 stores zero − 1
            int z = (element(p.qzeros(), g * zeroWords, 1, o, bits) + (p.zerosV1() ? 1 : 0)) & mask;
            int i1 = Math.min(p.in(), (g + 1) * p.groupSize());
            for (int i = g * p.groupSize(); i < i1; i++) {
                // qweight column o is a stream along the inputs, one word per row of qweight
                int q = element(p.qweight(), o, out, i, bits);
                sum += x[xOff + i] * (s * (q - z));
            }
        }
        return sum;
    }

    /**
     * Element i of a {@code bits}-wide little-endian bit stream whose words sit at {@code base + w·stride}
     * (w = 0, 1, …), masked.
     */
    static int element(int[] words, int base, int stride, int i, int bits) {
        int bit = i * bits;
        int w = bit >>> 5;
        int shift = bit & 31;
        int v = words[base + w * stride] >>> shift;
        if (shift + bits > 32) { // 3 bits: the element continues in the next word
            v |= words[base + (w + 1) * stride] << (32 - shift);
        }
        return v & ((1 << bits) - 1);
    }

    /** Σ_j x_j·s·(z_j − zero) + Σ_outliers x_col·s·offset for output row o of an SSQR layer. */
    static double ssqrDot(SsqrLayer l, float[] x, int xOff, int o) {
        int cols = l.cols();
        int groups = l.groups();
        double sum = 0;
        for (int j = 0; j < cols; j++) {
            int g = o * groups + j / l.groupSize();
            sum += x[xOff + j] * ((double) Half.toFloat(l.scale()[g]) * (l.codes()[o * cols + j] - l.zero()[g]));
        }
        for (int k = l.rowPtr()[o]; k < l.rowPtr()[o + 1]; k++) {
            int j = l.col()[k];
            int g = o * groups + j / l.groupSize();
            sum += x[xOff + j] * ((double) Half.toFloat(l.scale()[g]) * l.offset()[k]);
        }
        return sum;
    }
}
