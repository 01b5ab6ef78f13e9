package org.babaiquant.onnx;

import org.babaiquant.io.OnnxModel;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.babaiquant.BadInputException;
import org.babaiquant.spark.QuantizedLayout;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code apply}: writes a copy of an ONNX model whose linear weights are the dequantized values of a quantize output,
 * W = scale·(code − zero) [out, in], stored back transposed as float32 [in, out] in place of the original initializer
 * bytes ({@link OnnxModel#rewriteWeights}). The result is a plain fp32 ONNX model that ONNX Runtime runs as is: it
 * measures the quantized weights' effect, not int4 storage or speed.
 */
public final class OnnxApply {
    /** Which linears were replaced, and which the quantize output did not hold (kept as they were). */
    public record Applied(List<String> replaced, List<String> kept) {}

    private OnnxApply() {}

    public static Applied apply(Configuration conf, java.nio.file.Path onnx, String quantized, java.nio.file.Path out) {
        OnnxModel model = OnnxModel.read(onnx);
        Map<String, float[][]> weights = new LinkedHashMap<>();
        List<String> kept = new ArrayList<>();
        try {
            for (OnnxModel.Linear l : model.requireLinears()) {
                Path dir = QuantizedLayout.dir(quantized, "shards", l.name());
                if (!dir.getFileSystem(conf).exists(dir)) {
                    kept.add(l.name());
                    continue;
                }
                double[][] dq = QuantizedLayout.readLayer(conf, quantized, l.name()).dequant();
                if (dq.length != l.out() || dq[0].length != l.in()) {
                    throw new BadInputException(quantized + ": layer " + l.name() + " is [" + dq.length + ", " + dq[0].length
                            + "] but " + onnx + " has it as [out=" + l.out() + ", in=" + l.in() + "]: not a quantization of this model");
                }
                float[][] w = new float[dq.length][dq[0].length];
                for (int r = 0; r < dq.length; r++) {
                    for (int c = 0; c < dq[r].length; c++) {
                        w[r][c] = (float) dq[r][c];
                    }
                }
                weights.put(l.name(), w);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + quantized + ": " + e.getMessage(), e);
        }
        if (weights.isEmpty()) {
            throw new BadInputException(quantized + " holds none of the " + kept.size() + " linears of " + onnx
                    + " (e.g. " + kept.get(0) + "): was it quantized from this model?");
        }
        OnnxModel.rewriteWeights(onnx, model, weights, out);
        return new Applied(List.copyOf(weights.keySet()), List.copyOf(kept));
    }
}
