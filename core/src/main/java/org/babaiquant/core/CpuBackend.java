package org.babaiquant.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The reference backend: the existing core code ({@link HessianAccumulator}, {@link GptqSolver}) in float64. Every
 * other backend is checked against this one.
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
            acc.add(x, tokens); // one rank-k update per call, as the caller tiled it
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
        public HessianAccumulator finish() {
            return acc; // heap only: handed over, nothing to release
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
}
