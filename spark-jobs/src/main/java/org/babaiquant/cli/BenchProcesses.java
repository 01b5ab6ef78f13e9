package org.babaiquant.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * What {@code bench} needs around its measurements: whole-process runs timed with peak RSS, the launcher and the NumPy
 * peer it runs, the peer's output, the heap sampler and the machine's load.
 */
final class BenchProcesses {
    private BenchProcesses() {}


    /** A finished whole-process run: wall seconds, peak RSS (KiB, −1 when unknown) and its last output line. */
    record Run(double seconds, long maxRssKb, String lastLine) {}

    private static final Path TIME = Path.of("/usr/bin/time");

    static Run run(List<String> command, Path dir) throws IOException {
        List<String> cmd = new ArrayList<>();
        Path rss = dir.resolve("rss.txt");
        boolean timed = Files.isExecutable(TIME);
        if (timed) {
            cmd.addAll(List.of(TIME.toString(), "-f", "%M", "-o", rss.toString()));
        }
        cmd.addAll(command);
        Path log = dir.resolve("run.log");
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            if (!p.waitFor(2, TimeUnit.HOURS)) {
                p.destroyForcibly();
                throw new IllegalStateException("timed out: " + String.join(" ", command));
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted: " + String.join(" ", command));
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        List<String> out = Files.readAllLines(log, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            throw new IllegalStateException("exit " + p.exitValue() + " from " + String.join(" ", command) + ":\n"
                    + String.join("\n", out.subList(Math.max(0, out.size() - 20), out.size())));
        }
        long kb = -1;
        if (timed) {
            List<String> r = Files.readAllLines(rss, StandardCharsets.UTF_8);
            if (!r.isEmpty()) {
                kb = Long.parseLong(r.get(r.size() - 1).trim());
            }
        }
        return new Run(seconds, kb, out.isEmpty() ? "" : out.get(out.size() - 1));
    }

    /** bin/babai-quant of this installation (the launcher sets babai.home), or null. */
    static Path launcher() {
        String home = System.getProperty("babai.home");
        if (home == null) {
            return null;
        }
        Path l = Path.of(home, "bin", "babai-quant");
        return Files.isExecutable(l) ? l : null;
    }

    /** The peer script, copied out of the jar into the scratch folder. */
    static Path peerScript(Path dir) throws IOException {
        Path script = dir.resolve("gptq_numpy_peer.py");
        try (InputStream in = BenchCommand.class.getResourceAsStream("gptq_numpy_peer.py")) {
            if (in == null) {
                throw new IllegalStateException("gptq_numpy_peer.py is missing from the jar");
            }
            Files.copy(in, script, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        return script;
    }

    /** "python3" when it runs and imports numpy, else null. */
    static String pythonWithNumpy() {
        try {
            Process p = new ProcessBuilder("python3", "-c", "import numpy").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0 ? "python3" : null;
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }

    /** Samples the used heap every few milliseconds: its maximum is the peak of whatever runs meanwhile. */
    static final class HeapSampler implements AutoCloseable {
        private volatile boolean running = true;
        private volatile long peak;
        private final Thread thread;

        HeapSampler() {
            Runtime rt = Runtime.getRuntime();
            peak = rt.totalMemory() - rt.freeMemory();
            thread = new Thread(() -> {
                while (running) {
                    peak = Math.max(peak, rt.totalMemory() - rt.freeMemory());
                    try {
                        Thread.sleep(2);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "heap-sampler");
            thread.setDaemon(true);
            thread.start();
        }

        long peak() {
            Runtime rt = Runtime.getRuntime();
            return Math.max(peak, rt.totalMemory() - rt.freeMemory());
        }

        @Override
        public void close() {
            running = false;
            thread.interrupt();
        }
    }

    /** VmHWM of this process (Linux), in GiB, or "-". */
    static String selfPeakRss() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
                Matcher m = Pattern.compile("VmHWM:\\s+(\\d+) kB").matcher(l);
                if (m.find()) {
                    return String.format(Locale.ROOT, "%.2f", Long.parseLong(m.group(1)) / (double) (1 << 20));
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux
        }
        return "-";
    }

    /** The 1-minute load average (Linux), or "-": other work on the machine skews every figure. */
    static String load() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).split(" ")[0];
        } catch (IOException | RuntimeException e) {
            return "-";
        }
    }

    static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
