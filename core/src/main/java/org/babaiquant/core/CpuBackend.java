package org.babaiquant.core;

import org.babaiquant.io.SafeTensors;
import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.stream.IntStream;

/**
 * The reference backend: the existing core code ({@link HessianAccumulator}, {@link GptqSolver}) and plain-Java
 * products on the packed formats, in float64. Every other backend is checked against this one.
 */
public final class CpuBackend implements QuantBackend {
    static final CpuBackend INSTANCE = new CpuBackend();

    private CpuBackend() {}

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String description() {
        return "cpu: " + Runtime.getRuntime().availableProcessors() + " cores, dense kernels "
                + DenseKernels.get().description();
    }

    // ---- Hessian --------------------------------------------------------------------------------------------------

    @Override
    public HessianSum hessian(int n) {
        return new CpuHessianSum(new HessianAccumulator(n));
    }

    private static final class CpuHessianSum implements HessianSum {
        private final HessianAccumulator acc;

        CpuHessianSum(HessianAccumulator acc) {
            this.acc = acc;
        }

        @Override
        public int dim() {
            return acc.dim();
        }

        @Override
        public long tokens() {
            return acc.tokens();
        }

        @Override
        public void add(float[] x, int tokens) {
            int n = acc.dim();
            checkTile(x.length, tokens, n);
            float[][] rows = new float[tokens][];
            for (int t = 0; t < tokens; t++) {
                rows[t] = java.util.Arrays.copyOfRange(x, t * n, (t + 1) * n);
            }
            acc.add(rows);
        }

        @Override
        public void addRaw(byte[] data, int offset, int tokens, ActivationType type) {
            add(decode(data, offset, tokens * dim(), type), tokens);
        }

        @Override
        public HessianAccumulator toAccumulator() {
            return HessianAccumulator.fromBytes(acc.toBytes());
        }

        @Override
        public void close() {
            // heap only: nothing to release
        }
    }

    /** Checks that a flat tile holds exactly {@code tokens} rows of n values. */
    static void checkTile(long length, int tokens, int n) {
        if (tokens < 0 || length != (long) tokens * n) {
            throw new IllegalArgumentException("activation tile has " + length + " values, expected " + tokens
                    + " tokens × " + n);
        }
    }

    /**
     * {@code count} little-endian values of {@code type} from {@code data[offset..]} as float32 (exact: fp16 and bf16
     * are subsets of float32).
     */
    public static float[] decode(byte[] data, int offset, int count, ActivationType type) {
        long need = (long) count * type.bytes;
        if (offset < 0 || count < 0 || offset + need > data.length) {
            throw new IllegalArgumentException("activation tile of " + count + " " + type + " values at offset "
                    + offset + " does not fit " + data.length + " bytes");
        }
        ByteBuffer b = ByteBuffer.wrap(data, offset, (int) need).order(ByteOrder.LITTLE_ENDIAN);
        float[] x = new float[count];
        for (int i = 0; i < count; i++) {
            x[i] = switch (type) {
                case F32 -> b.getFloat();
                case F16 -> Half.toFloat(b.getShort());
                case BF16 -> Half.bf16ToFloat(b.getShort());
            };
        }
        return x;
    }

    // ---- solver ---------------------------------------------------------------------------------------------------

    @Override
    public QuantizedLayer quantize(double[][] w, double[][] h, GptqSolver.Options opt, QuantGrid fixedGrid) {
        return GptqSolver.quantize(w, h, opt, fixedGrid);
    }

    // ---- GEMV -----------------------------------------------------------------------------------------------------

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
            checkBatch(x, batch, in);
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

    /** Checks a GEMV input: batch in 1..{@value QuantBackend#MAX_BATCH}, {@code x.length == batch·in}. */
    public static void checkBatch(float[] x, int batch, int in) {
        if (batch < 1 || batch > MAX_BATCH) {
            throw new IllegalArgumentException("batch must be in 1.." + MAX_BATCH + ", got " + batch);
        }
        if (x.length != (long) batch * in) {
            throw new IllegalArgumentException("x has " + x.length + " values, expected batch " + batch + " × in "
                    + in);
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
