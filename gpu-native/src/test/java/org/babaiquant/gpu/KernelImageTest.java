package org.babaiquant.gpu;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the build put in the jar: fatbins holding every kernel the Java side launches, or a manifest saying why not. */
class KernelImageTest {
    /** Whether the build had nvcc: the same lookup as scripts/build-kernels.sh. */
    private static boolean nvccOnPath() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("bash", "-c", "command -v \"${NVCC:-nvcc}\"").redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
    }

    @Test
    void fatbinsHoldEveryExpectedEntryPoint() throws Exception {
        KernelImage img = KernelImage.load();
        if (!nvccOnPath()) {
            assertFalse(img.built());
            assertTrue(img.reason().contains("nvcc not found at build time"), img.reason());
            return;
        }
        assertTrue(img.built(), img.toString());
        for (Map.Entry<String, List<String>> m : KernelImage.EXPECTED.entrySet()) {
            byte[] fatbin = KernelImage.fatbin(m.getKey());
            // a fatbin starts with its magic 0xBA55ED50, stored little-endian
            assertEquals(0x50, fatbin[0] & 0xFF);
            assertEquals(0xED, fatbin[1] & 0xFF);
            assertEquals(0x55, fatbin[2] & 0xFF);
            assertEquals(0xBA, fatbin[3] & 0xFF);
            String bytes = new String(fatbin, StandardCharsets.ISO_8859_1);
            List<String> missing = new ArrayList<>();
            for (String entry : m.getValue()) {
                if (!bytes.contains(entry + "\0")) {
                    missing.add(entry);
                }
            }
            assertTrue(missing.isEmpty(), m.getKey() + ".fatbin lacks " + missing);
            assertTrue(img.entries().get(m.getKey()).containsAll(m.getValue()), "manifest " + img.entries());
        }
    }

    @Test
    void buildWithoutNvccSucceedsAndSaysWhy(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path root = Path.of(System.getProperty("babai.repo.root", ".."));
        ProcessBuilder pb = new ProcessBuilder("bash", root.resolve("gpu-native/scripts/build-kernels.sh").toString(),
                root.resolve("gpu-native/src/main/cuda").toString(), tmp.toString()).redirectErrorStream(true);
        pb.environment().put("NVCC", "/nonexistent/nvcc");
        Process p = pb.start();
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), log);
        Properties m = new Properties();
        try (var in = Files.newInputStream(tmp.resolve("org/babaiquant/gpu/kernels/kernels.properties"))) {
            m.load(in);
        }
        assertEquals("unavailable", m.getProperty("status"));
        assertEquals("kernels not built (nvcc not found at build time)", m.getProperty("reason"));
        KernelImage img = KernelImage.fromManifest(m); // what the backend would report from such a jar
        assertFalse(img.built());
        assertEquals("kernels not built (nvcc not found at build time)", img.reason());
        try (var s = Files.list(tmp.resolve("org/babaiquant/gpu/kernels"))) {
            assertEquals(1, s.count(), "no fatbin without nvcc");
        }
    }
}
