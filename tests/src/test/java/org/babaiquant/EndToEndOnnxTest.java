package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.example.data.Group;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.io.ByteSource;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.onnx.EmbeddingEvaluation;
import org.babaiquant.onnx.EvaluationReport;
import org.babaiquant.onnx.OnnxApply;
import org.babaiquant.io.OnnxModel;
import org.babaiquant.onnx.Paragraphs;
import org.babaiquant.onnx.WordPieceTokenizer;
import org.babaiquant.spark.ActivationLayout;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.ModelWeights;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The embedded default end to end on all-MiniLM-L6-v2: capture on Brown text → Hessians → quantize the 36 linears read
 * from the ONNX file → apply → evaluate on held-out Austen paragraphs.
 */
class EndToEndOnnxTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final Configuration CONF = new Configuration();
    private static final Path TEXT = RealData.repoRoot().resolve("data/text");
    /** Calibration: 64 paragraphs × 32 token positions = 2048 rows per site, above the 1536 columns of ffn_down. */
    static final int CALIB_PARAGRAPHS = 64;
    static final int ROWS_PER_PARAGRAPH = 32;
    /** Held-out paragraphs evaluated (of the 100 in data/text/austen-emma.eval.txt). */
    static final int HELD_OUT = 50;

    @TempDir
    static Path shared;
    static Path onnx;
    static WordPieceTokenizer tokenizer;
    static List<String> heldOut;
    static String hessians;
    static String activations;

    @BeforeAll
    static void captureAndHessians() {
        onnx = BundledMiniLm.onnx();
        tokenizer = WordPieceTokenizer.read(BundledMiniLm.tokenizer());
        heldOut = Paragraphs.read(List.of(TEXT.resolve("austen-emma.eval.txt")), HELD_OUT);
        String act = shared.resolve("act").toString();
        activations = act;
        ActivationCapture.run(CONF, new ActivationCapture.Config(onnx, BundledMiniLm.tokenizer(),
                List.of(TEXT.resolve("brown.calib.txt")), act, CALIB_PARAGRAPHS, 128, 1, ROWS_PER_PARAGRAPH, false), s -> { });
        hessians = shared.resolve("h").toString();
        HessianJob.run(SPARK, new HessianJob.Config(act, hessians, List.of(), 3, 64, 512, false), s -> { });
    }

    /**
     * Capture on Spark (3 text shards, each its own ORT session) writes, site by site, exactly the tiles of the
     * in-process capture: same tile numbers, paragraphs, row counts and float bytes, only split over 3 part files.
     */
    @Test
    void sparkCaptureWritesTheInProcessTiles(@TempDir Path tmp) {
        String act = tmp.resolve("act").toString();
        ActivationCapture.Result r = ActivationCapture.run(SPARK, new ActivationCapture.Config(onnx, BundledMiniLm.tokenizer(),
                List.of(TEXT.resolve("brown.calib.txt")), act, CALIB_PARAGRAPHS, 128, 1, ROWS_PER_PARAGRAPH, false), 3, s -> { });
        assertEquals(24, r.sites().size());
        assertEquals(CALIB_PARAGRAPHS, r.sequences());
        for (ActivationCapture.Site site : r.sites()) {
            List<ActivationLayout.SiteFile> files = ActivationLayout.files(CONF, act, site.name());
            assertEquals(3, files.size(), site.name());
            List<ActivationLayout.Tile> sharded = tiles(files);
            List<ActivationLayout.Tile> local = tiles(ActivationLayout.files(CONF, activations, site.name()));
            assertEquals(local.size(), sharded.size(), site.name());
            assertEquals(local.stream().mapToLong(ActivationLayout.Tile::rows).sum(), r.tokens().get(site.name()), site.name());
            for (int i = 0; i < local.size(); i++) {
                ActivationLayout.Tile a = local.get(i);
                ActivationLayout.Tile b = sharded.get(i);
                assertEquals(a.seq(), b.seq());
                assertEquals(a.sampleId(), b.sampleId());
                assertEquals(a.rows(), b.rows());
                assertArrayEquals(a.data(), b.data(), site.name() + " tile " + i);
            }
        }
        // the sharded capture feeds the Hessian stage (tile numbers run on across its part files)
        String h = tmp.resolve("h").toString();
        HessianJob.run(SPARK, new HessianJob.Config(act, h, List.of("layer5_ffn_down_in"), 2, 64, 512, false), s -> { });
        double[][] got = HessianArtifact.read(CONF, h, "layer5_ffn_down_in").h();
        double[][] want = HessianArtifact.read(CONF, hessians, "layer5_ffn_down_in").h();
        for (int i = 0; i < want.length; i++) {
            assertArrayEquals(want[i], got[i], 0.0, "row " + i);
        }
    }

    private static List<ActivationLayout.Tile> tiles(List<ActivationLayout.SiteFile> files) {
        List<ActivationLayout.Tile> out = new java.util.ArrayList<>();
        for (ActivationLayout.SiteFile f : files) {
            ActivationLayout.read(CONF, f.path(), 0, f.rows(), (t, where) -> out.add(t));
        }
        return out;
    }

    /**
     * README command one, small: capture → Hessians → RTN, GPTQ and HPTQ at 4 bits → apply → evaluate, one table and
     * one Parquet row per run; a rerun reuses the capture, Hessians and layers and prints the same table.
     */
    @Test
    void demoRunsThePipelineAndRerunsToTheSameTable(@TempDir Path tmp) throws IOException {
        String[] args = {"demo", "--work", tmp.resolve("w").toString(), "--calib-paragraphs", "32", "--rows-per-seq", "64",
                "--eval-paragraphs", "16", "--bits", "4", "--methods", "rtn,gptq,hptq"};
        QuantizeLayerCliTest.Run first = QuantizeLayerCliTest.run(args);
        assertEquals(0, first.status(), first.err());
        Map<String, double[]> rows = demoRows(first.out());
        assertEquals(List.of("rtn", "gptq", "hptq"), List.copyOf(rows.keySet()), first.out());
        // bits/w: RTN = the 4-bit g128 checkpoint (4 + (16 + 4)/128), GPTQ act-order adds g_idx (32/384), HPTQ meets RTN's size
        assertEquals(4.156, rows.get("rtn")[0], 0.001, first.out());
        assertEquals(4.219, rows.get("gptq")[0], 0.001, first.out());
        assertTrue(rows.get("hptq")[0] <= 4.157 && rows.get("hptq")[0] > 4.14, first.out());
        assertTrue(rows.get("gptq")[1] > rows.get("rtn")[1], first.out());
        assertTrue(rows.get("gptq")[1] > 0.95, first.out());
        for (double[] r : rows.values()) {
            assertTrue(r[2] <= r[1] && r[1] <= 1.0, first.out()); // min ≤ mean cosine ≤ 1
        }
        assertEquals(3, EvaluationReport.read(CONF, tmp.resolve("w/evaluation").toString()).size());

        QuantizeLayerCliTest.Run again = QuantizeLayerCliTest.run(args);
        assertEquals(0, again.status(), again.err());
        assertTrue(again.out().contains("activations is up to date"), again.out());
        Map<String, double[]> rerun = demoRows(again.out());
        for (String m : rows.keySet()) {
            assertArrayEquals(java.util.Arrays.copyOf(rows.get(m), 5), java.util.Arrays.copyOf(rerun.get(m), 5), 0.0, m);
        }
        assertEquals(6, EvaluationReport.read(CONF, tmp.resolve("w/evaluation").toString()).size());
        // the Zeppelin note's evaluation paragraph reads that table
        List<String[]> note = PipelineTest.zeppelinSql("evaluation", tmp.resolve("w/evaluation").toString());
        assertEquals(1, note.size());
        List<org.apache.spark.sql.Row> fidelity = SPARK.sql(note.get(0)[1]).collectAsList();
        assertEquals(6, fidelity.size(), note.get(0)[0]);
        for (org.apache.spark.sql.Row r : fidelity) {
            double cos = r.getDouble(r.fieldIndex("mean_cosine"));
            assertTrue(cos > 0.9 && cos <= 1.0, r.toString());
        }

        QuantizeLayerCliTest.Run bad = QuantizeLayerCliTest.run("demo", "--work", tmp.resolve("x").toString(), "--methods", "gptq,awq");
        assertEquals(2, bad.status(), bad.err());
        assertTrue(bad.err().contains("unknown method 'awq'"), bad.err());
    }

    /** The demo table's rows by method: bits/w, mean cos, min cos, retrieval %, loss/bound, seconds. */
    private static Map<String, double[]> demoRows(String out) {
        Map<String, double[]> rows = new LinkedHashMap<>();
        boolean table = false;
        for (String line : out.split("\n")) {
            if (line.startsWith("method bits")) {
                table = true;
                continue;
            }
            if (table && line.isBlank()) {
                break;
            }
            if (table) {
                String[] f = line.trim().split("\\s+");
                rows.put(f[0], new double[] {Double.parseDouble(f[2]), Double.parseDouble(f[3]), Double.parseDouble(f[4]),
                        Double.parseDouble(f[5].replace("%", "")), Double.parseDouble(f[6]), Double.parseDouble(f[7])});
            }
        }
        return rows;
    }

    static QuantizeJob.Config cfg(String out, Method method, ColumnOrder order) {
        return QuantizeJob.Config.of(onnx.toString(), hessians, out,
                MethodSpec.grid(method.cliName, new QuantGrid.Spec(4, 128, false, false), order, true, 0.01));
    }

    @Test
    void onnxIsAWeightSourceOfTheQuantizeStage() throws IOException {
        try (ModelWeights w = ModelWeights.open(CONF, onnx.toString())) {
            assertEquals(36, w.names().size());
            String q = "/encoder/layer.0/attention/self/query/MatMul";
            SafeTensors.TensorInfo info = w.info(q);
            assertEquals("F32", info.dtype());
            assertArrayEquals(new long[] {384, 384}, info.shape());
            assertArrayEquals(new long[] {384, 1536}, w.info("/encoder/layer.5/output/dense/MatMul").shape());
            // the bundled [out, in] weights were transposed from the same initializers
            double[][] expected = Npy.readMatrix(RealData.miniLm().resolve("weights/layer0_q_proj.weight.npy"));
            double[][] got = w.readMatrix(q);
            for (int r = 0; r < expected.length; r++) {
                assertArrayEquals(expected[r], got[r], 0.0, "row " + r);
            }
            double[][] up = Npy.readMatrix(RealData.miniLm().resolve("weights/layer0_ffn_up.weight.npy"));
            assertArrayEquals(up[1535], w.readMatrix("/encoder/layer.0/intermediate/dense/MatMul")[1535], 0.0);
            assertEquals(4 * 384 * 1536, w.readRaw("/encoder/layer.0/output/dense/MatMul").length);
        }
        Path relu = Files.write(shared.resolve("relu.onnx"), OnnxCaptureTest.reluModel());
        BadInputException e = assertThrows(BadInputException.class, () -> ModelWeights.open(CONF, relu.toString()));
        assertTrue(e.getMessage().contains("no linear layers"), e.getMessage());
    }

    /** Rewriting every linear with its own values gives the same file and embeddings with cosine 1. */
    @Test
    void applyingTheOriginalWeightsChangesNothing(@TempDir Path tmp) throws IOException {
        OnnxModel model = OnnxModel.read(onnx);
        Map<String, float[][]> same = new LinkedHashMap<>();
        try (ByteSource src = ByteSource.of(onnx)) {
            for (OnnxModel.Linear l : model.linears()) {
                same.put(l.name(), OnnxModel.readWeight(src, l));
            }
        }
        Path copy = tmp.resolve("same.onnx");
        OnnxModel.rewriteWeights(onnx, model, same, copy);
        assertEquals(-1L, Files.mismatch(onnx, copy));
        EmbeddingEvaluation.Result r = EmbeddingEvaluation.run(onnx, copy, tokenizer, heldOut.subList(0, 20), 128, s -> { });
        assertEquals(1.0, r.minCosine(), 1e-6);
        assertEquals(1.0, r.retrievalAgreement());
    }

    /**
     * 4-bit GPTQ (act-order, groups of 128, asymmetric) of all 36 linears. Measured mean cosine 0.9815 (min 0.9718) on
     * these 50 paragraphs, against 0.9415 for RTN on the same grid; the threshold 0.97 leaves 0.01 for calibration-set
     * and ORT-version changes (96 full paragraphs gave 0.9828) and still fails anything RTN-like or worse, and GPTQ must
     * beat RTN. Retrieval agreement is printed, not asserted: with 50 paragraphs of one novel the nearest-neighbour
     * margins are small and it moves by ±10 points between calibrations.
     */
    @Test
    void fourBitGptqKeepsTheEmbeddings(@TempDir Path tmp) {
        String gptq = tmp.resolve("gptq").toString();
        String rtn = tmp.resolve("rtn").toString();
        assertEquals(36, QuantizeJob.run(SPARK, cfg(gptq, Method.GPTQ, ColumnOrder.ACT_ORDER), s -> { }).size());
        assertEquals(36, QuantizeJob.run(SPARK, cfg(rtn, Method.RTN, ColumnOrder.NATURAL), s -> { }).size());

        Path gptqOnnx = tmp.resolve("gptq.onnx");
        OnnxApply.Applied applied = OnnxApply.apply(CONF, onnx, gptq, gptqOnnx);
        assertEquals(36, applied.replaced().size());
        // the written weights are the dequantized values, back in their place: transposition checked through ModelWeights
        try (ModelWeights w = ModelWeights.open(CONF, gptqOnnx.toString())) {
            for (String name : List.of("/encoder/layer.0/attention/self/key/MatMul", "/encoder/layer.5/output/dense/MatMul")) {
                double[][] dq = QuantizedLayout.readLayer(CONF, gptq, name).dequant();
                double[][] got = w.readMatrix(name);
                for (int r = 0; r < dq.length; r++) {
                    for (int c = 0; c < dq[r].length; c++) {
                        assertEquals((float) dq[r][c], got[r][c], 0.0, name + " [" + r + ", " + c + "]");
                    }
                }
            }
        }
        Path rtnOnnx = tmp.resolve("rtn.onnx");
        OnnxApply.apply(CONF, onnx, rtn, rtnOnnx);
        double[][] reference = EmbeddingEvaluation.embed(onnx, tokenizer, heldOut, 128);
        EmbeddingEvaluation.Result g = EmbeddingEvaluation.compare(reference, EmbeddingEvaluation.embed(gptqOnnx, tokenizer, heldOut, 128), 0);
        EmbeddingEvaluation.Result r = EmbeddingEvaluation.compare(reference, EmbeddingEvaluation.embed(rtnOnnx, tokenizer, heldOut, 128), 0);
        System.out.printf("[end-to-end 4-bit g128] GPTQ act-order: mean cos %.5f min %.5f retrieval %.2f | RTN: mean cos %.5f min %.5f"
                + " retrieval %.2f%n", g.meanCosine(), g.minCosine(), g.retrievalAgreement(), r.meanCosine(), r.minCosine(),
                r.retrievalAgreement());
        assertTrue(g.meanCosine() > 0.97, "GPTQ 4-bit mean cosine " + g.meanCosine());
        assertTrue(g.meanCosine() >= r.meanCosine(), "GPTQ " + g.meanCosine() + " vs RTN " + r.meanCosine());

        String report = tmp.resolve("eval").toString();
        EvaluationReport.write(CONF, report, new EvaluationReport.Row(onnx.toString(), gptq, EvaluationReport.summarize(CONF, gptq, applied.replaced()), 128, g));
        List<Group> rows = EvaluationReport.read(CONF, report);
        assertEquals(1, rows.size());
        assertEquals("gptq", rows.get(0).getString("method", 0));
        assertEquals(4, rows.get(0).getInteger("bits", 0));
        assertEquals(36, rows.get(0).getInteger("layers", 0));
        assertEquals(g.meanCosine(), rows.get(0).getDouble("mean_cosine", 0));
        assertEquals(HELD_OUT, rows.get(0).getInteger("paragraphs", 0));
    }

    @Test
    void cliApplyAndEvaluate(@TempDir Path tmp) {
        String q = tmp.resolve("q").toString();
        QuantizeJob.run(SPARK, new QuantizeJob.Config(onnx.toString(), hessians, q, MethodSpec.grid("rtn", new QuantGrid.Spec(4, 128,
                false, false), ColumnOrder.NATURAL, true, 0.01), "/encoder/layer\\.0/.*", List.of(), null, null, 0, "auto", 0, false), s -> { });
        Path out = tmp.resolve("new.onnx");
        QuantizeLayerCliTest.Run apply = QuantizeLayerCliTest.run("apply", "--quantized", q, "--out", out.toString());
        assertEquals(0, apply.status(), apply.err());
        assertTrue(apply.out().contains("6 linear(s) dequantized") && apply.out().contains("30 kept"), apply.out());
        QuantizeLayerCliTest.Run eval = QuantizeLayerCliTest.run("evaluate", "--quantized-onnx", out.toString(), "--text",
                TEXT.resolve("austen-emma.eval.txt").toString(), "--samples", "12", "--out", tmp.resolve("r").toString());
        assertEquals(0, eval.status(), eval.err());
        assertTrue(eval.out().contains("12 paragraphs: mean cosine 0.9"), eval.out());
        assertEquals(1, EvaluationReport.read(CONF, tmp.resolve("r").toString()).size());
        QuantizeLayerCliTest.Run bad = QuantizeLayerCliTest.run("evaluate", "--quantized", tmp.resolve("nothing").toString(),
                "--text", TEXT.resolve("austen-emma.eval.txt").toString());
        assertEquals(2, bad.status(), bad.err());
    }
}
