package org.babaiquant;

import org.babaiquant.io.Npy;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The application jar through Spark's own submit entry point ({@code org.apache.spark.deploy.SparkSubmit}, local
 * master), as a cluster runs it: Spark's jars on the classpath (what a Spark installation provides), our -app jar
 * submitted. Needs {@code mvn package} (the README's {@code mvn verify} builds it before these tests).
 */
class SparkSubmitTest {
    private static final Path TARGET = RealData.repoRoot().resolve("spark-jobs/target");

    @Test
    void appJarRunsThroughSparkSubmitOnTheBundledData(@TempDir Path tmp) throws Exception {
        Path sparkCp = TARGET.resolve("spark-classpath.txt");
        Path app = TARGET.resolve("babai-quant-spark-jobs-0.1.0-SNAPSHOT-app.jar");
        Assumptions.assumeTrue(Files.exists(sparkCp) && Files.exists(app), "application not packaged: run mvn verify");
        Path dir = RealData.miniLm();
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xss4m"));
        // Spark's Java 17 module options: the same ones this test JVM got from the pom (babai.jvm.args)
        java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments().stream()
                .filter(a -> a.startsWith("--add-opens")).forEach(cmd::add);
        cmd.addAll(List.of("-cp", Files.readString(sparkCp).strip(), "org.apache.spark.deploy.SparkSubmit",
                "--master", "local[2]", "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.ui.enabled=false",
                "--class", "org.babaiquant.cli.Main", app.toString()));
        // stage 1 through spark-submit: import (no Spark) then the Spark Hessian job
        run(tmp, concat(cmd, "import-activations", "--npy", "s=" + dir.resolve("activations/layer0_o_proj_in.calib.npy"),
                "--out", tmp.resolve("act").toString()));
        String out = run(tmp, concat(cmd, "hessian", "--activations", tmp.resolve("act").toString(), "--out", tmp.resolve("h").toString()));
        assertTrue(out.contains("site s: d=384, 1024 tokens"), out);
        run(tmp, concat(cmd, "hessian-export", "--hessians", tmp.resolve("h").toString(), "--site", "s", "--out", tmp.resolve("H.npy").toString()));
        double[][] h = Npy.readMatrix(tmp.resolve("H.npy"));
        double[][] x = Npy.readMatrix(dir.resolve("activations/layer0_o_proj_in.calib.npy"));
        double direct = 0;
        for (double[] row : x) {
            direct += row[7] * row[11];
        }
        assertEquals(direct, h[7][11], 1e-12 * Math.abs(h[7][7]));
    }

    private static List<String> concat(List<String> a, String... b) {
        List<String> l = new ArrayList<>(a);
        l.addAll(Arrays.asList(b));
        return l;
    }

    private static String run(Path cwd, List<String> cmd) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd.toFile()).redirectErrorStream(true);
        pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(180, TimeUnit.SECONDS), "spark-submit timed out");
        assertEquals(0, p.exitValue(), out);
        return out;
    }
}
