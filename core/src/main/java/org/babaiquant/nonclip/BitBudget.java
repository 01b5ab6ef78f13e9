package org.babaiquant.nonclip;

import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.QuantGrid;

/**
 * The matched-bits rules: how a target size in bits per weight becomes a configuration of each representation, so
 * that methods are compared at the same size measured in bytes written.
 * <ul>
 *   <li>grid methods (RTN, GPTQ, Babai): ⌊target⌋ bits and the group size whose GPTQ checkpoint size is nearest;</li>
 *   <li>SSQR: ⌊target⌋-bit inliers, the smallest group size that leaves room for {@link #SSQR_MIN_RATE} outliers,
 *       and the outlier rate that spends the rest of the budget (clamped to [{@link #SSQR_MIN_RATE},
 *       {@link #SSQR_MAX_RATE}]);</li>
 *   <li>HPTQ/HRTN take the target directly (their scale search meets it).</li>
 * </ul>
 */
public final class BitBudget {
    /** Group sizes the rules choose from; −1 is one scale per row. */
    static final int[] GROUP_SIZES = {32, 64, 128, 256, 512, 1024, 2048, 4096, -1};
    /** SSQR's smallest outlier budget: below it the outliers could not absorb GPTQ's overflow. */
    public static final double SSQR_MIN_RATE = 0.001;
    public static final double SSQR_MAX_RATE = 0.05;
    /** An outlier's cost in the SSQR file: a 2-byte column index and a 2-byte code. */
    public static final int BITS_PER_OUTLIER = 32;

    private BitBudget() {}

    /** The group size whose GPTQ checkpoint size (natural order, no g_idx) is nearest the target; ties: smaller. */
    public static int nearestGroupSize(int rows, int cols, int bits, double target) {
        int best = -1;
        double bestGap = Double.POSITIVE_INFINITY;
        for (int g : GROUP_SIZES) {
            if (g != -1 && g >= cols) {
                continue;
            }
            double gap = Math.abs(checkpointBits(rows, cols, bits, g) - target);
            if (gap < bestGap - 1e-12) {
                bestGap = gap;
                best = g;
            }
        }
        return best;
    }

    /** Bits per weight of a GPTQ checkpoint of this shape and grid (natural order: no g_idx). */
    public static double checkpointBits(int rows, int cols, int bits, int groupSize) {
        int gsEff = groupSize == -1 ? cols : groupSize;
        double[][] dummy = new double[rows][(cols + gsEff - 1) / gsEff];
        return GptqSolver.checkpointBitsPerWeight(rows, cols, QuantGrid.of(bits, groupSize, cols, dummy, dummy), false);
    }

    /** SSQR's size without outliers, in bits per weight, from the format's own size formula. */
    public static double ssqrDenseBits(int rows, int cols, int bits, int groupSize) {
        int gsEff = groupSize == -1 ? cols : Math.min(groupSize, cols);
        int groups = (cols + gsEff - 1) / gsEff;
        int w = cols <= 0xFFFF ? 2 : 4;
        return 8.0 * SsqrFormat.size(rows, cols, groups, bits, 0, w, 2) / ((double) rows * cols);
    }

    /** SSQR's group size: the smallest that leaves room for the minimum outlier rate within the target. */
    public static int ssqrGroupSize(int rows, int cols, int bits, double target) {
        for (int g : GROUP_SIZES) {
            if (g != -1 && g >= cols) {
                continue;
            }
            if (ssqrDenseBits(rows, cols, bits, g) + BITS_PER_OUTLIER * SSQR_MIN_RATE <= target) {
                return g;
            }
        }
        return -1;
    }

    /** The outlier rate that fills the target, clamped to [0.1%, 5%]. */
    public static double ssqrRate(int rows, int cols, int bits, int groupSize, double target) {
        double r = (target - ssqrDenseBits(rows, cols, bits, groupSize)) / BITS_PER_OUTLIER;
        return Math.min(SSQR_MAX_RATE, Math.max(SSQR_MIN_RATE, r));
    }

    /** SSQR options for a layer of this shape at the target: ⌊target⌋ bits, group and rate by the rules above. */
    public static Ssqr.Options ssqr(int rows, int cols, double target, GptqSolver.Options gptq) {
        int bits = (int) Math.floor(target);
        int g = ssqrGroupSize(rows, cols, bits, target);
        return Ssqr.Options.of(bits, g, ssqrRate(rows, cols, bits, g, target), gptq);
    }
}
