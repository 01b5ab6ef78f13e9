package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.io.Npy;
import org.babaiquant.io.NpyWriter;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.LayerMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Mixture-of-experts support: default layer maps, per-expert sites, experts that received no token. */
class MoeTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final Configuration CONF = new Configuration();

    @Test
    void defaultLayerMapGivesEveryExpertItsOwnSiteAndLeavesRoutersUnquantized() {
        List<String> names = List.of(
                // Mixtral
                "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                "model.layers.0.block_sparse_moe.gate.weight", "model.layers.0.block_sparse_moe.experts.0.w1.weight",
                "model.layers.0.block_sparse_moe.experts.0.w2.weight", "model.layers.0.block_sparse_moe.experts.0.w3.weight",
                "model.layers.1.block_sparse_moe.experts.7.w3.weight", "model.layers.0.post_attention_layernorm.weight",
                // Qwen2-MoE
                "model.layers.2.mlp.gate.weight", "model.layers.2.mlp.experts.59.gate_proj.weight", "model.layers.2.mlp.experts.59.up_proj.weight",
                "model.layers.2.mlp.experts.59.down_proj.weight", "model.layers.2.mlp.shared_expert.gate_proj.weight",
                "model.layers.2.mlp.shared_expert.down_proj.weight", "model.layers.2.mlp.shared_expert_gate.weight",
                // DeepSeek: a dense first layer, then routed and shared experts
                "model.layers.3.mlp.gate_proj.weight", "model.layers.4.mlp.experts.1.down_proj.weight",
                "model.layers.4.mlp.shared_experts.up_proj.weight", "model.layers.4.mlp.shared_experts.down_proj.weight", "lm_head.weight");
        Map<String, String> expected = new LinkedHashMap<>();
        expected.put("model.layers.0.self_attn.q_proj.weight", "layers.0.attn_in");
        expected.put("model.layers.0.self_attn.o_proj.weight", "layers.0.o_proj_in");
        expected.put("model.layers.0.block_sparse_moe.experts.0.w1.weight", "layers.0.experts.0.mlp_in");
        expected.put("model.layers.0.block_sparse_moe.experts.0.w2.weight", "layers.0.experts.0.down_proj_in");
        expected.put("model.layers.0.block_sparse_moe.experts.0.w3.weight", "layers.0.experts.0.mlp_in");
        expected.put("model.layers.1.block_sparse_moe.experts.7.w3.weight", "layers.1.experts.7.mlp_in");
        expected.put("model.layers.2.mlp.experts.59.gate_proj.weight", "layers.2.experts.59.mlp_in");
        expected.put("model.layers.2.mlp.experts.59.up_proj.weight", "layers.2.experts.59.mlp_in");
        expected.put("model.layers.2.mlp.experts.59.down_proj.weight", "layers.2.experts.59.down_proj_in");
        expected.put("model.layers.2.mlp.shared_expert.gate_proj.weight", "layers.2.mlp_in");
        expected.put("model.layers.2.mlp.shared_expert.down_proj.weight", "layers.2.shared_expert.down_proj_in");
        expected.put("model.layers.3.mlp.gate_proj.weight", "layers.3.mlp_in");
        expected.put("model.layers.4.mlp.experts.1.down_proj.weight", "layers.4.experts.1.down_proj_in");
        expected.put("model.layers.4.mlp.shared_experts.up_proj.weight", "layers.4.mlp_in");
        expected.put("model.layers.4.mlp.shared_experts.down_proj.weight", "layers.4.shared_expert.down_proj_in");
        assertEquals(expected, LayerMap.of(List.of(), null, true).select(names, null));
    }

    /** An expert with 0 tokens (a [0, d] dump) gets a committed Hessian with tokens 0 and H = 0; 3 tokens a real one. */
    @Test
    void anExpertThatGotNoTokenIsCommittedAsAnEmptyHessian(@TempDir Path tmp) {
        Random rnd = new Random(3);
        Path none = tmp.resolve("e0.npy");
        NpyWriter.writeF32(none, new int[] {0, 8}, new float[0]);
        Path three = tmp.resolve("e1.npy");
        NpyWriter.writeF32(three, CompressedTensorsExportTest.gaussian(rnd, 3, 8, 1));
        new ActivationImporter(CONF, 64).run(List.of(new ActivationImporter.Source("layers.0.experts.0.mlp_in", none, null),
                new ActivationImporter.Source("layers.0.experts.1.mlp_in", three, null)), tmp.resolve("act").toString(), false);
        List<String> lines = new ArrayList<>();
        List<HessianJob.Result> res = HessianJob.run(SPARK, new HessianJob.Config(tmp.resolve("act").toString(), tmp.resolve("h").toString(),
                List.of(), 2, 8, 512, false), lines::add);
        assertEquals(2, res.size(), lines.toString());
        assertTrue(lines.stream().anyMatch(l -> l.contains("layers.0.experts.0.mlp_in: d=8, 0 tokens")), lines.toString());
        HessianArtifact.Loaded h0 = HessianArtifact.read(CONF, tmp.resolve("h").toString(), "layers.0.experts.0.mlp_in");
        assertEquals(0, h0.meta().tokens());
        assertEquals(8, h0.h().length);
        for (double[] row : h0.h()) {
            for (double v : row) {
                assertEquals(0.0, v);
            }
        }
        assertEquals(3, HessianArtifact.read(CONF, tmp.resolve("h").toString(), "layers.0.experts.1.mlp_in").meta().tokens());
        // a rerun skips both (fingerprints), the empty one included
        List<String> again = new ArrayList<>();
        HessianJob.run(SPARK, new HessianJob.Config(tmp.resolve("act").toString(), tmp.resolve("h").toString(), List.of(), 2, 8, 512, false),
                again::add);
        assertEquals(2, again.stream().filter(l -> l.contains("up to date")).count(), again.toString());
    }

    @Test
    void anUnknownStarvedRuleIsExitTwoWithOneLine(@TempDir Path tmp) {
        QuantizeLayerCliTest.Run r = QuantizeLayerCliTest.run("quantize", "--model", tmp.resolve("m.safetensors").toString(), "--hessians",
                tmp.resolve("h").toString(), "--out", tmp.resolve("q").toString(), "--starved", "skip");
        assertEquals(2, r.status(), r.out() + r.err());
        assertTrue(r.err().contains("starved-expert rule 'skip'"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(!java.nio.file.Files.exists(tmp.resolve("q")), "nothing written");
    }

    /** One safetensors dump holding every expert's routed tokens, imported with one rule whose site uses the groups. */
    @Test
    void aSiteMapRuleWithGroupsImportsEveryExpertFromOneFile(@TempDir Path tmp) {
        Random rnd = new Random(4);
        List<SafeTensorsWriter.RawTensor> raw = new ArrayList<>();
        int[] tokens = {0, 3, 10};
        for (int e = 0; e < tokens.length; e++) {
            ByteBuffer b = ByteBuffer.allocate(4 * tokens[e] * 8).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < tokens[e] * 8; i++) {
                b.putFloat((float) rnd.nextGaussian());
            }
            raw.add(new SafeTensorsWriter.RawTensor("layer0.expert" + e + ".mlp_in", "F32", new long[] {tokens[e], 8}, b.array()));
        }
        Path dump = tmp.resolve("routed.safetensors");
        SafeTensorsWriter.writeRaw(dump, raw, Map.of());
        List<ActivationImporter.Source> src = ActivationImporter.safetensorsSources(dump,
                Map.of("layer(\\d+)\\.expert(\\d+)\\.mlp_in", "layers.$1.experts.$2.mlp_in"));
        assertEquals(List.of("layers.0.experts.0.mlp_in", "layers.0.experts.1.mlp_in", "layers.0.experts.2.mlp_in"),
                src.stream().map(ActivationImporter.Source::site).toList());
        List<ActivationImporter.Imported> imported = new ActivationImporter(CONF, 4).run(src, tmp.resolve("act").toString(), false);
        assertEquals(List.of(0L, 3L, 10L), imported.stream().map(ActivationImporter.Imported::tokens).toList());
    }

    /**
     * A Mixtral-named model (tiny dims: hidden 8, experts 16 wide, 4 experts that got 0, 3, 10 and 51 tokens) through
     * {@code pipeline}: import → hessian → quantize → report → export (compressed-tensors). The starved-expert rule is
     * applied per expert and shows in the report; no layer is NaN, zeroed or skipped; the export reads back exactly.
     */
    @Test
    void aMixtralNamedModelGoesThroughThePipeline(@TempDir Path tmp) throws Exception {
        Random rnd = new Random(8);
        int d = 8;
        int ff = 16;
        int[] routed = {0, 3, 10, 51};
        Map<String, double[][]> weights = new LinkedHashMap<>();
        weights.put("model.embed_tokens.weight", CompressedTensorsExportTest.gaussian(rnd, 32, d, 1));
        for (String p : List.of("q", "k", "v", "o")) {
            weights.put("model.layers.0.self_attn." + p + "_proj.weight", CompressedTensorsExportTest.gaussian(rnd, d, d, 0.3));
        }
        weights.put("model.layers.0.block_sparse_moe.gate.weight", CompressedTensorsExportTest.gaussian(rnd, routed.length, d, 0.3));
        for (int e = 0; e < routed.length; e++) {
            String x = "model.layers.0.block_sparse_moe.experts." + e;
            weights.put(x + ".w1.weight", CompressedTensorsExportTest.gaussian(rnd, ff, d, 0.3));
            weights.put(x + ".w2.weight", CompressedTensorsExportTest.gaussian(rnd, d, ff, 0.3));
            weights.put(x + ".w3.weight", CompressedTensorsExportTest.gaussian(rnd, ff, d, 0.3));
        }
        weights.put("lm_head.weight", CompressedTensorsExportTest.gaussian(rnd, 32, d, 0.3));
        StringBuilder fromNpy = new StringBuilder();
        for (Map.Entry<String, double[][]> w : weights.entrySet()) {
            Path f = tmp.resolve("w-" + w.getKey() + ".npy");
            NpyWriter.writeF32(f, w.getValue());
            fromNpy.append("    ").append(w.getKey()).append(": ").append(f).append('\n');
        }
        StringBuilder sites = new StringBuilder();
        for (String site : List.of("attn_in", "o_proj_in")) {
            Path f = tmp.resolve(site + ".npy");
            NpyWriter.writeF32(f, CompressedTensorsExportTest.correlated(rnd, 64, d));
            sites.append("    layers.0.").append(site).append(": [").append(f).append("]\n");
        }
        for (int e = 0; e < routed.length; e++) {
            for (String site : List.of("mlp_in", "down_proj_in")) {
                int width = site.equals("mlp_in") ? d : ff;
                Path f = tmp.resolve("e" + e + "-" + site + ".npy");
                if (routed[e] == 0) {
                    NpyWriter.writeF32(f, new int[] {0, width}, new float[0]);
                } else {
                    NpyWriter.writeF32(f, CompressedTensorsExportTest.correlated(rnd, routed[e], width));
                }
                sites.append("    layers.0.experts.").append(e).append('.').append(site).append(": [").append(f).append("]\n");
            }
        }
        Path work = tmp.resolve("work");
        Path cfg = tmp.resolve("mixtral.yaml");
        java.nio.file.Files.writeString(cfg, "work: " + work + "\n"
                + "stages: [import, hessian, quantize, report, export]\n"
                + "spark:\n  master: local[2]\n"
                + "model:\n  uri: " + work + "/model/model.safetensors\n  dtype: F32\n  fromNpy:\n" + fromNpy
                + "import:\n  sites:\n" + sites
                + "quantize:\n  method: gptq\n  bits: 4\n  groupSize: 8\n  sym: true\n  order: act-order\n  backend: cpu\n"
                + "  starved: damp\n"
                + "export:\n  out: " + work + "/ct\n  format: compressed-tensors\n");
        QuantizeLayerCliTest.Run run = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString());
        assertEquals(0, run.status(), run.out() + run.err());

        Map<String, String> expected = new LinkedHashMap<>();
        for (String p : List.of("q", "k", "v", "o")) {
            expected.put("model.layers.0.self_attn." + p + "_proj.weight", "none");
        }
        String[] byTokens = {"identity", "damp", null, "none"};
        for (int e = 0; e < routed.length; e++) {
            String x = "model.layers.0.block_sparse_moe.experts." + e;
            // 10 tokens: enough for the 8 inputs of w1/w3, starved for the 16 of w2
            expected.put(x + ".w1.weight", byTokens[e] == null ? "none" : byTokens[e]);
            expected.put(x + ".w3.weight", byTokens[e] == null ? "none" : byTokens[e]);
            expected.put(x + ".w2.weight", byTokens[e] == null ? "damp" : byTokens[e]);
        }
        Map<String, String> starved = new LinkedHashMap<>();
        Map<String, double[]> figures = new LinkedHashMap<>();
        org.babaiquant.spark.QuantizedLayout.readAll(CONF, work.resolve("quantized").toString(), "reports", g -> {
            starved.put(g.getString("layer", 0), g.getString("starved", 0));
            figures.put(g.getString("layer", 0), new double[] {g.getLong("tokens", 0), g.getDouble("damping", 0), g.getDouble("loss", 0),
                    g.getDouble("bound", 0), g.getInteger("cols", 0)});
        });
        assertEquals(new java.util.TreeMap<>(expected), new java.util.TreeMap<>(starved), "every expert quantized, the rule per layer");
        for (Map.Entry<String, double[]> f : figures.entrySet()) {
            double[] v = f.getValue();
            assertTrue(Double.isFinite(v[2]) && Double.isFinite(v[3]), f.getKey() + ": " + java.util.Arrays.toString(v));
            if (starved.get(f.getKey()).equals("damp")) {
                assertEquals((v[4] - v[0]) / v[0], v[1], 1e-12, f.getKey() + ": escalated damping (n − t)/t in the report");
            }
        }
        assertEquals(3.0, figures.get("model.layers.0.block_sparse_moe.experts.1.w1.weight")[0]);
        assertEquals(0.0, figures.get("model.layers.0.block_sparse_moe.experts.0.w2.weight")[0]);
        // the expert that got no token is rounded to nearest, not zeroed
        String e0 = "model.layers.0.block_sparse_moe.experts.0.w2.weight";
        org.babaiquant.spark.QuantizedLayout.LayerShards s0 = org.babaiquant.spark.QuantizedLayout.readLayer(CONF,
                work.resolve("quantized").toString(), e0);
        double[][] q = s0.dequant();
        double[][] w = weights.get(e0);
        int nonzero = 0;
        for (int r = 0; r < w.length; r++) {
            for (int j = 0; j < w[r].length; j++) {
                double scale = s0.scales()[r][j / 8];
                int zero = s0.zeros()[r][j / 8];
                int nearest = (int) Math.max(0, Math.min(15, Math.rint(w[r][j] / scale) + zero));
                assertEquals(nearest, s0.codes()[r][j], "round to nearest on the stored grid at " + r + "," + j);
                nonzero += q[r][j] != 0 ? 1 : 0;
            }
        }
        assertTrue(nonzero > w.length * w[0].length / 2, "not zeroed: " + nonzero);
        // report: the rule is visible per layer
        assertTrue(run.out().contains("starved"), run.out());
        QuantizeLayerCliTest.Run report = QuantizeLayerCliTest.run("report", work.resolve("quantized").toString());
        assertEquals(0, report.status(), report.err());
        System.out.println(report.out());
        assertTrue(report.out().lines().anyMatch(l -> l.contains("experts.0.w1.weight") && l.contains(" identity")), report.out());
        assertTrue(report.out().lines().anyMatch(l -> l.contains("experts.1.w2.weight") && l.contains(" damp")), report.out());
        // export: the router, embeddings and lm_head are ignored; the checkpoint reads back exactly
        com.fasterxml.jackson.databind.JsonNode qc = new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(work.resolve("ct/config.json").toFile()).get("quantization_config");
        List<String> ignore = new ArrayList<>();
        qc.get("ignore").forEach(n -> ignore.add(n.asText()));
        assertEquals(List.of("model.embed_tokens", "model.layers.0.block_sparse_moe.gate", "lm_head"), ignore);
        CompressedTensorsExportTest.assumePythonWithNumpy();
        StringBuilder manifest = new StringBuilder();
        for (String layer : expected.keySet()) {
            Path f = tmp.resolve("expected-" + layer + ".npy");
            NpyWriter.writeF64(f, org.babaiquant.spark.QuantizedLayout.readLayer(CONF, work.resolve("quantized").toString(), layer).dequant());
            manifest.append(layer, 0, layer.length() - ".weight".length()).append('\t').append(f).append('\n');
        }
        Path m = tmp.resolve("manifest.txt");
        java.nio.file.Files.writeString(m, manifest.toString());
        CompressedTensorsExportTest.Proc p = CompressedTensorsExportTest.python(work.resolve("ct"), m);
        assertEquals(0, p.exit(), p.out());
        assertEquals(expected.size(), p.out().lines().filter(l -> l.startsWith("OK ")).count(), p.out());
    }
}
