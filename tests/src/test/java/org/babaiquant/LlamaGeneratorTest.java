package org.babaiquant;

import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.mllib.linalg.Vector;
import org.apache.spark.mllib.linalg.Vectors;
import org.apache.spark.mllib.linalg.distributed.RowMatrix;
import org.babaiquant.io.SafeTensors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code generate-llama} at a small shape, then the repository's conf/pipeline-llama-1b.yaml on it (the 1 B run's
 * config, with its import list replaced by the small model's): the model is a sharded bf16 checkpoint with an index
 * that the pipeline quantizes and exports; the statistics are the ones documented (row-scale spread, fixed outlier
 * channels on residual-stream sites, a power-law activation spectrum); the same seed gives the same bytes.
 */
class LlamaGeneratorTest {
    private static final String[] SMALL = {"--layers", "2", "--hidden", "64", "--intermediate", "176", "--heads", "4",
            "--kv-heads", "2", "--vocab", "96", "--tokens", "256"};

    private static QuantizeLayerCliTest.Run generate(Path out) {
        List<String> args = new ArrayList<>(List.of("generate-llama", "--out", out.toString()));
        args.addAll(List.of(SMALL));
        return QuantizeLayerCliTest.run(args.toArray(String[]::new));
    }

    @Test
    void smallLlamaRunsThroughTheOneBillionConfigAndHasTheDocumentedStatistics(@TempDir Path tmp) throws IOException {
        Path work = tmp.resolve("work");
        QuantizeLayerCliTest.Run g = generate(work.resolve("input"));
        assertEquals(0, g.status(), g.out() + g.err());
        Path model = work.resolve("input/model");
        try (Stream<Path> s = Files.list(model)) {
            assertEquals(List.of("config.json", "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                    "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", "model.safetensors.index.json"),
                    s.map(p -> p.getFileName().toString()).sorted().toList());
        }
        Map<String, SafeTensors.TensorInfo> layer1 = SafeTensors.list(model.resolve("model-00003-of-00004.safetensors"));
        assertArrayEquals(new long[] {32, 64}, layer1.get("model.layers.1.self_attn.k_proj.weight").shape(), "grouped k/v: 64 → 2 heads of 16");
        assertArrayEquals(new long[] {64, 176}, layer1.get("model.layers.1.mlp.down_proj.weight").shape());
        assertEquals("BF16", layer1.get("model.layers.1.mlp.gate_proj.weight").dtype());

        // weights: log-normal row scales (σ 0.4): rows' RMS differ several-fold
        double[][] w = SafeTensors.readMatrix(model.resolve("model-00002-of-00004.safetensors"), "model.layers.0.mlp.gate_proj.weight");
        double[] rms = Arrays.stream(w).mapToDouble(r -> Math.sqrt(Arrays.stream(r).map(v -> v * v).average().orElseThrow())).sorted().toArray();
        assertTrue(rms[rms.length - 1] / rms[0] > 2.5, "row scale spread " + rms[rms.length - 1] / rms[0]);

        // activations: 6 outlier channels of magnitude ~20 with a fixed sign on attn_in, none on o_proj_in
        Path acts = work.resolve("input/activations/layer-01.safetensors");
        double[][] attn = SafeTensors.readMatrix(acts, "layers.1.attn_in");
        assertEquals(256, attn.length);
        assertEquals(6, outlierChannels(attn));
        assertEquals(outlierChannelSet(attn), outlierChannelSet(SafeTensors.readMatrix(work.resolve("input/activations/layer-00.safetensors"),
                "layers.0.mlp_in")), "the same channels in every layer");
        double[][] o = SafeTensors.readMatrix(acts, "layers.1.o_proj_in");
        assertEquals(0, outlierChannels(o));
        // the spectrum of XᵀX/T decays like k^-1.6 (MLlib's SVD of the site's activations: λ_k = s_k² / T)
        List<Vector> rows = Arrays.stream(o).map(Vectors::dense).toList();
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(SparkTestSession.get().sparkContext());
        double[] s = new RowMatrix(jsc.parallelize(rows, 2).rdd()).computeSVD(64, false, 1e-12).s().toArray();
        double ratio = s[0] * s[0] / (s[15] * s[15]);
        assertTrue(ratio > 20 && ratio < 400, "λ1/λ16 = " + ratio + " (power law k^-1.6 gives 84)");

        // the 1 B config, its 22-layer import list replaced by this model's
        String list = Files.readAllLines(work.resolve("input/import-sites.yaml")).stream().filter(l -> l.startsWith("- "))
                .map(l -> l.substring(2)).reduce((a, b) -> a + ", " + b).orElseThrow();
        QuantizeLayerCliTest.Run r = QuantizeLayerCliTest.run("pipeline", "--config", RealData.repoRoot().resolve("conf/pipeline-llama-1b.yaml").toString(),
                "--set", "work=" + work, "--set", "import.safetensors=[" + list + "]");
        assertEquals(0, r.status(), r.out() + r.err());
        assertTrue(r.out().contains("14 layer"), r.out());
        assertTrue(Files.exists(work.resolve("gptq/model.safetensors.index.json")), "the export keeps the shard index");
        try (Stream<Path> s2 = Files.list(work.resolve("hessians"))) {
            assertEquals(8, s2.filter(p -> p.getFileName().toString().startsWith("site=")).count());
        }
    }

    @Test
    void theSameSeedGivesTheSameBytes(@TempDir Path tmp) throws IOException {
        assertEquals(0, generate(tmp.resolve("a")).status());
        assertEquals(0, generate(tmp.resolve("b")).status());
        List<Path> files;
        try (Stream<Path> s = Files.walk(tmp.resolve("a"))) {
            files = s.filter(Files::isRegularFile).toList();
        }
        assertEquals(9, files.size());
        for (Path f : files) {
            assertArrayEquals(Files.readAllBytes(f), Files.readAllBytes(tmp.resolve("b").resolve(tmp.resolve("a").relativize(f))), f.toString());
        }
        QuantizeLayerCliTest.Run again = generate(tmp.resolve("a"));
        assertEquals(2, again.status(), "an existing output is refused");
        assertTrue(again.err().contains("exists and is not an empty folder"), again.err());
    }

    private static java.util.Set<Integer> outlierChannelSet(double[][] x) {
        java.util.Set<Integer> set = new java.util.TreeSet<>();
        for (int c = 0; c < x[0].length; c++) {
            double mean = 0;
            for (double[] row : x) {
                mean += row[c] / x.length;
            }
            if (Math.abs(mean) > 10) {
                set.add(c);
            }
        }
        return set;
    }

    private static int outlierChannels(double[][] x) {
        return outlierChannelSet(x).size();
    }
}
