package org.babaiquant.spark;

import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.core.Half;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.babaiquant.BadInputException;
import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.Json;
import org.babaiquant.io.Commit;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Export of a quantize output as a checkpoint that GPTQ loaders (GPTQModel, AutoGPTQ, transformers' GPTQ
 * integration) accept. For every quantized linear {@code P.weight}:
 * <pre>
 *   P.qweight  I32 [in·bits/32, out]     codes packed along the input dimension, LSB first
 *   P.qzeros   I32 [groups, out·bits/32] zero points packed along the output dimension; checkpoint_format "gptq"
 *                                        (v1: stores zero − 1) for symmetric grids, "gptq_v2" (true zeros) otherwise,
 *                                        since v1 cannot represent a zero point of 0
 *   P.scales   F16 [groups, out]
 *   P.g_idx    I32 [in]                  g_idx[j] = j / group_size (static groups on original columns: desc_act false)
 * </pre>
 * Every other tensor is copied byte for byte. One output shard per input shard (same names, same index), so memory
 * holds one shard at a time. Afterwards the files are read back, unpacked and dequantized, and compared with the
 * shards exactly (self-check). Only clipped gptq/babai/rtn outputs with 2/3/4/8 bits fit this format.
 */
public final class GptqExport {
    private GptqExport() {}

    public record Summary(int layers, int copied, List<String> files, String checkpointFormat) {}

    /** Export, replacing an existing {@code outDir} (see {@link Exports} for the commit). */
    public static Summary export(Configuration conf, String quantized, String modelUri, String outDir) {
        return export(conf, quantized, modelUri, outDir, Commit.IfExists.REPLACE);
    }

    public static Summary export(Configuration conf, String quantized, String modelUri, String outDir, Commit.IfExists ifExists) {
        Map<String, Exports.Layer> reports = Exports.layers(conf, quantized, "a GPTQ checkpoint");
        Exports.Layer any = reports.values().iterator().next();
        int bits = any.bits();
        int gs = any.groupSize();
        boolean sym = any.sym();
        if (!GptqPacking.packableBits(bits)) {
            throw new BadInputException(GptqPacking.checkpointProblem(0, 0, bits));
        }
        for (Exports.Layer l : reports.values()) {
            if (l.bits() != bits || l.groupSize() != gs) {
                throw new BadInputException("layers quantized with different bits/group sizes cannot share one GPTQ checkpoint");
            }
            String problem = GptqPacking.checkpointProblem(l.rows(), l.cols(), bits);
            if (problem != null) {
                throw new BadInputException(l.name() + " is [" + l.rows() + ", " + l.cols() + "]: " + problem);
            }
        }
        String checkpointFormat = sym ? "gptq" : "gptq_v2";
        boolean v1 = sym;
        String qcfg = quantizeConfig(bits, gs, sym, checkpointFormat, reports);
        Exports.Written w = Exports.write(conf, quantized, modelUri, outDir, ifExists, reports.keySet(), new Exports.Format() {
            @Override
            public List<SafeTensorsWriter.RawTensor> tensors(QuantizedLayout.LayerShards l) {
                return gptqTensors(l, v1);
            }

            @Override
            public Map<String, String> files(ModelWeights model, List<String> copied) throws IOException {
                Map<String, String> f = new LinkedHashMap<>();
                f.put("quantize_config.json", qcfg);
                f.put("config.json", configJson(conf, modelUri, qcfg));
                return f;
            }

            @Override
            public void selfCheck(String dir) {
                GptqExport.selfCheck(conf, dir, Exports.lazyShards(conf, quantized, reports.keySet()), v1);
            }
        });
        return new Summary(reports.size(), w.copied(), w.files(), checkpointFormat);
    }

    static List<SafeTensorsWriter.RawTensor> gptqTensors(QuantizedLayout.LayerShards l, boolean v1) {
        String p = Exports.module(l.layer());
        int groups = l.groups();
        int[][] qweight = GptqPacking.packQweight(l.codes(), l.bits());
        int[][] zerosT = new int[groups][l.rows()];
        ByteBuffer scales = ByteBuffer.allocate(2 * groups * l.rows()).order(ByteOrder.LITTLE_ENDIAN);
        for (int k = 0; k < groups; k++) {
            for (int r = 0; r < l.rows(); r++) {
                zerosT[k][r] = l.zeros()[r][k];
                scales.putShort(Half.fromFloat((float) l.scales()[r][k]));
            }
        }
        int[][] qzeros = GptqPacking.packQzeros(zerosT, l.bits(), v1);
        int[] gIdx = GptqPacking.gIdx(l.cols(), l.groupSize());
        List<SafeTensorsWriter.RawTensor> t = new ArrayList<>();
        t.add(new SafeTensorsWriter.RawTensor(p + ".qweight", "I32", new long[] {qweight.length, l.rows()}, ints(qweight)));
        t.add(new SafeTensorsWriter.RawTensor(p + ".qzeros", "I32", new long[] {groups, qzeros[0].length}, ints(qzeros)));
        t.add(new SafeTensorsWriter.RawTensor(p + ".scales", "F16", new long[] {groups, l.rows()}, scales.array()));
        t.add(new SafeTensorsWriter.RawTensor(p + ".g_idx", "I32", new long[] {l.cols()}, ints(new int[][] {gIdx})));
        return t;
    }

    static byte[] ints(int[][] m) {
        ByteBuffer b = ByteBuffer.allocate(4 * m.length * m[0].length).order(ByteOrder.LITTLE_ENDIAN);
        for (int[] row : m) {
            for (int v : row) {
                b.putInt(v);
            }
        }
        return b.array();
    }

    static int[][] readInts(byte[] raw, int rows, int cols) {
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int[][] m = new int[rows][cols];
        for (int[] row : m) {
            for (int j = 0; j < cols; j++) {
                row[j] = b.getInt();
            }
        }
        return m;
    }

    /** Re-reads the written checkpoint and checks every layer dequantizes exactly to its shards. */
    static void selfCheck(Configuration conf, String dir, Map<String, QuantizedLayout.LayerShards> layers, boolean v1) {
        try (ModelWeights m = ModelWeights.open(conf, dir)) {
            for (QuantizedLayout.LayerShards l : layers.values()) {
                String p = Exports.module(l.layer());
                int groups = l.groups();
                int words = m.info(p + ".qweight").shape()[0] > Integer.MAX_VALUE ? -1 : (int) m.info(p + ".qweight").shape()[0];
                int[][] codes = GptqPacking.unpackQweight(readInts(m.readRaw(p + ".qweight"), words, l.rows()), l.bits(), l.cols());
                int zw = (int) m.info(p + ".qzeros").shape()[1];
                int[][] zeros = GptqPacking.unpackQzeros(readInts(m.readRaw(p + ".qzeros"), groups, zw), l.bits(), l.rows(), v1);
                ByteBuffer sb = ByteBuffer.wrap(m.readRaw(p + ".scales")).order(ByteOrder.LITTLE_ENDIAN);
                int[] gIdx = readInts(m.readRaw(p + ".g_idx"), 1, l.cols())[0];
                double[][] expect = l.dequant();
                double[][] scales = new double[groups][l.rows()];
                for (int k = 0; k < groups; k++) {
                    for (int r = 0; r < l.rows(); r++) {
                        scales[k][r] = Half.toFloat(sb.getShort());
                    }
                }
                for (int r = 0; r < l.rows(); r++) {
                    for (int j = 0; j < l.cols(); j++) {
                        int g = gIdx[j];
                        double v = scales[g][r] * (codes[r][j] - zeros[g][r]);
                        if (v != expect[r][j]) {
                            throw new IllegalStateException("export self-check failed: " + l.layer() + "[" + r + "][" + j + "] dequantizes to "
                                    + v + " but the shard holds " + expect[r][j]);
                        }
                    }
                }
            }
        }
    }

    private static String quantizeConfig(int bits, int gs, boolean sym, String format, Map<String, Exports.Layer> reports) {
        double loss = 0;
        double b = 0;
        long clipped = 0;
        double damp = 0;
        String method = null;
        String order = null;
        for (Exports.Layer l : reports.values()) {
            loss += l.loss();
            b += l.bound();
            clipped += l.clipped();
            damp = Math.max(damp, l.damping());
            method = l.method();
            order = l.order();
        }
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("layers", reports.size());
        summary.put("loss", loss);
        summary.put("bound", b);
        summary.put("loss_over_bound", loss / b);
        summary.put("clipped", clipped);
        Map<String, Object> meta = new LinkedHashMap<>();
        meta.put("quantizer", List.of("babai-quant:0.1.0-SNAPSHOT"));
        meta.put("method", method);
        meta.put("order", order);
        meta.put("damping_max", damp);
        meta.put("bound_summary", summary);
        Map<String, Object> q = new LinkedHashMap<>();
        q.put("bits", bits);
        q.put("group_size", gs);
        q.put("desc_act", false);
        q.put("sym", sym);
        q.put("static_groups", true);
        q.put("true_sequential", false);
        q.put("damp_percent", damp);
        q.put("quant_method", "gptq");
        q.put("checkpoint_format", format);
        q.put("meta", meta);
        return Json.write(q);
    }

    /** The model's config.json (next to the weights) with quantization_config added, or a minimal one. */
    static String configJson(Configuration conf, String modelUri, String qcfg) throws IOException {
        Path m = new Path(modelUri);
        FileSystem fs = m.getFileSystem(conf);
        Path dir = fs.getFileStatus(m).isDirectory() ? m : m.getParent();
        Path cfg = new Path(dir, "config.json");
        String inner = qcfg.strip().replace("\n", "\n  ");
        if (!fs.exists(cfg)) {
            return "{\n  \"quantization_config\": " + inner + "\n}\n";
        }
        String text;
        try (FSDataInputStream in = fs.open(cfg)) {
            text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        if (text.contains("\"quantization_config\"")) {
            throw new BadInputException(cfg + " already has a quantization_config: the model is already quantized");
        }
        int brace = text.indexOf('{');
        if (brace < 0) {
            throw new BadInputException(cfg + " is not a JSON object");
        }
        boolean empty = text.substring(brace + 1).strip().startsWith("}");
        return text.substring(0, brace + 1) + "\n  \"quantization_config\": " + inner + (empty ? "\n" : ",") + text.substring(brace + 1);
    }

    public static String describe(Summary s) {
        return String.format(Locale.ROOT, "%d quantized layer(s), %d tensor(s) copied unchanged, files %s, checkpoint_format %s",
                s.layers(), s.copied(), Arrays.toString(s.files().toArray()), s.checkpointFormat());
    }
}
