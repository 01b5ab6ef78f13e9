package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;

import java.util.function.DoubleFunction;
import java.util.function.ToDoubleFunction;

/**
 * The one-dimensional search both no-clipping schemes run: find the smallest {@code x} (a log2 scale multiplier)
 * whose cost {@code g(x)} meets a target, {@code g(x) ≤ target}, for a cost that falls as the lattice coarsens
 * (outlier density for SSQR, bits per weight for HPTQ). Smaller scales mean a finer lattice and a smaller Babai bound
 * ({@code ¼ Σ s_k² D_k}), so the smallest admissible x is the best one.
 *
 * <p>It is a bisection with a secant short cut. The invariant is a bracket {@code lo < hi} with
 * {@code g(lo) > target ≥ g(hi)}; each step evaluates a point inside it and keeps the half where the sign change
 * is, so it converges even though g (a count over a GPTQ pass, where every code depends on the ones before it) is
 * not exactly monotone: it always ends on a point that meets the target next to one that does not. The secant step
 * aims at the middle of the acceptance band {@code [target − band, target]}; whenever a step fails to halve the
 * bracket, the next one is a plain bisection, so the worst case is twice the bisection count. Before a bracket
 * exists, steps of the predicted size (from {@code slope}, then from the secant of the last two points) are taken,
 * growing by half after each step that does not cross the target, so a wrong slope costs a few steps, not a failure.
 *
 * <p>It stops when {@code g(hi)} lies in the band (the target is met, and at most {@code band} of it is wasted), when
 * the bracket is narrower than {@code minWidth} (g jumps over the band there: hi is still the smallest point found
 * meeting the target), or after {@code maxEvals} evaluations.
 */
final class ScaleSearch {
    private ScaleSearch() {}

    /** Where the search ended. {@code below*} is the bracket's other end: the nearest point found that misses. */
    record Outcome<R>(R result, double x, double value, double xBelow, double valueBelow, int evaluations,
                      boolean inBand) {}

    /** Farther than 2^±64 from the start no scale makes sense (fp16 and float32 overflow long before). */
    private static final double MAX_TRAVEL = 64;

    static <R> Outcome<R> smallestMeeting(DoubleFunction<R> eval, ToDoubleFunction<R> cost, double x0, double slope,
                                          double target, double band, double minWidth, int maxEvals, String what) {
        if (!(slope < 0)) {
            throw new IllegalArgumentException("slope must be negative, got " + slope);
        }
        double aim = target - band / 2;
        double lo = Double.NaN;
        double glo = Double.NaN;
        double hi = Double.NaN;
        double ghi = Double.NaN;
        R rhi = null;
        double x = x0;
        double prevX = Double.NaN;
        double prevG = Double.NaN;
        double stepScale = 1;
        double widthBefore = Double.POSITIVE_INFINITY;
        boolean forceBisect = false;
        int evals = 0;
        while (true) {
            R r = eval.apply(x);
            double g = cost.applyAsDouble(r);
            evals++;
            if (!Double.isFinite(g)) {
                throw new IllegalStateException(what + ": cost " + g + " at log2 multiplier " + x);
            }
            if (g <= target) {
                if (Double.isNaN(hi) || x < hi) {
                    hi = x;
                    ghi = g;
                    rhi = r;
                }
            } else if (Double.isNaN(lo) || x > lo) {
                lo = x;
                glo = g;
            }
            boolean bracketed = !Double.isNaN(lo) && !Double.isNaN(hi);
            if (!Double.isNaN(hi) && ghi >= target - band) {
                return new Outcome<>(rhi, hi, ghi, lo, glo, evals, true);
            }
            if (evals >= maxEvals || (bracketed && hi - lo <= minWidth)) {
                if (rhi == null) {
                    throw new BadInputException(what + ": no scale meets the target " + target + " after " + evals
                            + " evaluations (last cost " + g + ")");
                }
                return new Outcome<>(rhi, hi, ghi, lo, glo, evals, false);
            }
            double next;
            if (bracketed) {
                double width = hi - lo;
                double secant = lo + (aim - glo) * (hi - lo) / (ghi - glo);
                boolean inside = secant > lo + 0.01 * width && secant < hi - 0.01 * width;
                if (forceBisect || !inside) {
                    next = 0.5 * (lo + hi);
                    forceBisect = false;
                } else {
                    next = secant;
                    // a secant step that leaves more than half the bracket is followed by a bisection
                    forceBisect = width > 0.5 * widthBefore;
                }
                widthBefore = width;
            } else {
                double s = slope;
                if (!Double.isNaN(prevX) && x != prevX && (g - prevG) / (x - prevX) < 0) {
                    s = (g - prevG) / (x - prevX); // measured slope, when it has the expected sign
                }
                double step = (aim - g) / s;
                // at least 1/32 (progress when the slope guess is steep), at most 4 (a factor 16 in scale: a flat
                // guess must not jump out of range), growing by half each time the target is still not crossed
                step = Math.copySign(Math.min(Math.max(Math.abs(step), 1.0 / 32), 4), step) * stepScale;
                // outside the bracket the step must move away from the side already known
                if (!Double.isNaN(lo) && step <= 0 || !Double.isNaN(hi) && step >= 0) {
                    step = Double.isNaN(lo) ? -Math.abs(step) : Math.abs(step);
                }
                stepScale *= 1.5;
                next = x + step;
                if (Math.abs(next - x0) > MAX_TRAVEL) {
                    throw new BadInputException(what + ": the target " + target + " is not met by any scale within "
                            + "2^±" + (int) MAX_TRAVEL + " of the start (cost " + g + " at the last try)");
                }
            }
            prevX = x;
            prevG = g;
            x = next;
        }
    }
}
