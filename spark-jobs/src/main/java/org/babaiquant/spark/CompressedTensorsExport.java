package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.BadInputException;
import org.babaiquant.core.CompressedTensorsPacking;
import org.babaiquant.core.Half;
import org.babaiquant.core.Json;
import org.babaiquant.core.StarvedExperts;
import org.babaiquant.io.Commit;
import org.babaiquant.io.SafeTensorsWriter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Export of a quantize output in compressed-tensors' {@code pack-quantized} format, the checkpoint llm-compressor
 * writes and vLLM serves natively ({@code quant_method: compressed-tensors}). For every quantized linear
 * {@code P.weight} (tensor layouts and the packing: {@link CompressedTensorsPacking}):
 * <pre>
 *   P.weight_packed      I32 [out, in·bits/32]
 *   P.weight_scale       F16 [out, groups]            the float16 scales the solver used (see below)
 *   P.weight_zero_point  I32 [out·bits/32, groups]    asymmetric runs only
 *   P.weight_shape       I64 [2] = {out, in}
 *   P.weight_g_idx       I32 [in] = i / group_size    only when asked for actorder "group" (static groups)
 * </pre>
 * Every other tensor is copied byte for byte, one output shard per input shard. {@code config.json} gets a
 * {@code quantization_config} with one config group targeting {@code Linear} and an {@code ignore} list naming every
 * 2-D weight we did not quantize (routers, embeddings, lm_head), as compressed-tensors'
 * {@code QuantizationConfig.from_pretrained} lists the unquantized modules of a targeted type.
 *
 * <p><b>actorder.</b> Our groups are static (fixed on the original column indices before the pass), so the format is
 * that of no activation ordering whatever the processing order: compressed-tensors' {@code ActivationOrdering.WEIGHT}
 * ("changes the way calibration occurs but doesn't change the quantization format"). An act-order run is declared
 * {@code "weight"}, other orders {@code null}; {@code gIdx} declares {@code "group"} and writes the (trivial) g_idx
 * for loaders that insist on one, at the cost of vLLM's g_idx sort at load.
 *
 * <p><b>Scales.</b> llm-compressor stores scales in the model's dtype; vLLM allocates {@code weight_scale} in the
 * serving dtype and copies (casts) the stored tensor into it. We store the float16 scales that the quantize stage
 * rounded to before its pass, so the checkpoint is exactly the lattice point it chose; served in float16 the weights
 * are exactly the shards, served in bfloat16 each scale is rounded once more by vLLM.
 *
 * <p>After writing, the checkpoint is read back, unpacked and dequantized and compared exactly with the shards.
 */
public final class CompressedTensorsExport {
    private CompressedTensorsExport() {}

    /** What was written. {@code actorder} null when none is declared. */
    public record Summary(int layers, int copied, List<String> files, int bits, int groupSize, boolean symmetric, String actorder,
                          List<String> ignore, int experts) {}

    /** The one scheme every exported layer shares (compressed-tensors' config group). */
    record Scheme(int bits, int groupSize, boolean symmetric, String actorder, boolean gIdx) {
        String strategy() {
            return groupSize == -1 ? "channel" : "group";
        }
    }

    /** Export, replacing an existing {@code outDir} (see {@link Exports} for the commit). */
    public static Summary export(Configuration conf, String quantized, String modelUri, String outDir, boolean gIdx) {
        return export(conf, quantized, modelUri, outDir, gIdx, Commit.IfExists.REPLACE);
    }

    public static Summary export(Configuration conf, String quantized, String modelUri, String outDir, boolean gIdx,
                                 Commit.IfExists ifExists) {
        Map<String, Exports.Layer> layers = Exports.layers(conf, quantized, "compressed-tensors pack-quantized");
        Scheme scheme = scheme(layers, gIdx);
        List<String> ignore = new ArrayList<>();
        Exports.Written w = Exports.write(conf, quantized, modelUri, outDir, ifExists, layers.keySet(), new Exports.Format() {
            @Override
            public List<SafeTensorsWriter.RawTensor> tensors(QuantizedLayout.LayerShards l) {
                checkZeros(l, scheme);
                return CompressedTensorsExport.tensors(l, scheme);
            }

            @Override
            public Map<String, String> files(ModelWeights model, List<String> copied) throws IOException {
                for (String name : copied) {
                    if (model.info(name).shape().length == 2 && name.endsWith(".weight")) {
                        ignore.add(Exports.module(name));
                    }
                }
                return Map.of("config.json", GptqExport.configJson(conf, modelUri, quantizationConfig(scheme, ignore)));
            }

            @Override
            public void selfCheck(String dir) {
                CompressedTensorsExport.selfCheck(conf, dir, Exports.lazyShards(conf, quantized, layers.keySet()), scheme);
            }
        });
        return new Summary(layers.size(), w.copied(), w.files(), scheme.bits(), scheme.groupSize(), scheme.symmetric(), scheme.actorder(),
                List.copyOf(ignore), (int) layers.keySet().stream().filter(StarvedExperts::isExpert).count());
    }

    /** Checks that every layer fits one pack-quantized scheme and returns it. */
    static Scheme scheme(Map<String, Exports.Layer> layers, boolean gIdx) {
        Exports.Layer any = layers.values().iterator().next();
        int bits = any.bits();
        int gs = any.groupSize();
        boolean sym = any.sym();
        if (!CompressedTensorsPacking.supportedBits(bits)) {
            throw new BadInputException(any.name() + " has " + bits + "-bit codes: compressed-tensors pack-quantized is exported for 2, 4 "
                    + "or 8 bits (vLLM serves 4 and 8)");
        }
        int perWord = 32 / bits;
        for (Exports.Layer l : layers.values()) {
            if (!l.name().endsWith(".weight")) {
                throw new BadInputException("layer " + l.name() + " is not named MODULE.weight: compressed-tensors names its tensors "
                        + "MODULE.weight_packed, ... (export ONNX-quantized layers with apply instead)");
            }
            if (l.bits() != bits || l.groupSize() != gs || l.sym() != sym) {
                throw new BadInputException("layer " + l.name() + " (" + l.bits() + "-bit, group " + l.groupSize() + ", sym "
                        + l.sym() + ") differs from " + any.name() + " (" + bits + "-bit, group " + gs + ", sym " + sym
                        + "): one compressed-tensors config group holds one scheme; quantize them in one run");
            }
            if (l.cols() % perWord != 0) {
                throw new BadInputException(l.name() + " is [" + l.rows() + ", " + l.cols() + "]: its " + l.cols() + " inputs do not "
                        + "fill whole int32 words of " + perWord + " " + bits + "-bit codes");
            }
            if (gs != -1 && l.cols() % gs != 0) {
                throw new BadInputException(l.name() + " has " + l.cols() + " inputs, not a multiple of the group size " + gs
                        + " (compressed-tensors and vLLM need whole groups)");
            }
            if (!sym && l.rows() % perWord != 0) {
                throw new BadInputException(l.name() + " is [" + l.rows() + ", " + l.cols() + "]: asymmetric zero points are packed along "
                        + "the " + l.rows() + " outputs, which do not fill whole int32 words of " + perWord);
            }
        }
        if (gIdx && gs == -1) {
            throw new BadInputException("--actorder group needs grouped scales; this run has one scale per output row (group size -1)");
        }
        boolean actOrder = layers.values().stream().anyMatch(l -> l.order().equals("act-order"));
        String actorder = gIdx ? "group" : actOrder ? "weight" : null;
        return new Scheme(bits, gs, sym, actorder, gIdx);
    }

    /** A symmetric scheme stores no zero points: every stored one must be the symmetric zero (checked as each layer is read). */
    static void checkZeros(QuantizedLayout.LayerShards l, Scheme s) {
        if (s.symmetric()) {
            int[] at = CompressedTensorsPacking.firstAsymmetricZero(l.zeros(), s.bits());
            if (at != null) {
                throw new BadInputException(l.layer() + ": a symmetric run stored zero point " + l.zeros()[at[0]][at[1]] + " at row "
                        + at[0] + ", group " + at[1] + " (expected " + CompressedTensorsPacking.symmetricZero(s.bits()) + ")");
            }
        }
    }

    /** The tensors replacing {@code P.weight} (see the class comment). */
    static List<SafeTensorsWriter.RawTensor> tensors(QuantizedLayout.LayerShards l, Scheme s) {
        String p = Exports.module(l.layer());
        int groups = l.groups();
        int[][] packed = CompressedTensorsPacking.weightPacked(l.codes(), s.bits());
        ByteBuffer scales = ByteBuffer.allocate(2 * groups * l.rows()).order(ByteOrder.LITTLE_ENDIAN);
        for (int r = 0; r < l.rows(); r++) {
            for (int k = 0; k < groups; k++) {
                scales.putShort(Half.fromFloat((float) l.scales()[r][k]));
            }
        }
        List<SafeTensorsWriter.RawTensor> t = new ArrayList<>();
        t.add(new SafeTensorsWriter.RawTensor(p + ".weight_packed", "I32", new long[] {l.rows(), packed[0].length}, GptqExport.ints(packed)));
        t.add(new SafeTensorsWriter.RawTensor(p + ".weight_scale", "F16", new long[] {l.rows(), groups}, scales.array()));
        if (!s.symmetric()) {
            int[][] zp = CompressedTensorsPacking.zeroPointPacked(l.zeros(), s.bits());
            t.add(new SafeTensorsWriter.RawTensor(p + ".weight_zero_point", "I32", new long[] {zp.length, groups}, GptqExport.ints(zp)));
        }
        ByteBuffer shape = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(l.rows()).putLong(l.cols());
        t.add(new SafeTensorsWriter.RawTensor(p + ".weight_shape", "I64", new long[] {2}, shape.array()));
        if (s.gIdx()) {
            int[] g = org.babaiquant.core.GptqPacking.gIdx(l.cols(), l.groupSize());
            t.add(new SafeTensorsWriter.RawTensor(p + ".weight_g_idx", "I32", new long[] {l.cols()}, GptqExport.ints(new int[][] {g})));
        }
        return t;
    }

    /**
     * The {@code quantization_config} object. Keys as compressed-tensors' {@code QuantizationConfig} /
     * {@code QuantizationScheme} / {@code QuantizationArgs} (0.16.0) serialise them; only keys that older versions
     * also know are written inside {@code weights} ({@code QuantizationArgs} forbids unknown keys).
     */
    static String quantizationConfig(Scheme s, List<String> ignore) {
        Map<String, Object> weights = new LinkedHashMap<>();
        weights.put("num_bits", s.bits());
        weights.put("type", "int");
        weights.put("symmetric", s.symmetric());
        weights.put("strategy", s.strategy());
        weights.put("group_size", s.groupSize() == -1 ? null : s.groupSize());
        weights.put("block_structure", null);
        weights.put("dynamic", false);
        weights.put("actorder", s.actorder());
        weights.put("observer", "minmax");
        weights.put("observer_kwargs", new LinkedHashMap<>());
        Map<String, Object> group = new LinkedHashMap<>();
        group.put("targets", List.of("Linear"));
        group.put("weights", weights);
        group.put("input_activations", null);
        group.put("output_activations", null);
        group.put("format", "pack-quantized");
        Map<String, Object> q = new LinkedHashMap<>();
        q.put("quant_method", "compressed-tensors");
        q.put("format", "pack-quantized");
        q.put("quantization_status", "compressed");
        q.put("global_compression_ratio", null);
        q.put("config_groups", Map.of("group_0", group));
        q.put("ignore", ignore);
        q.put("kv_cache_scheme", null);
        return Json.write(q);
    }

    /** Re-reads the written checkpoint and checks that every layer dequantizes exactly to its shards. */
    static void selfCheck(Configuration conf, String dir, Map<String, QuantizedLayout.LayerShards> layers, Scheme s) {
        try (ModelWeights m = ModelWeights.open(conf, dir)) {
            for (QuantizedLayout.LayerShards l : layers.values()) {
                String p = Exports.module(l.layer());
                int groups = l.groups();
                int words = (int) m.info(p + ".weight_packed").shape()[1];
                int[][] codes = CompressedTensorsPacking.unpackWeight(GptqExport.readInts(m.readRaw(p + ".weight_packed"), l.rows(), words), s.bits(),
                        l.cols());
                int[][] zeros = null;
                if (!s.symmetric()) {
                    int zw = (int) m.info(p + ".weight_zero_point").shape()[0];
                    zeros = CompressedTensorsPacking.unpackZeroPoint(GptqExport.readInts(m.readRaw(p + ".weight_zero_point"), zw, groups), s.bits(),
                            l.rows());
                }
                ByteBuffer sb = ByteBuffer.wrap(m.readRaw(p + ".weight_scale")).order(ByteOrder.LITTLE_ENDIAN);
                int gs = l.groupSize() == -1 ? l.cols() : l.groupSize();
                int[] gIdx = s.gIdx() ? GptqExport.readInts(m.readRaw(p + ".weight_g_idx"), 1, l.cols())[0] : null;
                double[][] expect = l.dequant();
                for (int r = 0; r < l.rows(); r++) {
                    double[] scale = new double[groups];
                    for (int k = 0; k < groups; k++) {
                        scale[k] = Half.toFloat(sb.getShort());
                    }
                    for (int j = 0; j < l.cols(); j++) {
                        int g = gIdx == null ? j / gs : gIdx[j];
                        int zero = zeros == null ? CompressedTensorsPacking.symmetricZero(s.bits()) : zeros[r][g];
                        double v = scale[g] * (codes[r][j] - zero);
                        if (v != expect[r][j]) {
                            throw new IllegalStateException("export self-check failed: " + l.layer() + "[" + r + "][" + j + "] dequantizes to "
                                    + v + " but the shard holds " + expect[r][j]);
                        }
                    }
                }
            }
        }
    }

    public static String describe(Summary s) {
        return String.format(Locale.ROOT, "%d quantized layer(s) as compressed-tensors pack-quantized (%d-bit, %s, %s, actorder %s), "
                        + "%d tensor(s) copied unchanged, %d module(s) in ignore, files %s", s.layers(), s.bits(),
                s.groupSize() == -1 ? "per-channel" : "group " + s.groupSize(), s.symmetric() ? "symmetric" : "asymmetric",
                s.actorder(), s.copied(), s.ignore().size(), s.files())
                + (s.experts() > 0 && !s.symmetric() ? "; note: " + s.experts() + " mixture-of-experts expert layer(s) are asymmetric, "
                + "and vLLM's fused-MoE kernels for compressed-tensors accept symmetric schemes only (quantize with --sym to serve them)"
                : "");
    }
}
