package org.babaiquant.core;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

class HalfTest {

    @Test
    void everyHalfRoundTripsThroughFloat() {
        for (int h = 0; h < 0x10000; h++) {
            float f = Half.toFloat((short) h);
            if (Float.isNaN(f)) {
                assertTrue(Float.isNaN(Half.toFloat(Half.fromFloat(f))), "NaN stays NaN, bits " + h);
                continue;
            }
            assertEquals(h, Half.fromFloat(f) & 0xFFFF, "half bits 0x" + Integer.toHexString(h) + " = " + f);
        }
    }

    @Test
    void handValues() {
        assertEquals(0x3C00, Half.fromFloat(1f) & 0xFFFF);
        assertEquals(0xC000, Half.fromFloat(-2f) & 0xFFFF);
        assertEquals(0x7BFF, Half.fromFloat(65504f) & 0xFFFF);
        assertEquals(0x7C00, Half.fromFloat(65520f) & 0xFFFF, "65520 is the tie between 65504 and 2^16: to even, Inf");
        assertEquals(0x7BFF, Half.fromFloat(65519.99f) & 0xFFFF);
        assertEquals(0x0001, Half.fromFloat(0x1p-24f) & 0xFFFF, "smallest subnormal");
        assertEquals(0x0000, Half.fromFloat(0x1p-25f) & 0xFFFF, "half of it is a tie, to even: 0");
        assertEquals(0x0001, Half.fromFloat(0x1.8p-25f) & 0xFFFF);
        assertEquals(0x0400, Half.fromFloat(0x1p-14f) & 0xFFFF, "smallest normal");
        assertEquals(0x3C00, Half.fromFloat(1 + 0x1p-11f) & 0xFFFF, "tie between 1 and 1+2^-10: to even");
        assertEquals(0x3C02, Half.fromFloat(1 + 3 * 0x1p-11f) & 0xFFFF, "tie between 1+2^-10 and 1+2^-9: to even");
        assertEquals(0x8000, Half.fromFloat(-0f) & 0xFFFF);
    }

    /** fromFloat is the nearest half (ties to even) for random floats across the whole half range. */
    @Test
    void roundsToNearest() {
        Random rnd = new Random(11);
        for (int i = 0; i < 200_000; i++) {
            float f = (float) (Math.scalb(rnd.nextDouble() * 2 - 1, rnd.nextInt(46) - 28));
            if (Math.abs(f) >= 65520) {
                continue; // IEEE overflow to Inf (checked in handValues), not a nearest-finite-value question
            }
            short h = Half.fromFloat(f);
            double got = Half.toFloat(h);
            // neighbours of h on the half line (bits ±1 move to the adjacent representable value of the same sign)
            int bits = h & 0xFFFF;
            for (int d = -1; d <= 1; d += 2) {
                int nb = bits + d;
                if ((nb & 0x7FFF) > 0x7C00 || (nb & 0x8000) != (bits & 0x8000) || nb < 0) {
                    continue;
                }
                double other = Half.toFloat((short) nb);
                double eGot = Math.abs(got - f);
                double eOther = Math.abs(other - f);
                if (!(eGot < eOther || (eGot == eOther && (bits & 1) == 0))) {
                    fail(f + " -> " + got + " but " + other + " is nearer (or the even choice)");
                }
            }
        }
    }
}
