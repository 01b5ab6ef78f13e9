package org.babaiquant.cli;

import org.apache.spark.sql.SparkSession;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.SparkSupport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code hessian}: the distributed Hessian stage. Also runs under spark-submit with the same arguments. */
@Command(name = "hessian", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Accumulate H = Σ XᵀX per input site on Spark and write one Hessian artifact per site.",
                "Sites whose artifact exists with the same fingerprint are skipped. The result is byte-identical",
                "whatever --partitions, executors or task order (slices and block sums have a fixed order) for a",
                "given --backend (cpu: float64 dsyrk; cuda: the task's GPU, agreeing with cpu to ~1e-12 relative)."})
public final class HessianCommand implements Callable<Integer> {
    @Option(names = "--activations", required = true, paramLabel = "URI", description = "activation dataset (import-activations output)")
    String activations;

    @Option(names = "--out", required = true, paramLabel = "URI", description = "Hessian artifacts root")
    String out;

    @Option(names = "--sites", split = ",", paramLabel = "a,b", description = "only these sites (default: all)")
    List<String> sites = new ArrayList<>();

    @Option(names = "--partitions", paramLabel = "N", description = "Spark tasks the slices are spread over (default: Spark's default parallelism)")
    Integer partitions;

    @Option(names = "--slice-tiles", defaultValue = "256", description = "tiles per slice, the unit of work and of the fixed summation order (default: ${DEFAULT-VALUE})")
    int sliceTiles;

    @Option(names = "--block-size", defaultValue = "512", description = "rows/cols of one stored block (default: ${DEFAULT-VALUE})")
    int blockSize;

    @Mixin
    BackendOption backend = new BackendOption();

    @Mixin
    SparkMasterOption sparkMaster = new SparkMasterOption();

    @Option(names = "--plan", description = "print the plan (sizes, memory per task, fingerprints) and exit")
    boolean plan;

    @Option(names = "--force", description = "recompute sites even when an artifact with the same fingerprint exists")
    boolean force;

    @Override
    public Integer call() {
        SparkSession spark = SparkSupport.session(sparkMaster.master, "babai-quant hessian");
        int n = partitions != null ? partitions : spark.sparkContext().defaultParallelism();
        HessianJob.Config cfg = new HessianJob.Config(activations, out, sites, n, sliceTiles, blockSize, force, backend.backend);
        if (plan) {
            List<HessianJob.SitePlan> plans = HessianJob.plan(spark, cfg);
            System.out.print(HessianJob.planTable(plans));
            System.out.printf("executor memory for tasks: %.1f MiB, %d concurrent task(s) per executor%n",
                    SparkSupport.usableTaskMemory(spark) / 1048576.0, SparkSupport.tasksPerExecutor(spark));
            HessianJob.checkMemory(spark, plans);
            return 0;
        }
        HessianJob.run(spark, cfg, ConsoleProgress::accept);
        System.out.println("wrote " + out);
        return 0;
    }
}
