package org.babaiquant.cli;

import dev.ludovic.netlib.blas.BLAS;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.SparkSupport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code bench-hessian}: throughput of the Hessian stage in local mode against the BLAS dsyrk rate on the same data,
 * measured in the same run.
 */
@Command(name = "bench-hessian", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Benchmark the Spark Hessian stage (import excluded) on random activations against native dsyrk",
                "doing the same XᵀX in one call, in the same process. FLOPs = tokens·d·(d+1) (upper triangle)."})
public final class BenchHessianCommand implements Callable<Integer> {
    @Option(names = "--dim", defaultValue = "4096", description = "d (default: ${DEFAULT-VALUE})")
    int dim;

    @Option(names = "--tokens", defaultValue = "16384", description = "tokens (default: ${DEFAULT-VALUE})")
    int tokens;

    @Mixin
    SparkMasterOption sparkMaster = new SparkMasterOption();

    @Mixin
    BackendOption backend = new BackendOption();

    @Option(names = "--slice-tiles", defaultValue = "64", description = "(default: ${DEFAULT-VALUE})")
    int sliceTiles;

    @Option(names = "--markdown", paramLabel = "FILE", description = "also write the table as Markdown")
    Path markdown;

    @Override
    public Integer call() throws IOException {
        Path tmp = Files.createTempDirectory("babai-bench-hessian");
        try {
            double[][] x = BenchInputs.randomActivations(tmp, "bench", tokens, dim, 3);
            double flops = (double) tokens * dim * (dim + 1.0);

            SparkSession spark = SparkSupport.session(sparkMaster.master, "babai-quant bench-hessian");
            int cores = spark.sparkContext().defaultParallelism();
            HessianJob.Config cfg = new HessianJob.Config(tmp.resolve("act").toString(), tmp.resolve("h").toString(), List.of(),
                    cores, sliceTiles, 512, true, backend.backend);
            HessianJob.run(spark, cfg, s -> { }); // warm-up (JIT, Spark)
            long t0 = System.nanoTime();
            HessianJob.run(spark, cfg, s -> { });
            double stage = (System.nanoTime() - t0) / 1e9;

            BLAS blas = BLAS.getInstance();
            double[] a = new double[tokens * dim];
            for (int i = 0; i < tokens; i++) {
                System.arraycopy(x[i], 0, a, i * dim, dim);
            }
            x = null;
            double[] c = new double[dim * dim];
            double best = Double.POSITIVE_INFINITY;
            for (int rep = 0; rep < 2; rep++) {
                long t1 = System.nanoTime();
                blas.dsyrk("U", "N", dim, tokens, 1.0, a, dim, 0.0, c, dim);
                best = Math.min(best, (System.nanoTime() - t1) / 1e9);
            }
            String machine = String.format(Locale.ROOT, "%d cores, Spark %s, BLAS %s", Runtime.getRuntime().availableProcessors(),
                    spark.version(), blas.getClass().getSimpleName());
            // the aim is per core: the stage's rate per task slot against dsyrk's rate per BLAS thread
            int blasThreads = blasThreads();
            String master = spark.sparkContext().master() + ", backend " + backend.backend;
            String head = "| d | tokens | master | stage s | stage GFLOP/s | per core | tokens/s | dsyrk s | dsyrk GFLOP/s | BLAS threads"
                    + " | per core / dsyrk per thread |";
            String row = String.format(Locale.ROOT, "| %d | %d | %s | %.2f | %.2f | %.2f | %.0f | %.3f | %.2f | %d | %.2f |",
                    dim, tokens, master, stage, flops / stage / 1e9, flops / stage / 1e9 / cores, tokens / stage, best,
                    flops / best / 1e9, blasThreads, (flops / stage / cores) / (flops / best / blasThreads));
            System.out.println("machine: " + machine);
            System.out.println(head);
            System.out.println("|---|---|---|---|---|---|---|---|---|---|---|");
            System.out.println(row);
            if (markdown != null) {
                Files.write(markdown, List.of("machine: " + machine, "", head, "|---|---|---|---|---|---|---|---|---|---|---|", row));
            }
            return 0;
        } finally {
            try (var walk = Files.walk(tmp)) {
                walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    /** OpenBLAS's thread count: OPENBLAS_NUM_THREADS (bin/babai-quant sets 1 for Spark stages), else one per core. */
    static int blasThreads() {
        String env = System.getenv("OPENBLAS_NUM_THREADS");
        try {
            return env == null ? Runtime.getRuntime().availableProcessors() : Math.max(1, Integer.parseInt(env.trim()));
        } catch (NumberFormatException e) {
            return Runtime.getRuntime().availableProcessors();
        }
    }
}
