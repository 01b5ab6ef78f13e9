package org.babaiquant.cli;

import org.babaiquant.io.NpyWriter;
import dev.ludovic.netlib.blas.BLAS;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.DampedFactor;
import org.babaiquant.core.DenseKernels;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.core.SweepTimings;
import org.babaiquant.io.Npy;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.babaiquant.cli.BenchProcesses.HeapSampler;
import org.babaiquant.cli.BenchProcesses.Run;
import static org.babaiquant.cli.BenchProcesses.deleteTree;
import static org.babaiquant.cli.BenchProcesses.launcher;
import static org.babaiquant.cli.BenchProcesses.load;
import static org.babaiquant.cli.BenchProcesses.peerScript;
import static org.babaiquant.cli.BenchProcesses.pythonWithNumpy;
import static org.babaiquant.cli.BenchProcesses.run;
import static org.babaiquant.cli.BenchProcesses.selfPeakRss;

/**
 * {@code bench}: the CPU solver against a NumPy GPTQ on the same W and H, each as a user runs it (a whole process:
 * {@code bin/babai-quant quantize-layer} and {@code python3 gptq_numpy_peer.py}), with our time broken down in this
 * process against its floor (the Cholesky and the lazy updates as plain native dpotrf/dgemm calls); a large layer
 * quantized in place (H consumed by its factor) for time and peak memory; and the Hessian accumulation against native
 * syrk.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Benchmark the GPTQ solver against a NumPy GPTQ peer on the same W and H, and the Hessian",
                "accumulation against native BLAS. Per layer ROWSxCOLS: random W (float32 .npy) and H = XᵀX of",
                "random tokens (float64 .npy) are written to a scratch folder; then, as a user runs them,",
                "'bin/babai-quant quantize-layer' and 'python3 gptq_numpy_peer.py' (a blocked float32 GPTQ in the",
                "reference's structure on NumPy/OpenBLAS; skipped with a note when python3 with numpy is absent)",
                "are timed as whole processes (best of --runs, peak RSS from /usr/bin/time). In this process:",
                "factor_s (prepare + the one Cholesky), sweep_s, the old route's factor (Cholesky + inverse), the",
                "floor (native dpotrf + the lazy updates as dgemm calls) and the peak heap.",
                "--in-place-sizes: layers quantized here with H flat and consumed (GptqSolver.quantizeInPlace), no",
                "peer: time, peak heap and peak RSS (e.g. 8192x28672 with BABAI_JAVA_OPTS=-Xmx15g)."})
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--sizes", split = ",", defaultValue = "4096x4096,4096x11008,11008x4096",
            description = "layers ROWSxCOLS run against the peer (default: ${DEFAULT-VALUE}; 'none' for none)")
    List<String> sizes;

    @Option(names = "--in-place-sizes", split = ",", defaultValue = "none",
            description = "layers ROWSxCOLS quantized in this process on a consumed flat H (default: none)")
    List<String> inPlaceSizes;

    @Option(names = "--bits", defaultValue = "4", description = "grid bits (default: ${DEFAULT-VALUE})")
    int bits;

    @Option(names = "--group-size", defaultValue = "128", description = "grid group size (default: ${DEFAULT-VALUE})")
    int groupSize;

    @Option(names = "--tokens", defaultValue = "2048", description = "random tokens behind H (default: ${DEFAULT-VALUE})")
    int tokens;

    @Option(names = "--runs", defaultValue = "2", description = "whole-process runs per side, best kept (default: ${DEFAULT-VALUE})")
    int runs;

    @Option(names = "--no-peer", description = "skip the NumPy peer")
    boolean noPeer;

    @Option(names = "--hessian-dims", split = ",", defaultValue = "1024,4096",
            description = "Hessian bench dimensions (default: ${DEFAULT-VALUE}; 'none' for none)")
    List<String> hessianDims;

    @Option(names = "--work", paramLabel = "DIR", description = "scratch folder (default: a new temporary folder, deleted)")
    Path work;

    @Option(names = "--markdown", paramLabel = "FILE", description = "also write the tables as Markdown")
    Path markdown;

    private static final int BLOCK = 128;
    private final List<String> md = new ArrayList<>();

    @Override
    public Integer call() throws IOException {
        if (runs < 1 || tokens < 1) {
            throw new IllegalArgumentException("--runs and --tokens must be ≥ 1");
        }
        List<int[]> peerLayers = shapes(sizes, 2, "--sizes");
        List<int[]> inPlaceLayers = shapes(inPlaceSizes, 2, "--in-place-sizes");
        List<int[]> dims = shapes(hessianDims, 1, "--hessian-dims");
        // the solver's kernels first: their provider may point netlib at the bundled OpenBLAS, which only works
        // before anything else initialises netlib
        DenseKernels kernels = DenseKernels.get();
        BLAS blas = BLAS.getInstance();
        String coretype = System.getenv("OPENBLAS_CORETYPE");
        String machine = String.format(Locale.ROOT, "%s, %d cores, Java %s, max heap %.1f GiB, BLAS %s%s",
                System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(),
                System.getProperty("java.version"), Runtime.getRuntime().maxMemory() / GIB,
                blas.getClass().getSimpleName(), coretype == null ? "" : ", OPENBLAS_CORETYPE=" + coretype
                        + " (both sides)");
        say("machine: " + machine);
        say("kernels: " + kernels.description());
        if (blas instanceof dev.ludovic.netlib.blas.JavaBLAS) {
            say("WARNING: netlib found no native BLAS; bin/babai-quant loads OpenBLAS from spark-jobs/target/native.");
        }
        boolean ownWork = work == null;
        Path dir = ownWork ? Files.createTempDirectory("babai-bench") : Files.createDirectories(work);
        try {
            if (!peerLayers.isEmpty()) {
                peerTable(peerLayers, dir, kernels, blas);
            }
            for (int[] s : inPlaceLayers) {
                inPlace(s[0], s[1], kernels);
            }
            if (!dims.isEmpty()) {
                hessianTable(dims, kernels, blas);
            }
        } finally {
            if (ownWork) {
                deleteTree(dir);
            }
        }
        if (markdown != null) {
            Files.write(markdown, md);
            System.out.println("wrote " + markdown);
        }
        return 0;
    }

    private static final double GIB = 1L << 30;

    private void say(String line) {
        System.out.println(line);
        md.add(line);
        md.add("");
    }

    /** A table's header line, printed, and with its separator in the Markdown. */
    private void header(String line) {
        System.out.println(line);
        md.add(line);
        md.add("|---".repeat((int) line.chars().filter(c -> c == '|').count() - 1) + "|");
    }

    /** {@code dims} positive integers joined by 'x' per entry ("4096x11008", or "4096" for one); "none" for none. */
    private static List<int[]> shapes(List<String> specs, int dims, String option) {
        List<int[]> out = new ArrayList<>();
        for (String s : specs) {
            String t = s.trim().toLowerCase(Locale.ROOT);
            if (t.isEmpty() || t.equals("none")) {
                continue;
            }
            try {
                String[] rc = t.split("x", -1);
                if (rc.length != dims) {
                    throw new NumberFormatException();
                }
                int[] v = new int[rc.length];
                for (int i = 0; i < rc.length; i++) {
                    v[i] = Integer.parseInt(rc[i].trim());
                    if (v[i] < 1) {
                        throw new NumberFormatException();
                    }
                }
                out.add(v);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(option + ": bad size '" + s + "', expected "
                        + (dims == 2 ? "ROWSxCOLS" : "DIM") + " of positive integers");
            }
        }
        return out;
    }

    private GptqSolver.Options options() {
        return GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(bits, groupSize, false, false))
                .withBlockSize(BLOCK);
    }

    // ---- against the NumPy peer -------------------------------------------------------------------------------------

    private void peerTable(List<int[]> layers, Path dir, DenseKernels kernels, BLAS blas) throws IOException {
        Path launcher = launcher();
        Path peer = noPeer ? null : peerScript(dir);
        String python = peer == null ? null : pythonWithNumpy();
        say(String.format(Locale.ROOT, "GPTQ %d-bit g%d, natural order, clip, damp 0.01, block %d, H of %d random tokens;"
                + " whole process = wall time of the command, best of %d", bits, groupSize, BLOCK, tokens, runs));
        if (launcher == null) {
            say("whole-process runs skipped: no bin/babai-quant (run bench through the launcher, which sets babai.home)");
        }
        if (peer != null && python == null) {
            say("NumPy peer skipped: python3 with numpy not found on PATH");
        }
        header("| layer | ours s (process) | NumPy s (process) | NumPy / ours | ours peak RSS GiB | NumPy peak RSS GiB"
                + " | in-process: factor s | sweep s | total s | old factor (Cholesky + inverse) s | floor: dpotrf s"
                + " + update dgemm s | total / floor | peak heap GiB | codes equal to NumPy's | load |");
        warmUp(kernels);
        for (int[] s : layers) {
            int rows = s[0];
            int cols = s[1];
            Path wFile = dir.resolve("W-" + rows + "x" + cols + ".npy");
            Path hFile = dir.resolve("H-" + cols + ".npy");
            writeInputs(rows, cols, wFile, hFile, kernels);
            String load0 = load();

            // in this process: the breakdown, the old factor route and the floor
            double[][] w = Npy.readMatrix(wFile);
            double[][] h = Npy.readMatrix(hFile);
            GptqSolver.Options opt = options();
            int reps = (long) rows * cols <= 1L << 24 ? 2 : 1;
            // the two phases of one solve, timed apart (the same codes as GptqSolver.quantize: GptqSolverTest)
            double factor = 0;
            double sweep = 0;
            double total = Double.POSITIVE_INFINITY;
            double peakHeap = 0;
            SweepTimings sweepParts = null;
            QuantizedLayer ours = null;
            for (int rep = 0; rep < reps; rep++) {
                ours = null;
                System.gc();
                try (HeapSampler heap = new HeapSampler()) {
                    long t0 = System.nanoTime();
                    GptqSolver.Factored setup = GptqSolver.prepareAndFactor(w, h, opt, null, kernels);
                    double f = seconds(t0);
                    long t1 = System.nanoTime();
                    SweepTimings parts = new SweepTimings();
                    ours = GptqSolver.sweep(setup, opt, kernels, parts);
                    double sw = seconds(t1);
                    if (f + sw < total) {
                        factor = f;
                        sweep = sw;
                        total = f + sw;
                        sweepParts = parts;
                    }
                    peakHeap = Math.max(peakHeap, heap.peak());
                }
            }
            int[] natural = ColumnOrder.NATURAL.permutation(h, 0);
            long t0 = System.nanoTime();
            DampedFactor.flat(h, natural, 0.01, 6, kernels);
            double oldFactor = seconds(t0);
            double potrf = timePotrf(h, kernels);
            h = null;
            double updates = timeUpdates(blas, rows, cols, BLOCK);

            // whole processes, alternating
            Run best = null;
            Run bestPeer = null;
            for (int r = 0; r < runs; r++) {
                if (launcher != null) {
                    Path out = dir.resolve("ours");
                    deleteTree(out);
                    Run run = run(List.of(launcher.toString(), "quantize-layer", "--weight", wFile.toString(),
                            "--hessian", hFile.toString(), "--bits", "" + bits, "--group-size", "" + groupSize,
                            "--block-size", "" + BLOCK, "--out", out.toString()), dir);
                    best = best == null || run.seconds() < best.seconds() ? run : best;
                }
                if (python != null) {
                    Path out = dir.resolve("peer");
                    deleteTree(out);
                    Run run = run(List.of(python, peer.toString(), wFile.toString(), hFile.toString(), out.toString(),
                            "" + bits, "" + groupSize, "" + BLOCK, "0.01"), dir);
                    bestPeer = bestPeer == null || run.seconds() < bestPeer.seconds() ? run : bestPeer;
                }
            }
            String agree = "-";
            if (bestPeer != null) {
                int[][] codes = ours.codes();
                long equal = 0;
                Path peerFile = dir.resolve("peer").resolve("codes.npy");
                Npy.NpyHeader peerHeader = Npy.readHeader(peerFile);
                if (!"|u1".equals(peerHeader.dtype()) || !java.util.Arrays.equals(peerHeader.shape(), new int[] {rows, cols})) {
                    throw new IllegalStateException(peerFile + " is not a uint8 " + rows + "x" + cols + " array");
                }
                float[][] peerCodes = Npy.readMatrixF32(peerFile);
                for (int r = 0; r < rows; r++) {
                    for (int j = 0; j < cols; j++) {
                        if (codes[r][j] == peerCodes[r][j]) {
                            equal++;
                        }
                    }
                }
                agree = String.format(Locale.ROOT, "%.2f%%", 100.0 * equal / ((double) rows * cols));
            }
            double floor = potrf + updates;
            String line = String.format(Locale.ROOT,
                    "| %dx%d | %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f + %.2f | %.2f | %.2f | %s | %s → %s |",
                    rows, cols, best == null ? "-" : f2(best.seconds()), bestPeer == null ? "-" : f2(bestPeer.seconds()),
                    best == null || bestPeer == null ? "-" : f2(bestPeer.seconds() / best.seconds()),
                    best == null || best.maxRssKb() < 0 ? "-" : f2(best.maxRssKb() / (GIB / 1024)),
                    bestPeer == null || bestPeer.maxRssKb() < 0 ? "-" : f2(bestPeer.maxRssKb() / (GIB / 1024)),
                    factor, sweep, total, oldFactor, potrf, updates, total / floor, peakHeap / GIB, agree,
                    load0, load());
            System.out.println(line);
            md.add(line);
            System.out.println("    our sweep's parts (in process): " + sweepParts);
            if (bestPeer != null) {
                String detail = "    NumPy peer's own timings (best run): " + bestPeer.lastLine();
                System.out.println(detail);
            }
            Files.deleteIfExists(wFile);
            Files.deleteIfExists(hFile);
        }
        md.add("");
    }

    private static String f2(double v) {
        return String.format(Locale.ROOT, "%.2f", v);
    }

    private static double seconds(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }

    /** Random W (float32, 0.02·N(0,1)) and H = XᵀX of random correlated tokens (float64), seed 42. */
    private void writeInputs(int rows, int cols, Path wFile, Path hFile, DenseKernels kernels) {
        Random rnd = new Random(42);
        double[] h = hessianFlat(rnd, cols, kernels);
        double[][] hm = new double[cols][];
        for (int i = 0; i < cols; i++) {
            hm[i] = java.util.Arrays.copyOfRange(h, i * cols, (i + 1) * cols);
        }
        h = null;
        NpyWriter.writeF64(hFile, hm);
        hm = null;
        float[] w = new float[Math.multiplyExact(rows, cols)];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) (0.02 * rnd.nextGaussian());
        }
        NpyWriter.writeF32(wFile, new int[] {rows, cols}, w);
    }

    /**
     * H = XᵀX (flat, both triangles) of {@link #tokens} calibration-like random tokens (a common factor per token and
     * uneven column scales), accumulated in chunks of tokens on the kernels' syrk.
     */
    private double[] hessianFlat(Random rnd, int n, DenseKernels kernels) {
        double[] colScale = new double[n];
        for (int j = 0; j < n; j++) {
            colScale[j] = Math.exp(0.7 * rnd.nextGaussian());
        }
        double[] h = new double[Math.multiplyExact(n, n)];
        int chunk = (int) Math.max(1, Math.min(tokens, (1 << 24) / n));
        double[] x = new double[chunk * n];
        for (int t0 = 0; t0 < tokens; t0 += chunk) {
            int k = Math.min(chunk, tokens - t0);
            for (int t = 0; t < k; t++) {
                double common = rnd.nextGaussian();
                for (int j = 0; j < n; j++) {
                    x[t * n + j] = colScale[j] * (rnd.nextGaussian() + 0.5 * common);
                }
            }
            kernels.syrkUpper(n, k, 1.0, x, 0, n, h, 0, n);
        }
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < i; j++) {
                h[i * n + j] = h[j * n + i];
            }
        }
        return h;
    }

    /** One small layer through the whole solver, so that the first timed size does not pay for JIT compilation. */
    private void warmUp(DenseKernels kernels) {
        Random rnd = new Random(3);
        double[][] h = new HessianAccumulator(256).add(randomActivations(rnd, 512, 256)).hessian();
        double[][] w = new double[256][256];
        for (double[] row : w) {
            for (int j = 0; j < row.length; j++) {
                row[j] = 0.02 * rnd.nextGaussian();
            }
        }
        for (int rep = 0; rep < 3; rep++) {
            GptqSolver.quantize(w, h, options(), null, kernels);
        }
    }

    private static float[][] randomActivations(Random rnd, int t, int n) {
        float[][] x = new float[t][n];
        for (float[] row : x) {
            for (int j = 0; j < n; j++) {
                row[j] = (float) rnd.nextGaussian();
            }
        }
        return x;
    }

    /** The Cholesky alone, as a native call on a copy of H + 1% damping. */
    private static double timePotrf(double[][] h, DenseKernels kernels) {
        int n = h.length;
        double[] a = new double[n * n];
        double mean = 0;
        for (int i = 0; i < n; i++) {
            System.arraycopy(h[i], 0, a, i * n, n);
            mean += h[i][i] / n;
        }
        for (int i = 0; i < n; i++) {
            a[i * n + i] += 0.01 * mean;
        }
        long t0 = System.nanoTime();
        kernels.choleskyLower(a, n);
        return seconds(t0);
    }

    /** FLOPs of GPTQ's lazy trailing updates W[:, i2:] −= E·U[i1:i2, i2:]. */
    static double updateFlops(int rows, int cols, int block) {
        double f = 0;
        for (int i1 = 0; i1 < cols; i1 += block) {
            int i2 = Math.min(cols, i1 + block);
            f += 2.0 * rows * (i2 - i1) * (cols - i2);
        }
        return f;
    }

    /** The sequence of lazy trailing updates as native dgemm calls (column-major, C = rows × (cols−i2)). */
    private static double timeUpdates(BLAS blas, int rows, int cols, int block) {
        Random rnd = new Random(1);
        double[] c = new double[Math.multiplyExact(rows, cols)];
        double[] e = new double[rows * block];
        double[] u = new double[block * cols];
        for (int i = 0; i < e.length; i++) {
            e[i] = rnd.nextGaussian();
        }
        for (int i = 0; i < u.length; i++) {
            u[i] = rnd.nextGaussian();
        }
        long t0 = System.nanoTime();
        for (int i1 = 0; i1 < cols; i1 += block) {
            int i2 = Math.min(cols, i1 + block);
            int n = cols - i2;
            if (n > 0) {
                blas.dgemm("N", "N", rows, n, i2 - i1, -1.0, e, rows, u, block, 1.0, c, rows);
            }
        }
        return seconds(t0);
    }

    // ---- one large layer, H consumed ---------------------------------------------------------------------------------

    private void inPlace(int rows, int cols, DenseKernels kernels) {
        long mn = (long) rows * cols;
        // H, W, the dequantized copy, the codes, one slab of accumulators
        long need = 8L * cols * cols + 16 * mn + 4 * mn + 8 * Math.min(mn, 1L << 24);
        long max = Runtime.getRuntime().maxMemory();
        if (need > max) {
            say(String.format(Locale.ROOT, "in place %dx%d skipped: needs about %.1f GiB of heap, the JVM has %.1f GiB"
                    + " (set BABAI_JAVA_OPTS=-Xmx%dg)", rows, cols, need / GIB, max / GIB, (long) Math.ceil(need / GIB) + 1));
            return;
        }
        String load0 = load();
        Random rnd = new Random(42);
        long t0 = System.nanoTime();
        double[] h = hessianFlat(rnd, cols, kernels);
        double[][] w = new double[rows][cols];
        for (double[] row : w) {
            for (int j = 0; j < cols; j++) {
                row[j] = 0.02 * rnd.nextGaussian();
            }
        }
        double inputs = seconds(t0);
        System.gc();
        QuantizedLayer q;
        double total;
        double peakHeap;
        try (HeapSampler heap = new HeapSampler()) {
            t0 = System.nanoTime();
            q = GptqSolver.quantizeInPlace(w, h, options(), null, kernels);
            total = seconds(t0);
            peakHeap = heap.peak();
        }
        say(String.format(Locale.ROOT, "in place %dx%d (H %d² float64 given, consumed by its factor; %d-bit g%d):"
                        + " quantized in %.1f s (inputs made in %.1f s), loss %.6g, peak heap %.2f GiB, process peak RSS"
                        + " %s GiB, load %s → %s", rows, cols, cols, bits, groupSize, total, inputs, q.report().loss(),
                peakHeap / GIB, selfPeakRss(), load0, load()));
    }

    // ---- Hessian ------------------------------------------------------------------------------------------------------

    private void hessianTable(List<int[]> dims, DenseKernels kernels, BLAS blas) {
        header("| Hessian XᵀX (tokens × dim) | ours GFLOP/s | ssyrk GFLOP/s | dsyrk GFLOP/s | ours / ssyrk | ours / dsyrk |");
        for (int[] d : dims) {
            int dim = d[0];
            float[][] x = randomActivations(new Random(7), tokens, dim);
            double flops = (double) tokens * dim * (dim + 1); // upper triangle incl. diagonal, 2 flops per term
            new HessianAccumulator(dim, kernels).add(x); // warm-up
            double best = Double.POSITIVE_INFINITY;
            for (int rep = 0; rep < 2; rep++) {
                long t0 = System.nanoTime();
                new HessianAccumulator(dim, kernels).add(x);
                best = Math.min(best, seconds(t0));
            }
            double ours = flops / best / 1e9;
            double ss = syrkRate(blas, x, true, flops);
            double ds = syrkRate(blas, x, false, flops);
            String line = String.format(Locale.ROOT, "| %dx%d | %.2f | %.2f | %.2f | %.2f | %.2f |", tokens, dim, ours,
                    ss, ds, ours / ss, ours / ds);
            System.out.println(line);
            md.add(line);
        }
        md.add("");
    }

    /** C (upper) += Xᵀ·X with X [t × n] row-major = Xᵀ column-major [n × t]: syrk("U", "N", n, t). */
    private static double syrkRate(BLAS blas, float[][] x, boolean single, double flops) {
        int t = x.length;
        int n = x[0].length;
        double best = Double.POSITIVE_INFINITY;
        if (single) {
            float[] a = new float[t * n];
            for (int i = 0; i < t; i++) {
                System.arraycopy(x[i], 0, a, i * n, n);
            }
            float[] c = new float[n * n];
            for (int rep = 0; rep < 3; rep++) {
                long t0 = System.nanoTime();
                blas.ssyrk("U", "N", n, t, 1f, a, n, 1f, c, n);
                best = Math.min(best, seconds(t0));
            }
        } else {
            double[] a = new double[t * n];
            for (int i = 0; i < t; i++) {
                for (int j = 0; j < n; j++) {
                    a[i * n + j] = x[i][j];
                }
            }
            double[] c = new double[n * n];
            for (int rep = 0; rep < 3; rep++) {
                long t0 = System.nanoTime();
                blas.dsyrk("U", "N", n, t, 1.0, a, n, 1.0, c, n);
                best = Math.min(best, seconds(t0));
            }
        }
        return flops / best / 1e9;
    }
}
