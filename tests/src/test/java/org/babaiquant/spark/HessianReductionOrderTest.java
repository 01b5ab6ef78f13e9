package org.babaiquant.spark;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/**
 * Whatever order Spark's tasks finish in, a block's partials arrive at the reducer in some order: the reducer must sum
 * them in slice order, so the stored bytes cannot depend on it. (Replaces the sleep hook that main used to carry.)
 */
class HessianReductionOrderTest {

    @Test
    void blockBytesDoNotDependOnTheOrderPartialsArrive() {
        Random rnd = new Random(7);
        int blockSize = 4;
        List<HessianJob.Partial> partials = new ArrayList<>();
        for (int slice = 0; slice < 12; slice++) {
            double[] block = new double[blockSize * blockSize];
            for (int i = 0; i < block.length; i++) {
                // magnitudes far apart, so that a different summation order gives different float64 sums
                block[i] = Math.scalb(rnd.nextDouble(), rnd.nextInt(80) - 40);
            }
            partials.add(new HessianJob.Partial(slice, 64, block, "cpu"));
        }
        HessianJob.SitePlan plan = new HessianJob.SitePlan("s", blockSize, 12, -1, 12, List.of(), "fp", false, 0, 0, 0);
        String key = "s\u00000\u00000";
        HessianJob.Block reference = HessianJob.reduce(key, partials, blockSize, List.of(plan));
        assertEquals(12 * 64, reference.tokens());
        boolean orderMatters = false;
        for (int trial = 0; trial < 50; trial++) {
            List<HessianJob.Partial> shuffled = new ArrayList<>(partials);
            Collections.shuffle(shuffled, rnd);
            assertArrayEquals(reference.data(), HessianJob.reduce(key, shuffled, blockSize, List.of(plan)).data(),
                    "trial " + trial);
            orderMatters |= naiveSum(shuffled) != naiveSum(partials);
        }
        // the check has teeth: summing in arrival order would have changed the result
        assertNotEquals(false, orderMatters);
    }

    private static double naiveSum(List<HessianJob.Partial> ps) {
        double s = 0;
        for (HessianJob.Partial p : ps) {
            s += p.block()[0];
        }
        return s;
    }
}
