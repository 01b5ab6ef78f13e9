package org.babaiquant.core;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DampingAndBadInputTest {
    private static final GptqSolver.Options OPT = GptqSolver.Options.defaults();

    @Test
    void indefiniteHessianEscalatesDampingAndRecordsIt() {
        // eigenvalues 4 and −2, mean diag 1: λ = 0.01, 0.1, 1 fail, λ = 10 succeeds
        double[][] h = {{1, 3}, {3, 1}};
        QuantizedLayer q = GptqSolver.quantize(new double[][] {{0.3, -0.2}}, h, OPT);
        assertEquals(4, q.report().dampAttempts);
        assertEquals(10.0, q.report().percdampUsed, 1e-12);
        assertEquals(10.0, q.report().lambda, 1e-12);
        assertEquals(0.01, q.report().percdampRequested, 0);
        for (Method m : Method.values()) {
            for (ColumnOrder o : ColumnOrder.values()) {
                assertEquals(10.0, GptqSolver.quantize(new double[][] {{0.3, -0.2}}, h, OPT.withMethod(m).withOrder(o))
                        .report().percdampUsed, 1e-12, m + " " + o);
            }
        }
    }

    @Test
    void rankDeficientRealisticHessianNeedsOnlyTheDefaultDamping() {
        // fewer tokens than columns (like MiniLM's ffn_down: 1024 rows, 1536 columns)
        double[][] h = Fixtures.gram(Fixtures.activations(new Random(2), 40, 100));
        QuantizedLayer q = GptqSolver.quantize(Fixtures.gaussian(new Random(3), 4, 100, 0.1), h, OPT);
        assertEquals(1, q.report().dampAttempts);
    }

    @Test
    void negativeDefiniteHessianIsAClearErrorAfterBoundedTries() {
        double[][] h = {{-1, 0}, {0, -2}};
        NotPositiveDefiniteException e = assertThrows(NotPositiveDefiniteException.class,
                () -> GptqSolver.quantize(new double[][] {{0.3, -0.2}}, h, OPT));
        assertTrue(e.getMessage().contains("< 0"), e.getMessage());
        double[][] h2 = {{1, 0, 5}, {0, 1, 0}, {5, 0, 1}}; // indefinite, diag 1: needs λ > 4 ... escalation bounded
        NotPositiveDefiniteException e2 = assertThrows(NotPositiveDefiniteException.class,
                () -> GptqSolver.quantize(new double[][] {{0.3, -0.2, 0.1}}, h2,
                        new GptqSolver.Options(Method.GPTQ, OPT.grid(), ColumnOrder.NATURAL, true, 0.01, 128, 3)));
        assertTrue(e2.getMessage().contains("3 tries"), e2.getMessage());
    }

    @Test
    void deadColumnsAreHandledAsInGptq() {
        Random rnd = new Random(9);
        double[][] x = Fixtures.activations(rnd, 100, 20);
        for (double[] row : x) {
            row[4] = 0;
            row[11] = 0;
        }
        double[][] w = Fixtures.gaussian(rnd, 6, 20, 0.1);
        QuantizedLayer q = GptqSolver.quantize(w, Fixtures.gram(x), OPT);
        assertEquals(2, q.report().deadColumns);
        for (int r = 0; r < 6; r++) {
            assertEquals(0.0, q.dequant()[r][4], q.grid().scale(r, 4) / 2, "dead column quantizes the zeroed weight");
        }
    }

    @Test
    void allZeroLayerQuantizesToZeroWithZeroLoss() {
        double[][] w = new double[8][16];
        double[][] h = Fixtures.gram(Fixtures.activations(new Random(4), 50, 16));
        for (Method m : Method.values()) {
            QuantizedLayer q = GptqSolver.quantize(w, h, OPT.withMethod(m));
            assertEquals(0.0, q.report().loss(), 0, m.cliName);
            for (double[] row : q.dequant()) {
                for (double v : row) {
                    assertEquals(0.0, v, 0);
                }
            }
        }
    }

    @Test
    void shapesAndNonFiniteValuesAreClearErrors() {
        double[][] h = {{1, 0}, {0, 1}};
        BadInputException shape = assertThrows(BadInputException.class,
                () -> GptqSolver.quantize(new double[][] {{1, 2, 3}}, h, OPT));
        assertTrue(shape.getMessage().contains("2x2") && shape.getMessage().contains("3 input columns"), shape.getMessage());
        BadInputException nan = assertThrows(BadInputException.class,
                () -> GptqSolver.quantize(new double[][] {{1, Double.NaN}}, h, OPT));
        assertTrue(nan.getMessage().contains("[0, 1]"), nan.getMessage());
        assertThrows(BadInputException.class,
                () -> GptqSolver.quantize(new double[][] {{1, 2}}, new double[][] {{1, Double.POSITIVE_INFINITY}, {0, 1}}, OPT));
        assertThrows(BadInputException.class,
                () -> GptqSolver.quantize(new double[][] {{1, 2}}, new double[][] {{1, 0.5}, {0, 1}}, OPT));
        assertThrows(BadInputException.class,
                () -> GptqSolver.quantize(new double[][] {{1, 2}, {3}}, h, OPT));
        assertThrows(BadInputException.class, () -> GptqSolver.quantize(new double[0][], h, OPT));
    }
}
