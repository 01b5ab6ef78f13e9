package org.babaiquant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.io.Npy;
import org.babaiquant.io.NpyWriter;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.CompressedTensorsExport;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code export --format compressed-tensors} on a small Llama-named model quantized by the real stages (import →
 * hessian → quantize): symmetric, asymmetric, act-order (with and without g_idx), per-channel and 8-bit runs, each read
 * back by an independent reader (read_compressed_tensors.py: numpy on the safetensors bytes) and compared exactly
 * with the shards; config.json checked for the keys vLLM picks the scheme from.
 */
class CompressedTensorsExportTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final Configuration CONF = new Configuration();
    private static final int D = 64;
    private static final int FF = 128;
    static final List<String> QUANTIZED = List.of("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj",
            "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj");

    /** One quantize run and its export. */
    record Run(String name, Method method, int bits, int groupSize, boolean sym, ColumnOrder order, boolean gIdx) {}

    static final List<Run> RUNS = List.of(
            new Run("sym-actorder", Method.GPTQ, 4, 32, true, ColumnOrder.ACT_ORDER, false),
            new Run("asym-natural", Method.GPTQ, 4, 32, false, ColumnOrder.NATURAL, false),
            new Run("asym-actorder-gidx", Method.GPTQ, 4, 32, false, ColumnOrder.ACT_ORDER, true),
            new Run("channel-sym", Method.BABAI, 4, -1, true, ColumnOrder.MIN_PIVOT, false),
            new Run("8bit-asym", Method.RTN, 8, 64, false, ColumnOrder.NATURAL, false));

    @TempDir
    static Path dir;
    static Path model;
    static final Map<String, CompressedTensorsExport.Summary> SUMMARIES = new LinkedHashMap<>();

    @BeforeAll
    static void quantizeAndExport() throws IOException {
        Random rnd = new Random(1818);
        LinkedHashMap<String, double[][]> t = new LinkedHashMap<>();
        t.put("model.embed_tokens.weight", gaussian(rnd, 50, D, 1));
        for (String m : QUANTIZED) {
            int rows = m.endsWith("gate_proj") || m.endsWith("up_proj") ? FF : D;
            int cols = m.endsWith("down_proj") ? FF : D;
            t.put(m + ".weight", gaussian(rnd, rows, cols, 0.05));
        }
        t.put("model.layers.0.input_layernorm.weight", gaussian(rnd, 1, D, 1));
        t.put("lm_head.weight", gaussian(rnd, 50, D, 0.05));
        model = dir.resolve("model/model.safetensors");
        Files.createDirectories(model.getParent());
        writeF32(model, t);
        Files.writeString(dir.resolve("model/config.json"), "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"torch_dtype\": \"float16\"\n}\n");
        List<ActivationImporter.Source> src = new ArrayList<>();
        for (String site : List.of("attn_in", "o_proj_in", "mlp_in", "down_proj_in")) {
            Path f = dir.resolve(site + ".npy");
            NpyWriter.writeF32(f, correlated(rnd, 300, site.equals("down_proj_in") ? FF : D));
            src.add(new ActivationImporter.Source("layers.0." + site, f, null));
        }
        new ActivationImporter(CONF, 64).run(src, dir.resolve("act").toString(), false);
        HessianJob.run(SPARK, new HessianJob.Config(dir.resolve("act").toString(), dir.resolve("h").toString(), List.of(), 2, 8, 512,
                false), s -> { });
        for (Run r : RUNS) {
            QuantizeJob.run(SPARK, cfg(r.name(), r.method(), r.bits(), r.groupSize(), r.sym(), r.order(), true), s -> { });
            SUMMARIES.put(r.name(), CompressedTensorsExport.export(CONF, dir.resolve("q-" + r.name()).toString(), model.toString(),
                    dir.resolve("ct-" + r.name()).toString(), r.gIdx()));
        }
    }

    /** F32 safetensors; a one-row matrix named *norm.weight is written 1-D, as real checkpoints store norms. */
    static void writeF32(Path file, LinkedHashMap<String, double[][]> tensors) {
        List<SafeTensorsWriter.RawTensor> raw = new ArrayList<>();
        for (Map.Entry<String, double[][]> e : tensors.entrySet()) {
            double[][] m = e.getValue();
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4 * m.length * m[0].length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (double[] row : m) {
                for (double v : row) {
                    b.putFloat((float) v);
                }
            }
            long[] shape = e.getKey().endsWith("norm.weight") ? new long[] {m[0].length} : new long[] {m.length, m[0].length};
            raw.add(new SafeTensorsWriter.RawTensor(e.getKey(), "F32", shape, b.array()));
        }
        SafeTensorsWriter.writeRaw(file, raw, Map.of("format", "pt"));
    }

    static QuantizeJob.Config cfg(String name, Method method, int bits, int gs, boolean sym, ColumnOrder order, boolean clip) {
        return new QuantizeJob.Config(model.toString(), dir.resolve("h").toString(), dir.resolve("q-" + name).toString(),
                MethodSpec.grid(method.cliName, new QuantGrid.Spec(bits, gs, sym, false), order, clip, 0.01), null, List.of(), null, null,
                256, "cpu", 0, false);
    }

    static double[][] gaussian(Random rnd, int rows, int cols, double sd) {
        double[][] m = new double[rows][cols];
        for (double[] row : m) {
            for (int j = 0; j < cols; j++) {
                row[j] = sd * rnd.nextGaussian();
            }
        }
        return m;
    }

    /** Tokens with a few dominant directions and per-feature scales, like hidden states. */
    static double[][] correlated(Random rnd, int tokens, int d) {
        double[][] basis = gaussian(rnd, 4, d, 1);
        double[] featureScale = new double[d];
        for (int j = 0; j < d; j++) {
            featureScale[j] = 0.2 + 3 * rnd.nextDouble() * rnd.nextDouble();
        }
        double[][] x = gaussian(rnd, tokens, d, 0.3);
        for (double[] row : x) {
            for (double[] b : basis) {
                double c = rnd.nextGaussian();
                for (int j = 0; j < d; j++) {
                    row[j] = (row[j] + c * b[j]);
                }
            }
            for (int j = 0; j < d; j++) {
                row[j] *= featureScale[j];
            }
        }
        return x;
    }

    @Test
    void configJsonNamesTheSchemeVllmPicksAndIgnoresEveryUnquantizedLinear() throws IOException {
        Set<String> weightKeys = Set.of("num_bits", "type", "symmetric", "strategy", "group_size", "block_structure", "dynamic", "actorder",
                "observer", "observer_kwargs");
        for (Run r : RUNS) {
            JsonNode root = new ObjectMapper().readTree(dir.resolve("ct-" + r.name() + "/config.json").toFile());
            assertEquals("LlamaForCausalLM", root.get("architectures").get(0).asText(), "the model's own config is kept");
            JsonNode qc = root.get("quantization_config");
            assertEquals("compressed-tensors", qc.get("quant_method").asText());
            assertEquals("pack-quantized", qc.get("format").asText());
            assertEquals("compressed", qc.get("quantization_status").asText());
            assertEquals(1, qc.get("config_groups").size());
            JsonNode g = qc.get("config_groups").get("group_0");
            assertEquals("Linear", g.get("targets").get(0).asText());
            assertTrue(g.get("input_activations").isNull(), "weight-only: vLLM's WNA16 path");
            JsonNode w = g.get("weights");
            Set<String> keys = new TreeSet<>();
            w.fieldNames().forEachRemaining(keys::add);
            assertEquals(new TreeSet<>(weightKeys), keys, "QuantizationArgs forbids unknown keys");
            assertEquals(r.bits(), w.get("num_bits").asInt());
            assertEquals("int", w.get("type").asText());
            assertEquals(r.sym(), w.get("symmetric").asBoolean());
            assertEquals(r.groupSize() == -1 ? "channel" : "group", w.get("strategy").asText());
            assertEquals(r.groupSize() == -1, w.get("group_size").isNull());
            if (r.groupSize() != -1) {
                assertEquals(r.groupSize(), w.get("group_size").asInt());
            }
            String actorder = r.gIdx() ? "group" : r.order() == ColumnOrder.ACT_ORDER ? "weight" : null;
            assertEquals(actorder, w.get("actorder").isNull() ? null : w.get("actorder").asText(), r.name());
            List<String> ignore = new ArrayList<>();
            qc.get("ignore").forEach(n -> ignore.add(n.asText()));
            assertEquals(List.of("model.embed_tokens", "lm_head"), ignore, r.name());
            CompressedTensorsExport.Summary s = SUMMARIES.get(r.name());
            assertEquals(QUANTIZED.size(), s.layers());
            assertEquals(3, s.copied(), "embeddings, the norm and lm_head are copied unchanged");
        }
    }

    @Test
    void tensorsHaveTheShapesAndDtypesVllmAllocates() {
        for (Run r : RUNS) {
            Map<String, SafeTensors.TensorInfo> t = SafeTensors.list(dir.resolve("ct-" + r.name() + "/model.safetensors"));
            for (String m : QUANTIZED) {
                long rows = m.endsWith("gate_proj") || m.endsWith("up_proj") ? FF : D;
                long cols = m.endsWith("down_proj") ? FF : D;
                long groups = r.groupSize() == -1 ? 1 : cols / r.groupSize();
                assertNull(t.get(m + ".weight"), "the dense weight is replaced");
                assertEquals("I32", t.get(m + ".weight_packed").dtype());
                assertEquals(List.of(rows, cols * r.bits() / 32), boxed(t.get(m + ".weight_packed").shape()), m);
                assertEquals("F16", t.get(m + ".weight_scale").dtype());
                assertEquals(List.of(rows, groups), boxed(t.get(m + ".weight_scale").shape()));
                assertEquals("I64", t.get(m + ".weight_shape").dtype());
                assertEquals(List.of(2L), boxed(t.get(m + ".weight_shape").shape()));
                if (r.sym()) {
                    assertNull(t.get(m + ".weight_zero_point"), "symmetric schemes store no zero point");
                } else {
                    assertEquals("I32", t.get(m + ".weight_zero_point").dtype());
                    assertEquals(List.of(rows * r.bits() / 32, groups), boxed(t.get(m + ".weight_zero_point").shape()));
                }
                assertEquals(r.gIdx(), t.containsKey(m + ".weight_g_idx"));
            }
            assertEquals("F32", t.get("lm_head.weight").dtype());
        }
    }

    private static List<Long> boxed(long[] v) {
        List<Long> l = new ArrayList<>();
        for (long x : v) {
            l.add(x);
        }
        return l;
    }

    @Test
    void anIndependentNumpyReaderDequantizesEveryRunExactlyToTheShards() throws Exception {
        assumePythonWithNumpy();
        for (Run r : RUNS) {
            Path manifest = manifest(r.name());
            Proc p = python(dir.resolve("ct-" + r.name()), manifest);
            assertEquals(0, p.exit(), r.name() + ":\n" + p.out());
            assertEquals(QUANTIZED.size(), p.out().lines().filter(l -> l.startsWith("OK ") && l.endsWith("max_abs_diff=0.0")).count(),
                    p.out());
        }
    }

    /** A sharded model (two files and an index) exports to two files and a rewritten index, read back exactly. */
    @Test
    void aShardedModelExportsShardByShardWithItsIndex() throws Exception {
        Path sharded = dir.resolve("sharded");
        Files.createDirectories(sharded);
        Map<String, SafeTensors.TensorInfo> all = SafeTensors.list(model);
        List<SafeTensorsWriter.RawTensor> first = new ArrayList<>();
        List<SafeTensorsWriter.RawTensor> second = new ArrayList<>();
        StringBuilder index = new StringBuilder("{\"metadata\": {}, \"weight_map\": {");
        int i = 0;
        for (SafeTensors.TensorInfo t : all.values()) {
            boolean one = t.name().contains("self_attn") || t.name().contains("embed");
            String file = one ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
            (one ? first : second).add(new SafeTensorsWriter.RawTensor(t.name(), t.dtype(), t.shape(), SafeTensors.readRaw(model, t.name())));
            index.append(i++ == 0 ? "" : ", ").append('"').append(t.name()).append("\": \"").append(file).append('"');
        }
        SafeTensorsWriter.writeRaw(sharded.resolve("model-00001-of-00002.safetensors"), first, Map.of("format", "pt"));
        SafeTensorsWriter.writeRaw(sharded.resolve("model-00002-of-00002.safetensors"), second, Map.of("format", "pt"));
        Files.writeString(sharded.resolve("model.safetensors.index.json"), index.append("}}\n").toString());
        Path out = dir.resolve("ct-sharded");
        CompressedTensorsExport.Summary s = CompressedTensorsExport.export(CONF, dir.resolve("q-sym-actorder").toString(),
                sharded.toString(), out.toString(), false);
        assertEquals(List.of("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"), s.files());
        JsonNode map = new ObjectMapper().readTree(out.resolve("model.safetensors.index.json").toFile()).get("weight_map");
        assertEquals("model-00001-of-00002.safetensors", map.get("model.layers.0.self_attn.q_proj.weight_packed").asText());
        assertEquals("model-00002-of-00002.safetensors", map.get("model.layers.0.mlp.down_proj.weight_scale").asText());
        assertFalse(map.has("model.layers.0.mlp.down_proj.weight"));
        assumePythonWithNumpy();
        Proc p = python(out, manifest("sym-actorder"));
        assertEquals(0, p.exit(), p.out());
        assertEquals(QUANTIZED.size(), p.out().lines().filter(l -> l.startsWith("OK ")).count(), p.out());
    }

    /** The reader is a real check: one flipped bit in one packed word is a mismatch. */
    @Test
    void theIndependentReaderSeesOneFlippedBit() throws Exception {
        assumePythonWithNumpy();
        Path copy = dir.resolve("tampered");
        Files.createDirectories(copy);
        Path src = dir.resolve("ct-asym-natural");
        for (String f : List.of("config.json", "model.safetensors")) {
            Files.copy(src.resolve(f), copy.resolve(f), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        SafeTensors.TensorInfo packed = SafeTensors.list(copy.resolve("model.safetensors")).get("model.layers.0.mlp.down_proj.weight_packed");
        long at = SafeTensors.dataStart(copy.resolve("model.safetensors")) + packed.begin() + 4 * 5;
        try (RandomAccessFile f = new RandomAccessFile(copy.resolve("model.safetensors").toFile(), "rw")) {
            f.seek(at);
            int b = f.read();
            f.seek(at);
            f.write(b ^ 0x10);
        }
        Proc p = python(copy, manifest("asym-natural"));
        assertEquals(1, p.exit(), p.out());
        assertTrue(p.out().contains("MISMATCH model.layers.0.mlp.down_proj"), p.out());
    }

    @Test
    void refusesWhatThePackedFormatCannotHold() {
        QuantizeJob.run(SPARK, cfg("noclip", Method.GPTQ, 4, 32, false, ColumnOrder.NATURAL, false), s -> { });
        BadInputException e = assertThrows(BadInputException.class, () -> CompressedTensorsExport.export(CONF,
                dir.resolve("q-noclip").toString(), model.toString(), dir.resolve("ct-noclip").toString(), false));
        assertTrue(e.getMessage().contains("--no-clip"), e.getMessage());
        QuantizeJob.run(SPARK, cfg("3bit", Method.GPTQ, 3, 32, false, ColumnOrder.NATURAL, true), s -> { });
        e = assertThrows(BadInputException.class, () -> CompressedTensorsExport.export(CONF, dir.resolve("q-3bit").toString(),
                model.toString(), dir.resolve("ct-3bit").toString(), false));
        assertTrue(e.getMessage().contains("3-bit"), e.getMessage());
        e = assertThrows(BadInputException.class, () -> CompressedTensorsExport.export(CONF, dir.resolve("q-channel-sym").toString(),
                model.toString(), dir.resolve("ct-bad").toString(), true));
        assertTrue(e.getMessage().contains("group"), e.getMessage());
        assertFalse(Files.exists(dir.resolve("ct-noclip")) || Files.exists(dir.resolve("ct-3bit")) || Files.exists(dir.resolve("ct-bad")),
                "nothing written on refusal");
        // the output folder is replaced whole: it may not be the model's folder or hold the quantize output
        for (Path bad : List.of(model.getParent(), dir)) {
            e = assertThrows(BadInputException.class, () -> CompressedTensorsExport.export(CONF, dir.resolve("q-sym-actorder").toString(),
                    model.toString(), bad.toString(), false));
            assertTrue(e.getMessage().contains("would replace"), e.getMessage());
        }
        assertTrue(Files.exists(model), "the model is untouched");
    }

    @Test
    void theExportCommandWritesEitherFormatAndRefusesOthersWithExitTwo() {
        String q = dir.resolve("q-asym-natural").toString();
        QuantizeLayerCliTest.Run ct = QuantizeLayerCliTest.run("export", "--quantized", q, "--model", model.toString(), "--out",
                dir.resolve("cli-ct").toString(), "--format", "compressed-tensors", "--g-idx");
        assertEquals(0, ct.status(), ct.out() + ct.err());
        assertTrue(ct.out().contains("compressed-tensors pack-quantized (4-bit, group 32, asymmetric, actorder group)"), ct.out());
        assertTrue(SafeTensors.list(dir.resolve("cli-ct/model.safetensors")).containsKey("model.layers.0.mlp.up_proj.weight_g_idx"));
        QuantizeLayerCliTest.Run gptq = QuantizeLayerCliTest.run("export", "--quantized", q, "--model", model.toString(), "--out",
                dir.resolve("cli-gptq").toString());
        assertEquals(0, gptq.status(), gptq.out() + gptq.err());
        assertTrue(Files.exists(dir.resolve("cli-gptq/quantize_config.json")));
        QuantizeLayerCliTest.Run bad = QuantizeLayerCliTest.run("export", "--quantized", q, "--model", model.toString(), "--out",
                dir.resolve("cli-bad").toString(), "--format", "awq");
        assertEquals(2, bad.status(), bad.out() + bad.err());
        assertTrue(bad.err().contains("awq") && bad.err().contains("compressed-tensors"), bad.err());
        assertFalse(Files.exists(dir.resolve("cli-bad")));
    }

    /** MODULE<TAB>expected.npy with the shards' dequantized weight (QuantizedLayout's reader, not the exporter). */
    private static Path manifest(String run) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (String m : QUANTIZED) {
            Path f = dir.resolve("expected-" + run + "-" + m + ".npy");
            NpyWriter.writeF64(f, QuantizedLayout.readLayer(CONF, dir.resolve("q-" + run).toString(), m + ".weight").dequant());
            sb.append(m).append('\t').append(f).append('\n');
        }
        Path manifest = dir.resolve("manifest-" + run + ".txt");
        Files.writeString(manifest, sb.toString());
        return manifest;
    }

    record Proc(int exit, String out) {}

    static Proc python(Path checkpoint, Path manifest) throws Exception {
        Path script = Path.of(CompressedTensorsExportTest.class.getResource("/read_compressed_tensors.py").toURI());
        Process p = new ProcessBuilder("python3", script.toString(), checkpoint.toString(), manifest.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS));
        return new Proc(p.exitValue(), out);
    }

    static void assumePythonWithNumpy() {
        boolean ok;
        try {
            Process p = new ProcessBuilder("python3", "-c", "import numpy").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            ok = p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            ok = false;
        }
        Assumptions.assumeTrue(ok, "python3 with numpy is not available: the independent reader is skipped");
    }
}
