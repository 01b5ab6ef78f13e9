package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.onnx.OnnxApply;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code apply}: a quantize output written back into an ONNX model (dequantized float32 weights). */
@Command(name = "apply", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a copy of an ONNX model whose linear weights are the dequantized values of a quantize output",
                "(scale·(code − zero), transposed back to ONNX's [in, out], float32). Linears the output does not hold keep",
                "their weights. The result runs in ONNX Runtime like the original."})
public final class ApplyCommand implements Callable<Integer> {
    @Option(names = "--onnx", paramLabel = "ORIGINAL.onnx", description = "the model that was quantized (default: the bundled all-MiniLM-L6-v2)")
    Path onnx;

    @Option(names = "--quantized", required = true, paramLabel = "URI", description = "quantize output (of --model ORIGINAL.onnx)")
    String quantized;

    @Option(names = "--out", required = true, paramLabel = "NEW.onnx", description = "the model to write (replaced if it exists)")
    Path out;

    @Override
    public Integer call() {
        Path model = onnx != null ? onnx : BundledMiniLm.onnx();
        OnnxApply.Applied a = OnnxApply.apply(new Configuration(), model, quantized, out);
        System.out.printf("wrote %s: %d linear(s) dequantized from %s%s%n", out, a.replaced().size(), quantized,
                a.kept().isEmpty() ? "" : "; " + a.kept().size() + " kept as they were (not in the quantize output)");
        return 0;
    }
}
