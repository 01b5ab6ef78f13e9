package org.babaiquant;

import org.babaiquant.io.Npy;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code quantize-layer} from the GPU bundle's class path: our three modules, picocli, JCuda and jackson-core, and no
 * Spark, Hadoop or Scala jar. A child JVM runs {@code org.babaiquant.cli.LayerMain} on the real MiniLM o_proj layer;
 * its output must equal, byte for byte, what {@code babai-quant quantize-layer --backend cpu} writes in-process
 * (codes, scales, zeros, dequant; the rows' float64 loss and bound to 1e-12), and bad input must still be one line and exit 2.
 */
class QuantizeLayerWithoutSparkTest {
    private static final Path DIR = RealData.miniLm();
    private static final String W = DIR.resolve("weights/layer0_o_proj.weight.npy").toString();
    private static final String X = DIR.resolve("activations/layer0_o_proj_in.calib.npy").toString();

    /** The bundle: entries of this JVM's class path that belong to it. */
    static List<String> bundleClassPath() {
        List<String> keep = new ArrayList<>();
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            String n = e.replace('\\', '/');
            boolean ours = n.matches(".*/(core|gpu-native|spark-jobs)/target/(classes|babai-quant-[a-z-]+-[0-9.]+(-SNAPSHOT)?\\.jar)");
            boolean lib = n.matches(".*/(picocli|jcuda|jcuda-natives|jackson-core)-[^/]*\\.jar");
            if (ours || lib) {
                keep.add(e);
            }
        }
        return keep;
    }

    record Run(int status, String out) {}

    private static Run child(Path tmp, String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx1g", "-cp", String.join(File.pathSeparator, bundleClassPath()), "org.babaiquant.cli.LayerMain"));
        cmd.addAll(Arrays.asList(args));
        Path log = tmp.resolve("child-" + System.nanoTime() + ".log");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child JVM did not finish in 120 s");
        return new Run(p.exitValue(), Files.readString(log, StandardCharsets.UTF_8));
    }

    @Test
    void theBundleClassPathHasNoSpark() {
        List<String> cp = bundleClassPath();
        assertEquals(3, cp.stream().filter(e -> e.contains("/target/")).count(), "our three modules: " + cp);
        assertTrue(cp.stream().anyMatch(e -> e.contains("picocli")), "picocli: " + cp);
        assertFalse(cp.stream().anyMatch(e -> e.matches(".*/(spark|hadoop|scala)[^/]*\\.jar")), cp.toString());
    }

    @Test
    void quantizeLayerRunsWithoutSparkAndWritesWhatTheFullCliWrites(@TempDir Path tmp) throws Exception {
        Path bundle = tmp.resolve("bundle");
        Run r = child(tmp, "quantize-layer", "--weight", W, "--calib", X, "--bits", "4", "--group-size", "128",
                "--order", "act-order", "--backend", "auto", "--out", bundle.toString());
        assertEquals(0, r.status(), r.out());
        // netlib (a Spark MLlib dependency) is absent too: the dense kernels say they fall back to pure Java
        assertFalse(r.out().matches("(?s).*NoClassDefFoundError: (org/apache|scala/).*"), r.out());
        Path full = tmp.resolve("full");
        QuantizeLayerCliTest.Run f = QuantizeLayerCliTest.run("quantize-layer", "--weight", W, "--calib", X,
                "--bits", "4", "--group-size", "128", "--order", "act-order", "--backend", "cpu", "--out",
                full.toString());
        assertEquals(0, f.status(), f.err());
        for (String file : List.of("codes.npy", "scales.npy", "zeros.npy", "dequant.npy")) {
            assertArrayEquals(Files.readAllBytes(full.resolve(file)), Files.readAllBytes(bundle.resolve(file)), file);
        }
        // per-row loss and bound are float64 sums whose last bits follow the dense kernels' summation order (netlib
        // in the full CLI, pure Java in the bundle): equal to 1e-12 relative; clipped counts exactly
        double[][] a = Npy.readMatrix(full.resolve("rows.npy"));
        double[][] b = Npy.readMatrix(bundle.resolve("rows.npy"));
        assertEquals(a.length, b.length);
        for (int i = 0; i < a.length; i++) {
            assertEquals(a[i][0], b[i][0], 1e-12 * Math.abs(a[i][0]), "loss of row " + i);
            assertEquals(a[i][1], b[i][1], 1e-12 * Math.abs(a[i][1]), "bound of row " + i);
            assertEquals(a[i][2], b[i][2], "clipped of row " + i);
        }
        assertEquals(Files.list(full).map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList()),
                Files.list(bundle).map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList()));
    }

    @Test
    void badInputIsOneLineAndExitTwoWithoutSpark(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("never");
        Run r = child(tmp, "quantize-layer", "--weight", tmp.resolve("missing.npy").toString(), "--calib", X,
                "--out", out.toString());
        assertEquals(2, r.status(), r.out());
        assertEquals(1, r.out().strip().lines().count(), r.out());
        assertTrue(r.out().contains("missing.npy"), r.out());
        assertFalse(Files.exists(out), "nothing committed");
        Run b = child(tmp, "quantize-layer", "--weight", W, "--calib", X, "--backend", "nonesuch", "--out",
                out.toString());
        assertEquals(2, b.status(), b.out());
        assertTrue(b.out().contains("nonesuch"), b.out());
        assertFalse(Files.exists(out), "nothing committed");
    }
}
