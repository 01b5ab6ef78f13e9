package org.babaiquant.report;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.Path;
import org.babaiquant.io.Commit;
import org.babaiquant.io.LocalCommit;
import org.babaiquant.report.RunData.Evaluation;
import org.babaiquant.report.RunData.Layer;
import org.babaiquant.report.RunData.QuantizeRun;
import org.babaiquant.report.SvgChart.Axis;
import org.babaiquant.report.SvgChart.Shape;
import org.babaiquant.spark.HadoopCommit;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A run's report as one self-contained HTML page: inline CSS, inline SVG charts drawn here, a few lines of inline
 * script that sort the tables; nothing is fetched. Every chart is drawn from the same records as the table beside it
 * (each mark names its table cell and carries the cell's exact value), so picture and table cannot disagree; every
 * string from the data is escaped. What is missing from the run is said at the top.
 */
public final class HtmlReport {
    private HtmlReport() {}

    private static final Shape[] SHAPES = {Shape.CIRCLE, Shape.SQUARE, Shape.TRIANGLE, Shape.DIAMOND, Shape.STAR, Shape.RING, Shape.BAR};
    private static final String X_LAYER = "layer # in model order (see table)";
    private static final String SQUARED = "‖X′(q − w)‖², Hessian units";

    /**
     * Writes the page to {@code target} through the commit protocol (a temporary sibling, then a rename): a local
     * path directly (no checksum sidecar beside the page), any other URI ({@code s3a://}, {@code hdfs://}) through Hadoop.
     */
    public static void write(Configuration conf, RunData data, String target) {
        byte[] page = render(data).getBytes(StandardCharsets.UTF_8);
        String scheme = new Path(target).toUri().getScheme();
        try {
            if (scheme == null || scheme.equals("file")) {
                try (LocalCommit c = LocalCommit.file(java.nio.file.Path.of(new Path(target).toUri().getPath()), Commit.IfExists.REPLACE)) {
                    java.nio.file.Files.write(c.temp(), page);
                    c.commit();
                }
            } else {
                try (HadoopCommit c = HadoopCommit.file(conf, new Path(target), Commit.IfExists.REPLACE)) {
                    try (FSDataOutputStream out = c.fileSystem().create(c.temp(), false)) {
                        out.write(page);
                    }
                    c.commit();
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + target + ": " + e.getMessage(), e);
        }
    }

    /** The page. Deterministic: the same data gives the same bytes. */
    public static String render(RunData data) {
        StringBuilder sb = new StringBuilder(1 << 16);
        sb.append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
                .append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
                .append("<title>babai-quant report: ").append(Html.esc(data.uri())).append("</title><style>").append(CSS).append("</style></head>\n<body>");
        sb.append("<header><h1>babai-quant report</h1><p>Source: <code>").append(Html.esc(data.uri())).append("</code>: ")
                .append(data.runs().size()).append(" quantize run(s), ").append(data.evaluations().size()).append(" evaluation row(s).</p>");
        for (String n : data.notes()) {
            sb.append("<p class=\"note\">").append(Html.esc(n)).append("</p>");
        }
        sb.append(contents(data)).append("</header>\n<main>");
        sb.append(problems(data));
        if (!data.evaluations().isEmpty()) {
            sb.append(evaluation(data));
        }
        if (!data.runs().isEmpty()) {
            sb.append(overview(data.runs()));
            for (int i = 0; i < data.runs().size(); i++) {
                sb.append(run(i, data.runs().get(i)));
            }
        }
        sb.append("</main>\n").append(HOW_TO_READ).append("<script>").append(SORT_SCRIPT).append("</script></body></html>\n");
        return sb.toString();
    }

    private static String contents(RunData data) {
        StringBuilder sb = new StringBuilder("<nav aria-label=\"contents\"><ul>");
        if (!allProblems(data).isEmpty() || data.isEmpty()) {
            sb.append("<li><a href=\"#missing\">missing or unreadable</a></li>");
        }
        if (!data.evaluations().isEmpty()) {
            sb.append("<li><a href=\"#evaluation\">fidelity vs bits/weight</a></li>");
        }
        if (!data.runs().isEmpty()) {
            sb.append("<li><a href=\"#runs\">quantize runs</a></li>");
        }
        for (int i = 0; i < data.runs().size(); i++) {
            sb.append("<li><a href=\"#run-").append(i).append("\">").append(Html.esc(data.runs().get(i).name())).append("</a></li>");
        }
        return sb.append("</ul></nav>").toString();
    }

    private static List<String> allProblems(RunData data) {
        List<String> all = new ArrayList<>(data.problems());
        for (QuantizeRun r : data.runs()) {
            all.addAll(r.problems());
        }
        return all;
    }

    private static String problems(RunData data) {
        List<String> all = allProblems(data);
        if (all.isEmpty() && !data.isEmpty()) {
            return "";
        }
        StringBuilder sb = new StringBuilder("<section id=\"missing\" class=\"problems\" role=\"alert\"><h2><span aria-hidden=\"true\">⚠ </span>");
        if (data.isEmpty()) {
            sb.append("Nothing to show: this run has no committed layer report and no evaluation row</h2>");
        } else {
            sb.append("Missing or unreadable: ").append(all.size()).append(" item(s) left out of this report</h2>");
        }
        sb.append("<ul>");
        for (String p : all) {
            sb.append("<li>").append(Html.esc(p)).append("</li>");
        }
        return sb.append("</ul></section>\n").toString();
    }

    // ---------------------------------------------------------------- evaluation: fidelity vs bits per weight

    private static String evaluation(RunData data) {
        List<Evaluation> rows = new ArrayList<>(data.evaluations());
        Map<String, Integer> methodIndex = new LinkedHashMap<>();
        for (Evaluation e : rows) {
            methodIndex.putIfAbsent(e.method(), methodIndex.size());
        }
        rows.sort(Comparator.comparingInt(Evaluation::bits).thenComparingInt(e -> methodIndex.get(e.method())));
        StringBuilder sb = new StringBuilder("<section id=\"evaluation\"><h2>Fidelity vs bits per weight</h2>");
        sb.append("<p>One mark per evaluated run (method × budget): the quantized model's sentence embeddings against the original's on")
                .append(" held-out paragraphs. Bits per weight are measured from what is stored. Lines join a method's budgets.</p>");
        sb.append("<div class=\"charts\">");
        sb.append(fidelityChart(rows, methodIndex, "chart-eval-mean", "Mean cosine vs bits/weight", "mean cosine (1 = identical)",
                "mean_cosine", Evaluation::meanCosine, Html::fmt));
        sb.append(fidelityChart(rows, methodIndex, "chart-eval-min", "Worst paragraph's cosine vs bits/weight",
                "worst cosine (1 = identical)", "min_cosine", Evaluation::minCosine, Html::fmt));
        sb.append(fidelityChart(rows, methodIndex, "chart-eval-retrieval", "Retrieval agreement vs bits/weight",
                "agreement (fraction, 0–1)", "retrieval_agreement", Evaluation::retrievalAgreement, Html::pct));
        sb.append("</div>");
        Table t = new Table("t-eval", "Evaluation rows (click a column header to sort)");
        t.head("#", true).head("method", false).head("budget (grid bits)", true).head("bits/weight", true).head("mean cosine", true)
                .head("min cosine", true).head("retrieval agreement", true).head("mean loss/bound", true).head("layers", true)
                .head("paragraphs", true).head("eval seconds", true).head("quantized", false);
        for (int i = 0; i < rows.size(); i++) {
            Evaluation e = rows.get(i);
            t.row(i).num("index", i, Integer.toString(i)).text("method", e.method()).num("bits", e.bits(), e.bits() < 0 ? "mixed" : Integer.toString(e.bits()))
                    .num("bits_per_weight", e.bitsPerWeight()).num("mean_cosine", e.meanCosine()).num("min_cosine", e.minCosine())
                    .num("retrieval_agreement", e.retrievalAgreement(), Html.pct(e.retrievalAgreement()) + " (" + e.retrievalSame() + "/"
                            + e.paragraphs() + ")")
                    .num("mean_loss_over_bound", e.meanLossOverBound()).num("layers", e.layers(), Integer.toString(e.layers()))
                    .num("paragraphs", e.paragraphs(), Integer.toString(e.paragraphs())).num("seconds", e.seconds())
                    .text("quantized", e.quantized()).end();
        }
        sb.append(t.html()).append("</section>\n");
        return sb.toString();
    }

    private static String fidelityChart(List<Evaluation> rows, Map<String, Integer> methodIndex, String id, String title, String yLabel,
                                        String col, java.util.function.ToDoubleFunction<Evaluation> value,
                                        java.util.function.DoubleFunction<String> format) {
        double xlo = Double.POSITIVE_INFINITY;
        double xhi = Double.NEGATIVE_INFINITY;
        double ylo = Double.POSITIVE_INFINITY;
        double yhi = Double.NEGATIVE_INFINITY;
        for (Evaluation e : rows) {
            if (Double.isFinite(e.bitsPerWeight())) {
                xlo = Math.min(xlo, e.bitsPerWeight());
                xhi = Math.max(xhi, e.bitsPerWeight());
            }
            double v = value.applyAsDouble(e);
            if (Double.isFinite(v)) {
                ylo = Math.min(ylo, v);
                yhi = Math.max(yhi, v);
            }
        }
        Axis x = Axis.linear("bits per weight (stored bits ÷ weights)", finiteOr(xlo, 0) - 0.1, finiteOr(xhi, 1) + 0.2);
        Axis y = Axis.linear(yLabel, finiteOr(ylo, 0), finiteOr(yhi, 1));
        SvgChart c = new SvgChart(id, title, "t-eval", x, y);
        for (Map.Entry<String, Integer> m : methodIndex.entrySet()) {
            int k = m.getValue();
            c.series(m.getKey(), m.getKey().isEmpty() ? "(unknown method)" : m.getKey(), SHAPES[k % SHAPES.length],
                    SvgChart.COLOURS[k % SvgChart.COLOURS.length]);
        }
        for (String method : methodIndex.keySet()) {
            List<double[]> pts = rows.stream().filter(e -> e.method().equals(method))
                    .sorted(Comparator.comparingDouble(Evaluation::bitsPerWeight))
                    .map(e -> new double[] {e.bitsPerWeight(), value.applyAsDouble(e)}).toList();
            c.line(method, pts, method);
        }
        for (int i = 0; i < rows.size(); i++) {
            Evaluation e = rows.get(i);
            double v = value.applyAsDouble(e);
            c.mark(e.method(), i, col, e.bitsPerWeight(), v, String.format(Locale.ROOT, "#%d %s, budget %s bits: %s at %s bits/weight", i,
                    e.method(), e.bits() < 0 ? "mixed" : Integer.toString(e.bits()), format.apply(v), Html.fmt(e.bitsPerWeight())));
        }
        return c.svg();
    }

    private static double finiteOr(double v, double fallback) {
        return Double.isFinite(v) ? v : fallback;
    }

    // ---------------------------------------------------------------- quantize runs

    private static String overview(List<QuantizeRun> runs) {
        StringBuilder sb = new StringBuilder("<section id=\"runs\"><h2>Quantize runs</h2>");
        sb.append("<p>Totals over each run's committed layers. Σ loss / Σ bound near 1/3 is what uniformly distributed rounding errors")
                .append(" predict; the bound is guaranteed only where no weight was clipped.</p>");
        Table t = new Table("t-runs", "Runs (click a column header to sort)");
        t.head("#", true).head("run", false).head("method", false).head("bits", true).head("group size", true).head("order", false)
                .head("layers", true).head("weights", true).head("Σ loss", true).head("Σ bound", true).head("Σ loss / Σ bound", true)
                .head("clipped weights", true).head("damping escalations", true).head("bits/weight", true).head("mean held-out error", true)
                .head("solver seconds", true);
        for (int i = 0; i < runs.size(); i++) {
            QuantizeRun r = runs.get(i);
            Map<String, String> p = r.params();
            t.row(i).num("index", i, Integer.toString(i)).link("run", r.name(), "#run-" + i).text("method", p.getOrDefault("method", "?"))
                    .text("bits", p.getOrDefault("bits", "?")).text("group_size", p.getOrDefault("group_size", "?"))
                    .text("order", p.getOrDefault("order", "?")).num("layers", r.layers().size(), Integer.toString(r.layers().size()))
                    .num("weights", r.weights(), Long.toString(r.weights())).num("loss", r.loss()).num("bound", r.bound())
                    .num("loss_over_bound", r.loss() / r.bound()).num("clipped", r.clipped(), Long.toString(r.clipped()))
                    .num("escalations", r.escalations(), Long.toString(r.escalations())).num("bits_per_weight", r.bitsPerWeight())
                    .num("eval_rel_error", r.meanEvalRelError()).num("seconds", r.seconds()).end();
        }
        return sb.append(t.html()).append("</section>\n").toString();
    }

    private static String run(int index, QuantizeRun r) {
        String table = "t-run-" + index;
        List<Layer> ls = r.layers();
        StringBuilder sb = new StringBuilder("<section id=\"run-").append(index).append("\" class=\"run\"><h2>Run ")
                .append(Html.esc(r.name())).append("</h2><p class=\"uri\"><code>").append(Html.esc(r.uri())).append("</code></p>");
        if (!r.params().isEmpty()) {
            sb.append("<details class=\"params\"><summary>Parameters (from the outputs' footers)</summary><dl>");
            r.params().forEach((k, v) -> sb.append("<dt>").append(Html.esc(k)).append("</dt><dd>").append(Html.esc(v)).append("</dd>"));
            sb.append("</dl></details>");
        }
        if (!r.problems().isEmpty()) {
            sb.append("<p class=\"warn\"><span aria-hidden=\"true\">⚠ </span>").append(r.problems().size())
                    .append(" item(s) of this run are missing from the report: see the list at the top.</p>");
        }
        if (ls.isEmpty()) {
            return sb.append("<p>No committed layer: nothing to draw.</p></section>\n").toString();
        }
        sb.append(String.format(Locale.ROOT, "<p class=\"totals\">%d layers, %s weights: Σ loss %s, Σ bound %s, Σ loss / Σ bound %s; %s"
                        + " clipped weights; %d damping escalation(s); %s bits/weight; %s s of solver time.</p>", ls.size(), r.weights(),
                Html.fmt(r.loss()), Html.fmt(r.bound()), Html.fmt(r.loss() / r.bound()), r.clipped(), r.escalations(),
                Html.fmt(r.bitsPerWeight()), Html.fmt(r.seconds())));
        sb.append("<div class=\"charts\">");
        sb.append(lossBoundChart(index, ls, table)).append(ratioChart(index, ls, table)).append(clippedChart(index, ls, table));
        if (r.hasEvalError()) {
            sb.append(evalChart(index, ls, table));
        }
        sb.append(bitsChart(index, ls, table)).append("</div>");
        sb.append(layerTable(table, r)).append("</section>\n");
        return sb.toString();
    }

    private static String who(int i, Layer l) {
        return "#" + i + " " + l.layer();
    }

    private static String lossBoundChart(int run, List<Layer> ls, String table) {
        double lo = Double.POSITIVE_INFINITY;
        double hi = 0;
        for (Layer l : ls) {
            for (double v : new double[] {l.loss(), l.bound()}) {
                if (v > 0 && Double.isFinite(v)) {
                    lo = Math.min(lo, v);
                    hi = Math.max(hi, v);
                }
            }
        }
        SvgChart c = new SvgChart("chart-run-" + run + "-loss", "Loss and Babai bound per layer", table, Axis.index(X_LAYER, ls.size()),
                Axis.log(SQUARED, lo, hi))
                .series("loss", "loss ‖X′(q − w)‖²", Shape.CIRCLE, SvgChart.COLOURS[0])
                .series("bound", "Babai bound ¼ Σ s²/U² (guaranteed only without clipping)", Shape.BAR, SvgChart.COLOURS[1]);
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            c.mark("loss", i, "loss", i, l.loss(), who(i, l) + ": loss " + Html.fmt(l.loss()));
            c.mark("bound", i, "bound", i, l.bound(), who(i, l) + ": bound " + Html.fmt(l.bound())
                    + (l.clipped() > 0 ? " (not guaranteed: " + l.clipped() + " weights clipped)" : ""));
        }
        flagEscalations(c, ls, Layer::loss);
        return c.svg();
    }

    private static void flagEscalations(SvgChart c, List<Layer> ls, java.util.function.ToDoubleFunction<Layer> at) {
        boolean any = false;
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            if (l.dampingEscalated()) {
                any = true;
                c.flag(i, at.applyAsDouble(l), "D", who(i, l) + ": damping escalated, " + l.dampingAttempts() + " attempts, damping "
                        + Html.fmt(l.damping()) + " × mean diag H");
            }
        }
        if (any) {
            c.note("D above a mark: the Cholesky factorisation needed more damping than requested (damping escalated)");
        }
    }

    private static String ratioChart(int run, List<Layer> ls, String table) {
        double hi = 1.05;
        for (Layer l : ls) {
            if (Double.isFinite(l.lossOverBound())) {
                hi = Math.max(hi, l.lossOverBound());
            }
        }
        SvgChart c = new SvgChart("chart-run-" + run + "-ratio", "Loss / Babai bound per layer", table, Axis.index(X_LAYER, ls.size()),
                Axis.linear("loss ÷ bound (no unit)", 0, hi))
                .series("ok", "layer without clipping (ratio ≤ 1 guaranteed)", Shape.CIRCLE, SvgChart.COLOURS[0])
                .series("clipped", "layer with clipped weights (bound not guaranteed)", Shape.TRIANGLE, SvgChart.COLOURS[1])
                .hline(1.0 / 3, "1/3: uniform rounding errors (theory)", "third")
                .hline(1, "1: the Babai bound", "one");
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            c.mark(l.clipped() > 0 ? "clipped" : "ok", i, "loss_over_bound", i, l.lossOverBound(), who(i, l) + ": loss/bound "
                    + Html.fmt(l.lossOverBound()) + (l.clipped() > 0 ? ", " + l.clipped() + " weights clipped" : ""));
        }
        flagEscalations(c, ls, Layer::lossOverBound);
        return c.svg();
    }

    private static String clippedChart(int run, List<Layer> ls, String table) {
        long max = ls.stream().mapToLong(Layer::clipped).max().orElse(0);
        SvgChart c = new SvgChart("chart-run-" + run + "-clipped", "Clipped weights per layer", table, Axis.index(X_LAYER, ls.size()),
                Axis.linear("clipped weights (count)", 0, Math.max(max, 1)))
                .series("clipped", "weights whose code was clipped to the grid", Shape.CIRCLE, SvgChart.COLOURS[1]);
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            c.stem("clipped", i, l.clipped());
            c.mark("clipped", i, "clipped", i, l.clipped(), who(i, l) + ": " + l.clipped() + " clipped weights ("
                    + Html.pct((double) l.clipped() / l.weights()) + ")");
        }
        if (max == 0) {
            c.note("no weight was clipped: the Babai bound holds for every layer");
        }
        return c.svg();
    }

    private static String evalChart(int run, List<Layer> ls, String table) {
        double hi = ls.stream().mapToDouble(Layer::evalRelError).filter(Double::isFinite).max().orElse(1);
        SvgChart c = new SvgChart("chart-run-" + run + "-eval", "Held-out relative output error per layer", table,
                Axis.index(X_LAYER, ls.size()), Axis.linear("relative error (no unit)", 0, hi))
                .series("eval", "held-out relative error ‖Xe(W − Q)ᵀ‖ / ‖Xe Wᵀ‖ (× on the floor: not measured)", Shape.DIAMOND, SvgChart.COLOURS[2]);
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            c.mark("eval", i, "eval_rel_error", i, l.evalRelError(), who(i, l) + ": held-out error " + Html.fmt(l.evalRelError()));
        }
        return c.svg();
    }

    private static String bitsChart(int run, List<Layer> ls, String table) {
        double lo = ls.stream().mapToDouble(Layer::bitsPerWeight).filter(Double::isFinite).min().orElse(0);
        double hi = ls.stream().mapToDouble(Layer::bitsPerWeight).filter(Double::isFinite).max().orElse(1);
        SvgChart c = new SvgChart("chart-run-" + run + "-bits", "Bits per weight per layer", table, Axis.index(X_LAYER, ls.size()),
                Axis.linear("bits per weight", Math.floor(lo), Math.ceil(hi + 1e-9)))
                .series("bpw", "bits per weight as stored (stored bits ÷ weights)", Shape.SQUARE, SvgChart.COLOURS[4]);
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            c.mark("bpw", i, "bits_per_weight", i, l.bitsPerWeight(), who(i, l) + ": " + Html.fmt(l.bitsPerWeight()) + " bits/weight");
        }
        return c.svg();
    }

    private static String layerTable(String id, QuantizeRun r) {
        List<Layer> ls = r.layers();
        Table t = new Table(id, "Layers of " + r.name() + " in model order (click a column header to sort)");
        t.head("#", true).head("layer", false).head("site", false).head("rows", true).head("cols", true).head("loss", true)
                .head("bound", true).head("loss/bound", true).head("clipped", true).head("bound violations", true)
                .head("held-out error", true).head("damping used", true).head("damping attempts", true).head("escalated", false)
                .head("bits/weight", true).head("seconds", true).head("device", false).head("starved-expert rule", false);
        for (int i = 0; i < ls.size(); i++) {
            Layer l = ls.get(i);
            t.row(i).num("index", i, Integer.toString(i)).text("layer", l.layer()).text("site", l.site())
                    .num("rows", l.rows(), Integer.toString(l.rows())).num("cols", l.cols(), Integer.toString(l.cols()))
                    .num("loss", l.loss()).num("bound", l.bound()).num("loss_over_bound", l.lossOverBound())
                    .num("clipped", l.clipped(), Long.toString(l.clipped())).num("bound_violations", l.boundViolations(),
                            Integer.toString(l.boundViolations()))
                    .num("eval_rel_error", l.evalRelError()).num("damping", l.damping())
                    .num("damping_attempts", l.dampingAttempts(), Integer.toString(l.dampingAttempts()))
                    .text("escalated", l.dampingEscalated() ? "yes (D)" : "no").num("bits_per_weight", l.bitsPerWeight())
                    .num("seconds", l.seconds()).text("device", l.backend() + " " + l.device()).text("starved", l.starved()).end();
        }
        return "<details class=\"table\"><summary>Table: " + ls.size() + " layers, the numbers of the charts above</summary>" + t.html()
                + "</details>";
    }

    /** A sortable table: every cell carries its column key and its exact value (data-col, data-v). */
    private static final class Table {
        private final StringBuilder head = new StringBuilder();
        private final StringBuilder body = new StringBuilder();
        private final String id;
        private final String caption;

        Table(String id, String caption) {
            this.id = id;
            this.caption = caption;
        }

        Table head(String label, boolean numeric) {
            head.append("<th scope=\"col\" aria-sort=\"none\" data-type=\"").append(numeric ? "num" : "text").append("\"><button type=\"button\">")
                    .append(Html.esc(label)).append("</button></th>");
            return this;
        }

        Table row(int row) {
            body.append("<tr data-row=\"").append(row).append("\">");
            return this;
        }

        Table num(String col, double v) {
            return num(col, v, Html.fmt(v));
        }

        Table num(String col, double v, String shown) {
            body.append("<td class=\"n\" data-col=\"").append(col).append("\" data-v=\"").append(Html.num(v)).append("\">")
                    .append(Html.esc(shown)).append("</td>");
            return this;
        }

        Table text(String col, String s) {
            body.append("<td data-col=\"").append(col).append("\" data-v=\"").append(Html.esc(s)).append("\">").append(Html.esc(s)).append("</td>");
            return this;
        }

        Table link(String col, String s, String href) {
            body.append("<td data-col=\"").append(col).append("\" data-v=\"").append(Html.esc(s)).append("\"><a href=\"").append(Html.esc(href))
                    .append("\">").append(Html.esc(s)).append("</a></td>");
            return this;
        }

        Table end() {
            body.append("</tr>");
            return this;
        }

        String html() {
            return "<div class=\"scroll\"><table class=\"sortable\" id=\"" + Html.esc(id) + "\"><caption>" + Html.esc(caption) + "</caption><thead><tr>"
                    + head + "</tr></thead><tbody>" + body + "</tbody></table></div>";
        }
    }

    private static final String CSS = String.join("\n",
            "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1a1a1a;background:#fff;margin:0 auto;padding:0 12px 24px;max-width:1400px}",
            "h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}code{overflow-wrap:anywhere}",
            "nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:0;list-style:none}",
            ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:12px}",
            "figure.chart{margin:0;border:1px solid #ddd;padding:4px;min-width:0}figure.chart svg.plot{width:100%;height:auto;display:block}",
            "svg.swatch{width:14px;height:14px;display:inline-block;vertical-align:-2px}",
            "figcaption ul.legend{list-style:none;margin:4px 0;padding:0;font-size:.85rem}figcaption li{margin:2px 0}",
            "svg .grid{stroke:#e6e6e6}svg .axis,svg .tickmark{stroke:#333}svg text{font-size:14px;fill:#222}",
            "svg .chart-title{font-weight:600;font-size:16px}svg .axis-label{font-size:14px}",
            "svg .ref{stroke-width:1.5}svg .ref.third{stroke:#333;stroke-dasharray:6 4}svg .ref.one{stroke:#999;stroke-dasharray:2 3}",
            "svg .ref-label{font-size:13px;paint-order:stroke;stroke:#fff;stroke-width:3px}svg .link{fill:none;stroke-width:1.5;opacity:.6}svg .stem{stroke-width:1.5;opacity:.5}",
            "svg .mark.na{fill:none;stroke-width:2}svg .flag{font-size:13px;font-weight:700}svg .end-label{font-size:13px}",
            "svg .mark:hover{stroke:#000;stroke-width:2}",
            ".scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:.85rem;margin:6px 0}",
            "caption{text-align:left;font-weight:600;padding:4px 0}th,td{border:1px solid #ddd;padding:3px 6px}td.n{text-align:right;font-variant-numeric:tabular-nums}",
            "th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer;text-align:left}",
            "th[aria-sort=ascending] button::after{content:' ▲'}th[aria-sort=descending] button::after{content:' ▼'}",
            "tbody tr:nth-child(even){background:#f6f6f6}",
            ".problems{border:2px solid #D55E00;padding:4px 12px;margin-top:1rem}.problems li,.warn{overflow-wrap:anywhere}",
            "details{margin:8px 0}summary{cursor:pointer;font-weight:600}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}",
            "dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}footer{margin-top:2rem;font-size:.9rem;border-top:1px solid #ccc}");

    private static final String HOW_TO_READ = "<footer><h2>How to read this page</h2><ul>"
            + "<li><b>loss</b> = Σ over output rows of the damped squared output error ‖X′(q − w)‖² in the Hessian's units (H = XᵀX"
            + " summed over calibration tokens); <b>bound</b> = Babai's nearest-plane bound ¼ Σ s²/U² (GPTQ run back to front is"
            + " Babai's algorithm, arXiv 2507.18553). It holds for every row where no weight was clipped.</li>"
            + "<li><b>loss/bound ≈ 1/3</b> is what rounding errors uniform on [−s/2, s/2] predict (their mean square is s²/12 against"
            + " the bound's s²/4); RTN is measured against the same bound for comparison only.</li>"
            + "<li><b>clipped</b>: weights whose code fell outside the grid and was clipped; <b>D</b>: the Cholesky factorisation needed"
            + " more damping than requested; <b>held-out error</b>: ‖Xe(W − Q)ᵀ‖/‖Xe Wᵀ‖ on held-out inputs, where measured.</li>"
            + "<li>Every mark shows one table cell: hover it for its value; the tables hold the same numbers (5 significant digits"
            + " shown, the exact value in the cell's data). Marks differ by shape as well as colour; × on a chart's floor marks a value"
            + " that was not measured or cannot be drawn on that axis.</li></ul></footer>";

    /** Click a header to sort its table (numbers by value, NaN last; text by locale order); again to reverse. */
    private static final String SORT_SCRIPT = String.join("\n",
            "document.querySelectorAll('table.sortable').forEach(function(t){",
            " t.querySelectorAll('thead th').forEach(function(th,ci){",
            "  th.querySelector('button').addEventListener('click',function(){",
            "   var asc=th.getAttribute('aria-sort')!=='ascending', num=th.dataset.type==='num', b=t.tBodies[0];",
            "   var rows=Array.prototype.slice.call(b.rows);",
            "   rows.sort(function(r,s){var a=r.cells[ci].dataset.v, c=s.cells[ci].dataset.v, d;",
            "    if(num){a=parseFloat(a);c=parseFloat(c);if(isNaN(a)||isNaN(c))return isNaN(a)-isNaN(c);d=a-c;}",
            "    else d=a.localeCompare(c);",
            "    return asc?d:-d;});",
            "   rows.forEach(function(r){b.appendChild(r);});",
            "   t.querySelectorAll('thead th').forEach(function(h){h.setAttribute('aria-sort','none');});",
            "   th.setAttribute('aria-sort',asc?'ascending':'descending');});});});",
            "document.documentElement.setAttribute('data-sortable','ready');");
}
