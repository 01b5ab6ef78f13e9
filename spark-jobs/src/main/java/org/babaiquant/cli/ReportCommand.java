package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.spark.QuantizedLayout;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code report URI}: the error-bound summary of a quantize output. */
@Command(name = "report", mixinStandardHelpOptions = true,
        description = "Print the per-layer error-bound report of a quantize output (OUT/reports).")
public final class ReportCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "URI", description = "quantize --out")
    String uri;

    @Override
    public Integer call() {
        System.out.printf(Locale.ROOT, "%-48s %-6s %4s %5s %11s %11s %7s %8s %9s %8s %6s %7s %-8s%n", "layer", "method", "bits", "group",
                "loss", "bound", "l/b", "clipped", "eval_err", "damp", "bpw", "sec", "starved");
        double[] tot = new double[3];
        int[] n = {0};
        QuantizedLayout.readAll(org.babaiquant.spark.HadoopConfs.fromEnvironmentAndSpark(), uri, "reports", g -> {
            double eval = g.getDouble("eval_rel_error", 0);
            System.out.printf(Locale.ROOT, "%-48s %-6s %4d %5d %11.5g %11.5g %7.4f %8d %9s %8.3g %6.3f %7.2f %-8s%n",
                    g.getString("layer", 0), g.getString("method", 0), g.getInteger("bits", 0), g.getInteger("group_size", 0),
                    g.getDouble("loss", 0), g.getDouble("bound", 0), g.getDouble("loss_over_bound", 0), g.getLong("clipped", 0),
                    Double.isNaN(eval) ? "-" : String.format(Locale.ROOT, "%.5f", eval), g.getDouble("damping", 0),
                    g.getDouble("bits_per_weight", 0), g.getDouble("seconds", 0),
                    g.getType().containsField("starved") ? g.getString("starved", 0) : "none"); // reports written before the column
            tot[0] += g.getDouble("loss", 0);
            tot[1] += g.getDouble("bound", 0);
            tot[2] += g.getDouble("seconds", 0);
            n[0]++;
        });
        System.out.printf(Locale.ROOT, "%d layers: Σ loss %.6g, Σ bound %.6g, loss/bound %.4f, %.1f s of solver time%n", n[0], tot[0], tot[1],
                tot[0] / tot[1], tot[2]);
        return 0;
    }
}
