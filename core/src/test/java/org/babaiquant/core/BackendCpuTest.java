package org.babaiquant.core;

import org.babaiquant.serving.PackedGptq;
import org.babaiquant.serving.ServingKernels;

import org.babaiquant.core.Half;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The CPU backend is the existing core code: its solver is GptqSolver (identical codes and losses), its Hessian is
 * HessianAccumulator (identical sums, also from fp16/bf16 bytes), and its GEMV equals dequantize-then-multiply in
 * float64 from independently unpacked codes.
 */
class BackendCpuTest {
    private final long seed = Fixtures.freshSeed();
    private final Random rnd = new Random(seed);

    @Test
    void solverIsGptqSolver() {
        double[][] w = Fixtures.gaussian(rnd, 40, 96, 0.05);
        double[][] h = Fixtures.gram(Fixtures.activations(rnd, 300, 96));
        for (ColumnOrder order : ColumnOrder.values()) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order)
                    .withGrid(new QuantGrid.Spec(3, 32, false, false));
            QuantizedLayer a = GptqSolver.quantize(w, h, opt);
            QuantizedLayer b = QuantBackend.cpu().quantize(w, h, opt, null);
            for (int r = 0; r < w.length; r++) {
                assertArrayEquals(a.codes()[r], b.codes()[r], "seed " + seed + " order " + order + " row " + r);
            }
            assertEquals(a.report().loss(), b.report().loss(), 0.0, "seed " + seed);
        }
    }

    @Test
    void hessianFromFloatsAndRawHalvesIsTheAccumulatorSum() {
        int n = 37;
        int tokens = 101;
        float[] x = new float[tokens * n];
        for (int i = 0; i < x.length; i++) {
            x[i] = Half.round((float) rnd.nextGaussian()); // exactly representable in fp16 and, truncated, bf16
        }
        float[][] rows = new float[tokens][n];
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(x, t * n, rows[t], 0, n);
        }
        double[][] expected = new HessianAccumulator(n).add(rows).hessian();
        try (QuantBackend.HessianSum s = QuantBackend.cpu().hessian(n)) {
            s.add(x, tokens);
            assertEquals(tokens, s.tokens());
            assertArrayEquals(expected, s.toAccumulator().hessian());
        }
        ByteBuffer f16 = ByteBuffer.allocate(3 + 2 * x.length).order(ByteOrder.LITTLE_ENDIAN);
        f16.position(3);
        for (float v : x) {
            f16.putShort(Half.fromFloat(v));
        }
        try (QuantBackend.HessianSum s = QuantBackend.cpu().hessian(n)) {
            s.addRaw(f16.array(), 3, tokens, QuantBackend.ActivationType.F16);
            assertArrayEquals(expected, s.toAccumulator().hessian());
        }
        // bf16 keeps the top 16 bits of a float: decode must give exactly those floats
        ByteBuffer bf = ByteBuffer.allocate(2 * x.length).order(ByteOrder.LITTLE_ENDIAN);
        float[] truncated = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            int bits = Float.floatToRawIntBits(x[i]) & 0xFFFF0000;
            truncated[i] = Float.intBitsToFloat(bits);
            bf.putShort((short) (bits >>> 16));
        }
        assertArrayEquals(truncated, CpuBackend.decode(bf.array(), 0, x.length, QuantBackend.ActivationType.BF16));
        assertThrows(IllegalArgumentException.class, () -> QuantBackend.cpu().hessian(n).add(x, tokens + 1));
    }

    @Test
    void gptqGemvEqualsDequantizeThenMultiplyInFloat64() {
        for (int bits : new int[] {2, 3, 4, 8}) {
            int in = 256;
            int out = 64;
            int gs = 64;
            int[][] codes = new int[out][in];
            int groups = in / gs;
            double[][] scale = new double[out][groups];
            double[][] zero = new double[out][groups];
            for (int o = 0; o < out; o++) {
                for (int i = 0; i < in; i++) {
                    codes[o][i] = rnd.nextInt(1 << bits);
                }
                for (int g = 0; g < groups; g++) {
                    scale[o][g] = Half.round((float) (0.01 + 0.01 * rnd.nextDouble()));
                    zero[o][g] = 1 + rnd.nextInt((1 << bits) - 1);
                }
            }
            QuantGrid grid = QuantGrid.of(bits, gs, in, scale, zero);
            QuantizedLayer q = new QuantizedLayer(codes, grid, null, null, null);
            for (boolean v1 : new boolean[] {false, true}) {
                PackedGptq p = PackedGptq.of(q, v1);
                int[][] back = GptqPacking.unpackQweight(unflatten(p.qweight(), in * bits / 32, out), bits, in);
                for (int batch : new int[] {1, 5, 8}) {
                    float[] x = new float[batch * in];
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) rnd.nextGaussian();
                    }
                    float[] y;
                    try (ServingKernels.Linear lin = ServingKernels.cpu().gptqLinear(p)) {
                        y = lin.apply(x, batch);
                    }
                    for (int b = 0; b < batch; b++) {
                        for (int o = 0; o < out; o++) {
                            double s = 0;
                            for (int i = 0; i < in; i++) {
                                s += x[b * in + i] * QuantGrid.dequantize(back[o][i], grid.scale(o, i), grid.zero(o, i));
                            }
                            assertEquals((float) s, y[b * out + o], 0.0f, "seed " + seed + " bits " + bits + " v1 "
                                    + v1 + " batch " + batch + " output " + o);
                        }
                    }
                }
            }
        }
    }

    @Test
    void gemvRefusesBadBatches() {
        QuantizedLayer q = new QuantizedLayer(new int[8][32], QuantGrid.of(4, 32, 32, new double[8][1],
                new double[8][1]), null, null, null);
        try (ServingKernels.Linear lin = ServingKernels.cpu().gptqLinear(PackedGptq.of(q, false))) {
            assertThrows(IllegalArgumentException.class, () -> lin.apply(new float[0], 0));
            assertThrows(IllegalArgumentException.class, () -> lin.apply(new float[9 * 32], 9));
            assertThrows(IllegalArgumentException.class, () -> lin.apply(new float[31], 1));
        }
    }

    private static int[][] unflatten(int[] f, int rows, int cols) {
        int[][] m = new int[rows][cols];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(f, r * cols, m[r], 0, cols);
        }
        return m;
    }
}
