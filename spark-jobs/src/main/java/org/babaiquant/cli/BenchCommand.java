package org.babaiquant.cli;

import dev.ludovic.netlib.blas.BLAS;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.DampedFactor;
import org.babaiquant.core.DenseKernels;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;

/**
 * {@code bench}: times the CPU solver and the Hessian accumulation on this machine and, in the same process, the
 * native BLAS (netlib, OpenBLAS when present) doing the same work, so that the peer's figure sits beside ours.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Benchmark the GPTQ solver and Hessian accumulation against native BLAS doing the same work.",
                "Solver: random W [rows, cols], H = XᵀX from random X; 'update GFLOP' is the lazy trailing update",
                "Σ_blocks 2·rows·128·(cols−i2), timed again as the same sequence of sgemm/dgemm calls through netlib.",
                "Hessian: XᵀX of float32 X [tokens, cols] (upper triangle, float64 accumulation) vs ssyrk/dsyrk.",
                "Our side runs on the dense kernels printed as 'kernels' (native BLAS/LAPACK when loaded, else pure",
                "Java; -Dbabai.kernels=pure-java forces the latter). Layers up to 4M weights: best of 3 runs."})
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--sizes", split = ",", defaultValue = "1024x1024,4096x4096,4096x11008",
            description = "solver layer sizes ROWSxCOLS (default: ${DEFAULT-VALUE})")
    List<String> sizes;

    @Option(names = "--tokens", defaultValue = "2048", description = "calibration tokens for H and the Hessian bench (default: ${DEFAULT-VALUE})")
    int tokens;

    @Option(names = "--hessian-dims", split = ",", defaultValue = "1024,4096", description = "Hessian bench dimensions (default: ${DEFAULT-VALUE})")
    List<Integer> hessianDims;

    @Option(names = "--markdown", paramLabel = "FILE", description = "also write the tables as Markdown")
    Path markdown;

    @Override
    public Integer call() {
        // the solver's kernels first: their provider may point netlib at the bundled OpenBLAS, which only works
        // before anything else initialises netlib
        DenseKernels kernels = DenseKernels.get();
        BLAS blas = BLAS.getInstance();
        List<String> md = new ArrayList<>();
        String machine = String.format(Locale.ROOT, "%s, %d cores, Java %s, max heap %.1f GiB, BLAS %s",
                System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(),
                System.getProperty("java.version"), Runtime.getRuntime().maxMemory() / (double) (1L << 30),
                blas.getClass().getSimpleName());
        System.out.println("machine: " + machine);
        System.out.println("kernels: " + kernels.description());
        md.add("machine: " + machine);
        md.add("");
        md.add("solver kernels: " + kernels.description());
        md.add("");
        if (blas instanceof dev.ludovic.netlib.blas.JavaBLAS) {
            System.out.println("WARNING: netlib found no native BLAS; the peer column is netlib's pure-Java fallback."
                    + " bin/babai-quant loads OpenBLAS from spark-jobs/target/native (see README).");
        }

        String h1 = String.format(Locale.ROOT, "%-11s %9s %9s %9s %10s %11s %11s %11s %8s",
                "solver", "factor_s", "sweep_s", "total_s", "upd_GFLOP", "sgemm_s", "dgemm_s", "limit_2x_s", "ours/2x");
        System.out.println(h1);
        md.add("| layer | factor s | sweep s | total s | update GFLOP | same updates, sgemm s | same updates, dgemm s | 2× sgemm bound s | total / bound |");
        md.add("|---|---|---|---|---|---|---|---|---|");
        warmUp();
        for (String size : sizes) {
            String[] rc = size.toLowerCase(Locale.ROOT).split("x");
            int rows = Integer.parseInt(rc[0].trim());
            int cols = Integer.parseInt(rc[1].trim());
            Random rnd = new Random(42);
            float[][] x = randomActivations(rnd, tokens, cols);
            double[][] h = new HessianAccumulator(cols).add(x).hessian();
            x = null;
            double[][] w = new double[rows][cols];
            for (double[] row : w) {
                for (int j = 0; j < cols; j++) {
                    row[j] = 0.02 * rnd.nextGaussian();
                }
            }
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(ColumnOrder.ACT_ORDER);
            int reps = (long) rows * cols <= 1L << 22 ? 3 : 1;
            double factor = Double.POSITIVE_INFINITY;
            double total = Double.POSITIVE_INFINITY;
            for (int rep = 0; rep < reps; rep++) {
                long t0 = System.nanoTime();
                DampedFactor.flat(h, ColumnOrder.ACT_ORDER.permutation(h, 0), 0.01, 6, kernels);
                factor = Math.min(factor, (System.nanoTime() - t0) / 1e9);
                t0 = System.nanoTime();
                GptqSolver.quantize(w, h, opt, null, kernels);
                total = Math.min(total, (System.nanoTime() - t0) / 1e9);
            }
            double sweep = total - factor;
            w = null;
            h = null;
            double flops = updateFlops(rows, cols, 128);
            double sg = timeUpdates(blas, rows, cols, 128, true);
            double dg = timeUpdates(blas, rows, cols, 128, false);
            double limit = 2 * sg;
            System.out.println(String.format(Locale.ROOT, "%-11s %9.2f %9.2f %9.2f %10.1f %11.3f %11.3f %11.3f %8.2f",
                    size, factor, sweep, total, flops / 1e9, sg, dg, limit, total / limit));
            md.add(String.format(Locale.ROOT, "| %s | %.2f | %.2f | %.2f | %.1f | %.3f | %.3f | %.3f | %.2f |",
                    size, factor, sweep, total, flops / 1e9, sg, dg, limit, total / limit));
        }

        md.add("");
        String h2 = String.format(Locale.ROOT, "%-11s %10s %10s %10s %10s %10s",
                "hessian", "ours_GF/s", "ssyrk_GF/s", "dsyrk_GF/s", "ours/ssyrk", "ours/dsyrk");
        System.out.println(h2);
        md.add("| Hessian XᵀX (tokens × dim) | ours GFLOP/s | ssyrk GFLOP/s | dsyrk GFLOP/s | ours / ssyrk | ours / dsyrk |");
        md.add("|---|---|---|---|---|---|");
        for (int dim : hessianDims) {
            float[][] x = randomActivations(new Random(7), tokens, dim);
            double flops = (double) tokens * dim * (dim + 1); // upper triangle incl. diagonal, 2 flops per term
            new HessianAccumulator(dim, kernels).add(x); // warm-up
            double best = Double.POSITIVE_INFINITY;
            for (int rep = 0; rep < 2; rep++) {
                long t0 = System.nanoTime();
                new HessianAccumulator(dim, kernels).add(x);
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
            double ours = flops / best / 1e9;
            double ss = syrkRate(blas, x, true, flops);
            double ds = syrkRate(blas, x, false, flops);
            String label = tokens + "x" + dim;
            System.out.println(String.format(Locale.ROOT, "%-11s %10.2f %10.2f %10.2f %10.2f %10.2f",
                    label, ours, ss, ds, ours / ss, ours / ds));
            md.add(String.format(Locale.ROOT, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |", label, ours, ss, ds, ours / ss, ours / ds));
        }
        if (markdown != null) {
            try {
                Files.write(markdown, md);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            System.out.println("wrote " + markdown);
        }
        return 0;
    }

    /** One small layer through the whole solver, so that the first timed size does not pay for JIT compilation. */
    private static void warmUp() {
        Random rnd = new Random(3);
        double[][] h = new HessianAccumulator(256).add(randomActivations(rnd, 512, 256)).hessian();
        double[][] w = new double[256][256];
        for (double[] row : w) {
            for (int j = 0; j < row.length; j++) {
                row[j] = 0.02 * rnd.nextGaussian();
            }
        }
        for (int rep = 0; rep < 3; rep++) {
            GptqSolver.quantize(w, h, GptqSolver.Options.defaults().withOrder(ColumnOrder.ACT_ORDER));
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

    /** FLOPs of GPTQ's lazy trailing updates W[:, i2:] −= E·U[i1:i2, i2:]. */
    static double updateFlops(int rows, int cols, int block) {
        double f = 0;
        for (int i1 = 0; i1 < cols; i1 += block) {
            int i2 = Math.min(cols, i1 + block);
            f += 2.0 * rows * (i2 - i1) * (cols - i2);
        }
        return f;
    }

    /** The same sequence of trailing updates as native gemm calls (column-major, C = rows × (cols−i2)). */
    private static double timeUpdates(BLAS blas, int rows, int cols, int block, boolean single) {
        long cSize = (long) rows * cols;
        Random rnd = new Random(1);
        double best = Double.POSITIVE_INFINITY;
        if (single) {
            float[] c = new float[(int) cSize];
            float[] e = new float[rows * block];
            float[] u = new float[block * cols];
            for (int i = 0; i < e.length; i++) {
                e[i] = (float) rnd.nextGaussian();
            }
            for (int i = 0; i < u.length; i++) {
                u[i] = (float) rnd.nextGaussian();
            }
            for (int rep = 0; rep < 2; rep++) {
                long t0 = System.nanoTime();
                for (int i1 = 0; i1 < cols; i1 += block) {
                    int i2 = Math.min(cols, i1 + block);
                    int n = cols - i2;
                    if (n > 0) {
                        blas.sgemm("N", "N", rows, n, i2 - i1, -1f, e, rows, u, block, 1f, c, rows);
                    }
                }
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
        } else {
            double[] c = new double[(int) cSize];
            double[] e = new double[rows * block];
            double[] u = new double[block * cols];
            for (int i = 0; i < e.length; i++) {
                e[i] = rnd.nextGaussian();
            }
            for (int i = 0; i < u.length; i++) {
                u[i] = rnd.nextGaussian();
            }
            for (int rep = 0; rep < 2; rep++) {
                long t0 = System.nanoTime();
                for (int i1 = 0; i1 < cols; i1 += block) {
                    int i2 = Math.min(cols, i1 + block);
                    int n = cols - i2;
                    if (n > 0) {
                        blas.dgemm("N", "N", rows, n, i2 - i1, -1.0, e, rows, u, block, 1.0, c, rows);
                    }
                }
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
        }
        return best;
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
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
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
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
        }
        return flops / best / 1e9;
    }
}
