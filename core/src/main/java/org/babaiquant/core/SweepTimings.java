package org.babaiquant.core;

import java.util.Locale;

/**
 * Where one CPU sweep ({@link GptqSolver#sweep}) spends its time, in seconds, for the benchmark's breakdown against
 * its floor (the lazy-update products): setting up each slab of rows (accumulators, grid), copying each block into
 * the column-major panels and the results out of them, the in-block column loops (strips), the in-block products
 * and the lazy products right of each block. Filled by the sweep; reading it never changes a result.
 */
public final class SweepTimings {
    long setup;
    long gather;
    long strips;
    long blockProducts;
    long scatter;
    long lazyProducts;

    public double setupSeconds() {
        return setup / 1e9;
    }

    public double gatherSeconds() {
        return gather / 1e9;
    }

    public double stripSeconds() {
        return strips / 1e9;
    }

    public double blockProductSeconds() {
        return blockProducts / 1e9;
    }

    public double scatterSeconds() {
        return scatter / 1e9;
    }

    public double lazyProductSeconds() {
        return lazyProducts / 1e9;
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "slab setup %.2f s, block copies in %.2f s / out %.2f s, strips %.2f s,"
                        + " in-block products %.2f s, lazy products %.2f s", setupSeconds(), gatherSeconds(),
                scatterSeconds(), stripSeconds(), blockProductSeconds(), lazyProductSeconds());
    }
}
