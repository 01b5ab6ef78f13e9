package org.babaiquant;

import org.babaiquant.cli.MiniLmLayer0;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The real all-MiniLM-L6-v2 layer-0 linears, calibrated on Brown-corpus activations, evaluated on held-out Austen
 * activations ({@code data/minilm-l6-v2}, real weights and real inputs).
 */
class MiniLmRealDataTest {
    private static final Path DIR = RealData.miniLm();
    private static final Map<String, double[][]> HESSIANS = new HashMap<>();

    /**
     * The relative eval errors printed by the data's own numpy GPTQ ({@code tools/gptq_check.py}: per-row asym
     * min-max, damp 0.01, natural order, float64), to the four decimals it reports: an independent implementation.
     * Rows: q_proj, o_proj, ffn_up, ffn_down; columns: RTN 4b, GPTQ 4b, RTN 3b, GPTQ 3b.
     */
    private static final Map<String, double[]> NUMPY_REFERENCE = Map.of(
            "q_proj", new double[] {0.1016, 0.0873, 0.2193, 0.1865},
            "o_proj", new double[] {0.1337, 0.0921, 0.2836, 0.1910},
            "ffn_up", new double[] {0.0885, 0.0600, 0.1870, 0.1291},
            "ffn_down", new double[] {0.0700, 0.0445, 0.1290, 0.0868});

    @BeforeAll
    static void hessians() {
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            HESSIANS.computeIfAbsent(lin.site(), s -> {
                float[][] x = Npy.readMatrixF32(lin.calib(DIR));
                return new HessianAccumulator(x[0].length).add(x).hessian();
            });
        }
    }

    private static double evalError(MiniLmLayer0.Linear lin, double[][] w, GptqSolver.Options opt) {
        QuantizedLayer q = GptqSolver.quantize(w, HESSIANS.get(lin.site()), opt);
        return GptqSolver.relativeOutputError(Npy.readMatrix(lin.eval(DIR)), w, q.dequant());
    }

    @Test
    void gptqBeatsRtnOnHeldOutTextForEveryLinearAt3And4Bits() {
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            double[][] w = Npy.readMatrix(lin.weight(DIR));
            for (int bits : new int[] {4, 3}) {
                for (int group : new int[] {-1, 128}) {
                    GptqSolver.Options opt = GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(bits, group, false, false));
                    double rtn = evalError(lin, w, opt.withMethod(Method.RTN));
                    for (ColumnOrder order : new ColumnOrder[] {ColumnOrder.NATURAL, ColumnOrder.ACT_ORDER}) {
                        double gptq = evalError(lin, w, opt.withOrder(order));
                        assertTrue(gptq < rtn, lin.name() + " " + bits + "b g" + group + " " + order
                                + ": GPTQ " + gptq + " ≥ RTN " + rtn);
                    }
                }
            }
        }
    }

    @Test
    void matchesTheIndependentNumpyGptqToItsFourDecimals() {
        for (Map.Entry<String, double[]> e : NUMPY_REFERENCE.entrySet()) {
            MiniLmLayer0.Linear lin = MiniLmLayer0.LINEARS.stream().filter(l -> l.name().equals(e.getKey())).findFirst().orElseThrow();
            double[][] w = Npy.readMatrix(lin.weight(DIR));
            int i = 0;
            for (int bits : new int[] {4, 3}) {
                GptqSolver.Options opt = GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(bits, -1, false, false));
                assertEquals(e.getValue()[i++], evalError(lin, w, opt.withMethod(Method.RTN)), 5e-5, lin.name() + " RTN " + bits);
                assertEquals(e.getValue()[i++], evalError(lin, w, opt), 5e-5, lin.name() + " GPTQ " + bits);
            }
        }
    }

    @Test
    void minPivotTraceDIsNoLargerThanActOrderOnEveryRealHessian() {
        for (Map.Entry<String, double[][]> e : HESSIANS.entrySet()) {
            double[][] w = new double[1][e.getValue().length];
            GptqSolver.Options opt = GptqSolver.Options.defaults();
            double act = GptqSolver.quantize(w, e.getValue(), opt.withOrder(ColumnOrder.ACT_ORDER)).report().traceD;
            double mp = GptqSolver.quantize(w, e.getValue(), opt.withOrder(ColumnOrder.MIN_PIVOT)).report().traceD;
            double nat = GptqSolver.quantize(w, e.getValue(), opt).report().traceD;
            assertTrue(mp <= act, e.getKey() + ": min-pivot tr(D) " + mp + " > act-order " + act);
            assertTrue(act <= nat, e.getKey() + ": act-order tr(D) " + act + " > natural " + nat);
        }
    }

    @Test
    void noClipBabaiBoundHoldsAndGptqEqualsBabaiOnRealLayers() {
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            double[][] w = Npy.readMatrix(lin.weight(DIR));
            GptqSolver.Options opt = GptqSolver.Options.defaults().withClip(false).withOrder(ColumnOrder.MIN_PIVOT)
                    .withGrid(new QuantGrid.Spec(3, 128, false, false));
            QuantizedLayer gptq = GptqSolver.quantize(w, HESSIANS.get(lin.site()), opt);
            QuantizedLayer babai = GptqSolver.quantize(w, HESSIANS.get(lin.site()), opt.withMethod(Method.BABAI));
            assertEquals(0, gptq.report().boundViolations(), lin.name());
            assertEquals(0, babai.report().boundViolations(), lin.name());
            int differ = 0;
            for (int r = 0; r < w.length; r++) {
                for (int j = 0; j < w[0].length; j++) {
                    if (gptq.codes()[r][j] != babai.codes()[r][j]) {
                        differ++;
                    }
                }
            }
            assertEquals(0, differ, lin.name() + ": codes where blocked GPTQ and direct Babai disagree");
            assertEquals(babai.report().loss(), gptq.report().loss(), 1e-9 * babai.report().loss(), lin.name());
        }
    }
}
