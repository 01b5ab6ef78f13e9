package org.babaiquant.serving;

import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The tensor-core GEMV layout: repacking is lossless (unpack round trip is the identity, every code reads back), and
 * the CPU twin of the kernel's arithmetic on the repacked layout meets the parity bound {@code max |Δy| / Σ|x·w| ≤
 * 1e-5} against the float64 product on the original layout, for 2, 3, 4, 8 bits, groups (natural, act-order
 * {@code g_idx}, uneven groups), sym v1 / asym zero points, batch 1, 2, 4, 8, 16, split-K 1..chunks, odd sizes, and
 * SSQR with CSR outliers.
 */
class TiledLayerTest {
    /** The GEMV parity criterion. */
    static final double PARITY = 1e-5;
    private static final long SEED = System.nanoTime();

    /** A random GPTQ checkpoint layer: codes, zero points (≥ 1 for v1), fp16 scales of mixed magnitude. */
    static PackedGptq randomGptq(Random rnd, int bits, int in, int out, int groupSize, boolean v1) {
        int maxq = (1 << bits) - 1;
        int groups = (in + groupSize - 1) / groupSize;
        int[][] codes = new int[out][in];
        for (int[] row : codes) {
            for (int i = 0; i < in; i++) {
                row[i] = rnd.nextInt(maxq + 1);
            }
        }
        int[][] zeros = new int[groups][out];
        short[] scales = new short[groups * out];
        for (int g = 0; g < groups; g++) {
            for (int o = 0; o < out; o++) {
                zeros[g][o] = v1 ? 1 << (bits - 1) : rnd.nextInt(maxq + 1);
                scales[g * out + o] = Half.fromFloat((float) (0.01 * Math.exp(rnd.nextGaussian())));
            }
        }
        return new PackedGptq(bits, groupSize, in, out, flat(GptqPacking.packQweight(codes, bits)),
                flat(GptqPacking.packQzeros(zeros, bits, v1)), scales, v1);
    }

    static int[] flat(int[][] m) {
        return Arrays.stream(m).flatMapToInt(Arrays::stream).toArray();
    }

    /** Activations with a wide dynamic range (so fp16 hi/lo splitting is exercised), some exact zeros. */
    static float[] randomX(Random rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = rnd.nextInt(50) == 0 ? 0f : (float) (rnd.nextGaussian() * Math.exp(2 * rnd.nextGaussian()));
        }
        return x;
    }

    /** An act-order g_idx: every group exactly groupSize inputs (the last the rest), inputs shuffled. */
    static int[] actOrder(Random rnd, int in, int groupSize) {
        List<Integer> g = new ArrayList<>();
        for (int i = 0; i < in; i++) {
            g.add(i / groupSize);
        }
        java.util.Collections.shuffle(g, rnd);
        return g.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void repackingIsLosslessAndTheTwinMeetsTheParityBound() {
        Random rnd = new Random(SEED);
        // (bits, in, out, group): outputs not a multiple of 16, inputs not of 256, groups not of 16 where packing allows
        int[][] shapes = {{2, 304, 48, 48}, {3, 352, 32, 32}, {4, 352, 40, 32}, {4, 1056, 72, 1056}, {8, 300, 36, 100},
                {4, 64, 8, 64}};
        int cases = 0;
        for (int[] sh : shapes) {
            int bits = sh[0];
            int in = sh[1];
            int out = sh[2];
            int group = sh[3];
            for (boolean v1 : new boolean[] {false, true}) {
                PackedGptq p = randomGptq(rnd, bits, in, out, group, v1);
                int groups = p.groups();
                int[] uneven = new int[in];
                for (int i = 0; i < in; i++) {
                    uneven[i] = rnd.nextInt(groups); // groups of any size, 0 included
                }
                for (int[] gIdx : new int[][] {null, actOrder(rnd, in, group), uneven}) {
                    String what = bits + "-bit " + out + "x" + in + " g" + group + (v1 ? " v1" : " asym")
                            + (gIdx == null ? "" : gIdx == uneven ? " uneven g_idx" : " act-order") + " (seed " + SEED + ")";
                    TiledLayer t = TiledLayer.of(p, gIdx);
                    assertEquals(0, t.kPad() % TiledLayer.CHUNK_K, what);
                    PackedGptq back = t.unpack();
                    assertArrayEquals(p.qweight(), back.qweight(), what + ": qweight round trip");
                    assertArrayEquals(p.qzeros(), back.qzeros(), what + ": qzeros round trip");
                    assertArrayEquals(p.scales(), back.scales(), what + ": scales round trip");
                    assertEquals(p.zerosV1(), back.zerosV1(), what);
                    int[] g = gIdx == null ? TiledLayer.of(p, null).gIdx() : gIdx;
                    assertArrayEquals(g, t.gIdx(), what + ": g_idx round trip");
                    for (int kp = 0; kp < t.kPad(); kp++) {
                        int i = t.perm()[kp];
                        for (int o = 0; o < out; o++) {
                            int want = i < 0 ? 0 : CpuServingKernels.element(p.qweight(), o, out, i, bits);
                            if (t.code(o, kp) != want) {
                                throw new AssertionError(what + ": code (" + o + ", " + kp + ") = " + t.code(o, kp) + ", want " + want);
                            }
                        }
                    }
                    for (int batch : new int[] {1, 2, 4, 8, 16}) {
                        float[] x = randomX(rnd, batch * in);
                        ServingReference.Products ref = ServingReference.gptq(p, gIdx, x, batch);
                        for (int splits : new int[] {1, t.chunks()}) {
                            double rel = ref.maxRelative(t.gemv(x, batch, splits));
                            assertTrue(rel <= PARITY, what + " batch " + batch + " splits " + splits + ": max |Δy|/Σ|x·w| = " + rel);
                            cases++;
                        }
                        if (gIdx == null && batch <= ServingKernels.MAX_BATCH) {
                            // the CPU GEMV on the original layout, rounded once to float32
                            float[] cpu = ServingKernels.cpu().gptqLinear(p).apply(x, batch);
                            double rel = ref.maxRelative(cpu);
                            assertTrue(rel <= PARITY, what + ": the CPU kernel itself " + rel);
                            float[] tw = t.gemv(x, batch, 1);
                            for (int k = 0; k < cpu.length; k++) {
                                assertTrue(Math.abs(cpu[k] - tw[k]) <= 2 * PARITY * ref.abs()[k] + 1e-30,
                                        what + ": twin vs CPU kernel at " + k);
                            }
                        }
                    }
                }
            }
        }
        assertTrue(cases >= 6 * 2 * 3 * 5 * 2, "cases " + cases);
    }

    @Test
    void ssqrDenseCodesPlusOutliersMeetTheParityBound() {
        Random rnd = new Random(SEED + 1);
        for (int bits : new int[] {2, 3, 4, 8}) {
            int rows = 37;
            int cols = 301;
            int group = 64;
            int groups = (cols + group - 1) / group;
            int maxq = (1 << bits) - 1;
            short[] scale = new short[rows * groups];
            int[] zero = new int[rows * groups];
            for (int k = 0; k < scale.length; k++) {
                scale[k] = Half.fromFloat((float) (0.02 * Math.exp(rnd.nextGaussian())));
                zero[k] = rnd.nextInt(maxq + 1);
            }
            int[] codes = new int[rows * cols];
            int[] rowPtr = new int[rows + 1];
            List<Integer> col = new ArrayList<>();
            List<Integer> off = new ArrayList<>();
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < cols; j++) {
                    int z = zero[r * groups + j / group];
                    if (rnd.nextInt(100) == 0) { // ~1 % outliers: dense code = zero point, offset outside the grid
                        codes[r * cols + j] = z;
                        col.add(j);
                        off.add(rnd.nextBoolean() ? maxq - z + 1 + rnd.nextInt(40) : -z - 1 - rnd.nextInt(40));
                    } else {
                        codes[r * cols + j] = rnd.nextInt(maxq + 1);
                    }
                }
                rowPtr[r + 1] = col.size();
            }
            SsqrLayer l = new SsqrLayer(bits, group, rows, cols, scale, zero, codes, rowPtr,
                    col.stream().mapToInt(Integer::intValue).toArray(), off.stream().mapToInt(Integer::intValue).toArray());
            TiledLayer t = TiledLayer.of(l);
            for (int batch : new int[] {1, 2, 4, 8, 16}) {
                float[] x = randomX(rnd, batch * cols);
                ServingReference.Products ref = ServingReference.ssqr(l, x, batch);
                for (int splits = 1; splits <= t.chunks(); splits++) {
                    double rel = ref.maxRelative(t.gemv(x, batch, splits));
                    assertTrue(rel <= PARITY, "SSQR " + bits + "-bit batch " + batch + " splits " + splits + ": " + rel + " (seed " + SEED + ")");
                }
                if (batch <= ServingKernels.MAX_BATCH) {
                    assertTrue(ref.maxRelative(ServingKernels.cpu().ssqrLinear(l).apply(x, batch)) <= PARITY);
                }
            }
            assertThrows(IllegalStateException.class, t::unpack);
        }
    }

    @Test
    void activationsFarOutsideFloat16RangeKeepTheBound() {
        // rows of magnitude 1e-7 .. 1e7: without the per-row power-of-two scaling fp16 would flush or overflow them
        Random rnd = new Random(SEED + 3);
        PackedGptq p = randomGptq(rnd, 4, 512, 48, 128, false);
        TiledLayer t = TiledLayer.of(p, null);
        for (double mag : new double[] {1e-7, 1e-3, 1e5, 1e7}) {
            float[] x = randomX(rnd, 4 * 512);
            for (int i = 0; i < x.length; i++) {
                x[i] *= (float) mag;
            }
            double rel = ServingReference.gptq(p, null, x, 4).maxRelative(t.gemv(x, 4, 2));
            assertTrue(rel <= PARITY, "magnitude " + mag + ": " + rel);
        }
    }

    @Test
    void theParityCheckCanFail() {
        // a layer whose g_idx is ignored (natural groups assumed) must miss the bound: the check is not vacuous
        Random rnd = new Random(SEED + 2);
        PackedGptq p = randomGptq(rnd, 4, 256, 32, 32, false);
        int[] g = actOrder(rnd, 256, 32);
        float[] x = randomX(rnd, 256);
        double rel = ServingReference.gptq(p, g, x, 1).maxRelative(TiledLayer.of(p, null).gemv(x, 1, 1));
        assertTrue(rel > 1e-3, "wrong groups gave " + rel);
        assertThrows(IllegalArgumentException.class, () -> TiledLayer.of(p, new int[255]));
        assertThrows(IllegalArgumentException.class, () -> TiledLayer.of(p, null).gemv(x, 17, 1));
    }
}
