package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.DoubleUnaryOperator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ScaleSearchTest {

    private static ScaleSearch.Outcome<Double> run(DoubleUnaryOperator g, double x0, double slope, double target,
                                                   double band, AtomicInteger calls) {
        return ScaleSearch.smallestMeeting(x -> {
            calls.incrementAndGet();
            return g.applyAsDouble(x);
        }, v -> v, x0, slope, target, band, 1e-9, 60, "test");
    }

    /** Linear cost with the right slope: the first predicted step lands in the band. */
    @Test
    void linearCostIsSolvedInTwoSteps() {
        AtomicInteger calls = new AtomicInteger();
        ScaleSearch.Outcome<Double> o = run(x -> 3 - x, 0, -1, 2.125, 0.005, calls);
        assertTrue(o.inBand());
        assertTrue(o.value() <= 2.125 && o.value() >= 2.12, "value " + o.value());
        assertEquals(2, o.evaluations());
        assertEquals(calls.get(), o.evaluations());
    }

    /** A wrong slope guess (10× off, or the wrong steepness) still converges, within a few more steps. */
    @Test
    void wrongSlopeGuessesStillConverge() {
        for (double slope : new double[] {-0.1, -10}) {
            for (double x0 : new double[] {-20, 0, 20}) {
                AtomicInteger calls = new AtomicInteger();
                ScaleSearch.Outcome<Double> o = run(x -> 5 * Math.exp(-0.7 * x), x0, slope, 0.01, 1e-4, calls);
                assertTrue(o.inBand(), "slope " + slope + " x0 " + x0);
                assertTrue(o.value() <= 0.01 && o.value() >= 0.01 - 1e-4);
                assertTrue(o.evaluations() <= 30, o.evaluations() + " evaluations");
            }
        }
    }

    /**
     * A noisy, non-monotone cost (a staircase with ripples): the search still ends on a point that meets the target
     * next to a point that misses, the invariant that makes it safe.
     */
    @Test
    void nonMonotoneCostEndsOnABracket() {
        DoubleUnaryOperator g = x -> Math.floor(10 * (4 - x)) / 10 + 0.3 * Math.sin(40 * x);
        ScaleSearch.Outcome<Double> o = ScaleSearch.smallestMeeting(g::applyAsDouble, v -> v, 0, -1, 1.0, 1e-6, 1e-9,
                200, "test");
        assertTrue(o.value() <= 1.0);
        assertTrue(o.valueBelow() > 1.0, "the point below misses: " + o.valueBelow());
        assertTrue(o.x() - o.xBelow() <= 1e-9 || o.inBand(), "bracket " + o.xBelow() + " .. " + o.x());
    }

    @Test
    void unreachableTargetIsAClearError() {
        BadInputException e = assertThrows(BadInputException.class, () -> ScaleSearch.smallestMeeting(
                x -> 1.0 + Math.exp(-x), v -> v, 0, -1, 0.9, 0.01, 1e-9, 1000, "widget search"));
        assertTrue(e.getMessage().startsWith("widget search") && e.getMessage().contains("not met"), e.getMessage());
    }
}
