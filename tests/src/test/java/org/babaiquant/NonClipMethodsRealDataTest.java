package org.babaiquant;

import org.babaiquant.cli.CompareCommand;
import org.babaiquant.cli.MiniLmLayer0;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;
import org.babaiquant.nonclip.Hptq;
import org.babaiquant.nonclip.HptqFormat;
import org.babaiquant.nonclip.Ssqr;
import org.babaiquant.nonclip.SsqrFormat;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The no-clipping schemes against GPTQ with clipping on the six real MiniLM layer-0 linears, calibrated on Brown text,
 * scored by the relative output error on held-out Austen text. "Matched bits" is strict in GPTQ's favour: GPTQ gets
 * floor(B) bits and the group size whose checkpoint size is nearest B (as {@code compare} does), on the MSE grid, and
 * HPTQ/HRTN are then given GPTQ's own measured bits per weight as their target, so they never store more.
 *
 * <p>What was measured (this machine, the compare table in the README): HPTQ's error is 0.65–0.78 of GPTQ's on every
 * layer at both 3.125 and 4.125 bits, and 0.64–0.87 of HRTN's. SSQR at matched bits is worse than GPTQ, 1.14–1.50×:
 * at 32 bits per stored outlier the budget left under 3.125 bits only pays for 0.1–0.13% outliers, which forces the
 * scales 1.35× above the MSE grid. On GPTQ's own grid (3 bits, group 128) with 3% outliers SSQR does beat GPTQ, by
 * 9–13%, but those outliers cost about a bit per weight. The margins asserted below sit between those figures and 1.
 */
class NonClipMethodsRealDataTest {
    private static final Path DIR = RealData.miniLm();
    private static final Map<String, double[][]> HESSIANS = new HashMap<>();
    private static final Map<String, double[][]> EVAL = new HashMap<>();
    private static final GptqSolver.Options BASE = GptqSolver.Options.defaults();

    @BeforeAll
    static void load() {
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            HESSIANS.computeIfAbsent(lin.site(), s -> {
                float[][] x = Npy.readMatrixF32(lin.calib(DIR));
                return new HessianAccumulator(x[0].length).add(x).hessian();
            });
            EVAL.computeIfAbsent(lin.site(), s -> Npy.readMatrix(lin.eval(DIR)));
        }
    }

    /** GPTQ with clipping at the compare command's matched configuration for target B. */
    private record Gptq(double bitsPerWeight, double error, int bits, int groupSize) {}

    /** Shared by the two comparisons: (layer, target) → GPTQ's figures. */
    private static final Map<String, Gptq> GPTQ = new HashMap<>();

    private static synchronized Gptq gptq(MiniLmLayer0.Linear lin, double[][] w, double target) {
        return GPTQ.computeIfAbsent(lin.name() + "@" + target, k -> runGptq(lin, w, target));
    }

    private static Gptq runGptq(MiniLmLayer0.Linear lin, double[][] w, double target) {
        int bits = (int) Math.floor(target);
        int gs = CompareCommand.nearestGroupSize(w.length, w[0].length, bits, target);
        QuantizedLayer q = GptqSolver.quantize(w, HESSIANS.get(lin.site()),
                BASE.withGrid(new QuantGrid.Spec(bits, gs, false, true)));
        return new Gptq(q.report().bitsPerWeight, error(lin, w, q.dequant()), bits, gs);
    }

    private static double error(MiniLmLayer0.Linear lin, double[][] w, double[][] q) {
        return GptqSolver.relativeOutputError(EVAL.get(lin.site()), w, q);
    }

    private static double error(MiniLmLayer0.Linear lin, double[][] w, float[] flat) {
        int cols = w[0].length;
        double[][] q = new double[w.length][cols];
        for (int i = 0; i < flat.length; i++) {
            q[i / cols][i % cols] = flat[i];
        }
        return error(lin, w, q);
    }

    /**
     * HPTQ beats GPTQ with clipping on every layer at 3.125 and 4.125 bits with no more bits stored, and beats HRTN
     * (the paper's ordering HPTQ &lt; HRTN). Asserted: HPTQ/GPTQ &lt; 0.9 per layer and &lt; 0.8 on average (measured
     * at most 0.78, mean 0.71); HPTQ/HRTN &lt; 0.95 (measured at most 0.87). HRTN against GPTQ is mixed (0.79–1.10)
     * and only printed.
     */
    @Test
    void hptqBeatsGptqWithClippingAtMatchedBitsOnEveryLinear() {
        double sumRatio = 0;
        int count = 0;
        StringBuilder table = new StringBuilder("layer     target  gptq_bpw gptq_err  hptq_bpw hptq_err  hrtn_err  hptq/gptq\n");
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            double[][] w = Npy.readMatrix(lin.weight(DIR));
            double[][] h = HESSIANS.get(lin.site());
            for (double target : new double[] {3.125, 4.125}) {
                Gptq g = gptq(lin, w, target);
                Hptq.Result hp = Hptq.quantize(w, h, Hptq.Options.of(Hptq.Kind.HPTQ, g.bitsPerWeight(), BASE));
                Hptq.Result hr = Hptq.quantize(w, h, Hptq.Options.of(Hptq.Kind.HRTN, g.bitsPerWeight(), BASE));
                double ep = error(lin, w, HptqFormat.dequantize(hp.bytes()));
                double er = error(lin, w, HptqFormat.dequantize(hr.bytes()));
                String where = lin.name() + " at " + target + " bits";
                assertTrue(hp.bitsPerWeight() <= g.bitsPerWeight() && hr.bitsPerWeight() <= g.bitsPerWeight(), where);
                assertEquals(0, hp.lattice().report().clipped(), where);
                assertEquals(0, hp.lattice().report().boundViolations(), where);
                assertTrue(ep < 0.9 * g.error(), where + ": HPTQ " + ep + " vs GPTQ " + g.error());
                assertTrue(ep < 0.95 * er, where + ": HPTQ " + ep + " vs HRTN " + er);
                sumRatio += ep / g.error();
                count++;
                table.append(String.format(Locale.ROOT, "%-9s %6.3f  %8.4f %8.5f  %8.4f %8.5f  %8.5f  %9.3f%n",
                        lin.name(), target, g.bitsPerWeight(), g.error(), hp.bitsPerWeight(), ep, er, ep / g.error()));
            }
        }
        System.out.print(table);
        assertTrue(sumRatio / count < 0.8, "mean HPTQ/GPTQ error ratio " + sumRatio / count);
    }

    /**
     * SSQR, honestly: at matched bits (the compare command's rule: 3 bits, the outlier rate that fills 3.125 bits)
     * it is worse than GPTQ with clipping on every layer (asserted &gt; 1, and &lt; 1.7 so that a regression still
     * shows; measured 1.30–1.50 at 3.125). Its no-clipping advantage is real but priced out: on GPTQ's own grid
     * (3 bits, group 128, MSE) with 3% outliers it beats GPTQ on every layer (asserted &lt; 0.97, measured 0.87–0.91)
     * at a cost of more than 0.8 extra bits per weight (measured about 0.97). The Babai bound holds throughout.
     */
    @Test
    void ssqrLosesAtMatchedBitsButBeatsGptqOnTheSameGridWithThreePercentOutliers() {
        double target = 3.125;
        StringBuilder table = new StringBuilder("layer     gptq_bpw gptq_err  ssqr_bpw ssqr_err ratio  ssqr3%_bpw ssqr3%_err ratio\n");
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            double[][] w = Npy.readMatrix(lin.weight(DIR));
            double[][] h = HESSIANS.get(lin.site());
            int rows = w.length;
            int cols = w[0].length;
            Gptq g = gptq(lin, w, target);
            int sg = CompareCommand.ssqrGroupSize(rows, cols, 3, target);
            Ssqr.Result matched = Ssqr.quantize(w, h, Ssqr.Options.of(3, sg,
                    CompareCommand.ssqrRate(rows, cols, 3, sg, target), BASE));
            Ssqr.Result sameGrid = Ssqr.quantize(w, h, Ssqr.Options.of(g.bits(), g.groupSize(), 0.03, BASE));
            double em = error(lin, w, SsqrFormat.read(matched.bytes()).dequantize());
            double es = error(lin, w, SsqrFormat.read(sameGrid.bytes()).dequantize());
            String where = lin.name();
            assertTrue(matched.bitsPerWeight() <= g.bitsPerWeight(), where + ": " + matched.bitsPerWeight());
            assertTrue(em > g.error() && em < 1.7 * g.error(), where + ": SSQR " + em + " vs GPTQ " + g.error());
            assertTrue(es < 0.97 * g.error(), where + ": SSQR 3% " + es + " vs GPTQ " + g.error());
            assertTrue(sameGrid.bitsPerWeight() > g.bitsPerWeight() + 0.8, where + ": " + sameGrid.bitsPerWeight());
            for (Ssqr.Result r : new Ssqr.Result[] {matched, sameGrid}) {
                assertEquals(0, r.lattice().report().clipped(), where);
                assertEquals(0, r.lattice().report().boundViolations(), where);
            }
            table.append(String.format(Locale.ROOT, "%-9s %8.4f %8.5f  %8.4f %8.5f %5.3f  %10.4f %10.5f %5.3f%n",
                    lin.name(), g.bitsPerWeight(), g.error(), matched.bitsPerWeight(), em, em / g.error(),
                    sameGrid.bitsPerWeight(), es, es / g.error()));
        }
        System.out.print(table);
    }

    // ------------------------------------------------------------------------------------------------ CLI

    private static QuantizeLayerCliTest.Run cli(String... args) {
        return QuantizeLayerCliTest.run(args);
    }

    private static double jsonNumber(String json, String key) {
        return QuantizeLayerCliTest.jsonNumber(json, key);
    }

    /**
     * {@code quantize-layer --method ssqr|hptq|hrtn} writes the stored layer, and report.json's bits per weight is
     * that file's size; dequant.npy is that file decoded.
     */
    @Test
    void quantizeLayerWritesTheStoredLayerAndMeasuresItsBytes(@TempDir Path tmp) throws Exception {
        MiniLmLayer0.Linear lin = MiniLmLayer0.LINEARS.get(3); // o_proj, 384×384
        String w = lin.weight(DIR).toString();
        String x = lin.calib(DIR).toString();
        String xe = lin.eval(DIR).toString();
        String[][] runs = {
                {"ssqr", "--bits", "3", "--outlier-rate", "0.02"},
                {"hptq", "--target-bits", "3.125"},
                {"hrtn", "--target-bits", "4.125"}};
        for (String[] extra : runs) {
            String m = extra[0];
            Path out = tmp.resolve(m);
            List<String> args = new ArrayList<>(List.of("quantize-layer", "--weight", w, "--calib", x, "--eval", xe,
                    "--out", out.toString(), "--method"));
            args.addAll(List.of(extra));
            QuantizeLayerCliTest.Run r = cli(args.toArray(new String[0]));
            assertEquals(0, r.status(), m + ": " + r.err());
            byte[] stored = Files.readAllBytes(out.resolve("layer." + m));
            String json = Files.readString(out.resolve("report.json"));
            assertEquals(8.0 * stored.length / (384 * 384), jsonNumber(json, "bits_per_weight"), 0, m);
            assertTrue(json.contains("\"method\": \"" + m + "\""), json);
            float[] decoded = m.equals("ssqr") ? SsqrFormat.read(stored).dequantize() : HptqFormat.dequantize(stored);
            float[][] dq = Npy.readMatrixF32(out.resolve("dequant.npy"));
            for (int i = 0; i < 384; i++) {
                for (int j = 0; j < 384; j++) {
                    assertEquals(decoded[i * 384 + j], dq[i][j], 0, m);
                }
            }
            if (!m.equals("hrtn")) { // round to nearest has no Babai guarantee; the other two never clip
                assertEquals(0, jsonNumber(json, "bound_violations"), 0, m);
            }
            double eval = jsonNumber(json, "eval_rel_error");
            assertTrue(eval > 0.02 && eval < 0.2, m + " eval error " + eval);
            if (m.equals("ssqr")) {
                assertTrue(jsonNumber(json, "outlier_density") <= 0.02, json);
                assertTrue(jsonNumber(json, "scale_multiplier") > 0, json);
            } else {
                double target = Double.parseDouble(extra[2]);
                double bpw = jsonNumber(json, "bits_per_weight");
                assertTrue(bpw <= target && bpw >= target - Hptq.DEFAULT_BAND, m + ": " + bpw);
            }
        }
    }

    @Test
    void optionsOfOtherMethodsAreClearErrors(@TempDir Path tmp) {
        MiniLmLayer0.Linear lin = MiniLmLayer0.LINEARS.get(3);
        String w = lin.weight(DIR).toString();
        String x = lin.calib(DIR).toString();
        String out = tmp.resolve("o").toString();
        QuantizeLayerCliTest.Run noTarget = cli("quantize-layer", "--weight", w, "--calib", x, "--method", "hptq", "--out", out);
        assertEquals(2, noTarget.status());
        assertTrue(noTarget.err().contains("--target-bits"), noTarget.err());
        QuantizeLayerCliTest.Run rateOnGptq = cli("quantize-layer", "--weight", w, "--calib", x, "--outlier-rate", "0.01", "--out", out);
        assertEquals(2, rateOnGptq.status());
        assertTrue(rateOnGptq.err().contains("ssqr only"), rateOnGptq.err());
        QuantizeLayerCliTest.Run bitsOnHptq = cli("quantize-layer", "--weight", w, "--calib", x, "--method", "hrtn", "--target-bits", "3",
                "--bits", "3", "--out", out);
        assertEquals(2, bitsOnHptq.status());
        QuantizeLayerCliTest.Run unknown = cli("quantize-layer", "--weight", w, "--calib", x, "--method", "huffman", "--out", out);
        assertEquals(2, unknown.status());
        assertTrue(unknown.err().contains("ssqr, hptq or hrtn"), unknown.err());
        QuantizeLayerCliTest.Run floor = cli("quantize-layer", "--weight", w, "--calib", x, "--method", "hptq", "--target-bits", "0.9",
                "--out", out);
        assertEquals(2, floor.status());
        assertTrue(floor.err().contains("at least one bit"), floor.err());
        assertTrue(!Files.exists(Path.of(out)), "nothing written");
    }

    /** compare on one layer writes a JSON table with all seven methods; bench-huffman runs on a small matrix. */
    @Test
    void compareAndBenchHuffmanRun(@TempDir Path tmp) throws Exception {
        Path json = tmp.resolve("cmp.json");
        Path csv = tmp.resolve("cmp.csv");
        QuantizeLayerCliTest.Run r = cli("compare", "--layers", "o_proj", "--targets", "3.125", "--json", json.toString(), "--csv",
                csv.toString());
        assertEquals(0, r.status(), r.err());
        String text = Files.readString(json);
        for (String m : new String[] {"rtn", "gptq", "gptq-noclip", "babai", "ssqr", "hrtn", "hptq"}) {
            assertTrue(text.contains("\"method\": \"" + m + "\""), m);
        }
        assertEquals(8, Files.readAllLines(csv).size(), "header and seven rows");
        QuantizeLayerCliTest.Run b = cli("bench-huffman", "--size", "64x300", "--targets", "3.125", "--repeats", "2");
        assertEquals(0, b.status(), b.err());
        assertTrue(b.out().contains("64x300"), b.out());
        for (String cmd : new String[] {"compare", "bench-huffman"}) {
            QuantizeLayerCliTest.Run help = cli(cmd, "--help");
            assertEquals(0, help.status());
            assertTrue(help.out().contains("Usage: babai-quant " + cmd), help.out());
        }
    }
}
