package org.babaiquant.core;

import org.junit.jupiter.api.Test;

import java.util.function.UnaryOperator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The self-check every non-CPU backend must pass before selection hands it out. */
class BackendSelfCheckTest {

    /** The CPU backend with its solver's result passed through {@code change}. */
    private static QuantBackend altered(UnaryOperator<QuantizedLayer> change) {
        return new QuantBackend() {
            @Override
            public String name() {
                return "altered";
            }

            @Override
            public String description() {
                return "CPU backend with altered results (test)";
            }

            @Override
            public HessianSum hessian(int n) {
                return CpuBackend.INSTANCE.hessian(n);
            }

            @Override
            public QuantizedLayer quantize(double[][] w, double[][] h, GptqSolver.Options opt, QuantGrid fixedGrid) {
                return change.apply(CpuBackend.INSTANCE.quantize(w, h, opt, fixedGrid));
            }
        };
    }

    @Test
    void theCpuSolverPassesItsOwnCheck() {
        assertEquals("", QuantBackend.Selection.runSelfCheck(altered(q -> q)));
        assertNull(QuantBackend.Selection.selfCheck(CpuBackend.INSTANCE, null));
    }

    @Test
    void oneDifferingCodeIsATieTwoAreABug() {
        // 64 × 256 = 16 384 codes: 1e-4 of them allows one differing code, not two
        String one = QuantBackend.Selection.runSelfCheck(altered(q -> flip(q, 1)));
        String two = QuantBackend.Selection.runSelfCheck(altered(q -> flip(q, 2)));
        assertEquals("", one);
        assertTrue(two.startsWith("2 of 16384 codes differ"), two);
    }

    @Test
    void aWrongLossOrAnExceptionFails() {
        String loss = QuantBackend.Selection.runSelfCheck(altered(q -> {
            q.report().rowLoss[0] *= 1.01;
            return q;
        }));
        assertTrue(loss.contains("0 of 16384 codes differ") && loss.contains("loss off by"), loss);
        String thrown = QuantBackend.Selection.runSelfCheck(altered(q -> {
            throw new IllegalStateException("device lost");
        }));
        assertTrue(thrown.contains("threw") && thrown.contains("device lost"), thrown);
    }

    /** Changes {@code k} codes of row 0 by one step (staying on the grid). */
    private static QuantizedLayer flip(QuantizedLayer q, int k) {
        int[] row = q.codes()[0];
        for (int j = 0; j < k; j++) {
            row[j] = row[j] > 0 ? row[j] - 1 : row[j] + 1;
        }
        return q;
    }
}
