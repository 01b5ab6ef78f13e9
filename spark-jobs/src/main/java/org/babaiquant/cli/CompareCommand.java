package org.babaiquant.cli;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.Json;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.io.Npy;
import org.babaiquant.method.LayerQuantizer;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantResult;
import org.babaiquant.nonclip.BitBudget;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code compare}: every method on the same layers at matched bits per weight. The lattice methods with a grid (RTN,
 * GPTQ with and without clipping, Babai) get {@code floor(B)} bits and the group size whose GPTQ-checkpoint size is
 * nearest to B; HPTQ and HRTN are searched to B itself; SSQR gets {@code floor(B)} bits, the smallest group size that
 * leaves room for at least 0.1% outliers under B, and the outlier rate that spends the rest (32 bits per outlier: a
 * 16-bit column and a 16-bit code). Bits per weight are measured from the bytes of each stored form.
 */
@Command(name = "compare", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Compare RTN, GPTQ (clip / no clip), Babai, SSQR, HRTN and HPTQ at matched bits",
                "per weight on real layers (default: the bundled MiniLM layer-0 linears),",
                "calibrated on Brown-corpus activations, evaluated on held-out Austen text.",
                "Grid methods get floor(B) bits and the group size whose GPTQ checkpoint size is",
                "nearest B; HPTQ/HRTN are searched to B; SSQR gets floor(B) bits and the outlier",
                "rate that fills B (at least 0.1%%, 32 bits per outlier).",
                "Columns: bpw = bits per weight of the stored form (GPTQ checkpoint layout for",
                "rtn/gptq/babai, the SsqrFormat / HptqFormat bytes for the others);",
                "eval_err = ‖XeWᵀ−XeQᵀ‖/‖XeWᵀ‖ on held-out rows; loss/bound = Σ loss / Σ Babai",
                "bound (a guarantee only without clipping); overflow = codes outside [0, maxq]:",
                "clamped (clip), kept (no clip: such codes do not fit the GPTQ layout whose",
                "size is shown), or SSQR's stored outliers."})
public final class CompareCommand implements Callable<Integer> {
    @Option(names = "--data", paramLabel = "DIR", description = "data folder (default: the bundled data/minilm-l6-v2)")
    Path data;

    @Option(names = "--layers", split = ",", paramLabel = "NAME",
            description = "layers of the data folder (default: q_proj,k_proj,v_proj,o_proj,ffn_up,ffn_down)")
    List<String> layers;

    @Option(names = "--targets", split = ",", defaultValue = "3.125,4.125",
            description = "bits per weight to match (default: ${DEFAULT-VALUE})")
    List<Double> targets;

    /** --order (default natural; babai always uses min-pivot), --damp, --block-size, --max-damp-tries. */
    @Mixin
    SolverOptions solver = new SolverOptions();

    @Option(names = "--baseline-grid", defaultValue = "mse",
            description = "grid of rtn/gptq/babai: mse (shrink search, as SSQR starts from) or minmax (default: ${DEFAULT-VALUE})")
    String baselineGrid;

    @Option(names = "--ssqr-rate", paramLabel = "R", description = "SSQR outlier rate (default: what fills the budget)")
    Double ssqrRate;

    @Option(names = "--ssqr-group-size", paramLabel = "G", description = "SSQR group size (default: chosen per budget)")
    Integer ssqrGroupSize;

    @Option(names = "--csv", paramLabel = "FILE", description = "also write the table as CSV")
    Path csv;

    @Option(names = "--json", paramLabel = "FILE", description = "also write the table as JSON")
    Path json;

    static final List<String> METHODS = List.of("rtn", "gptq", "gptq-noclip", "babai", "ssqr", "hrtn", "hptq");
    static final double SSQR_MIN_RATE = BitBudget.SSQR_MIN_RATE;
    static final double SSQR_MAX_RATE = BitBudget.SSQR_MAX_RATE;

    /** One line of the table. {@code overflow} is −1 where it does not apply. */
    record Row(String layer, double target, String method, String config, double bitsPerWeight, double evalRelError,
               double loss, double bound, long overflow, double seconds) {
        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("layer", layer);
            m.put("target_bits", target);
            m.put("method", method);
            m.put("config", config);
            m.put("bits_per_weight", bitsPerWeight);
            m.put("eval_rel_error", evalRelError);
            m.put("loss", loss);
            m.put("bound", bound);
            m.put("loss_over_bound", loss / bound);
            m.put("overflow", overflow);
            m.put("seconds", seconds);
            return m;
        }
    }

    @Override
    public Integer call() {
        Path dir = data != null ? data : MiniLmLayer0.defaultDir();
        List<MiniLmLayer0.Linear> linears = selectLayers();
        ColumnOrder ord = solver.order(ColumnOrder.NATURAL);
        boolean mse = switch (baselineGrid) {
            case "mse" -> true;
            case "minmax" -> false;
            default -> throw new IllegalArgumentException("--baseline-grid must be mse or minmax, got " + baselineGrid);
        };
        for (double t : targets) {
            if (!(t > 2) || t > 8.5) {
                throw new IllegalArgumentException("targets must be in (2, 8.5] bits per weight, got " + t);
            }
        }
        MethodSpec base = new MethodSpec("gptq", new QuantGrid.Spec(4, -1, false, mse), ord, true, solver.damp, solver.blockSize,
                solver.maxDampTries, 0.01, 0);
        System.out.println("babai-quant compare: " + dir + ", order " + ord + " (babai: min-pivot), baseline grid "
                + baselineGrid + ", damp " + solver.damp);
        String header = String.format(Locale.ROOT, "%-9s %6s  %-12s %-24s %7s %9s %10s %8s %6s",
                "layer", "target", "method", "config", "bpw", "eval_err", "loss/bound", "overflow", "sec");
        System.out.println(header);
        List<Row> rows = new ArrayList<>();
        Map<String, double[][]> hessians = new HashMap<>();
        Map<String, double[][]> evals = new HashMap<>();
        for (MiniLmLayer0.Linear lin : linears) {
            double[][] w = Npy.readMatrix(lin.weight(dir));
            double[][] h = hessians.computeIfAbsent(lin.site(),
                    s -> new HessianAccumulator(w[0].length).add(Npy.readMatrixF32(lin.calib(dir))).hessian());
            double[][] xe = evals.computeIfAbsent(lin.site(), s -> Npy.readMatrix(lin.eval(dir)));
            for (double target : targets) {
                for (Row row : compareLayer(lin.name(), w, h, xe, target, base)) {
                    rows.add(row);
                    System.out.println(format(row));
                }
            }
        }
        List<Map<String, Object>> summary = summary(rows);
        write(rows, summary, dir, ord);
        return 0;
    }

    private List<MiniLmLayer0.Linear> selectLayers() {
        if (layers == null || layers.isEmpty()) {
            return MiniLmLayer0.LINEARS;
        }
        List<MiniLmLayer0.Linear> out = new ArrayList<>();
        for (String name : layers) {
            MiniLmLayer0.Linear found = MiniLmLayer0.LINEARS.stream().filter(l -> l.name().equals(name.trim()))
                    .findFirst().orElseThrow(() -> new IllegalArgumentException("unknown layer '" + name
                            + "'; the data folder has " + MiniLmLayer0.LINEARS.stream().map(MiniLmLayer0.Linear::name)
                            .toList()));
            out.add(found);
        }
        return out;
    }

    /** The seven methods on one layer at one target, each through the one quantize-one-layer path. */
    List<Row> compareLayer(String name, double[][] w, double[][] h, double[][] xe, double target, MethodSpec base) {
        int rows = w.length;
        int cols = w[0].length;
        List<Row> out = new ArrayList<>();

        // the grid methods: floor(B) bits, the group size whose checkpoint size is nearest B
        int bits = (int) Math.floor(target);
        int gs = nearestGroupSize(rows, cols, bits, target);
        MethodSpec grid = base.withGrid(new QuantGrid.Spec(bits, gs, false, base.grid().mse()));
        String cfg = bits + "b g" + gs + (grid.grid().mse() ? " mse" : " minmax");
        out.add(gridRow(name, target, "rtn", cfg, w, h, xe, grid.withMethod("rtn")));
        out.add(gridRow(name, target, "gptq", cfg, w, h, xe, grid));
        out.add(gridRow(name, target, "gptq-noclip", cfg, w, h, xe, grid.withClip(false)));
        out.add(gridRow(name, target, "babai", cfg + " min-pivot", w, h, xe, grid.withMethod("babai").withClip(false)
                .withOrder(ColumnOrder.MIN_PIVOT)));

        // SSQR: floor(B) bits and an outlier rate that spends what the dense part leaves of B
        int sg = ssqrGroupSize != null ? ssqrGroupSize : ssqrGroupSize(rows, cols, bits, target);
        double rate = ssqrRate != null ? ssqrRate : ssqrRate(rows, cols, bits, sg, target);
        long t0 = System.nanoTime();
        QuantResult s = quantize(name, w, h, xe, base.withMethod("ssqr").withGrid(new QuantGrid.Spec(bits, sg, false, true))
                .withOutlierRate(rate));
        double sec = (System.nanoTime() - t0) / 1e9;
        Map<String, Object> sum = s.summary();
        out.add(new Row(name, target, "ssqr", String.format(Locale.ROOT, "%db g%d r=%.2f%% m=%.3f", bits, sg,
                100 * rate, ((Number) sum.get("scale_multiplier")).doubleValue()), s.bitsPerWeight(), s.report().evalRelError,
                s.report().loss(), s.report().bound(), ((Number) sum.get("outliers")).longValue(), sec));

        for (String huffman : new String[] {"hrtn", "hptq"}) {
            t0 = System.nanoTime();
            QuantResult r = quantize(name, w, h, xe, base.withTargetBits(target).withMethod(huffman));
            sec = (System.nanoTime() - t0) / 1e9;
            out.add(new Row(name, target, huffman, String.format(Locale.ROOT, "s=%.4g", ((Number) r.summary().get("scale")).doubleValue()),
                    r.bitsPerWeight(), r.report().evalRelError, r.report().loss(), r.report().bound(), -1, sec));
        }
        return out;
    }

    private static QuantResult quantize(String name, double[][] w, double[][] h, double[][] xe, MethodSpec spec) {
        QuantResult q = LayerQuantizer.quantize(name, w, h, -1, spec, QuantBackend.cpu());
        LayerQuantizer.evaluate(name, q, w, xe, "held-out inputs of " + name);
        return q;
    }

    private static Row gridRow(String name, double target, String label, String cfg, double[][] w, double[][] h,
                               double[][] xe, MethodSpec spec) {
        long t0 = System.nanoTime();
        QuantResult q = quantize(name, w, h, xe, spec);
        double sec = (System.nanoTime() - t0) / 1e9;
        LayerReport rep = q.report();
        long overflow = rep.clipped();
        if (!spec.clip()) {
            int maxq = q.lattice().grid().maxq;
            for (int[] row : q.lattice().codes()) {
                for (int c : row) {
                    if (c < 0 || c > maxq) {
                        overflow++;
                    }
                }
            }
        }
        return new Row(name, target, label, cfg, rep.bitsPerWeight, rep.evalRelError, rep.loss(), rep.bound(), overflow, sec);
    }

    /** See {@link BitBudget#nearestGroupSize}. */
    public static int nearestGroupSize(int rows, int cols, int bits, double target) {
        return BitBudget.nearestGroupSize(rows, cols, bits, target);
    }

    /** See {@link BitBudget#ssqrGroupSize}. */
    public static int ssqrGroupSize(int rows, int cols, int bits, double target) {
        return BitBudget.ssqrGroupSize(rows, cols, bits, target);
    }

    /** See {@link BitBudget#ssqrRate}. */
    public static double ssqrRate(int rows, int cols, int bits, int groupSize, double target) {
        return BitBudget.ssqrRate(rows, cols, bits, groupSize, target);
    }



    private static String format(Row r) {
        return String.format(Locale.ROOT, "%-9s %6.3f  %-12s %-24s %7.4f %9.5f %10.4f %8s %6.2f", r.layer(), r.target(),
                r.method(), r.config(), r.bitsPerWeight(), r.evalRelError(), r.loss() / r.bound(),
                r.overflow() < 0 ? "-" : String.valueOf(r.overflow()), r.seconds());
    }

    /** Per target and method: mean bits per weight and mean error over the layers, and wins against gptq. */
    private static List<Map<String, Object>> summary(List<Row> rows) {
        List<Map<String, Object>> out = new ArrayList<>();
        List<Double> ts = rows.stream().map(Row::target).distinct().toList();
        System.out.println();
        System.out.println(String.format(Locale.ROOT, "%6s  %-12s %9s %13s %15s", "target", "method", "mean_bpw",
                "mean_eval_err", "better_than_gptq"));
        for (double t : ts) {
            for (String m : METHODS) {
                List<Row> mine = rows.stream().filter(r -> r.target() == t && r.method().equals(m)).toList();
                if (mine.isEmpty()) {
                    continue;
                }
                double bpw = mine.stream().mapToDouble(Row::bitsPerWeight).average().orElse(Double.NaN);
                double err = mine.stream().mapToDouble(Row::evalRelError).average().orElse(Double.NaN);
                long wins = mine.stream().filter(r -> rows.stream().anyMatch(g -> g.target() == t
                        && g.layer().equals(r.layer()) && g.method().equals("gptq")
                        && r.evalRelError() < g.evalRelError())).count();
                System.out.println(String.format(Locale.ROOT, "%6.3f  %-12s %9.4f %13.5f %11d / %d", t, m, bpw, err,
                        wins, mine.size()));
                Map<String, Object> s = new LinkedHashMap<>();
                s.put("target_bits", t);
                s.put("method", m);
                s.put("mean_bits_per_weight", bpw);
                s.put("mean_eval_rel_error", err);
                s.put("layers_better_than_gptq", wins);
                s.put("layers", mine.size());
                out.add(s);
            }
        }
        return out;
    }

    private void write(List<Row> rows, List<Map<String, Object>> summary, Path dir, ColumnOrder ord) {
        try {
            if (csv != null) {
                List<String> lines = new ArrayList<>();
                lines.add("layer,target_bits,method,config,bits_per_weight,eval_rel_error,loss,bound,loss_over_bound,"
                        + "overflow,seconds");
                for (Row r : rows) {
                    lines.add(String.join(",", r.layer(), Double.toString(r.target()), r.method(),
                            "\"" + r.config() + "\"", Double.toString(r.bitsPerWeight()),
                            Double.toString(r.evalRelError()), Double.toString(r.loss()), Double.toString(r.bound()),
                            Double.toString(r.loss() / r.bound()), Long.toString(r.overflow()),
                            Double.toString(r.seconds())));
                }
                Files.write(csv, lines, StandardCharsets.UTF_8);
                System.out.println("wrote " + csv);
            }
            if (json != null) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("data", dir.toString());
                m.put("order", ord.cliName);
                m.put("baseline_grid", baselineGrid);
                m.put("damp", solver.damp);
                m.put("rows", rows.stream().map(Row::toMap).toList());
                m.put("summary", summary);
                Files.writeString(json, Json.write(m), StandardCharsets.UTF_8);
                System.out.println("wrote " + json);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the comparison: " + e.getMessage(), e);
        }
    }
}
