package org.babaiquant.cli;

import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.core.Half;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.SparkSupport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;

/**
 * {@code bench-quantize}: the quantize stage's throughput in local mode on synthetic layers, with the single-layer
 * solver time on the same weights and Hessian measured in the same process, so the Spark overhead is visible.
 */
@Command(name = "bench-quantize", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Benchmark the Spark quantize stage (4-bit, g128, act-order GPTQ) on synthetic SIZE×SIZE layers",
                "against the solver alone on the same layer in the same process."})
public final class BenchQuantizeCommand implements Callable<Integer> {
    @Option(names = "--size", defaultValue = "4096", description = "layer rows = cols (default: ${DEFAULT-VALUE})")
    int size;

    @Option(names = "--layers", defaultValue = "4", description = "layers (default: ${DEFAULT-VALUE})")
    int layers;

    @Option(names = "--tokens", defaultValue = "4096", description = "calibration tokens for the shared Hessian (default: ${DEFAULT-VALUE})")
    int tokens;

    @Mixin
    SparkMasterOption sparkMaster = new SparkMasterOption();

    @Option(names = "--markdown", paramLabel = "FILE", description = "also write the table as Markdown")
    Path markdown;

    @Override
    public Integer call() throws IOException {
        Path tmp = Files.createTempDirectory("babai-bench-quantize");
        try {
            BenchInputs.randomActivations(tmp, "layers.0.attn_in", tokens, size, 5);
            Random rnd = new Random(5);
            List<SafeTensorsWriter.RawTensor> tensors = new ArrayList<>();
            for (int l = 0; l < layers; l++) {
                ByteBuffer b = ByteBuffer.allocate(2 * size * size).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < size * size; i++) {
                    b.putShort(Half.fromFloat((float) (0.02 * rnd.nextGaussian())));
                }
                tensors.add(new SafeTensorsWriter.RawTensor("model.layers.0.self_attn.q" + l + ".weight", "F16", new long[] {size, size}, b.array()));
            }
            SafeTensorsWriter.writeRaw(tmp.resolve("model.safetensors"), tensors, java.util.Map.of("format", "pt"));
            tensors = null;

            SparkSession spark = SparkSupport.session(sparkMaster.master, "babai-quant bench-quantize");
            HessianJob.run(spark, new HessianJob.Config(tmp.resolve("act").toString(), tmp.resolve("h").toString(), List.of(),
                    spark.sparkContext().defaultParallelism(), 256, 512, false), s -> { });
            MethodSpec spec = MethodSpec.grid("gptq", new QuantGrid.Spec(4, 128, false, false), ColumnOrder.ACT_ORDER, true, 0.01);
            QuantizeJob.Config cfg = new QuantizeJob.Config(tmp.resolve("model.safetensors").toString(), tmp.resolve("h").toString(),
                    tmp.resolve("q").toString(), spec, null, List.of("model\\.layers\\.0\\.self_attn\\.q\\d+\\.weight=layers.0.attn_in"),
                    null, null, 0, "cpu", 0, true);
            long t0 = System.nanoTime();
            QuantizeJob.run(spark, cfg, s -> { });
            double stage = (System.nanoTime() - t0) / 1e9;

            double[][] h = HessianArtifact.read(new Configuration(), tmp.resolve("h").toString(), "layers.0.attn_in").h();
            double[][] w = org.babaiquant.spark.ModelWeights.open(new Configuration(), tmp.resolve("model.safetensors").toString())
                    .readMatrix("model.layers.0.self_attn.q0.weight");
            GptqSolver.Options opt = new GptqSolver.Options(Method.GPTQ, new QuantGrid.Spec(4, 128, false, false), ColumnOrder.ACT_ORDER,
                    true, 0.01, 128, 6);
            long t1 = System.nanoTime();
            GptqSolver.quantize(w, h, opt, QuantizeJob.float16Grid(w, h, opt.grid()));
            double solver = (System.nanoTime() - t1) / 1e9;

            String machine = String.format(Locale.ROOT, "%d cores, %s, max heap %.1f GiB", Runtime.getRuntime().availableProcessors(),
                    spark.sparkContext().master(), Runtime.getRuntime().maxMemory() / (double) (1L << 30));
            String head = "| layers | size | stage s | s/layer (stage) | layers/min | solver alone s/layer | stage/solver |";
            String row = String.format(Locale.ROOT, "| %d | %dx%d | %.1f | %.2f | %.2f | %.2f | %.2f |", layers, size, size, stage,
                    stage / layers, 60 * layers / stage, solver, stage / layers / solver);
            System.out.println("machine: " + machine);
            System.out.println(head);
            System.out.println("|---|---|---|---|---|---|---|");
            System.out.println(row);
            if (markdown != null) {
                Files.write(markdown, List.of("machine: " + machine, "", head, "|---|---|---|---|---|---|---|", row));
            }
            return 0;
        } finally {
            try (var walk = Files.walk(tmp)) {
                walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }
}
