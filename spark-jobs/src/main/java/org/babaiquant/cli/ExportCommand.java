package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.spark.GptqExport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** {@code export}: a quantize output as a GPTQ checkpoint. */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a quantize output as a GPTQ checkpoint (qweight/qzeros/scales/g_idx per layer, every other tensor",
                "copied unchanged, quantize_config.json, config.json with quantization_config), then read it back and check",
                "that every layer dequantizes exactly to the shards."})
public final class ExportCommand implements Callable<Integer> {
    @Option(names = "--quantized", required = true, paramLabel = "URI", description = "quantize --out")
    String quantized;

    @Option(names = "--model", required = true, paramLabel = "URI", description = "the original model (as given to quantize)")
    String model;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "checkpoint folder (any Hadoop URI)")
    String out;

    @Option(names = "--format", defaultValue = "gptq", description = "gptq (the only format yet; default: ${DEFAULT-VALUE})")
    String format;

    @Override
    public Integer call() {
        if (!"gptq".equals(format)) {
            throw new IllegalArgumentException("--format " + format + " is not supported: gptq is the only export format");
        }
        GptqExport.Summary s = GptqExport.export(org.babaiquant.spark.HadoopConfs.fromEnvironmentAndSpark(), quantized, model, out);
        System.out.println("exported " + GptqExport.describe(s));
        System.out.println("self-check passed: every layer dequantizes exactly to its shards; wrote " + out);
        return 0;
    }
}
