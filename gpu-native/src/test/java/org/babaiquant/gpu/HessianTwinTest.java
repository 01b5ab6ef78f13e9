package org.babaiquant.gpu;

import org.junit.jupiter.api.Test;

import java.math.BigDecimal;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The DMMA Hessian's error contract, on its CPU twin, against exact sums (BigDecimal): every entry within
 * {@code (N + L)·2⁻⁵³·Σ|x_ti·x_tj|}, for float32 inputs of wide dynamic range and for float16/bfloat16-valued inputs,
 * several launch sizes. The bound is tight enough to fail the previous kernel's arithmetic (float32 sums of 8 tokens
 * folded into float64), which the second test shows.
 */
class HessianTwinTest {
    private static final long SEED = System.nanoTime();

    private static float[] inputs(Random rnd, int tokens, int n, String kind) {
        float[] x = new float[tokens * n];
        for (int i = 0; i < x.length; i++) {
            // wide dynamic range; float16's (max 65504, subnormals below 6.1e-5) a little narrower
            float v = (float) (rnd.nextGaussian() * Math.exp((kind.equals("f16") ? 1.5 : 3) * rnd.nextGaussian()));
            x[i] = switch (kind) {
                case "f16" -> org.babaiquant.core.Half.toFloat(org.babaiquant.core.Half.fromFloat(v));
                case "bf16" -> Float.intBitsToFloat(Float.floatToRawIntBits(v) & 0xFFFF0000);
                default -> v;
            };
        }
        return x;
    }

    /** Worst |H − exact| / bound over the upper triangle (> 1 breaks the contract). */
    private static double worst(double[] h, float[] x, int tokens, int n, int launches) {
        double worst = 0;
        for (int i = 0; i < n; i++) {
            for (int j = i; j < n; j++) {
                BigDecimal exact = BigDecimal.ZERO;
                double abs = 0;
                for (int t = 0; t < tokens; t++) {
                    double p = (double) x[t * n + i] * x[t * n + j]; // exact
                    exact = exact.add(new BigDecimal(p));
                    abs += Math.abs(p);
                }
                double err = new BigDecimal(h[i * n + j]).subtract(exact).abs().doubleValue();
                double b = HessianTwin.bound(tokens, launches, abs);
                worst = Math.max(worst, b > 0 ? err / b : err > 0 ? Double.POSITIVE_INFINITY : 0);
            }
        }
        return worst;
    }

    @Test
    void everyEntryIsWithinTheStatedBoundOfTheExactSum() {
        Random rnd = new Random(SEED);
        int n = 19;
        int tokens = 3001;
        for (String kind : new String[] {"f32", "f16", "bf16"}) {
            float[] x = inputs(rnd, tokens, n, kind);
            for (int per : new int[] {tokens, 1024, 97}) {
                int launches = (tokens + per - 1) / per;
                double w = worst(HessianTwin.xtx(x, tokens, n, per), x, tokens, n, launches);
                assertTrue(w <= 1, kind + " per launch " + per + ": error / bound = " + w + " (seed " + SEED + ")");
            }
        }
    }

    @Test
    void theBoundRejectsFloat32Partials() {
        // the previous kernel's arithmetic: products and sums of 8 tokens in float32, then float64 (hessian.cu)
        Random rnd = new Random(SEED + 1);
        int n = 8;
        int tokens = 2048;
        float[] x = inputs(rnd, tokens, n, "f32");
        double[] h = new double[n * n];
        for (int t0 = 0; t0 < tokens; t0 += 8) {
            for (int i = 0; i < n; i++) {
                for (int j = i; j < n; j++) {
                    float s = 0f;
                    for (int t = t0; t < t0 + 8; t++) {
                        s = Math.fma(x[t * n + i], x[t * n + j], s);
                    }
                    h[i * n + j] += s;
                }
            }
        }
        assertTrue(worst(h, x, tokens, n, 1) > 1, "float32 partials must break the float64 contract");
    }
}
