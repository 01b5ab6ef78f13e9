package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.io.Npy;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.io.OnnxModel;
import org.babaiquant.onnx.WordPieceTokenizer;
import org.babaiquant.spark.ActivationLayout;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Tokenizer and capture stage on the bundled all-MiniLM-L6-v2 (resolved through Maven) against the bundled activations,
 * which were produced by an independent pipeline (DJL's Rust HF tokenizer + ONNX Runtime 1.20, see
 * data/minilm-l6-v2/README.md).
 */
class OnnxCaptureTest {
    private static final Configuration CONF = new Configuration();
    private static final Path ACT = RealData.miniLm().resolve("activations");
    static Path onnx;
    static Path tokenizerJson;
    static WordPieceTokenizer tokenizer;

    @BeforeAll
    static void model() {
        onnx = BundledMiniLm.onnx();
        tokenizerJson = BundledMiniLm.tokenizer();
        tokenizer = WordPieceTokenizer.read(tokenizerJson);
    }

    @Test
    void bundledModelResolvesThroughMavenAndListsItsThirtySixLinears() throws IOException {
        assertEquals(90_387_606L, Files.size(onnx));
        List<OnnxModel.Linear> linears = OnnxModel.read(onnx).linears();
        assertEquals(36, linears.size());
        assertEquals("/encoder/layer.0/attention/self/query/MatMul", linears.get(0).name());
        assertEquals(24, ActivationCapture.sites(OnnxModel.read(onnx)).size());
        assertEquals(List.of("/encoder/layer.0/attention/self/query/MatMul", "/encoder/layer.0/attention/self/key/MatMul",
                "/encoder/layer.0/attention/self/value/MatMul"), ActivationCapture.sites(OnnxModel.read(onnx)).get(0).linears());
        assertEquals("layer0_attn_in", ActivationCapture.sites(OnnxModel.read(onnx)).get(0).name());
        assertEquals(30522, tokenizer.vocabSize());
    }

    /** Every (sequence, position, token id) of the bundled rows, calib and eval: 1280 ids from 80 paragraphs. */
    @Test
    void tokenizerGivesTheBundledTokenIds() throws IOException {
        int checked = 0;
        for (String split : List.of("calib", "eval")) {
            List<String> text = Files.readAllLines(ACT.resolve("text." + split + ".txt"), StandardCharsets.UTF_8);
            double[][] rows = Npy.readMatrix(ACT.resolve("rows." + split + ".npy"));
            for (double[] r : rows) {
                int[] ids = tokenizer.encode(text.get((int) r[0]), 128);
                assertEquals((int) r[2], ids[(int) r[1]], split + " sequence " + (int) r[0] + " position " + (int) r[1]
                        + ": " + tokenizer.tokens(ids));
                checked++;
            }
        }
        assertEquals(1280, checked);
    }

    @Test
    void tokenizerFollowsBertNormalisation() {
        // accents stripped, lowercased, punctuation isolated, CJK spaced, control characters dropped, [CLS] … [SEP]
        assertEquals(List.of("[CLS]", "cafe", ",", "naive", "!", "[SEP]"), tokenizer.tokens(tokenizer.encode("Café,\u0000 NAÏVE!", 128)));
        // greedy longest-match-first: this vocabulary splits the word as una ##ffa ##ble (not BERT-base's un ##aff ##able)
        assertEquals(List.of("[CLS]", "una", "##ffa", "##ble", "[SEP]"), tokenizer.tokens(tokenizer.encode("unaffable", 128)));
        assertEquals(List.of("[CLS]", "[UNK]", "[SEP]"), tokenizer.tokens(tokenizer.encode("\u2603\u2603", 128)));
        assertEquals(List.of("[CLS]", "[MASK]", "is", "[SEP]"), tokenizer.tokens(tokenizer.encode("[MASK] is", 128)));
        assertEquals(5, tokenizer.encode("one two three four five six", 5).length);
        assertEquals(List.of("[CLS]", "one", "two", "three", "[SEP]"), tokenizer.tokens(tokenizer.encode("one two three four", 5)));
    }

    /**
     * Same text, positions, seed and tokenizer as the bundled extractor: the layer-0 inputs are bit for bit the same
     * (the bundled ones came from ORT 1.20; ours from 1.29, both with graph optimizations off).
     */
    @Test
    void captureReproducesTheBundledLayer0Activations(@TempDir Path tmp) {
        String out = tmp.resolve("act").toString();
        ActivationCapture.Result r = ActivationCapture.run(CONF, new ActivationCapture.Config(onnx, tokenizerJson,
                List.of(ACT.resolve("text.calib.txt")), out, 64, 128, 1234, 16, false), s -> { });
        double[][] rows = Npy.readMatrix(ACT.resolve("rows.calib.npy"));
        assertEquals(rows.length, r.rows().size());
        for (int i = 0; i < rows.length; i++) {
            assertArrayEquals(new int[] {(int) rows[i][0], (int) rows[i][1], (int) rows[i][2]}, r.rows().get(i), "row " + i);
        }
        assertEquals(24, ActivationLayout.sites(CONF, out).size());
        StringBuilder report = new StringBuilder();
        for (String site : List.of("attn_in", "o_proj_in", "ffn_up_in", "ffn_down_in")) {
            float[][] expected = Npy.readMatrixF32(ACT.resolve("layer0_" + site + ".calib.npy"));
            float[][] got = readSite(out, "layer0_" + site, expected[0].length);
            assertEquals(expected.length, got.length);
            double maxAbs = 0;
            double maxUlps = 0;
            double num = 0;
            double den = 0;
            long exact = 0;
            for (int i = 0; i < got.length; i++) {
                double rowMax = 0;
                for (float v : expected[i]) {
                    rowMax = Math.max(rowMax, Math.abs(v));
                }
                for (int j = 0; j < got[i].length; j++) {
                    double d = Math.abs(got[i][j] - expected[i][j]);
                    maxAbs = Math.max(maxAbs, d);
                    maxUlps = Math.max(maxUlps, d / Math.ulp((float) rowMax));
                    num += d * d;
                    den += (double) expected[i][j] * expected[i][j];
                    exact += d == 0 ? 1 : 0;
                }
            }
            double rel = Math.sqrt(num / den);
            report.append(String.format("layer0_%s: %.1f%% bit-identical, max|Δ| %.3g = %.1f ulp of the row's largest"
                    + " value, ‖Δ‖/‖X‖ %.3g; ", site, 100.0 * exact / ((long) got.length * got[0].length), maxAbs, maxUlps, rel));
            // float32 round-off only: a few ulps of the row's scale (the kernels of ORT 1.20 and 1.29 round differently)
            assertTrue(maxUlps <= 64 && rel < 2e-6, site + ": " + report);
        }
        System.out.println("[capture vs bundled] " + report);
    }

    static float[][] readSite(String uri, String site, int dim) {
        List<float[]> rows = new ArrayList<>();
        long[] expectSeq = {0};
        for (ActivationLayout.SiteFile f : ActivationLayout.files(CONF, uri, site)) {
            assertEquals(dim, f.dim());
            ActivationLayout.read(CONF, f.path(), 0, f.rows(), (t, where) -> {
                assertEquals(expectSeq[0]++, t.seq());
                assertEquals("f32", t.dtype());
                ByteBuffer b = ByteBuffer.wrap(t.data()).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < t.rows(); i++) {
                    float[] row = new float[dim];
                    b.asFloatBuffer().get(i * dim, row);
                    rows.add(row);
                }
            });
        }
        return rows.toArray(new float[0][]);
    }

    @Test
    void badInputsAreRefusedWithClearMessages(@TempDir Path tmp) throws IOException {
        Path empty = Files.writeString(tmp.resolve("empty.txt"), "\n   \n\n");
        BadInputException e = assertThrows(BadInputException.class, () -> ActivationCapture.run(CONF,
                new ActivationCapture.Config(onnx, tokenizerJson, List.of(empty), tmp.resolve("a").toString(), 0, 128, 1, 0, false), s -> { }));
        assertTrue(e.getMessage().contains("no text"), e.getMessage());

        Path bpe = Files.writeString(tmp.resolve("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                + " \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}");
        e = assertThrows(BadInputException.class, () -> WordPieceTokenizer.read(bpe));
        assertTrue(e.getMessage().contains("model type is 'BPE'") && e.getMessage().contains("WordPiece"), e.getMessage());

        Path relu = tmp.resolve("relu.onnx");
        Files.write(relu, reluModel());
        e = assertThrows(BadInputException.class, () -> ActivationCapture.run(CONF, new ActivationCapture.Config(relu, tokenizerJson,
                List.of(ACT.resolve("text.calib.txt")), tmp.resolve("b").toString(), 2, 128, 1, 0, false), s -> { }));
        assertTrue(e.getMessage().contains("has no linear layers"), e.getMessage());

        Path junk = Files.write(tmp.resolve("junk.onnx"), new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, 0x7f, 1, 2, 3});
        e = assertThrows(BadInputException.class, () -> OnnxModel.read(junk));
        assertTrue(e.getMessage().contains("junk.onnx"), e.getMessage());

        QuantizeLayerCliTest.Run run = QuantizeLayerCliTest.run("capture", "--text", empty.toString(), "--out", tmp.resolve("c").toString());
        assertEquals(2, run.status(), run.err());
        assertTrue(run.err().contains("no text"), run.err());
        assertTrue(!Files.exists(tmp.resolve("a")) || Files.list(tmp.resolve("a")).findAny().isEmpty(), "nothing written");
    }

    /** A valid ModelProto whose graph is one Relu: no MatMul, no initializer. */
    static byte[] reluModel() {
        byte[] node = concat(str(1, "x"), str(2, "y"), str(3, "relu"), str(4, "Relu"));
        byte[] graph = concat(msg(1, node), str(2, "g"));
        byte[] opset = concat(str(1, ""), varintField(2, 11));
        return concat(varintField(1, 7), msg(8, opset), msg(7, graph));
    }

    private static byte[] varintField(int field, long v) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        writeVarint(o, (long) field << 3);
        writeVarint(o, v);
        return o.toByteArray();
    }

    private static byte[] str(int field, String s) {
        return msg(field, s.getBytes(StandardCharsets.UTF_8));
    }

    private static byte[] msg(int field, byte[] payload) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        writeVarint(o, ((long) field << 3) | 2);
        writeVarint(o, payload.length);
        o.writeBytes(payload);
        return o.toByteArray();
    }

    private static void writeVarint(ByteArrayOutputStream o, long v) {
        while ((v & ~0x7fL) != 0) {
            o.write((int) ((v & 0x7f) | 0x80));
            v >>>= 7;
        }
        o.write((int) v);
    }

    private static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            o.writeBytes(p);
        }
        return o.toByteArray();
    }
}
