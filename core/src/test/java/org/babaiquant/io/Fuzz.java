package org.babaiquant.io;

import org.babaiquant.BadInputException;

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The fuzz harness of every reader of untrusted bytes: seeded mutations (bit flips, overwritten bytes, huge length
 * fields, truncations, garbage tails) of a valid file; each case either reads or ends in {@link BadInputException}
 * (the CLI's exit 2) — never another exception, never a hang (a time limit per format), and never an allocation far
 * beyond the file's size (measured per case with the thread's allocation counter: a corrupt length must not make a
 * reader allocate gigabytes). Seeded, so a failure names a reproducible case. Shared with the tests module (test-jar).
 */
public final class Fuzz {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private Fuzz() {}

    public interface Reader {
        void read(byte[] bytes) throws Exception;
    }

    /** Mutates {@code seed} {@code cases} times and checks every outcome (the whole run within 60 s). */
    public static void run(String format, byte[] seed, long rngSeed, int cases, Reader reader) {
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            reader.read(seed); // the seed itself must be valid
            Random rnd = new Random(rngSeed);
            int bad = 0;
            for (int i = 0; i < cases; i++) {
                byte[] b = mutate(rnd, seed);
                long before = THREADS.getCurrentThreadAllocatedBytes();
                try {
                    reader.read(b);
                } catch (BadInputException e) {
                    bad++;
                    assertTrue(e.getMessage() != null && !e.getMessage().isBlank(), format + " case " + i);
                } catch (Throwable t) {
                    fail(format + " case " + i + " (seed " + rngSeed + ", " + b.length + " bytes) threw " + t, t);
                }
                long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;
                // values widen to float64 (8x an fp16 input), plus a fixed allowance for buffers and messages
                long limit = 64L * b.length + (8L << 20);
                assertTrue(allocated <= limit, format + " case " + i + " allocated " + allocated + " bytes for a "
                        + b.length + "-byte file");
            }
            assertTrue(bad > cases / 10, format + ": mutations must mostly be rejected, only " + bad + " were");
        }, format + " reader hung");
    }

    public static byte[] mutate(Random rnd, byte[] seed) {
        byte[] b = seed.clone();
        switch (rnd.nextInt(6)) {
            case 0 -> { // flip bits
                for (int k = 1 + rnd.nextInt(4); k > 0; k--) {
                    int at = rnd.nextInt(b.length);
                    b[at] ^= (byte) (1 << rnd.nextInt(8));
                }
            }
            case 1 -> { // overwrite bytes
                for (int k = 1 + rnd.nextInt(8); k > 0; k--) {
                    b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
                }
            }
            case 2 -> { // a huge or negative little-endian length / count somewhere in the first bytes
                int at = rnd.nextInt(Math.max(1, Math.min(b.length - 4, 64)));
                int v = rnd.nextBoolean() ? Integer.MAX_VALUE - rnd.nextInt(16) : -1 - rnd.nextInt(1 << 20);
                for (int k = 0; k < 4 && at + k < b.length; k++) {
                    b[at + k] = (byte) (v >>> (8 * k));
                }
            }
            case 3 -> b = Arrays.copyOf(b, rnd.nextInt(b.length)); // truncate
            case 4 -> { // garbage tail
                byte[] t = new byte[1 + rnd.nextInt(64)];
                rnd.nextBytes(t);
                byte[] c = Arrays.copyOf(b, b.length + t.length);
                System.arraycopy(t, 0, c, b.length, t.length);
                b = c;
            }
            default -> { // truncate and flip
                b = Arrays.copyOf(b, 1 + rnd.nextInt(b.length));
                b[rnd.nextInt(b.length)] ^= (byte) 0xff;
            }
        }
        return b;
    }
}
