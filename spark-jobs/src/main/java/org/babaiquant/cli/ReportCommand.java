package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.report.HtmlReport;
import org.babaiquant.report.RunData;
import org.babaiquant.spark.HadoopConfs;
import org.babaiquant.spark.ModelWeights;
import org.babaiquant.spark.Uris;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code report URI [--html FILE]}: the error-bound summary of a quantize output (or of every run of a pipeline or
 * demo work folder) as a table, and optionally as one self-contained HTML page with charts. Anything missing or
 * unreadable is listed (stderr, and at the top of the page) instead of stopping the report.
 */
@Command(name = "report", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Print the per-layer error-bound report of a quantize output (OUT/reports), or of every run of a pipeline or",
                "demo work folder (WORK/quantized[/RUN]/reports, WORK/evaluation); --html also writes it as one self-contained",
                "HTML page with charts (no network needed to view it). Missing or unreadable parts are listed, not fatal;",
                "exit status 2 when the URI does not exist or holds nothing to report."})
public final class ReportCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "URI", description = "quantize --out, or a pipeline/demo work folder, or an evaluation table (local or s3a://)")
    String uri;

    @Option(names = "--html", paramLabel = "FILE", description = "also write the report as one HTML page (a local path or any Hadoop URI, e.g. s3a://)")
    String html;

    @Option(names = "--model", paramLabel = "URI", description = "the quantized model (safetensors or ONNX): layers in its order"
            + " (default: names with their numbers compared as numbers, e.g. layer.2 before layer.10)")
    String model;

    @Override
    public Integer call() {
        Configuration conf = HadoopConfs.fromEnvironmentAndSpark();
        RunData data = RunData.read(conf, uri, modelOrder(conf, model));
        for (RunData.QuantizeRun run : data.runs()) {
            if (data.runs().size() > 1) {
                System.out.println("== " + run.name() + " ==");
            }
            printRun(run);
        }
        if (!data.evaluations().isEmpty()) {
            printEvaluations(data.evaluations());
        }
        data.notes().forEach(System.out::println);
        List<String> problems = new java.util.ArrayList<>(data.problems());
        data.runs().forEach(r -> problems.addAll(r.problems()));
        for (String p : problems) {
            System.err.println("babai-quant report: warning: " + p);
        }
        if (html != null) {
            HtmlReport.write(conf, data, html);
            System.out.printf(Locale.ROOT, "wrote %s (%d run(s), %d evaluation row(s)%s)%n", Uris.redact(html), data.runs().size(), data.evaluations().size(),
                    problems.isEmpty() ? "" : "; " + problems.size() + " item(s) missing, listed at the top of the page");
        }
        if (data.isEmpty()) {
            System.err.println("babai-quant report: error: nothing to report under " + data.uri()
                    + " (no committed layer report and no evaluation row)" + (html == null ? "" : "; " + Uris.redact(html) + " says so"));
            return 2;
        }
        return 0;
    }

    /** The tensor names of {@code model} in its order (empty when null). */
    static List<String> modelOrder(Configuration conf, String model) {
        if (model == null) {
            return List.of();
        }
        try (ModelWeights m = ModelWeights.open(conf, model)) {
            return m.names();
        }
    }

    /**
     * For the commands that end with a report (demo, pipeline): writes the page of {@code uri} to {@code target}, layers
     * in {@code model}'s order when given, and says where it is.
     */
    public static void writeHtml(Configuration conf, String uri, String model, String target) {
        RunData data = RunData.read(conf, uri, modelOrder(conf, model));
        HtmlReport.write(conf, data, target);
        System.out.println("report: " + Uris.redact(target) + " (one HTML page; open it in a browser)");
    }

    private static void printRun(RunData.QuantizeRun run) {
        System.out.printf(Locale.ROOT, "%-48s %-6s %4s %5s %11s %11s %7s %8s %9s %8s %6s %7s %-8s%n", "layer", "method", "bits", "group",
                "loss", "bound", "l/b", "clipped", "eval_err", "damp", "bpw", "sec", "starved");
        for (RunData.Layer l : run.layers()) {
            System.out.printf(Locale.ROOT, "%-48s %-6s %4d %5d %11.5g %11.5g %7.4f %8d %9s %8.3g %6.3f %7.2f %-8s%n", l.layer(), l.method(),
                    l.bits(), l.groupSize(), l.loss(), l.bound(), l.lossOverBound(), l.clipped(),
                    Double.isNaN(l.evalRelError()) ? "-" : String.format(Locale.ROOT, "%.5f", l.evalRelError()), l.damping(),
                    l.bitsPerWeight(), l.seconds(), l.starved());
        }
        System.out.printf(Locale.ROOT, "%d layers: Σ loss %.6g, Σ bound %.6g, loss/bound %.4f, %.1f s of solver time%n", run.layers().size(),
                run.loss(), run.bound(), run.loss() / run.bound(), run.seconds());
    }

    private static void printEvaluations(List<RunData.Evaluation> rows) {
        System.out.printf(Locale.ROOT, "%-6s %4s %7s %9s %9s %9s %10s  %s%n", "method", "bits", "bits/w", "mean cos", "min cos", "retrieval",
                "loss/bound", "quantized");
        for (RunData.Evaluation e : rows) {
            System.out.printf(Locale.ROOT, "%-6s %4d %7.3f %9.4f %9.4f %8.0f%% %10.3f  %s%n", e.method(), e.bits(), e.bitsPerWeight(),
                    e.meanCosine(), e.minCosine(), 100 * e.retrievalAgreement(), e.meanLossOverBound(), e.quantized());
        }
    }
}
