package org.babaiquant.gpu;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantBackend.ActivationType;
import org.babaiquant.serving.PackedGptq;
import org.babaiquant.serving.ServingKernels;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;
import org.babaiquant.core.Half;
import org.babaiquant.nonclip.Ssqr;
import org.babaiquant.nonclip.SsqrLayer;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * The GPU check of issue 6 in one run (scripts/gpu-check.sh starts it on the GPU host): parity of the CUDA backend
 * against the CPU backend on fresh random and real MiniLM inputs, then the benchmark, printed last as one table with
 * the PyTorch figures measured on the same kind of host beside ours. Everything printed also goes to
 * {@code OUT/gpu-check.log}; the table to {@code OUT/gpu-check-table.txt}.
 *
 * <pre>
 *   GpuCheck [--out DIR] [--data DIR] [--device N] [--skip-bench] [--seed S] [--budget SECONDS]
 * </pre>
 * {@code --budget} (default {@value #DEFAULT_BUDGET_SECONDS} s, counted from the start of GpuCheck) caps the run: a
 * benchmark that would start after {@code budget − its allowance} is skipped with a table row saying so, so that the
 * run ends with its table and exit status before gpu-check.sh's {@code timeout} would kill it.
 * Exit status: 0 every parity case passed, 1 a parity case failed, 2 usage, 3 CUDA unavailable (the reason printed
 * as {@code CUDA unavailable: ...}), 4 an error stopped the run.
 */
public final class GpuCheck {
    public static final int EXIT_OK = 0;
    public static final int EXIT_PARITY_FAILED = 1;
    public static final int EXIT_USAGE = 2;
    public static final int EXIT_UNAVAILABLE = 3;
    public static final int EXIT_ERROR = 4;

    /** Memory bandwidth measured on the H100 host (device-to-device copy, read + write): the GEMV floor. */
    static final double H100_BYTES_PER_SECOND = 2.96e12;
    /** Default wall-clock budget of the whole check (gpu-check.sh kills the JVM at 450 s). */
    static final int DEFAULT_BUDGET_SECONDS = 420;
    /** When this class was loaded: the start of the budget (the JVM itself starts well under a second earlier). */
    private static final long STARTED = System.nanoTime();

    final PrintStream out;
    private final Path outDir;
    final Path data;
    final SplittableRandom rnd;
    private final List<String[]> table = new ArrayList<>();
    private int failures;
    /** System.nanoTime() after which no benchmark starts (each needs its own allowance before it). */
    private final long deadline;

    private GpuCheck(PrintStream out, Path outDir, Path data, long seed, long deadline) {
        this.out = out;
        this.outDir = outDir;
        this.data = data;
        this.rnd = new SplittableRandom(seed);
        this.deadline = deadline;
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out));
    }

    /** The whole check; returns the exit status (no System.exit, so that tests can call it). */
    public static int run(String[] args, PrintStream console) {
        Path outDir = Path.of(System.getenv().getOrDefault("OUT", "gpu-check-out"));
        Path data = Path.of("data/minilm-l6-v2");
        String device = null;
        boolean bench = true;
        long seed = System.nanoTime();
        double budget = DEFAULT_BUDGET_SECONDS;
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "--out" -> outDir = Path.of(args[++i]);
                    case "--data" -> data = Path.of(args[++i]);
                    case "--device" -> device = args[++i];
                    case "--skip-bench" -> bench = false;
                    case "--seed" -> seed = Long.parseLong(args[++i]);
                    case "--budget" -> budget = Double.parseDouble(args[++i]);
                    default -> throw new IllegalArgumentException("unknown argument " + args[i]);
                }
            }
        } catch (RuntimeException e) {
            console.println("usage: GpuCheck [--out DIR] [--data DIR] [--device N] [--skip-bench] [--seed S]"
                    + " [--budget SECONDS]: " + e.getMessage());
            return EXIT_USAGE;
        }
        QuantBackend.Availability a = CudaProbe.availability();
        if (!a.available()) {
            console.println("CUDA unavailable: " + a.reason());
            return EXIT_UNAVAILABLE;
        }
        try {
            Files.createDirectories(outDir);
            try (OutputStream log = Files.newOutputStream(outDir.resolve("gpu-check.log"));
                 PrintStream tee = new PrintStream(new Tee(console, log), true, StandardCharsets.UTF_8)) {
                GpuCheck check = new GpuCheck(tee, outDir, data, seed, STARTED + (long) (budget * 1e9));
                tee.println("gpu-check: seed " + seed + ", " + a.reason());
                CudaBackend cuda = CudaBackend.open(device);
                tee.println("device: " + cuda.description());
                check.parity(cuda);
                if (bench) {
                    check.bench(cuda);
                }
                check.failures += ServingCheck.run(cuda, tee, outDir, seed, bench, 90); // issue 16 (gpukernels)
                String t = check.formatTable();
                tee.println();
                tee.print(t);
                Files.writeString(outDir.resolve("gpu-check-table.txt"), t);
                tee.println(check.failures == 0 ? "parity: all cases passed" : "parity: " + check.failures
                        + " case(s) FAILED");
                return check.failures == 0 ? EXIT_OK : EXIT_PARITY_FAILED;
            }
        } catch (Exception | LinkageError e) {
            console.println("gpu-check stopped: " + e);
            e.printStackTrace(console);
            return EXIT_ERROR;
        }
    }

    // ---- parity ---------------------------------------------------------------------------------------------------

    /** Runs one case; an exception fails it (stack trace in the log) and the run goes on to the next one. */
    void attempt(String what, Step step) {
        try {
            step.run();
        } catch (Exception | LinkageError e) {
            verdict(what, false, "stopped by " + e);
            e.printStackTrace(out);
            if (e instanceof CudaException c && !c.recoverable()) {
                out.println("[gpu-check] a fatal CUDA error poisons the context: the cases after this one will fail too");
            }
        }
    }

    interface Step {
        void run() throws Exception;
    }

    void verdict(String what, boolean ok, String detail) {
        if (!ok) {
            failures++;
        }
        out.printf(Locale.ROOT, "[parity] %-52s %s  %s%n", what, ok ? "PASS" : "FAIL", detail);
    }

    private void parity(CudaBackend cuda) throws IOException {
        QuantBackend cpu = QuantBackend.cpu();
        // Hessians: float32, float16, bfloat16 tiles (odd sizes: partial 128-tiles and 16-token steps)
        float[] x = gaussianFloats(3001 * 700);
        hessianCase("hessian f32 random 3001x700", cpu, cuda, 700, s -> {
            s.add(java.util.Arrays.copyOfRange(x, 0, 1000 * 700), 1000);
            s.add(java.util.Arrays.copyOfRange(x, 1000 * 700, x.length), 2001);
        });
        for (ActivationType t : new ActivationType[] {ActivationType.F16, ActivationType.BF16}) {
            byte[] raw = halves(x, t);
            hessianCase("hessian " + t + " random 3001x700", cpu, cuda, 700, s -> s.addRaw(raw, 0, 3001, t));
        }
        for (String site : new String[] {"attn_in", "ffn_down_in"}) {
            float[][] act = Npy.readMatrixF32(data.resolve("activations/layer0_" + site + ".calib.npy"));
            float[] flat = flatten(act);
            hessianCase("hessian real MiniLM " + site + " " + act.length + "x" + act[0].length, cpu, cuda,
                    act[0].length, s -> s.add(flat, act.length));
        }

        new SolverCheck(this, cuda).parity(data);

        // GEMV: random packed layers at 2/4/8 bits, batch 1, 3, 8; a real SSQR layer
        for (int bits : new int[] {4, 2, 8}) {
            PackedGptq p = randomPacked(bits, 128, 1024, 768);
            for (int batch : new int[] {1, 3, 8}) {
                float[] xs = gaussianFloats(batch * p.in());
                gemvCase("gemv gptq " + bits + "-bit g128 768x1024 batch " + batch, () -> ServingKernels.cpu().gptqLinear(p),
                        () -> cuda.gptqLinear(p), xs, batch, Parity.absScale(p, xs, batch));
            }
        }
        // several 1024-input slices, groups straddling slices, a partial last group, v1 zeros (stored as zero − 1);
        // one group per row (per channel)
        PackedGptq v2 = randomPacked(4, 96, 2600, 304);
        PackedGptq odd = new PackedGptq(4, 96, 2600, 304, v2.qweight(), v2.qzeros(), v2.scales(), true);
        float[] xo = gaussianFloats(3 * odd.in());
        gemvCase("gemv gptq 4-bit g96 v1-zeros 304x2600 batch 3", () -> ServingKernels.cpu().gptqLinear(odd), () -> cuda.gptqLinear(odd), xo, 3,
                Parity.absScale(odd, xo, 3));
        PackedGptq channel = randomPacked(2, 2592, 2592, 320);
        float[] xc = gaussianFloats(8 * channel.in());
        gemvCase("gemv gptq 2-bit per-channel 320x2592 batch 8", () -> ServingKernels.cpu().gptqLinear(channel),
                () -> cuda.gptqLinear(channel), xc, 8, Parity.absScale(channel, xc, 8));
        double[][] wq = Npy.readMatrix(data.resolve("weights/layer0_ffn_up.weight.npy"));
        double[][] hq = new HessianAccumulator(wq[0].length)
                .add(Npy.readMatrixF32(data.resolve("activations/layer0_ffn_up_in.calib.npy"))).hessian();
        SsqrLayer ssqr = Ssqr.quantize(wq, hq, Ssqr.Options.of(4, 128, 0.01, GptqSolver.Options.defaults())).layer();
        for (int batch : new int[] {1, 8}) {
            float[] xs = gaussianFloats(batch * ssqr.cols());
            gemvCase("gemv ssqr real ffn_up 4-bit g128 " + ssqr.outliers() + " outliers batch " + batch,
                    () -> ServingKernels.cpu().ssqrLinear(ssqr), () -> cuda.ssqrLinear(ssqr), xs, batch,
                    Parity.absScale(ssqr, xs, batch));
        }
    }

    private interface Fill {
        void into(QuantBackend.HessianSum s);
    }

    private void hessianCase(String what, QuantBackend cpu, CudaBackend cuda, int n, Fill fill) {
        attempt(what, () -> {
            try (QuantBackend.HessianSum a = cpu.hessian(n); QuantBackend.HessianSum b = cuda.hessian(n)) {
                fill.into(a);
                fill.into(b);
                double err = Parity.hessian(a.toAccumulator(), b.toAccumulator());
                verdict(what, err <= Parity.MAX_HESSIAN_REL, String.format(Locale.ROOT,
                        "max |dH|/sqrt(HiiHjj) %.2e (limit %.0e)", err, Parity.MAX_HESSIAN_REL));
            }
        });
    }

    private void gemvCase(String what, java.util.function.Supplier<ServingKernels.Linear> ref,
                          java.util.function.Supplier<ServingKernels.Linear> got, float[] x, int batch,
                          double[] absScale) {
        attempt(what, () -> {
            try (ServingKernels.Linear r = ref.get(); ServingKernels.Linear g = got.get()) {
                double err = Parity.gemv(r.apply(x, batch), g.apply(x, batch), absScale);
                verdict(what, err <= Parity.MAX_GEMV_REL, String.format(Locale.ROOT,
                        "max |dy|/sum|x*w| %.2e (limit %.0e)", err, Parity.MAX_GEMV_REL));
            }
        });
    }

    // ---- benchmark ------------------------------------------------------------------------------------------------

    void row(String work, String ours, String target, String torch) {
        table.add(new String[] {work, ours, target, torch});
        out.printf(Locale.ROOT, "[bench] %s: %s (target %s; PyTorch %s)%n", work, ours, target, torch);
        try { // rewritten after every row, so that a run stopped by its time limit keeps what it measured
            Files.writeString(outDir.resolve("gpu-check-table.txt"), formatTable());
        } catch (IOException e) {
            out.println("[gpu-check] cannot write the table: " + e);
        }
    }

    private void bench(CudaBackend cuda) {
        // cheapest first: a run cut short by its time limit still reports the most
        // each with the time it needs, generously (host-side inputs and CPU references included), before the deadline
        benchWithin("bench GEMV", 60, () -> benchGemv(cuda));
        benchWithin("bench Hessian", 30, () -> benchHessian(cuda));
        new SolverCheck(this, cuda).bench();
    }

    /** Runs one benchmark if {@code seconds} remain before the deadline, else records it as skipped. */
    void benchWithin(String what, int seconds, Step step) {
        double left = (deadline - System.nanoTime()) / 1e9;
        if (left < seconds) {
            row(what, String.format(Locale.ROOT, "skipped: %.0f s left of the budget, it is allowed %d s", left,
                    seconds), "", "");
            return;
        }
        attempt(what, step);
    }

    private void benchHessian(CudaBackend cuda) {
        int n = 4096;
        int tokens = 262144;
        int chunk = 16384;
        float[] tile = gaussianFloats(chunk * n);
        try (DeviceBuffer x = DeviceBuffer.floats(cuda.device, (long) tokens * n, "X 262144x4096");
             DeviceBuffer h = DeviceBuffer.doubles(cuda.device, (long) n * n, "H 4096x4096")) {
            for (int t0 = 0; t0 < tokens; t0 += chunk) {
                x.upload(tile, (long) chunk * n, 4L * t0 * n);
            }
            h.zero();
            int tiles = n / 128;
            cuda.device.launch("hessian_syrk_f32", tiles, tiles, 256, 0, x, chunk, n, h); // warm-up
            h.zero();
            double s = cuda.device.seconds(1, () -> cuda.device.launch("hessian_syrk_f32", tiles, tiles, 256, 0, x,
                    tokens, n, h));
            double full = 2.0 * tokens * n * n;
            row("Hessian X^T X 262144x4096 fp32 (fp32 x8 tokens, fp64 sums)", String.format(Locale.ROOT,
                    "%.3f s = %.1f TFLOP/s as 2Nn^2 (%.1f executed: upper tiles only)", s, full / s / 1e12,
                    full * (tiles + 1) / (2.0 * tiles) / s / 1e12), ">= 25 TFLOP/s", "0.166 s (53 TFLOP/s)");
        }
    }

    private void benchGemv(CudaBackend cuda) {
        int out = 28672;
        int in = 8192;
        PackedGptq p = randomPacked(4, 128, in, out);
        float[] x1 = gaussianFloats(in);
        try (CudaBackend.CudaLinear dense = (CudaBackend.CudaLinear) cuda.gptqLinear(p);
             ServingKernels.Linear ref = ServingKernels.cpu().gptqLinear(p)) {
            double err = Parity.gemv(ref.apply(x1, 1), dense.apply(x1, 1), Parity.absScale(p, x1, 1));
            verdict("gemv gptq 4-bit g128 28672x8192 batch 1 (benchmark layer)", err <= Parity.MAX_GEMV_REL,
                    String.format(Locale.ROOT, "max |dy|/sum|x*w| %.2e", err));
            double t1 = dense.time(x1, 1, 200);
            double t8 = dense.time(gaussianFloats(8 * in), 8, 100);
            double floor = (dense.weightBytes + 4.0 * in + 4.0 * out) / H100_BYTES_PER_SECOND;
            row("GEMV 4-bit g128 28672x8192 batch 1", String.format(Locale.ROOT,
                    "%.1f us (floor %.1f us at 2.96 TB/s: %.2fx); batch 8 %.1f us", t1 * 1e6, floor * 1e6,
                    t1 / floor, t8 * 1e6), "<= 88 us and <= 1.5x floor", "177 us (fp16)");
            SsqrLayer s = randomSsqr(out, in, 0.01);
            try (CudaBackend.CudaLinear sparse = (CudaBackend.CudaLinear) cuda.ssqrLinear(s);
                 ServingKernels.Linear sref = ServingKernels.cpu().ssqrLinear(s)) {
                double serr = Parity.gemv(sref.apply(x1, 1), sparse.apply(x1, 1), Parity.absScale(s, x1, 1));
                verdict("gemv ssqr 4-bit g128 1% outliers 28672x8192 (benchmark layer)",
                        serr <= Parity.MAX_GEMV_REL, String.format(Locale.ROOT, "max |dy|/sum|x*w| %.2e", serr));
                double ts = sparse.time(x1, 1, 200);
                row("SSQR 4-bit g128 + 1% CSR outliers, batch 1", String.format(Locale.ROOT,
                        "%.1f us = %.2fx dense", ts * 1e6, ts / t1), "<= 1.3x dense", "");
            }
        }
    }

    private String formatTable() {
        StringBuilder sb = new StringBuilder();
        String fmt = "%-58s | %-78s | %-26s | %s%n";
        sb.append(String.format(Locale.ROOT, fmt, "work", "ours", "target", "PyTorch (H100, shared/gpu/README.md)"));
        for (String[] r : table) {
            sb.append(String.format(Locale.ROOT, fmt, (Object[]) r));
        }
        return sb.toString();
    }

    // ---- inputs ---------------------------------------------------------------------------------------------------

    double[][] gaussian(int rows, int cols, double sd) {
        double[][] m = new double[rows][cols];
        long seed = rnd.nextLong();
        IntStream.range(0, rows).parallel().forEach(r -> {
            java.util.Random g = new java.util.Random(seed + r);
            for (int j = 0; j < cols; j++) {
                m[r][j] = sd * g.nextGaussian();
            }
        });
        return m;
    }

    float[] gaussianFloats(int count) {
        float[] f = new float[count];
        long seed = rnd.nextLong();
        int chunk = 1 << 16;
        IntStream.range(0, (count + chunk - 1) / chunk).parallel().forEach(c -> {
            java.util.Random g = new java.util.Random(seed + c);
            for (int i = c * chunk; i < Math.min(count, (c + 1) * chunk); i++) {
                f[i] = (float) g.nextGaussian();
            }
        });
        return f;
    }

    /** Calibration-like activations: correlated columns with uneven scales. */
    float[] correlatedFloats(int tokens, int n) {
        float[] x = gaussianFloats(tokens * n);
        double[] colScale = new double[n];
        for (int j = 0; j < n; j++) {
            colScale[j] = Math.exp(0.7 * (rnd.nextDouble() * 2 - 1));
        }
        for (int t = 0; t < tokens; t++) {
            double common = x[t * n]; // one shared factor per token
            for (int j = 0; j < n; j++) {
                x[t * n + j] = (float) (colScale[j] * (x[t * n + j] + 0.5 * common));
            }
        }
        return x;
    }

    double[][] gramOfCorrelated(int tokens, int n) {
        float[] x = correlatedFloats(tokens, n);
        float[][] rows = new float[tokens][];
        for (int t = 0; t < tokens; t++) {
            rows[t] = java.util.Arrays.copyOfRange(x, t * n, (t + 1) * n);
        }
        return new HessianAccumulator(n).add(rows).hessian();
    }

    private static float[] flatten(float[][] a) {
        float[] f = new float[a.length * a[0].length];
        for (int r = 0; r < a.length; r++) {
            System.arraycopy(a[r], 0, f, r * a[0].length, a[0].length);
        }
        return f;
    }

    private static byte[] halves(float[] x, ActivationType t) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(2 * x.length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (float v : x) {
            b.putShort(t == ActivationType.F16 ? Half.fromFloat(v) : (short) (Float.floatToRawIntBits(v) >>> 16));
        }
        return b.array();
    }

    /** Random codes, zero points and fp16 scales in the checkpoint layout (v2 zeros), scales in [1e-3, 2e-3). */
    private PackedGptq randomPacked(int bits, int groupSize, int in, int out) {
        return randomPacked(rnd, bits, groupSize, in, out, false, () -> 1e-3 * (1 + rnd.nextDouble()));
    }

    /**
     * A random GPTQ layer: random words are valid codes and zero points at any bit width; the fp16 scales come from
     * {@code scale}, drawn after the words (so a seed gives the same layer as before this helper was shared).
     */
    static PackedGptq randomPacked(SplittableRandom rnd, int bits, int groupSize, int in, int out, boolean v1,
                                   java.util.function.DoubleSupplier scale) {
        int groups = (in + groupSize - 1) / groupSize;
        int[] qweight = new int[in * bits / 32 * out];
        for (int i = 0; i < qweight.length; i++) {
            qweight[i] = rnd.nextInt();
        }
        int[] qzeros = new int[groups * out * bits / 32];
        for (int i = 0; i < qzeros.length; i++) {
            qzeros[i] = rnd.nextInt();
        }
        short[] scales = new short[groups * out];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = Half.fromFloat((float) scale.getAsDouble());
        }
        return new PackedGptq(bits, groupSize, in, out, qweight, qzeros, scales, v1);
    }

    /** A 4-bit g128 SSQR layer with random codes and {@code rate} of the weights as outliers. */
    private SsqrLayer randomSsqr(int rows, int cols, double rate) {
        int gs = 128;
        int groups = cols / gs;
        short[] scale = new short[rows * groups];
        int[] zero = new int[rows * groups];
        for (int i = 0; i < scale.length; i++) {
            scale[i] = Half.fromFloat((float) (1e-3 * (1 + rnd.nextDouble())));
            zero[i] = 4 + rnd.nextInt(8);
        }
        int[] codes = new int[rows * cols];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(16);
        }
        int perRow = (int) Math.round(rate * cols);
        int[] rowPtr = new int[rows + 1];
        int[] col = new int[rows * perRow];
        int[] offset = new int[rows * perRow];
        int k = 0;
        int stride = cols / perRow;
        for (int r = 0; r < rows; r++) {
            for (int e = 0; e < perRow; e++) {
                int j = e * stride + rnd.nextInt(stride);
                col[k] = j;
                int z = zero[r * groups + j / gs];
                codes[r * cols + j] = z;
                offset[k] = rnd.nextBoolean() ? 16 - z + rnd.nextInt(8) : -z - 1 - rnd.nextInt(8);
                k++;
            }
            rowPtr[r + 1] = k;
        }
        return new SsqrLayer(4, gs, rows, cols, scale, zero, codes, rowPtr, col, offset);
    }

    /** Writes to the console and the log file. */
    private static final class Tee extends OutputStream {
        private final OutputStream a;
        private final OutputStream b;

        Tee(OutputStream a, OutputStream b) {
            this.a = a;
            this.b = b;
        }

        @Override
        public void write(int c) throws IOException {
            a.write(c);
            b.write(c);
        }

        @Override
        public void write(byte[] buf, int off, int len) throws IOException {
            a.write(buf, off, len);
            b.write(buf, off, len);
        }

        @Override
        public void flush() throws IOException {
            a.flush();
            b.flush();
        }
    }
}
