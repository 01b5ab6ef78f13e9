package org.babaiquant.gpu;

import org.babaiquant.core.Half;
import org.babaiquant.nonclip.SsqrLayer;
import org.babaiquant.serving.PackedGptq;
import org.babaiquant.serving.ServingReference;
import org.babaiquant.serving.TiledLayer;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The serving part of the GPU check (issue 16), called by one line of {@link GpuCheck}: the tensor-core GEMV
 * ({@code gemv_tc.cu} through {@link TiledLinear}) first for parity, then timed.
 *
 * <p>Parity: for 2, 3, 4 and 8 bits, natural and act-order {@code g_idx}, sym v1 and asym zero points, batch 1, 2, 4,
 * 8, 16 (and 11, which runs the batch-16 kernel on zero-padded rows), sizes that are not multiples of the tiles, and
 * SSQR with ~1 % CSR outliers: {@code max |Δy| / Σ|x·w| ≤ 1e-5} against the float64 {@link ServingReference}; the
 * distance to the CPU twin ({@link TiledLayer#gemv}) is logged beside it. Benchmarks (CUDA events, x on the device):
 * 4-bit g128 28672×8192 at batch 1, 8, 16; 4096×4096 and 11008×4096 at batch 1; SSQR 4-bit g128 with 1 % outliers at
 * 28672×8192 batch 1 as a ratio to the dense kernel; each with the bytes floor at the H200's measured 4.29 TB/s. The
 * Hessian: {@code CudaBackend.hessian} ({@code hessian_dmma.cu}) for f32/f16/bf16 tiles against float64 sums within
 * {@link HessianTwin}'s contract and against the CPU backend to 1e-12 relative; 262144×4096 fp32 and bf16 timed. The
 * PyTorch peers of the same run are measured by {@code scripts/serving_peers.py} (gpu-check.sh) into
 * {@code OUT/serving-peers.txt}. Rows go to {@code OUT/serving-check-table.txt}, rewritten after each.
 */
public final class ServingCheck {
    /** The GEMV parity criterion. */
    static final double MAX_REL = 1e-5;
    /** H200 read bandwidth measured 2026-12-04 (sum of 1 GiB), for the bytes floor. */
    static final double H200_BYTES_PER_SECOND = 4.29e12;

    private final CudaBackend cuda;
    private final PrintStream out;
    private final Path outDir;
    private final SplittableRandom rnd;
    private final long deadline;
    private final List<String> rows = new ArrayList<>();
    private int failures;

    private ServingCheck(CudaBackend cuda, PrintStream out, Path outDir, long seed, long deadline) {
        this.cuda = cuda;
        this.out = out;
        this.outDir = outDir;
        this.rnd = new SplittableRandom(seed ^ 0x5E41_16L);
        this.deadline = deadline;
    }

    /**
     * Runs the serving check; {@code seconds} bounds it (benchmarks that would start later are skipped with a row
     * saying so). Returns the number of failed parity cases.
     */
    public static int run(CudaBackend cuda, PrintStream out, Path outDir, long seed, boolean bench, double seconds) {
        ServingCheck c = new ServingCheck(cuda, out, outDir, seed, System.nanoTime() + (long) (seconds * 1e9));
        out.println("[serving] tensor-core GEMV (gemv_tc), seed " + seed);
        c.parity();
        c.hessianParity();
        if (bench) {
            c.bench();
            c.within("Hessian 262144x4096", 40, c::benchHessian);
        }
        out.println("[serving] " + (c.failures == 0 ? "parity: all cases passed" : "parity: " + c.failures + " case(s) FAILED"));
        return c.failures;
    }

    // ---- parity ---------------------------------------------------------------------------------------------------

    private void parity() {
        int[][] shapes = {{2, 1536, 1008, 128}, {3, 1536, 544, 128}, {4, 1536, 1000, 128}, {8, 1000, 1004, 100},
                {4, 2048, 520, 2048}};
        for (int[] sh : shapes) {
            for (boolean v1 : new boolean[] {false, true}) {
                for (boolean actOrder : new boolean[] {false, true}) {
                    PackedGptq p = randomGptq(sh[0], sh[1], sh[2], sh[3], v1);
                    int[] g = actOrder ? actOrder(sh[1], sh[3]) : null;
                    String what = String.format(Locale.ROOT, "gemv_tc %d-bit %dx%d g%d %s%s", sh[0], sh[2], sh[1], sh[3],
                            v1 ? "sym v1" : "asym", actOrder ? " act-order" : "");
                    layerCases(what, TiledLayer.of(p, g), (x, b) -> ServingReference.gptq(p, g, x, b));
                }
            }
        }
        for (int bits : new int[] {2, 3, 4, 8}) {
            SsqrLayer s = randomSsqr(bits, 517, 1301, 128, 0.01);
            layerCases("gemv_tc SSQR " + bits + "-bit 517x1301 g128 1% outliers", TiledLayer.of(s),
                    (x, b) -> ServingReference.ssqr(s, x, b));
        }
    }

    private interface Reference {
        ServingReference.Products of(float[] x, int batch);
    }

    private void layerCases(String what, TiledLayer t, Reference ref) {
        attempt(what, () -> {
            try (TiledLinear l = cuda.tiledLinear(t)) {
                for (int batch : new int[] {1, 2, 4, 8, 11, 16}) {
                    float[] x = activations(batch * t.in());
                    ServingReference.Products r = ref.of(x, batch);
                    float[] got = l.apply(x, batch);
                    double err = r.maxRelative(got);
                    double twin = relativeTo(got, t.gemv(x, batch, l.splits()), r.abs());
                    verdict(what + " batch " + batch, err <= MAX_REL, String.format(Locale.ROOT,
                            "max |dy|/sum|x*w| %.2e (limit %.0e); vs CPU twin %.2e; splits %d", err, MAX_REL, twin, l.splits()));
                }
            }
        });
    }

    private static double relativeTo(float[] a, float[] b, double[] abs) {
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - b[i]);
            if (d > 0) {
                worst = Math.max(worst, abs[i] > 0 ? d / abs[i] : Double.POSITIVE_INFINITY);
            }
        }
        return worst;
    }

    // ---- Hessian (hessian_dmma through CudaBackend.hessian) ----------------------------------------------------------

    /**
     * The backend's Hessian against float64 sums (Neumaier-compensated, error ≤ 2⁻⁵²·Σ|x·x| + O(N·2⁻¹⁰⁶)): every entry
     * within {@link HessianTwin#bound} of the contract plus that; and the CPU backend's to the 1e-12 relative
     * ({@code |ΔH_ij| ≤ 1e-12·sqrt(H_ii·H_jj)}).
     */
    private void hessianParity() {
        int n = 300;
        int tokens = 5000;
        for (org.babaiquant.core.QuantBackend.ActivationType type : org.babaiquant.core.QuantBackend.ActivationType.values()) {
            String what = "hessian_dmma " + type + " " + tokens + "x" + n + " (2 tiles)";
            attempt(what, () -> {
                float[] x = activations(tokens * n);
                byte[] raw = new byte[x.length * type.bytes];
                java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < x.length; i++) {
                    switch (type) {
                        case F32 -> bb.putFloat(x[i]);
                        case F16 -> bb.putShort(Half.fromFloat(Math.max(-60000f, Math.min(60000f, x[i]))));
                        case BF16 -> bb.putShort((short) (Float.floatToRawIntBits(x[i]) >>> 16));
                    }
                }
                float[] xs = org.babaiquant.core.CpuBackend.decode(raw, 0, x.length, type); // the values as stored
                int t1 = 1777;
                double[][] got;
                double[][] cpu;
                try (org.babaiquant.core.QuantBackend.HessianSum g = cuda.hessian(n);
                     org.babaiquant.core.QuantBackend.HessianSum c = org.babaiquant.core.QuantBackend.cpu().hessian(n)) {
                    g.addRaw(raw, 0, t1, type);
                    g.addRaw(raw, t1 * n * type.bytes, tokens - t1, type);
                    c.add(xs, tokens);
                    got = g.toAccumulator().hessian();
                    cpu = c.toAccumulator().hessian();
                }
                double worstContract = 0;
                double worstCpu = 0;
                for (int i = 0; i < n; i++) {
                    for (int j = i; j < n; j++) {
                        double sum = 0;
                        double comp = 0;
                        double abs = 0;
                        for (int t = 0; t < tokens; t++) {
                            double p = (double) xs[t * n + i] * xs[t * n + j];
                            double u = sum + p; // Neumaier
                            comp += Math.abs(sum) >= Math.abs(p) ? (sum - u) + p : (p - u) + sum;
                            sum = u;
                            abs += Math.abs(p);
                        }
                        double exact = sum + comp;
                        double bound = HessianTwin.bound(tokens, 2, abs) + 0x1p-52 * abs;
                        worstContract = Math.max(worstContract, Math.abs(got[i][j] - exact) / bound);
                        worstCpu = Math.max(worstCpu, Math.abs(got[i][j] - cpu[i][j]) / Math.sqrt(cpu[i][i] * cpu[j][j]));
                    }
                }
                verdict(what, worstContract <= 1 && worstCpu <= 1e-12, String.format(Locale.ROOT,
                        "error / contract bound %.3f (limit 1); vs CPU backend max |dH|/sqrt(HiiHjj) %.2e (limit 1e-12)",
                        worstContract, worstCpu));
            });
        }
    }

    /** Kernel time of the widen + DMMA pair on X resident on the device (CUDA events), fp32 and bf16 inputs. */
    private void benchHessian() {
        int n = 4096;
        int tokens = 262144;
        int chunk = 16384;
        float[] tile = activations(chunk * n);
        byte[] tileBf16 = new byte[2 * tile.length];
        for (int i = 0; i < tile.length; i++) {
            int b = Float.floatToRawIntBits(tile[i]) >>> 16;
            tileBf16[2 * i] = (byte) b;
            tileBf16[2 * i + 1] = (byte) (b >>> 8);
        }
        CudaDevice d = cuda.device;
        synchronized (cuda) {
            try (DeviceBuffer x = DeviceBuffer.floats(d, (long) tokens * n, "X 262144x4096 fp32");
                 DeviceBuffer xb = DeviceBuffer.alloc(d, 2L * tokens * n, "X 262144x4096 bf16");
                 DeviceBuffer wide = DeviceBuffer.doubles(d, (long) tokens * n, "X in float64");
                 DeviceBuffer h = DeviceBuffer.doubles(d, (long) n * n, "H 4096x4096")) {
                for (int t0 = 0; t0 < tokens; t0 += chunk) {
                    x.upload(tile, (long) chunk * n, 4L * t0 * n);
                    xb.upload(tileBf16, 0, tileBf16.length, 2L * t0 * n);
                }
                int tiles = n / 64;
                long count = (long) tokens * n;
                for (String type : new String[] {"f32", "bf16"}) {
                    DeviceBuffer src = type.equals("f32") ? x : xb;
                    h.zero();
                    d.launch("hessian_widen_" + type, (int) ((count + 255) / 256), 1, 256, 0, src, count, wide); // warm-up
                    d.launch("hessian_dmma", tiles * (tiles + 1) / 2, 1, 128, 0, wide, chunk, n, h);
                    h.zero();
                    double widen = d.seconds(1, () -> d.launch("hessian_widen_" + type, (int) ((count + 255) / 256), 1,
                            256, 0, src, count, wide));
                    double dmma = d.seconds(1, () -> d.launch("hessian_dmma", tiles * (tiles + 1) / 2, 1, 128, 0,
                            wide, tokens, n, h));
                    double full = 2.0 * tokens * n * n;
                    rows.add(String.format(Locale.ROOT, "%-48s | %8.1f ms (widen %.1f + DMMA %.1f; %.1f TFLOP/s as 2Nn^2) | target %s | %s",
                            "Hessian XtX 262144x4096 " + type + " (exact products, fp64 sums)", (widen + dmma) * 1e3,
                            widen * 1e3, dmma * 1e3, full / (widen + dmma) / 1e12, type.equals("f32") ? "<= 100 ms" : "<= 40 ms",
                            type.equals("f32") ? "PyTorch fp32 165 ms" : "PyTorch bf16 11.2 ms (bf16 result)"));
                    out.println("[serving-bench] " + rows.get(rows.size() - 1));
                    flush();
                }
            }
        }
    }

    // ---- benchmark ------------------------------------------------------------------------------------------------

    private void bench() {
        within("4-bit g128 28672x8192", 40, () -> {
            PackedGptq p = randomGptq(4, 8192, 28672, 128, false);
            TiledLayer t = TiledLayer.of(p, null);
            try (TiledLinear l = cuda.tiledLinear(t)) {
                float[] x1 = activations(8192);
                double err = ServingReference.gptq(p, null, x1, 1).maxRelative(l.apply(x1, 1));
                verdict("gemv_tc 4-bit g128 28672x8192 batch 1 (benchmark layer)", err <= MAX_REL,
                        String.format(Locale.ROOT, "max |dy|/sum|x*w| %.2e", err));
                double floor = (l.weightBytes + 4.0 * 8192 + 4.0 * 28672) / H200_BYTES_PER_SECOND;
                double t1 = l.time(x1, 1, 200);
                double t8 = l.time(activations(8 * 8192), 8, 200);
                double t16 = l.time(activations(16 * 8192), 16, 200);
                row("GEMV tc 4-bit g128 28672x8192 batch 1", t1, floor, "<= 40 us", "tinygemm 62.8 us, cuBLAS fp16 112 us (2026-12-04)");
                row("GEMV tc 4-bit g128 28672x8192 batch 8", t8, floor, "<= 55 us", "tinygemm 154.9 us");
                row("GEMV tc 4-bit g128 28672x8192 batch 16", t16, floor, "<= 70 us", "");
                within("SSQR 1% outliers 28672x8192", 30, () -> {
                    SsqrLayer s = randomSsqr(4, 28672, 8192, 128, 0.01);
                    try (TiledLinear sl = cuda.tiledLinear(TiledLayer.of(s))) {
                        double serr = ServingReference.ssqr(s, x1, 1).maxRelative(sl.apply(x1, 1));
                        verdict("gemv_tc SSQR 4-bit g128 1% outliers 28672x8192 batch 1 (benchmark layer)", serr <= MAX_REL,
                                String.format(Locale.ROOT, "max |dy|/sum|x*w| %.2e", serr));
                        double ts = sl.time(x1, 1, 200);
                        rows.add(String.format(Locale.ROOT, "%-48s | %8.1f us = %.2fx the dense tc kernel | target <= 1.15x",
                                "SSQR tc 4-bit g128 + 1% CSR, 28672x8192 b1", ts * 1e6, ts / t1));
                        flush();
                    }
                });
            }
        });
        for (int[] sh : new int[][] {{4096, 4096}, {11008, 4096}}) {
            within("4-bit g128 " + sh[0] + "x" + sh[1], 15, () -> {
                PackedGptq p = randomGptq(4, sh[1], sh[0], 128, false);
                try (TiledLinear l = cuda.tiledLinear(TiledLayer.of(p, null))) {
                    float[] x = activations(sh[1]);
                    double err = ServingReference.gptq(p, null, x, 1).maxRelative(l.apply(x, 1));
                    verdict("gemv_tc 4-bit g128 " + sh[0] + "x" + sh[1] + " batch 1 (benchmark layer)", err <= MAX_REL,
                            String.format(Locale.ROOT, "max |dy|/sum|x*w| %.2e", err));
                    double floor = (l.weightBytes + 4.0 * sh[1] + 4.0 * sh[0]) / H200_BYTES_PER_SECOND;
                    row("GEMV tc 4-bit g128 " + sh[0] + "x" + sh[1] + " batch 1", l.time(x, 1, 500), floor,
                            sh[0] == 4096 ? "< 13.0 us" : "< 14.8 us", "tinygemm " + (sh[0] == 4096 ? "13.0" : "14.8") + " us");
                }
            });
        }
    }

    private void row(String work, double seconds, double floor, String target, String peer) {
        rows.add(String.format(Locale.ROOT, "%-48s | %8.1f us (floor %.1f us at 4.29 TB/s: %.2fx) | target %s | %s", work,
                seconds * 1e6, floor * 1e6, seconds / floor, target, peer));
        out.println("[serving-bench] " + rows.get(rows.size() - 1));
        flush();
    }

    private void flush() {
        try {
            Files.write(outDir.resolve("serving-check-table.txt"), rows);
        } catch (IOException e) {
            out.println("[serving] cannot write the table: " + e);
        }
    }

    private interface Step {
        void run() throws Exception;
    }

    private void within(String what, int seconds, Step step) {
        double left = (deadline - System.nanoTime()) / 1e9;
        if (left < seconds) {
            rows.add(String.format(Locale.ROOT, "%-48s | skipped: %.0f s left, it is allowed %d s", what, left, seconds));
            flush();
            return;
        }
        attempt(what, step);
    }

    private void attempt(String what, Step step) {
        try {
            step.run();
        } catch (Exception | LinkageError e) {
            verdict(what, false, "stopped by " + e);
            e.printStackTrace(out);
        }
    }

    private void verdict(String what, boolean ok, String detail) {
        if (!ok) {
            failures++;
        }
        out.printf(Locale.ROOT, "[parity] %-60s %s  %s%n", what, ok ? "PASS" : "FAIL", detail);
    }

    // ---- inputs ---------------------------------------------------------------------------------------------------

    /** Random words are valid codes at any bit width; zero points ≥ 1 under v1; fp16 scales of mixed magnitude. */
    private PackedGptq randomGptq(int bits, int in, int out, int groupSize, boolean v1) {
        return GpuCheck.randomPacked(rnd, bits, groupSize, in, out, v1, () -> 0.01 * Math.exp(gaussian()));
    }

    private int[] actOrder(int in, int groupSize) {
        int[] g = new int[in];
        for (int i = 0; i < in; i++) {
            g[i] = i / groupSize;
        }
        for (int i = in - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            int t = g[i];
            g[i] = g[j];
            g[j] = t;
        }
        return g;
    }

    private SsqrLayer randomSsqr(int bits, int rows, int cols, int groupSize, double outlierRate) {
        int groups = (cols + groupSize - 1) / groupSize;
        int maxq = (1 << bits) - 1;
        short[] scale = new short[rows * groups];
        int[] zero = new int[rows * groups];
        for (int k = 0; k < scale.length; k++) {
            scale[k] = Half.fromFloat((float) (0.02 * Math.exp(gaussian())));
            zero[k] = rnd.nextInt(maxq + 1);
        }
        int[] codes = new int[rows * cols];
        int[] rowPtr = new int[rows + 1];
        int cap = (int) (rows * (long) cols * outlierRate * 1.2) + 16;
        int[] col = new int[cap];
        int[] off = new int[cap];
        int nnz = 0;
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < cols; j++) {
                int z = zero[r * groups + j / groupSize];
                if (nnz < cap && rnd.nextDouble() < outlierRate) {
                    codes[r * cols + j] = z;
                    col[nnz] = j;
                    off[nnz++] = rnd.nextBoolean() ? maxq - z + 1 + rnd.nextInt(40) : -z - 1 - rnd.nextInt(40);
                } else {
                    codes[r * cols + j] = rnd.nextInt(maxq + 1);
                }
            }
            rowPtr[r + 1] = nnz;
        }
        return new SsqrLayer(bits, groupSize, rows, cols, scale, zero, codes, rowPtr, java.util.Arrays.copyOf(col, nnz),
                java.util.Arrays.copyOf(off, nnz));
    }

    /** Activations of wide dynamic range (exercises the fp16 hi/lo split), some exact zeros. */
    private float[] activations(int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = rnd.nextInt(50) == 0 ? 0f : (float) (gaussian() * Math.exp(2 * gaussian()));
        }
        return x;
    }

    private double gaussian() {
        double u = rnd.nextDouble();
        double v = rnd.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v);
    }
}
