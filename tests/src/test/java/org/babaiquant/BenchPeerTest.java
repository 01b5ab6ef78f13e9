package org.babaiquant;

import org.babaiquant.cli.Main;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code bench} runs end to end on a small layer, and its NumPy peer is the same algorithm: the peer's codes equal
 * ours on every weight (a float32 GPTQ and our float64 one agree on a small, well-conditioned layer), so the time
 * ratio the bench prints compares like with like. Skipped (not failed) without python3 + numpy. Nothing is timed.
 */
class BenchPeerTest {
    private static boolean pythonWithNumpy() throws Exception {
        try {
            Process p = new ProcessBuilder("python3", "-c", "import numpy").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (java.io.IOException e) {
            return false;
        }
    }

    @Test
    void numpyPeerQuantizesLikeTheSolver(@TempDir Path dir) throws Exception {
        Assumptions.assumeTrue(pythonWithNumpy(), "python3 with numpy is not installed");
        Path md = dir.resolve("bench.md");
        int status = Main.run("bench", "--sizes", "40x300", "--tokens", "600", "--runs", "1", "--hessian-dims", "none",
                "--work", dir.resolve("work").toString(), "--markdown", md.toString());
        assertEquals(0, status);
        List<String> lines = Files.readAllLines(md, StandardCharsets.UTF_8);
        String row = lines.stream().filter(l -> l.startsWith("| 40x300 |")).findFirst().orElseThrow();
        assertTrue(row.contains("| 100.00% |"), "the peer's codes should equal ours: " + row);
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("|---")), String.join("\n", lines));
    }

    @Test
    void badSizesAreRefused(@TempDir Path dir) {
        assertEquals(2, Main.run("bench", "--sizes", "40x", "--no-peer", "--hessian-dims", "none", "--work",
                dir.toString()));
    }
}
