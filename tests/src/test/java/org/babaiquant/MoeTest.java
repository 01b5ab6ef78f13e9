package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
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
        Npy.writeF32(none, new int[] {0, 8}, new float[0]);
        Path three = tmp.resolve("e1.npy");
        Npy.writeF32(three, CompressedTensorsExportTest.gaussian(rnd, 3, 8, 1));
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

    /** One safetensors dump holding every expert's routed tokens, imported with one rule whose site uses the groups. */
    @Test
    void aSiteMapRuleWithGroupsImportsEveryExpertFromOneFile(@TempDir Path tmp) {
        Random rnd = new Random(4);
        List<SafeTensors.RawTensor> raw = new ArrayList<>();
        int[] tokens = {0, 3, 10};
        for (int e = 0; e < tokens.length; e++) {
            ByteBuffer b = ByteBuffer.allocate(4 * tokens[e] * 8).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < tokens[e] * 8; i++) {
                b.putFloat((float) rnd.nextGaussian());
            }
            raw.add(new SafeTensors.RawTensor("layer0.expert" + e + ".mlp_in", "F32", new long[] {tokens[e], 8}, b.array()));
        }
        Path dump = tmp.resolve("routed.safetensors");
        SafeTensors.writeRaw(dump, raw, Map.of());
        List<ActivationImporter.Source> src = ActivationImporter.safetensorsSources(dump,
                Map.of("layer(\\d+)\\.expert(\\d+)\\.mlp_in", "layers.$1.experts.$2.mlp_in"));
        assertEquals(List.of("layers.0.experts.0.mlp_in", "layers.0.experts.1.mlp_in", "layers.0.experts.2.mlp_in"),
                src.stream().map(ActivationImporter.Source::site).toList());
        List<ActivationImporter.Imported> imported = new ActivationImporter(CONF, 4).run(src, tmp.resolve("act").toString(), false);
        assertEquals(List.of(0L, 3L, 10L), imported.stream().map(ActivationImporter.Imported::tokens).toList());
    }
}
