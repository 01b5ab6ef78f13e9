package org.babaiquant;

import org.babaiquant.core.Half;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.cli.MiniLmLayer0;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The quantize stage end to end on the real MiniLM layer 0: safetensors weights, imported activations, Hessians. */
class QuantizeStageTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final Configuration CONF = new Configuration();
    /** Hugging Face BERT names of the six linears, as the default layer map knows them. */
    static final Map<String, String> HF_NAMES = Map.of(
            "q_proj", "encoder.layer.0.attention.self.query.weight", "k_proj", "encoder.layer.0.attention.self.key.weight",
            "v_proj", "encoder.layer.0.attention.self.value.weight", "o_proj", "encoder.layer.0.attention.output.dense.weight",
            "ffn_up", "encoder.layer.0.intermediate.dense.weight", "ffn_down", "encoder.layer.0.output.dense.weight");

    @TempDir
    static Path shared;
    static Path model;
    static Path hessians;
    static Path eval;

    @BeforeAll
    static void stageInputs() {
        Path dir = RealData.miniLm();
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        List<ActivationImporter.Source> calib = new ArrayList<>();
        List<ActivationImporter.Source> held = new ArrayList<>();
        List<String> sites = new ArrayList<>();
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            tensors.put(HF_NAMES.get(lin.name()), Npy.readMatrix(lin.weight(dir)));
            tensors.put(HF_NAMES.get(lin.name()).replace(".weight", ".bias"), new double[][] {Npy.readVector(
                    dir.resolve("weights/layer0_" + lin.name() + ".bias.npy"))});
            String site = "layer0_" + lin.site();
            if (!sites.contains(site)) {
                sites.add(site);
                calib.add(new ActivationImporter.Source(site, lin.calib(dir), null));
                held.add(new ActivationImporter.Source(site, lin.eval(dir), null));
            }
        }
        model = shared.resolve("model.safetensors");
        SafeTensors.write(model, tensors, "F32");
        new ActivationImporter(CONF, 64).run(calib, shared.resolve("act").toString(), false);
        new ActivationImporter(CONF, 64).run(held, shared.resolve("eval").toString(), false);
        hessians = shared.resolve("h");
        eval = shared.resolve("eval");
        HessianJob.run(SPARK, new HessianJob.Config(shared.resolve("act").toString(), hessians.toString(), List.of(), 3, 8, 512, false), s -> { });
    }

    static QuantizeJob.Config cfg(Path out, Method method, ColumnOrder order, boolean clip, String layers, List<String> map) {
        return new QuantizeJob.Config(model.toString(), hessians.toString(), out.toString(),
                MethodSpec.grid(method.cliName, new QuantGrid.Spec(4, 128, false, false), order, clip, 0.01), layers, map, null,
                eval.toString(), 256, "auto", 0, false);
    }

    @Test
    void everyMethodQuantizesAllSixLinearsExactlyAsTheSolverDoes(@TempDir Path tmp) {
        for (Method method : Method.values()) {
            Path out = tmp.resolve(method.cliName);
            ColumnOrder order = method == Method.BABAI ? ColumnOrder.MIN_PIVOT : ColumnOrder.ACT_ORDER;
            List<QuantizeJob.Outcome> res = QuantizeJob.run(SPARK, cfg(out, method, order, true, null, List.of()), s -> { });
            assertEquals(6, res.size());
            for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
                String name = HF_NAMES.get(lin.name());
                QuantizedLayout.LayerShards shards = QuantizedLayout.readLayer(CONF, out.toString(), name);
                double[][] w = Npy.readMatrix(lin.weight(RealData.miniLm()));
                double[][] h = HessianArtifact.read(CONF, hessians.toString(), "layer0_" + lin.site()).h();
                GptqSolver.Options opt = new GptqSolver.Options(method, new QuantGrid.Spec(4, 128, false, false), order, true, 0.01, 128, 6);
                QuantizedLayer direct = GptqSolver.quantize(w, h, opt, QuantizeJob.float16Grid(w, h, opt.grid()));
                for (int r = 0; r < w.length; r++) {
                    assertArrayEquals(direct.codes()[r], shards.codes()[r], method + " " + name + " row " + r);
                }
                assertArrayEquals(direct.perm(), shards.perm());
                double[][] dq = shards.dequant();
                for (int r = 0; r < w.length; r++) {
                    assertArrayEquals(direct.dequant()[r], dq[r], 0.0, "stored float16 scales are the solver's scales");
                }
            }
        }
    }

    @Test
    void noClipRepresentationsAreStoredInTheirOwnFormatWithBitsFromTheBytes(@TempDir Path tmp) {
        for (String scheme : new String[] {"ssqr", "hptq", "hrtn"}) {
            Path out = tmp.resolve(scheme);
            QuantizeJob.Config c = new QuantizeJob.Config(model.toString(), hessians.toString(), out.toString(), new MethodSpec(scheme,
                    new QuantGrid.Spec(3, 128, false, false), ColumnOrder.ACT_ORDER, false, 0.01, 128, 6, 0.01, 3.125),
                    ".*self\\.(query|value).*", List.of(), null, eval.toString(), 256, "cpu", 0, false);
            QuantizeJob.run(SPARK, c, s -> { });
            List<double[]> figures = new ArrayList<>();
            QuantizedLayout.readAll(CONF, out.toString(), "reports", g -> {
                assertEquals(scheme, g.getString("method", 0));
                if (!scheme.equals("hrtn")) { // round to nearest has no Babai guarantee; the two GPTQ-based ones do
                    assertEquals(0, g.getInteger("bound_violations", 0), scheme);
                }
                figures.add(new double[] {g.getDouble("bits_per_weight", 0), g.getDouble("eval_rel_error", 0)});
            });
            assertEquals(2, figures.size());
            for (double[] f : figures) {
                if (!scheme.equals("ssqr")) {
                    assertTrue(f[0] <= 3.125 && f[0] >= 3.125 - 0.005, scheme + " bits/weight " + f[0]);
                }
                assertTrue(f[1] > 0 && f[1] < 0.3, scheme + " eval " + f[1]);
            }
            QuantizedLayout.LayerShards l = QuantizedLayout.readLayer(CONF, out.toString(), HF_NAMES.get("q_proj"));
            assertEquals(scheme, l.representation());
            double[][] dq = l.dequant();
            assertEquals(384, dq.length);
            QuantizeLayerCliTest.Run refused = QuantizeLayerCliTest.run("export", "--quantized", out.toString(), "--model", model.toString(),
                    "--out", tmp.resolve("x" + scheme).toString());
            assertEquals(2, refused.status());
            assertTrue(refused.err().contains("only gptq, babai and rtn"), refused.err());
        }
    }

    @Test
    void reportsHoldTheBoundFiguresAndHeldOutError(@TempDir Path tmp) {
        Path out = tmp.resolve("q");
        QuantizeJob.run(SPARK, cfg(out, Method.GPTQ, ColumnOrder.MIN_PIVOT, false, null, List.of()), s -> { });
        List<String> layers = new ArrayList<>();
        QuantizedLayout.readAll(CONF, out.toString(), "reports", g -> {
            layers.add(g.getString("layer", 0));
            assertEquals(0, g.getInteger("bound_violations", 0));
            assertEquals(0, g.getLong("clipped", 0));
            assertTrue(g.getDouble("loss", 0) <= g.getDouble("bound", 0));
            assertEquals(1024, g.getLong("tokens", 0));
            double e = g.getDouble("eval_rel_error", 0);
            assertTrue(e > 0.005 && e < 0.2, g.getString("layer", 0) + " eval " + e);
            assertEquals("cpu", g.getString("backend", 0));
        });
        assertEquals(6, layers.size());
        List<Double> losses = new ArrayList<>();
        QuantizedLayout.readAll(CONF, out.toString(), "rows", g -> losses.add(g.getDouble("loss", 0)));
        assertEquals(384 * 5 + 1536, losses.size());
        QuantizeLayerCliTest.Run report = QuantizeLayerCliTest.run("report", out.toString());
        assertEquals(0, report.status(), report.err());
        assertTrue(report.out().contains("6 layers") && report.out().contains("encoder.layer.0.output.dense.weight"), report.out());
    }

    private static Map<String, byte[]> bytesOf(Path out, String kind) throws IOException {
        Map<String, byte[]> m = new java.util.TreeMap<>();
        try (Stream<Path> s = Files.walk(out.resolve(kind))) {
            for (Path p : s.filter(p -> p.toString().endsWith(".parquet")).toList()) {
                m.put(out.relativize(p).toString(), Files.readAllBytes(p));
            }
        }
        return m;
    }

    @Test
    void killedRunResumesToByteIdenticalOutputs(@TempDir Path tmp) throws IOException {
        Path whole = tmp.resolve("whole");
        QuantizeJob.run(SPARK, cfg(whole, Method.GPTQ, ColumnOrder.ACT_ORDER, true, null, List.of()), s -> { });
        Path resumed = tmp.resolve("resumed");
        // "killed" after the attention layers: two committed, plus debris of an interrupted layer
        QuantizeJob.run(SPARK, cfg(resumed, Method.GPTQ, ColumnOrder.ACT_ORDER, true, ".*attention.*", List.of()), s -> { });
        Files.createDirectories(resumed.resolve("_tmp/deadbeef/shards"));
        Files.writeString(resumed.resolve("_tmp/deadbeef/shards/part-00000.parquet"), "half");
        Path half = resumed.resolve("shards/layer=encoder.layer.0.output.dense.weight");
        Files.createDirectories(half);
        Files.writeString(half.resolve("part-00000.parquet"), "half-written shard of an interrupted layer");
        List<QuantizeJob.Outcome> again = QuantizeJob.run(SPARK, cfg(resumed, Method.GPTQ, ColumnOrder.ACT_ORDER, true, null, List.of()), s -> { });
        assertEquals(4, again.stream().filter(QuantizeJob.Outcome::skipped).count(), "the four attention layers were up to date");
        assertEquals(bytesOf(whole, "shards").keySet(), bytesOf(resumed, "shards").keySet());
        for (String kind : new String[] {"shards", "rows"}) {
            Map<String, byte[]> a = bytesOf(whole, kind);
            Map<String, byte[]> b = bytesOf(resumed, kind);
            for (String k : a.keySet()) {
                assertArrayEquals(a.get(k), b.get(k), k);
            }
        }
        // reports: identical but for the measured seconds
        Map<String, String> ra = new java.util.TreeMap<>();
        Map<String, String> rb = new java.util.TreeMap<>();
        QuantizedLayout.readAll(CONF, whole.toString(), "reports", g -> ra.put(g.getString("layer", 0), g.toString().replaceAll("seconds: .*\\n", "")));
        QuantizedLayout.readAll(CONF, resumed.toString(), "reports", g -> rb.put(g.getString("layer", 0), g.toString().replaceAll("seconds: .*\\n", "")));
        assertEquals(ra, rb);
    }

    @Test
    void exportWritesAGptqCheckpointThatDequantizesExactlyToTheShards(@TempDir Path tmp) throws IOException {
        for (boolean sym : new boolean[] {true, false}) {
            Path out = tmp.resolve("q" + sym);
            QuantizeJob.Config c = new QuantizeJob.Config(model.toString(), hessians.toString(), out.toString(), MethodSpec.grid("gptq",
                    new QuantGrid.Spec(4, 128, sym, false), ColumnOrder.ACT_ORDER, true, 0.01), null, List.of(), null, null, 0, "cpu", 0, false);
            QuantizeJob.run(SPARK, c, s -> { });
            Path ckpt = tmp.resolve("ckpt" + sym);
            QuantizeLayerCliTest.Run r = QuantizeLayerCliTest.run("export", "--quantized", out.toString(), "--model", model.toString(),
                    "--out", ckpt.toString());
            assertEquals(0, r.status(), r.err());
            assertTrue(r.out().contains("self-check passed"), r.out());
            Path st = ckpt.resolve("model.safetensors");
            Map<String, SafeTensors.TensorInfo> t = SafeTensors.list(st);
            for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
                String p = HF_NAMES.get(lin.name()).replace(".weight", "");
                assertFalse(t.containsKey(p + ".weight"), "quantized weight replaced");
                QuantizedLayout.LayerShards shards = QuantizedLayout.readLayer(CONF, out.toString(), p + ".weight");
                int in = shards.cols();
                int outDim = shards.rows();
                assertArrayEquals(new long[] {in * 4 / 32, outDim}, t.get(p + ".qweight").shape());
                assertEquals("I32", t.get(p + ".qweight").dtype());
                assertArrayEquals(new long[] {in / 128, outDim * 4 / 32}, t.get(p + ".qzeros").shape());
                assertArrayEquals(new long[] {in / 128, outDim}, t.get(p + ".scales").shape());
                assertEquals("F16", t.get(p + ".scales").dtype());
                // independent unpack of what a GPTQ loader reads
                java.nio.ByteBuffer qw = java.nio.ByteBuffer.wrap(SafeTensors.readRaw(st, p + ".qweight")).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                java.nio.ByteBuffer qz = java.nio.ByteBuffer.wrap(SafeTensors.readRaw(st, p + ".qzeros")).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                java.nio.ByteBuffer sc = java.nio.ByteBuffer.wrap(SafeTensors.readRaw(st, p + ".scales")).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                double[][] dq = shards.dequant();
                for (int j = 0; j < in; j += 7) {
                    for (int o = 0; o < outDim; o += 5) {
                        int code = (qw.getInt(4 * ((j / 8) * outDim + o)) >>> (4 * (j % 8))) & 15;
                        int g = j / 128;
                        int zero = (qz.getInt(4 * (g * (outDim / 8) + o / 8)) >>> (4 * (o % 8))) & 15;
                        zero = sym ? zero + 1 : zero; // v1 stores zero − 1
                        double scale = Half.toFloat(sc.getShort(2 * (g * outDim + o)));
                        assertEquals(dq[o][j], scale * (code - zero), 0.0, p + " [" + o + "][" + j + "]");
                    }
                }
                assertArrayEquals(SafeTensors.readRaw(model, p + ".bias"), SafeTensors.readRaw(st, p + ".bias"), "bias copied unchanged");
            }
            String qc = Files.readString(ckpt.resolve("quantize_config.json"));
            assertTrue(qc.contains("\"checkpoint_format\": \"" + (sym ? "gptq\"" : "gptq_v2\"")), qc);
            assertTrue(Files.readString(ckpt.resolve("config.json")).contains("quantization_config"));
        }
        Path noClip = tmp.resolve("noclip");
        QuantizeJob.run(SPARK, cfg(noClip, Method.GPTQ, ColumnOrder.NATURAL, false, ".*query.*", List.of()), s -> { });
        QuantizeLayerCliTest.Run refused = QuantizeLayerCliTest.run("export", "--quantized", noClip.toString(), "--model", model.toString(),
                "--out", tmp.resolve("x").toString());
        assertEquals(2, refused.status());
        assertTrue(refused.err().contains("--no-clip"), refused.err());
    }

    @Test
    void layerDirectoriesAreSinglePathSafeComponents() {
        String hf = HF_NAMES.get("q_proj");
        assertEquals("layer=" + hf, QuantizedLayout.dir("/o", "shards", hf).getName());
        org.apache.hadoop.fs.Path onnx = QuantizedLayout.dir("/o", "shards", "/encoder/layer.0/attention/self/query/MatMul");
        assertEquals("/o/shards", onnx.getParent().toString(), "one path component, not nested folders");
        assertTrue(onnx.getName().matches("layer=encoder_layer\\.0_attention_self_query_MatMul-[0-9a-f]{8}"), onnx.getName());
        assertFalse(onnx.getName().equals(QuantizedLayout.dir("/o", "shards", "/encoder/layer.0/attention/self/key/MatMul").getName()));
    }

    @Test
    void cudaBackendFollowsTheProbeAndRefusesClearlyWithoutAGpu(@TempDir Path tmp) {
        QuantizeJob.Config c = new QuantizeJob.Config(model.toString(), hessians.toString(), tmp.resolve("cuda").toString(),
                MethodSpec.grid("gptq", new QuantGrid.Spec(4, 128, false, false), ColumnOrder.NATURAL, true, 0.01), ".*query.*", List.of(),
                null, null, 0, "cuda", 0, false);
        org.babaiquant.core.QuantBackend.Availability cuda = org.babaiquant.gpu.CudaProbe.availability();
        if (cuda.available()) {
            assertEquals(1, QuantizeJob.run(SPARK, c, s -> { }).size());
            QuantizedLayout.readAll(CONF, c.out(), "reports", g -> assertEquals("cuda", g.getString("backend", 0)));
        } else {
            BadInputException e = assertThrows(BadInputException.class, () -> QuantizeJob.run(SPARK, c, s -> { }));
            assertTrue(e.getMessage().contains("--backend cuda") && e.getMessage().contains(cuda.reason()), e.getMessage());
            assertFalse(Files.exists(tmp.resolve("cuda").resolve("reports")));
        }
    }

    @Test
    void badInputIsAClearErrorAndWritesNothing(@TempDir Path tmp) throws IOException {
        // ffn_down has 1536 inputs: mapping it to a 384-wide site is a shape error
        BadInputException dim = assertThrows(BadInputException.class, () -> QuantizeJob.run(SPARK, cfg(tmp.resolve("o1"), Method.GPTQ,
                ColumnOrder.NATURAL, true, null, List.of("encoder\\.layer\\.0\\.output\\.dense\\.weight=layer0_attn_in")), s -> { }));
        assertTrue(dim.getMessage().contains("[384, 1536]") && dim.getMessage().contains("384x384"), dim.getMessage());
        BadInputException site = assertThrows(BadInputException.class, () -> QuantizeJob.run(SPARK, cfg(tmp.resolve("o2"), Method.GPTQ,
                ColumnOrder.NATURAL, true, null, List.of(".*query.weight=layer0_nowhere")), s -> { }));
        assertTrue(site.getMessage().contains("no Hessian for site 'layer0_nowhere'"), site.getMessage());
        BadInputException map = assertThrows(BadInputException.class, () -> QuantizeJob.run(SPARK, cfg(tmp.resolve("o3"), Method.GPTQ,
                ColumnOrder.NATURAL, true, null, List.of("decoder\\..*=x")), s -> { }));
        assertTrue(map.getMessage().contains("matches no weight"), map.getMessage());
        BadInputException layers = assertThrows(BadInputException.class, () -> QuantizeJob.run(SPARK, cfg(tmp.resolve("o4"), Method.GPTQ,
                ColumnOrder.NATURAL, true, "nothing.*", List.of()), s -> { }));
        assertTrue(layers.getMessage().contains("--layers"), layers.getMessage());
        Path corrupt = tmp.resolve("corrupt.safetensors");
        byte[] bytes = Files.readAllBytes(model);
        bytes[0] = (byte) 0xff; // header length now absurd
        bytes[7] = (byte) 0x7f;
        Files.write(corrupt, bytes);
        QuantizeJob.Config c = QuantizeJob.Config.of(corrupt.toString(), hessians.toString(), tmp.resolve("o5").toString(),
                MethodSpec.grid("gptq", new QuantGrid.Spec(4, 128, false, false), ColumnOrder.NATURAL, true, 0.01));
        BadInputException header = assertThrows(BadInputException.class, () -> QuantizeJob.run(SPARK, c, s -> { }));
        assertTrue(header.getMessage().contains("corrupt.safetensors"), header.getMessage());
        for (String o : new String[] {"o1", "o2", "o3", "o4", "o5"}) {
            assertFalse(Files.exists(tmp.resolve(o).resolve("reports")), o);
            assertFalse(Files.exists(tmp.resolve(o).resolve("shards")), o);
        }
    }
}
