package org.babaiquant.cli;

import org.apache.spark.sql.SparkSession;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.SparkSupport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;

/** {@code quantize}: the quantize stage on Spark. Also runs under spark-submit with the same arguments. */
@Command(name = "quantize", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Quantize every mapped linear layer of a safetensors model on Spark (one task per layer, largest first)",
                "and write quantized shards, per-row tables and error-bound reports as Parquet under --out.",
                "Layers already committed with the same fingerprint are skipped: rerunning after a kill finishes the job."})
public final class QuantizeCommand implements Callable<Integer> {
    @Option(names = "--model", paramLabel = "URI", description = "model.safetensors, model.safetensors.index.json or a folder with either (required)")
    String model;

    @Option(names = "--hessians", paramLabel = "URI", description = "Hessian artifacts (hessian stage output; required)")
    String hessians;

    @Option(names = "--out", paramLabel = "URI", description = "output root (required)")
    String out;

    @Option(names = "--plan-layout", paramLabel = "NAME",
            description = "print the plan of a known architecture without a model: llama-7b, llama-70b (with --executors)")
    String planLayout;

    @Mixin
    MethodOptions method = new MethodOptions();

    @Option(names = "--layers", paramLabel = "REGEX", description = "only tensors whose name matches (default: every mapped tensor)")
    String layers;

    @Option(names = "--map", paramLabel = "REGEX=SITE", description = "layer-map rule, before the file's and the defaults (repeatable; $1 = regex group)")
    List<String> map = new ArrayList<>();

    @Option(names = "--map-file", paramLabel = "FILE", description = "layer-map rules file (see conf/layer-map.txt)")
    String mapFile;

    @Option(names = "--eval-activations", paramLabel = "URI", description = "held-out activations (import-activations layout): adds eval_rel_error")
    String evalActivations;

    @Option(names = "--eval-tokens", defaultValue = "2048", description = "held-out tokens per site (default: ${DEFAULT-VALUE})")
    int evalTokens;

    @Option(names = "--starved", defaultValue = "damp", paramLabel = "damp|rtn", description = "mixture-of-experts experts that saw fewer "
            + "tokens than they have inputs: escalated damping max(damp, (n − t)/t), or round to nearest (an expert with no token runs "
            + "on H = I either way; see docs/MOE-AND-VLLM.md); default: ${DEFAULT-VALUE}")
    String starved;

    @Mixin
    BackendOption backend = new BackendOption();

    @Mixin
    SparkMasterOption sparkMaster = new SparkMasterOption();

    @Option(names = "--plan", description = "print each layer's cost and memory and an estimated wall time, then exit")
    boolean plan;

    @Option(names = "--executors", defaultValue = "0", description = "task slots for the --plan estimate (default: this session's parallelism)")
    int executors;

    @Option(names = "--force", description = "recompute layers even when committed with the same fingerprint")
    boolean force;

    /** Shapes [out, in] of one decoder block's linears (q, k, v, o, gate, up, down) of known architectures. */
    static List<QuantizeJob.Layer> layout(String name) {
        int blocks;
        int hidden;
        int kv;
        int inter;
        switch (name) {
            case "llama-7b" -> { blocks = 32; hidden = 4096; kv = 4096; inter = 11008; }
            case "llama-70b" -> { blocks = 80; hidden = 8192; kv = 1024; inter = 28672; }
            default -> throw new IllegalArgumentException("unknown --plan-layout " + name + " (llama-7b, llama-70b)");
        }
        List<QuantizeJob.Layer> layers = new ArrayList<>();
        for (int b = 0; b < blocks; b++) {
            String p = "model.layers." + b + ".";
            layers.add(new QuantizeJob.Layer(p + "self_attn.q_proj.weight", "layers." + b + ".attn_in", hidden, hidden, "BF16", "", -1));
            layers.add(new QuantizeJob.Layer(p + "self_attn.k_proj.weight", "layers." + b + ".attn_in", kv, hidden, "BF16", "", -1));
            layers.add(new QuantizeJob.Layer(p + "self_attn.v_proj.weight", "layers." + b + ".attn_in", kv, hidden, "BF16", "", -1));
            layers.add(new QuantizeJob.Layer(p + "self_attn.o_proj.weight", "layers." + b + ".o_proj_in", hidden, hidden, "BF16", "", -1));
            layers.add(new QuantizeJob.Layer(p + "mlp.gate_proj.weight", "layers." + b + ".mlp_in", inter, hidden, "BF16", "", -1));
            layers.add(new QuantizeJob.Layer(p + "mlp.up_proj.weight", "layers." + b + ".mlp_in", inter, hidden, "BF16", "", -1));
            layers.add(new QuantizeJob.Layer(p + "mlp.down_proj.weight", "layers." + b + ".down_proj_in", hidden, inter, "BF16", "", -1));
        }
        layers.sort(java.util.Comparator.comparingDouble(QuantizeJob.Layer::cost).reversed());
        return layers;
    }

    QuantizeJob.Config config() {
        if (model == null || hessians == null || out == null) {
            throw new IllegalArgumentException("--model, --hessians and --out are required (only --plan-layout works without them)");
        }
        return new QuantizeJob.Config(model, hessians, out, method.spec(MethodOptions.QUANTIZE), layers, map, mapFile, evalActivations,
                evalTokens, backend.backend, 0, force, org.babaiquant.core.StarvedExperts.Rule.parse(starved));
    }

    @Override
    public Integer call() {
        if (planLayout != null) {
            int slots = executors > 0 ? executors : Runtime.getRuntime().availableProcessors();
            printPlan(layout(planLayout), slots);
            return 0;
        }
        QuantizeJob.Config cfg = config();
        SparkSession spark = SparkSupport.session(sparkMaster.master, "babai-quant quantize");
        if ("auto".equals(backend.backend)) {
            // executors choose for themselves (their GPUs); this is what the driver's JVM would choose
            System.err.println("[quantize] backend auto: chosen per task; here: "
                    + org.babaiquant.core.QuantBackend.select("auto").description());
        }
        if (plan) {
            List<QuantizeJob.Layer> layers = QuantizeJob.plan(spark, cfg);
            int slots = executors > 0 ? executors : spark.sparkContext().defaultParallelism();
            printPlan(layers, slots);
            return 0;
        }
        List<QuantizeJob.Outcome> outcomes = QuantizeJob.run(spark, cfg, ConsoleProgress::accept);
        ConsoleProgress.clear();
        int skipped = 0;
        for (QuantizeJob.Outcome o : outcomes) {
            skipped += o.skipped() ? 1 : 0;
            System.out.printf(Locale.ROOT, "%-52s %s loss %.6g bound %.6g clipped %d%s%n", o.layer(),
                    o.skipped() ? "up to date" : String.format(Locale.ROOT, "%6.2fs", o.seconds()), o.loss(), o.bound(), o.clipped(),
                    Double.isNaN(o.evalRelError()) ? "" : String.format(Locale.ROOT, " eval %.5f", o.evalRelError()));
        }
        System.out.printf("%d layer(s), %d skipped as up to date; wrote %s (see: bin/babai-quant report %s)%n", outcomes.size(), skipped, out, out);
        return 0;
    }

    /** The plan table, and the load average under which its solver rate was measured (a loaded machine measures less). */
    private static void printPlan(List<QuantizeJob.Layer> layers, int slots) {
        double load = org.babaiquant.spark.HessianPlanModel.loadAverage();
        System.out.print(QuantizeJob.planTable(layers, measuredRate(), slots));
        System.out.printf(Locale.ROOT, "(solver rate measured at load average %.1f on %d core(s): under load it is lower and the "
                + "estimate longer; 2026-12-04 a rate measured at load 27 made a 1.1 B model's estimate 2.6x the time run at load 9)%n",
                load, Runtime.getRuntime().availableProcessors());
    }

    /** Solver FLOP/s on this machine, from a warmed-up synthetic 1024×1024 layer (for the plan's estimate). */
    static double measuredRate() {
        int rows = 1024;
        int cols = 1024;
        Random rnd = new Random(1);
        double[][] w = new double[rows][cols];
        double[][] x = new double[2 * cols][cols];
        for (double[] r : w) {
            for (int j = 0; j < cols; j++) {
                r[j] = rnd.nextGaussian();
            }
        }
        for (double[] r : x) {
            for (int j = 0; j < cols; j++) {
                r[j] = rnd.nextGaussian();
            }
        }
        double[][] h = new org.babaiquant.core.HessianAccumulator(cols).add(x).hessian();
        GptqSolver.quantize(w, h, GptqSolver.Options.defaults());
        long t0 = System.nanoTime();
        GptqSolver.quantize(w, h, GptqSolver.Options.defaults());
        double secs = (System.nanoTime() - t0) / 1e9;
        return ((double) rows * cols * cols + (double) cols * cols * cols) / secs;
    }
}
