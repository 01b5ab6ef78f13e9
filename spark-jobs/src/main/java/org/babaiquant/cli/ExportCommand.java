package org.babaiquant.cli;

import org.babaiquant.io.Commit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** {@code export}: a quantize output as a GPTQ checkpoint or a compressed-tensors (vLLM) checkpoint. */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a quantize output as a GPTQ checkpoint (qweight/qzeros/scales/g_idx per layer, every other tensor",
                "copied unchanged, quantize_config.json, config.json with quantization_config) or, with --format compressed-tensors,",
                "as vLLM's pack-quantized checkpoint (weight_packed/weight_scale/weight_zero_point/weight_shape per layer,",
                "copied unchanged, quantize_config.json, config.json with quantization_config), then read it back and check",
                "that every layer dequantizes exactly to the shards. The folder is committed whole (written under a hidden",
                "_tmp-OUT-UUID, renamed into place, _SUCCESS last); a non-empty --out is refused unless --overwrite."})
public final class ExportCommand implements Callable<Integer> {
    @Option(names = "--quantized", required = true, paramLabel = "URI", description = "quantize --out")
    String quantized;

    @Option(names = "--model", required = true, paramLabel = "URI", description = "the original model (as given to quantize)")
    String model;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "checkpoint folder (any Hadoop URI)")
    String out;

    @Option(names = "--format", defaultValue = "gptq", description = "gptq | compressed-tensors (vLLM's native pack-quantized format, "
            + "see docs/MOE-AND-VLLM.md); default: ${DEFAULT-VALUE}")
    String format;

    @Option(names = "--g-idx", description = "compressed-tensors: declare actorder \"group\" and write weight_g_idx (default: actorder "
            + "\"weight\" for act-order runs, no g_idx: our groups are static)")
    boolean gIdx;

    @Option(names = "--overwrite", description = "replace an existing non-empty --out (default: refuse it)")
    boolean overwrite;

    @Override
    public Integer call() {
        String s = org.babaiquant.spark.Exports.export(org.babaiquant.spark.HadoopConfs.fromEnvironmentAndSpark(), format, quantized, model,
                out, gIdx, overwrite ? Commit.IfExists.REPLACE : Commit.IfExists.REFUSE);
        System.out.println("exported " + s);
        System.out.println("self-check passed: every layer dequantizes exactly to its shards; wrote " + out);
        return 0;
    }
}
