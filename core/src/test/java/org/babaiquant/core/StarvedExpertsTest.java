package org.babaiquant.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;

import org.junit.jupiter.api.Test;

/** The starved-expert rule: experts that got 0, 3 and 10 calibration tokens for 32 inputs. */
class StarvedExpertsTest {
    private static final int N = 32;
    private static final int ROWS = 64;
    private static final String EXPERT = "model.layers.3.block_sparse_moe.experts.5.w1.weight";
    private static final GptqSolver.Options OPT = new GptqSolver.Options(Method.GPTQ, new QuantGrid.Spec(4, -1, false, false),
            ColumnOrder.ACT_ORDER, true, 0.01, 128, 6);

    @Test
    void expertsAreRecognisedByTheirNumberedExpertsSegment() {
        assertTrue(StarvedExperts.isExpert(EXPERT));
        assertTrue(StarvedExperts.isExpert("model.layers.0.mlp.experts.63.down_proj.weight"));
        assertFalse(StarvedExperts.isExpert("model.layers.0.mlp.shared_experts.down_proj.weight"));
        assertFalse(StarvedExperts.isExpert("model.layers.0.mlp.shared_expert.up_proj.weight"));
        assertFalse(StarvedExperts.isExpert("model.layers.0.block_sparse_moe.gate.weight"));
        assertFalse(StarvedExperts.isExpert("model.layers.0.mlp.down_proj.weight"));
    }

    @Test
    void theRuleDependsOnTokensAgainstInputs() {
        StarvedExperts.Plan p0 = StarvedExperts.plan(EXPERT, 0, N, StarvedExperts.Rule.DAMP, 0.01);
        assertEquals("identity", p0.applied());
        assertTrue(p0.identityHessian());
        assertEquals(OPT, StarvedExperts.apply(p0, OPT), "the method runs as asked, on H = I");

        StarvedExperts.Plan p3 = StarvedExperts.plan(EXPERT, 3, N, StarvedExperts.Rule.DAMP, 0.01);
        assertEquals("damp", p3.applied());
        assertEquals(Method.GPTQ, StarvedExperts.apply(p3, OPT).method());
        assertEquals(29.0 / 3, StarvedExperts.apply(p3, OPT).percdamp(), 0);
        assertFalse(p3.identityHessian());

        StarvedExperts.Plan p10 = StarvedExperts.plan(EXPERT, 10, N, StarvedExperts.Rule.DAMP, 0.01);
        assertEquals(22.0 / 10, p10.damp(), 1e-15);

        StarvedExperts.Plan r3 = StarvedExperts.plan(EXPERT, 3, N, StarvedExperts.Rule.RTN, 0.01);
        assertEquals("rtn", r3.applied());
        assertEquals(Method.RTN, StarvedExperts.apply(r3, OPT).method());
        assertFalse(r3.identityHessian(), "with tokens, RTN's loss is measured on the expert's own H");

        assertEquals("none", StarvedExperts.plan(EXPERT, N, N, StarvedExperts.Rule.DAMP, 0.01).applied());
        assertEquals(OPT, StarvedExperts.apply(StarvedExperts.plan(EXPERT, 40, N, StarvedExperts.Rule.DAMP, 0.01), OPT));
        assertEquals("none", StarvedExperts.plan("model.layers.0.mlp.down_proj.weight", 3, N, StarvedExperts.Rule.DAMP, 0.01).applied(),
                "dense layers keep GPTQ's behaviour");
        // a requested damping above the escalation is kept
        assertEquals(50.0, StarvedExperts.plan(EXPERT, 3, N, StarvedExperts.Rule.DAMP, 50).damp(), 0);
        assertThrows(IllegalArgumentException.class, () -> StarvedExperts.escalatedDamping(0, N));
        assertThrows(IllegalArgumentException.class, () -> StarvedExperts.escalatedDamping(N, N));
        assertEquals(StarvedExperts.Rule.RTN, StarvedExperts.Rule.parse("RTN"));
        assertThrows(IllegalArgumentException.class, () -> StarvedExperts.Rule.parse("skip"));
    }

    /** With no token H = 0: GPTQ's dead-column rule zeroes the whole expert; on H = I it rounds W to nearest instead. */
    @Test
    void anExpertWithNoTokenIsRoundedToNearestNotZeroed() {
        double[][] w = weights(new Random(0));
        double[][] zeroH = new double[N][N];
        QuantizedLayer plain = GptqSolver.quantize(w, zeroH, OPT);
        for (double[] row : plain.dequant()) {
            assertTrue(Arrays.stream(row).allMatch(v -> v == 0), "the failure the rule exists for: every input is dead");
        }
        StarvedExperts.Plan p = StarvedExperts.plan(EXPERT, 0, N, StarvedExperts.Rule.DAMP, 0.01);
        assertTrue(p.identityHessian());
        QuantizedLayer q = GptqSolver.quantize(w, StarvedExperts.identity(N), StarvedExperts.apply(p, OPT));
        QuantizedLayer rtn = GptqSolver.quantize(w, StarvedExperts.identity(N), OPT.withMethod(Method.RTN).withOrder(ColumnOrder.NATURAL));
        for (int r = 0; r < ROWS; r++) {
            assertArrayEquals(rtn.codes()[r], q.codes()[r]);
            for (int j = 0; j < N; j++) {
                double s = q.grid().scale(r, j);
                assertTrue(Math.abs(q.dequant()[r][j] - w[r][j]) <= s / 2 + 1e-12, "nearest grid point at " + r + "," + j);
            }
        }
        assertEquals(0, q.report().deadColumns);
    }

    /**
     * With 3 and 10 tokens for 32 inputs, plain GPTQ (1% damping) fits the few tokens and errs on other tokens of the
     * same expert; the escalated damping does better on those held-out tokens, in every one of five seeded draws.
     */
    @Test
    void escalatedDampingBeatsPlainGptqOnTheExpertsHeldOutTokens() {
        for (int tokens : new int[] {3, 10}) {
            for (int seed = 0; seed < 5; seed++) {
                Random rnd = new Random(1000 * tokens + seed);
                double[][] w = weights(rnd);
                double[][] x = TestInputs.activations(rnd, tokens + 2000, N);
                double[][] calib = Arrays.copyOfRange(x, 0, tokens);
                double[][] held = Arrays.copyOfRange(x, tokens, x.length);
                double[][] h = new HessianAccumulator(N).add(calib).hessian();
                GptqSolver.Options escalated = StarvedExperts.apply(StarvedExperts.plan(EXPERT, tokens, N, StarvedExperts.Rule.DAMP, 0.01), OPT);
                double plain = GptqSolver.relativeOutputError(held, w, GptqSolver.quantize(w, h, OPT).dequant());
                QuantizedLayer damped = GptqSolver.quantize(w, h, escalated);
                double rule = GptqSolver.relativeOutputError(held, w, damped.dequant());
                double rtn = GptqSolver.relativeOutputError(held, w, GptqSolver.quantize(w, h, OPT.withMethod(Method.RTN)).dequant());
                System.out.printf("tokens %2d seed %d: held-out error plain GPTQ %.5f, escalated damping %.5f, RTN %.5f%n", tokens, seed,
                        plain, rule, rtn);
                assertEquals(escalated.percdamp(), damped.report().percdampUsed, 0, "the report shows the damping used");
                assertTrue(rule < plain, "tokens " + tokens + " seed " + seed + ": " + rule + " vs plain " + plain);
            }
        }
    }

    private static double[][] weights(Random rnd) {
        double[][] w = new double[ROWS][N];
        for (double[] row : w) {
            for (int j = 0; j < N; j++) {
                row[j] = 0.02 * rnd.nextGaussian();
            }
        }
        return w;
    }
}
