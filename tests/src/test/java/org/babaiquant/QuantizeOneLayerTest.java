package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The one quantize-one-layer path: {@code quantize-layer} and {@code quantize} give the same codes and scales for the
 * same layer (one scale policy), and bad weights or inputs are exit 2 with one line and nothing written, through
 * either command (issue 13: fp16 scale overflow, float64 overflow, zero-row arrays, NaN in --eval, bad --out).
 * Real MiniLM q_proj, real files, real local Spark.
 */
class QuantizeOneLayerTest {
    private static final Configuration CONF = new Configuration();
    private static final Path DIR = RealData.miniLm();
    private static final Path W = DIR.resolve("weights/layer0_q_proj.weight.npy");
    private static final Path X = DIR.resolve("activations/layer0_attn_in.calib.npy");
    private static final Path XE = DIR.resolve("activations/layer0_attn_in.eval.npy");
    private static final String NAME = "encoder.layer.0.attention.self.query.weight";

    @TempDir
    static Path shared;
    static Path hessians;

    @BeforeAll
    static void hessian() {
        SparkTestSession.get();
        new ActivationImporter(CONF, 64).run(List.of(new ActivationImporter.Source("layer0_attn_in", X, null)),
                shared.resolve("act").toString(), false);
        hessians = shared.resolve("h");
        HessianJob.run(SparkTestSession.get(), new HessianJob.Config(shared.resolve("act").toString(), hessians.toString(), List.of(),
                2, 8, 512, false), s -> { });
    }

    private static Path model(Path dir, double[][] w) {
        LinkedHashMap<String, double[][]> t = new LinkedHashMap<>();
        t.put(NAME, w);
        Path p = dir.resolve("model.safetensors");
        SafeTensors.write(p, t, "F32");
        return p;
    }

    private static QuantizeLayerCliTest.Run quantize(Path model, Path out, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--hessians", hessians.toString(),
                "--out", out.toString(), "--map", ".*=layer0_attn_in"));
        args.addAll(List.of(extra));
        return QuantizeLayerCliTest.run(args.toArray(String[]::new));
    }

    private static QuantizeLayerCliTest.Run quantizeLayer(String... args) {
        List<String> all = new ArrayList<>(List.of("quantize-layer"));
        all.addAll(List.of(args));
        return QuantizeLayerCliTest.run(all.toArray(String[]::new));
    }

    /** Exit 2, one line naming {@code names}, and {@code out} not created. */
    private static void refused(QuantizeLayerCliTest.Run r, Path out, String... names) {
        assertEquals(2, r.status(), r.out() + r.err());
        List<String> errors = r.err().lines().filter(l -> l.contains(": error: ")).toList();
        assertEquals(1, errors.size(), "one error line: " + r.err());
        assertFalse(r.err().contains("\tat ") || r.err().contains("Exception"), "no stack trace: " + r.err());
        for (String n : names) {
            assertTrue(errors.get(0).contains(n), "names " + n + ": " + r.err());
        }
        if (out != null) {
            assertFalse(Files.exists(out.resolve("reports")), "nothing committed under " + out);
            assertFalse(Files.exists(out.resolve("report.json")), "nothing written to " + out);
        }
    }

    @Test
    void quantizeLayerAndQuantizeGiveTheSameCodesAndScales(@TempDir Path tmp) {
        Path h = tmp.resolve("H.npy");
        Npy.writeF64(h, HessianArtifact.read(CONF, hessians.toString(), "layer0_attn_in").h());
        Path model = model(tmp, Npy.readMatrix(W));
        String[][] runs = {{"--method", "gptq", "--order", "act-order"}, {"--method", "babai", "--order", "min-pivot", "--no-clip"},
                {"--method", "rtn", "--order", "natural", "--bits", "3"}};
        for (String[] run : runs) {
            String label = String.join(" ", run);
            List<String> grid = new ArrayList<>(List.of("--group-size", "128"));
            grid.addAll(List.of(run));
            Path ql = tmp.resolve("ql" + label.hashCode());
            List<String> a = new ArrayList<>(List.of("--weight", W.toString(), "--hessian", h.toString(), "--out", ql.toString()));
            a.addAll(grid);
            QuantizeLayerCliTest.Run one = quantizeLayer(a.toArray(String[]::new));
            assertEquals(0, one.status(), one.err());
            Path q = tmp.resolve("q" + label.hashCode());
            QuantizeLayerCliTest.Run stage = quantize(model, q, grid.toArray(String[]::new));
            assertEquals(0, stage.status(), stage.err());
            QuantizedLayout.LayerShards shards = QuantizedLayout.readLayer(CONF, q.toString(), NAME);
            double[][] codes = Npy.readMatrix(ql.resolve("codes.npy"));
            double[][] scales = Npy.readMatrix(ql.resolve("scales.npy"));
            for (int r = 0; r < codes.length; r++) {
                for (int j = 0; j < codes[r].length; j++) {
                    assertEquals(shards.codes()[r][j], (int) codes[r][j], label + " code [" + r + ", " + j + "]");
                }
                assertArrayEquals(shards.scales()[r], scales[r], 0.0, label + " scales of row " + r + " (fp16 in both)");
            }
        }
    }

    @Test
    void scalesBeyondFloat16AreBadInputNamingTheTensorAndCommitNothing(@TempDir Path tmp) {
        double[][] big = Npy.readMatrix(W);
        for (double[] row : big) {
            for (int j = 0; j < row.length; j++) {
                row[j] *= 1e6;
            }
        }
        Path out = tmp.resolve("q");
        refused(quantize(model(mkdir(tmp.resolve("a")), big), out), out, NAME, "float16");
        double[][] one = Npy.readMatrix(W);
        one[3][5] = 1e38;
        Path out2 = tmp.resolve("q2");
        refused(quantize(model(mkdir(tmp.resolve("b")), one), out2), out2, NAME, "row 3", "float16");
        // the same weights through quantize-layer
        Path npy = tmp.resolve("big.npy");
        Npy.writeF32(npy, big);
        Path ql = tmp.resolve("ql");
        refused(quantizeLayer("--weight", npy.toString(), "--calib", X.toString(), "--out", ql.toString()), ql, "big.npy", "float16");
        assertFalse(Files.exists(ql));
    }

    @Test
    void float64OverflowIsBadInputNotInfinity(@TempDir Path tmp) {
        double[][] w = Npy.readMatrix(W);
        w[7][9] = 1e300;
        Path npy = tmp.resolve("w64.npy");
        Npy.writeF64(npy, w);
        Path out = tmp.resolve("out");
        refused(quantizeLayer("--weight", npy.toString(), "--calib", X.toString(), "--out", out.toString()), out, "w64.npy", "row 7",
                "float16");
        assertFalse(Files.exists(out));
        refused(quantizeLayer("--weight", npy.toString(), "--calib", X.toString(), "--method", "hptq", "--target-bits", "3.125",
                "--out", out.toString()), out, "w64.npy");
        assertFalse(Files.exists(out));
    }

    @Test
    void zeroRowArraysAreBadInput(@TempDir Path tmp) throws IOException {
        Path empty = tmp.resolve("empty.npy");
        Npy.writeF32(empty, new int[] {0, 384}, new float[0]);
        Path out = tmp.resolve("out");
        refused(quantizeLayer("--weight", empty.toString(), "--calib", X.toString(), "--out", out.toString()), out, "empty.npy");
        refused(quantizeLayer("--weight", W.toString(), "--calib", empty.toString(), "--out", out.toString()), out, "empty.npy");
        refused(quantizeLayer("--weight", W.toString(), "--calib", X.toString(), "--eval", empty.toString(), "--out", out.toString()),
                out, "empty.npy");
        assertFalse(Files.exists(out));
        Path st = tmp.resolve("zero.safetensors");
        SafeTensors.writeRaw(st, List.of(new SafeTensors.RawTensor(NAME, "F32", new long[] {0, 384}, new byte[0])), Map.of("format", "pt"));
        Path q = tmp.resolve("q");
        refused(quantize(st, q), q, NAME, "[0, 384]");
    }

    @Test
    void nanInEvalIsBadInputLikeNanInCalib(@TempDir Path tmp) {
        float[][] xe = Npy.readMatrixF32(XE);
        double[][] d = new double[xe.length][xe[0].length];
        for (int i = 0; i < xe.length; i++) {
            for (int j = 0; j < xe[i].length; j++) {
                d[i][j] = xe[i][j];
            }
        }
        d[4][11] = Double.NaN;
        Path nan = tmp.resolve("nan-eval.npy");
        Npy.writeF32(nan, d);
        Path out = tmp.resolve("out");
        refused(quantizeLayer("--weight", W.toString(), "--calib", X.toString(), "--eval", nan.toString(), "--out", out.toString()), out,
                "nan-eval.npy", "[4, 11]");
        refused(quantizeLayer("--weight", W.toString(), "--calib", nan.toString(), "--out", out.toString()), out, "row 4 column 11");
        assertFalse(Files.exists(out));
    }

    @Test
    void emptyOrRootOutIsBadInputAndWritesNothing(@TempDir Path tmp) throws IOException {
        Path cwd = Path.of("").toAbsolutePath();
        List<Path> before;
        try (Stream<Path> s = Files.list(cwd)) {
            before = s.sorted().toList();
        }
        refused(quantizeLayer("--weight", W.toString(), "--calib", X.toString(), "--out", ""), null, "--out");
        refused(quantizeLayer("--weight", W.toString(), "--calib", X.toString(), "--out", "/"), null, "--out /");
        Path file = tmp.resolve("a-file");
        Files.writeString(file, "x");
        refused(quantizeLayer("--weight", W.toString(), "--calib", X.toString(), "--out", file.toString()), null, "a-file");
        try (Stream<Path> s = Files.list(cwd)) {
            assertEquals(before, s.sorted().toList(), "nothing written into the working directory");
        }
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(List.of(file), s.toList(), "no partial folder beside the file");
        }
    }

    private static Path mkdir(Path p) {
        try {
            return Files.createDirectories(p);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
