package org.babaiquant;

import org.babaiquant.io.NpyWriter;
import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.cli.Main;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code quantize-layer} end to end, in-process, on the real MiniLM o_proj layer. */
class QuantizeLayerCliTest {
    private static final Path DIR = RealData.miniLm();
    private static final String W = DIR.resolve("weights/layer0_o_proj.weight.npy").toString();
    private static final String X = DIR.resolve("activations/layer0_o_proj_in.calib.npy").toString();
    private static final String XE = DIR.resolve("activations/layer0_o_proj_in.eval.npy").toString();

    record Run(int status, String out, String err) {}

    static synchronized Run run(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int status = Main.run(args);
            return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    static double jsonNumber(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\": (-?[0-9.eE+-]+)").matcher(json);
        assertTrue(m.find(), "report.json lacks numeric key " + key + ":\n" + json);
        return Double.parseDouble(m.group(1));
    }

    @Test
    void writesCodesScalesZerosDequantRowsAndReport(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("o_proj");
        Run r = run("quantize-layer", "--weight", W, "--calib", X, "--eval", XE, "--bits", "4", "--group-size", "128",
                "--order", "act-order", "--out", out.toString());
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("loss/bound"), r.out());
        int[] codesShape = Npy.readHeader(out.resolve("codes.npy")).shape();
        assertArrayEquals(new int[] {384, 384}, codesShape);
        assertEquals("|u1", Npy.readHeader(out.resolve("codes.npy")).dtype(), "clipped 4-bit codes are uint8");
        assertEquals(384 * 384, Files.size(out.resolve("codes.npy")) - Npy.readHeader(out.resolve("codes.npy")).dataOffset());
        assertTrue(r.out().matches("(?s).*wrote .* \\(read [0-9.]+ s, quantize [0-9.]+ s, write [0-9.]+ s\\)\\s*"), r.out());
        assertArrayEquals(new int[] {384, 3}, Npy.readHeader(out.resolve("scales.npy")).shape());
        assertArrayEquals(new int[] {384, 3}, Npy.readHeader(out.resolve("zeros.npy")).shape());
        assertArrayEquals(new int[] {384, 3}, Npy.readHeader(out.resolve("rows.npy")).shape());
        // dequant = scale·(code − zero), in float32
        double[][] codes = Npy.readMatrix(out.resolve("codes.npy"));
        double[][] scales = Npy.readMatrix(out.resolve("scales.npy"));
        double[][] zeros = Npy.readMatrix(out.resolve("zeros.npy"));
        double[][] dq = Npy.readMatrix(out.resolve("dequant.npy"));
        for (int i = 0; i < 384; i++) {
            for (int j = 0; j < 384; j++) {
                assertTrue(codes[i][j] >= 0 && codes[i][j] <= 15);
                double expect = scales[i][j / 128] * (codes[i][j] - zeros[i][j / 128]);
                assertEquals(expect, dq[i][j], 1e-6 * Math.abs(expect) + 1e-9);
            }
        }
        String json = Files.readString(out.resolve("report.json"));
        double loss = jsonNumber(json, "loss");
        double bound = jsonNumber(json, "bound");
        assertTrue(loss > 0 && bound > 0);
        assertEquals(4 + (16 + 4) / 128.0 + 32.0 / 384, jsonNumber(json, "bits_per_weight"), 1e-12);
        assertTrue(jsonNumber(json, "clipped") >= 0);
        assertEquals(0.01, jsonNumber(json, "damping"), 0);
        assertEquals(1024, jsonNumber(json, "tokens"), 0);
        double eval = jsonNumber(json, "eval_rel_error");
        assertTrue(eval > 0.02 && eval < 0.2, "eval error " + eval);
        double[][] rows = Npy.readMatrix(out.resolve("rows.npy"));
        double sum = Arrays.stream(rows).mapToDouble(row -> row[0]).sum();
        assertEquals(loss, sum, 1e-9 * loss);
        try (var files = Files.list(tmp)) {
            assertEquals(1, files.count(), "no temporary directory left behind");
        }
    }

    @Test
    void hessianInputGivesTheSameCodesAsCalibrationInput(@TempDir Path tmp) throws Exception {
        float[][] x = Npy.readMatrixF32(Path.of(X));
        Path h = tmp.resolve("H.npy");
        NpyWriter.writeF64(h, new HessianAccumulator(384).add(x).hessian());
        assertEquals(0, run("quantize-layer", "--weight", W, "--calib", X, "--bits", "3", "--no-clip", "--order", "min-pivot",
                "--out", tmp.resolve("a").toString()).status());
        Run r = run("quantize-layer", "--weight", W, "--hessian", h.toString(), "--bits", "3", "--no-clip", "--order", "min-pivot",
                "--out", tmp.resolve("b").toString());
        assertEquals(0, r.status(), r.err());
        assertEquals("<i4", Npy.readHeader(tmp.resolve("b/codes.npy")).dtype(), "--no-clip codes may leave 0..7: int32");
        assertTrue(Arrays.deepEquals(Npy.readMatrix(tmp.resolve("a/codes.npy")), Npy.readMatrix(tmp.resolve("b/codes.npy"))));
        String json = Files.readString(tmp.resolve("b/report.json"));
        assertEquals(0, jsonNumber(json, "clipped"), 0);
        assertEquals(0, jsonNumber(json, "bound_violations"), 0);
        assertTrue(jsonNumber(json, "loss") <= jsonNumber(json, "bound"));
    }

    @Test
    void safetensorsWeightsByName(@TempDir Path tmp) {
        double[][] w = Npy.readMatrix(Path.of(W));
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        tensors.put("encoder.layer.0.attention.output.dense.weight", w);
        Path st = tmp.resolve("model.safetensors");
        SafeTensorsWriter.write(st, tensors, "F32");
        assertEquals(0, run("quantize-layer", "--weight", W, "--calib", X, "--out", tmp.resolve("npy").toString()).status());
        Run r = run("quantize-layer", "--weight", st + ":encoder.layer.0.attention.output.dense.weight", "--calib", X,
                "--out", tmp.resolve("st").toString());
        assertEquals(0, r.status(), r.err());
        assertTrue(Arrays.deepEquals(Npy.readMatrix(tmp.resolve("npy/codes.npy")), Npy.readMatrix(tmp.resolve("st/codes.npy"))));
        Run missing = run("quantize-layer", "--weight", st + ":nope", "--calib", X, "--out", tmp.resolve("x").toString());
        assertEquals(2, missing.status());
        assertTrue(missing.err().contains("nope"), missing.err());
    }

    @Test
    void badInputsAreClearErrorsAndWriteNothing(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("out");
        // a corrupt .npy (truncated)
        Path corrupt = tmp.resolve("corrupt.npy");
        byte[] bytes = Files.readAllBytes(Path.of(W));
        Files.write(corrupt, Arrays.copyOf(bytes, bytes.length / 2));
        Run r1 = run("quantize-layer", "--weight", corrupt.toString(), "--calib", X, "--out", out.toString());
        assertEquals(2, r1.status());
        assertTrue(r1.err().contains("corrupt.npy"), r1.err());
        // NaN in W
        double[][] w = Npy.readMatrix(Path.of(W));
        w[5][7] = Double.NaN;
        Path nan = tmp.resolve("nan.npy");
        NpyWriter.writeF32(nan, w);
        Run r2 = run("quantize-layer", "--weight", nan.toString(), "--calib", X, "--out", out.toString());
        assertEquals(2, r2.status());
        assertTrue(r2.err().contains("[5, 7]"), r2.err());
        // Inf in X
        float[][] x = Npy.readMatrixF32(Path.of(X));
        x[3][2] = Float.POSITIVE_INFINITY;
        Path inf = tmp.resolve("inf.npy");
        double[][] xd = new double[x.length][384];
        for (int i = 0; i < x.length; i++) {
            for (int j = 0; j < 384; j++) {
                xd[i][j] = x[i][j];
            }
        }
        NpyWriter.writeF32(inf, xd);
        Run r3 = run("quantize-layer", "--weight", W, "--calib", inf.toString(), "--out", out.toString());
        assertEquals(2, r3.status());
        assertTrue(r3.err().contains("row 3 column 2"), r3.err());
        // shape mismatch: ffn_down's inputs are 1536 wide
        Run r4 = run("quantize-layer", "--weight", W, "--calib",
                DIR.resolve("activations/layer0_ffn_down_in.calib.npy").toString(), "--out", out.toString());
        assertEquals(2, r4.status());
        assertTrue(r4.err().contains("1536") && r4.err().contains("384"), r4.err());
        // a non-positive-definite Hessian
        Path neg = tmp.resolve("neg.npy");
        double[][] hn = new double[384][384];
        for (int j = 0; j < 384; j++) {
            hn[j][j] = -1;
        }
        NpyWriter.writeF64(neg, hn);
        Run r5 = run("quantize-layer", "--weight", W, "--hessian", neg.toString(), "--out", out.toString());
        assertEquals(2, r5.status());
        assertTrue(r5.err().contains("Gram"), r5.err());
        // a missing file, an unknown order, bits out of range
        assertEquals(2, run("quantize-layer", "--weight", tmp.resolve("none.npy").toString(), "--calib", X, "--out", out.toString()).status());
        assertEquals(2, run("quantize-layer", "--weight", W, "--calib", X, "--order", "sideways", "--out", out.toString()).status());
        assertEquals(2, run("quantize-layer", "--weight", W, "--calib", X, "--bits", "9", "--out", out.toString()).status());
        assertEquals(2, run("quantize-layer", "--weight", W, "--out", out.toString()).status(), "needs --calib or --hessian");
        assertFalse(Files.exists(out), "nothing written for bad input");
    }

    @Test
    void everySubcommandHasHelp() {
        for (String cmd : new String[] {"quantize-layer", "demo", "bench"}) {
            Run r = run(cmd, "--help");
            assertEquals(0, r.status(), cmd);
            assertTrue(r.out().contains("Usage: babai-quant " + cmd), r.out());
        }
        Run top = run("--help");
        assertEquals(0, top.status());
        assertTrue(top.out().contains("quantize-layer"));
    }
}
