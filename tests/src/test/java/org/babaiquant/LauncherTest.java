package org.babaiquant;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code bin/babai-quant} as a user runs it, from another working directory. Needs the packaged application
 * (spark-jobs/target), which {@code mvn verify} (the README's test command) builds before this module's tests.
 */
class LauncherTest {
    private static final Path LAUNCHER = RealData.repoRoot().resolve("bin/babai-quant");

    private static String launch(Path cwd, String... args) throws IOException, InterruptedException {
        Assumptions.assumeTrue(Files.exists(RealData.repoRoot().resolve("spark-jobs/target/classpath.txt")),
                "application not packaged: run mvn verify (not just mvn test)");
        List<String> cmd = new ArrayList<>();
        cmd.add(LAUNCHER.toString());
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd.toFile()).redirectErrorStream(true);
        pb.environment().put("BABAI_NO_BUILD", "1");
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "launcher timed out");
        assertEquals(0, p.exitValue(), out);
        return out;
    }

    @Test
    void runsFromAnyDirectoryAndQuantizesTheBundledLayer(@TempDir Path cwd) throws Exception {
        String help = launch(cwd, "--help");
        assertTrue(help.contains("quantize-layer") && help.contains("demo") && help.contains("bench"), help);
        Path dir = RealData.miniLm();
        String out = launch(cwd, "quantize-layer", "--weight", dir.resolve("weights/layer0_q_proj.weight.npy").toString(),
                "--calib", dir.resolve("activations/layer0_attn_in.calib.npy").toString(), "--bits", "4",
                "--out", "q4");
        assertTrue(out.contains("loss/bound"), out);
        assertTrue(Files.exists(cwd.resolve("q4/report.json")), "relative --out resolves against the caller's directory");
    }
}
