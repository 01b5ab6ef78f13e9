package org.babaiquant.cli;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.io.Npy;
import org.babaiquant.method.LayerQuantizer;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantResult;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code demo-layer0}: the quick look (about 20 s). Quantizes the six real MiniLM layer-0 linears with RTN, GPTQ in several
 * orders and Babai's order, calibrated on Brown-corpus activations, and measures the output error on held-out Austen
 * activations: the quickest way to see the method work on real data.
 */
@Command(name = "demo-layer0", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Quantize the bundled real MiniLM layer-0 linears (RTN, GPTQ natural/act-order/min-pivot, "
                + "Babai order) and print the report table.",
                "Columns: eval_err = ‖XeWᵀ−XeQᵀ‖/‖XeWᵀ‖ on held-out text; loss/bound = Σ loss / Σ Babai bound;"
                        + " clipped = weights clamped to the grid; tr(D) = Σ 1/U_kk²."})
public final class Layer0DemoCommand implements Callable<Integer> {
    @Option(names = "--data", paramLabel = "DIR", description = "data folder (default: the bundled data/minilm-l6-v2)")
    Path data;

    @Option(names = "--bits", split = ",", defaultValue = "4,3", description = "bit widths (default: ${DEFAULT-VALUE})")
    List<Integer> bits;

    @Option(names = "--group-size", defaultValue = "-1", description = "(default: ${DEFAULT-VALUE}, one scale per row)")
    int groupSize;

    @Option(names = "--csv", paramLabel = "FILE", description = "also write the table as CSV")
    Path csv;

    private record Variant(String label, String method, ColumnOrder order, boolean clip) {}

    private static final List<Variant> VARIANTS = List.of(
            new Variant("rtn", "rtn", ColumnOrder.NATURAL, true),
            new Variant("gptq natural", "gptq", ColumnOrder.NATURAL, true),
            new Variant("gptq act-order", "gptq", ColumnOrder.ACT_ORDER, true),
            new Variant("gptq min-pivot", "gptq", ColumnOrder.MIN_PIVOT, true),
            new Variant("babai (reverse)", "babai", ColumnOrder.REVERSE, true),
            new Variant("babai no-clip", "babai", ColumnOrder.MIN_PIVOT, false));

    @Override
    public Integer call() {
        Path dir = data != null ? data : MiniLmLayer0.defaultDir();
        System.out.println("babai-quant demo-layer0: all-MiniLM-L6-v2 encoder layer 0, calibrated on " + dir.resolve("activations")
                + " (Brown corpus), evaluated on held-out Austen rows; grid asym, group " + groupSize + ", damp 0.01");
        Map<String, double[][]> hessians = new HashMap<>();
        Map<String, Long> tokens = new HashMap<>();
        String header = String.format(Locale.ROOT, "%-9s %4s  %-16s %9s %10s %7s %11s %8s %6s",
                "layer", "bits", "method", "eval_err", "loss/bound", "clipped", "tr(D)", "bpw", "sec");
        System.out.println(header);
        List<String> csvRows = new ArrayList<>();
        csvRows.add("layer,bits,method,order,clip,eval_rel_error,loss,bound,loss_over_bound,clipped,trace_d,bits_per_weight,seconds");
        int total = MiniLmLayer0.LINEARS.size() * bits.size() * VARIANTS.size();
        int done = 0;
        for (MiniLmLayer0.Linear lin : MiniLmLayer0.LINEARS) {
            double[][] w = Npy.readMatrix(lin.weight(dir));
            double[][] h = hessians.computeIfAbsent(lin.site(), s -> {
                HessianAccumulator acc = new HessianAccumulator(w[0].length).add(Npy.readMatrixF32(lin.calib(dir)));
                tokens.put(s, acc.tokens());
                return acc.hessian();
            });
            double[][] xe = Npy.readMatrix(lin.eval(dir));
            for (int b : bits) {
                for (Variant v : VARIANTS) {
                    MethodSpec spec = MethodSpec.grid(v.method(), new QuantGrid.Spec(b, groupSize, false, false), v.order(), v.clip(), 0.01);
                    QuantResult q = LayerQuantizer.quantize(lin.name(), w, h, tokens.get(lin.site()), spec, QuantBackend.cpu());
                    LayerQuantizer.evaluate(lin.name(), q, w, xe, lin.eval(dir).toString());
                    LayerReport r = q.report();
                    done++;
                    ConsoleProgress.line(String.format(Locale.ROOT, "%-9s %4d  %-16s %9.5f %10.4f %7d %11.4g %8.3f %6.2f",
                            lin.name(), b, v.label(), r.evalRelError, r.lossOverBound(), r.clipped(), r.traceD,
                            r.bitsPerWeight, r.seconds));
                    csvRows.add(String.join(",", lin.name(), String.valueOf(b), v.method(), v.order().cliName,
                            String.valueOf(v.clip()), fmt(r.evalRelError), fmt(r.loss()), fmt(r.bound()),
                            fmt(r.lossOverBound()), String.valueOf(r.clipped()), fmt(r.traceD), fmt(r.bitsPerWeight),
                            fmt(r.seconds)));
                }
            }
            ConsoleProgress.live(String.format(Locale.ROOT, "[demo-layer0] %d/%d runs done", done, total));
        }
        if (csv != null) {
            try {
                Files.write(csv, csvRows);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            System.out.println("wrote " + csv);
        }
        return 0;
    }

    private static String fmt(double d) {
        return Double.toString(d);
    }
}
