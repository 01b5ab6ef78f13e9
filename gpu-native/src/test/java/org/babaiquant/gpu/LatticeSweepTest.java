package org.babaiquant.gpu;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The driving loop's own invariants, on the host twin of the kernels. */
class LatticeSweepTest {
    private final long seed = System.nanoTime();
    private final Random rnd = new Random(seed);

    private double[][] gaussian(int rows, int cols) {
        double[][] m = new double[rows][cols];
        for (double[] r : m) {
            for (int j = 0; j < cols; j++) {
                r[j] = rnd.nextGaussian();
            }
        }
        return m;
    }

    @Test
    void slabsOfRowsChangeNothing() {
        double[][] w = gaussian(23, 150);
        double[][] h = new HessianAccumulator(150).add(gaussian(400, 150)).hessian();
        GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(ColumnOrder.ACT_ORDER)
                .withGrid(new QuantGrid.Spec(4, 32, false, false)).withBlockSize(70);
        QuantizedLayer whole = LatticeSweep.quantize(w, h, opt, null, HostSweep::new, null);
        QuantizedLayer slabs = LatticeSweep.quantize(w, h, opt, null, HostSweep::new, null, 7);
        for (int r = 0; r < w.length; r++) {
            assertArrayEquals(whole.codes()[r], slabs.codes()[r], "seed " + seed + " row " + r);
            assertArrayEquals(whole.dequant()[r], slabs.dequant()[r], "seed " + seed + " row " + r);
        }
        assertArrayEquals(whole.report().rowLoss, slabs.report().rowLoss);
        assertArrayEquals(whole.report().rowBound, slabs.report().rowBound);
    }

    @Test
    void blockSizeChangesNoCodeAndTheUpdateFlopsAreCounted() {
        int m = 9;
        int n = 200;
        double[][] w = gaussian(m, n);
        double[][] h = new HessianAccumulator(n).add(gaussian(500, n)).hessian();
        GptqSolver.Options opt = GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(3, -1, false, false));
        QuantizedLayer ref = GptqSolver.quantize(w, h, opt);
        for (int bs : new int[] {1, 32, 33, 128, 200, 500}) {
            LatticeSweep.Stats[] st = new LatticeSweep.Stats[1];
            QuantizedLayer q = LatticeSweep.quantize(w, h, opt.withBlockSize(bs), null, HostSweep::new, st);
            Parity.Layers p = Parity.layers(ref, q);
            assertEquals(0, p.differing(), "seed " + seed + " block " + bs + ": " + p);
            // every pair (k, j > k) is updated exactly once, by a strip or by a product: 2·m·(products' part)
            double inStrips = 0;
            int b = Math.min(bs, n);
            for (int i1 = 0; i1 < n; i1 += b) {
                for (int c1 = i1; c1 < Math.min(n, i1 + b); c1 += SweepKernels.STRIP) {
                    int w0 = Math.min(Math.min(n, i1 + b), c1 + SweepKernels.STRIP) - c1;
                    inStrips += w0 * (w0 - 1) / 2.0;
                }
            }
            assertEquals(2.0 * m * (n * (n - 1) / 2.0 - inStrips), st[0].updateFlops(), 1e-6, "block " + bs);
        }
    }

    @Test
    void theKernelsFactorWithTheCpuSolversDampingInEveryOrder() {
        int n = 90;
        double[][] w = gaussian(6, n);
        // rank 40 < n, shifted down by 2 % of the mean diagonal: percdamp 0.01 fails, 0.1 factorises (attempt 2)
        double[][] h = new HessianAccumulator(n).add(gaussian(40, n)).hessian();
        double mean = 0;
        for (int i = 0; i < n; i++) {
            mean += h[i][i] / n;
        }
        for (int i = 0; i < n; i++) {
            h[i][i] -= 0.02 * mean;
        }
        for (ColumnOrder order : ColumnOrder.values()) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order)
                    .withGrid(new QuantGrid.Spec(4, 30, false, false));
            QuantizedLayer ref = GptqSolver.quantize(w, h, opt);
            QuantizedLayer got = LatticeSweep.quantize(w, h, opt, null, HostSweep::new, null);
            String what = "seed " + seed + " order " + order;
            assertEquals(2, ref.report().dampAttempts, what);
            assertEquals(ref.report().dampAttempts, got.report().dampAttempts, what);
            assertEquals(ref.report().lambda, got.report().lambda, what);
            assertEquals(ref.report().percdampUsed, got.report().percdampUsed, what);
            assertEquals(ref.report().traceD, got.report().traceD, what);
            assertEquals(0, Parity.layers(ref, got).differing(), what);
        }
    }

    @Test
    void onlyGptqRunsOnTheSweep() {
        double[][] w = gaussian(2, 8);
        double[][] h = new HessianAccumulator(8).add(gaussian(20, 8)).hessian();
        assertThrows(IllegalArgumentException.class, () -> LatticeSweep.quantize(w, h, GptqSolver.Options.defaults()
                .withMethod(org.babaiquant.core.Method.RTN), null, HostSweep::new, null));
    }
}
