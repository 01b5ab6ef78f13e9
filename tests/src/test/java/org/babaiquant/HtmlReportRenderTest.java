package org.babaiquant;

import org.babaiquant.report.HtmlReport;
import org.babaiquant.report.RunData;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The page builder on hand-made records (the real runs are in HtmlReportTest): values an axis cannot show still get
 * a mark that says why, damping escalations and clipping are flagged by more than colour, layers come in model order.
 */
class HtmlReportRenderTest {
    private static RunData.Layer layer(String name, double loss, double bound, long clipped, double eval, int attempts) {
        return new RunData.Layer(name, "site", "gptq", "act-order", 4, 128, false, true, 8, 16, 100, loss, bound, loss / bound, clipped,
                0, eval, attempts > 1 ? 0.1 : 0.01, 0.5, attempts, 1.0, 4.25, "cpu", "cpu", 0.1, "none");
    }

    private static int count(String s, String regex) {
        Matcher m = Pattern.compile(regex).matcher(s);
        int n = 0;
        while (m.find()) {
            n++;
        }
        return n;
    }

    @Test
    void everyRowIsAMarkEvenWhereTheAxisCannotShowIt() {
        List<RunData.Layer> layers = List.of(layer("m.layers.10.w", 2.0, 6.0, 0, 0.01, 1), layer("m.layers.2.w", 0.0, 3.0, 5, Double.NaN, 3),
                layer("m.layers.1.w", 1.0, 3.0, 0, 0.02, 1));
        RunData.QuantizeRun run = new RunData.QuantizeRun("r", "/tmp/r", Map.of("method", "gptq"), layers.stream()
                .sorted(java.util.Comparator.comparing(RunData.Layer::layer, RunData.NATURAL)).toList(), List.of());
        String page = HtmlReport.render(new RunData("/tmp/r", List.of(run), List.of(), List.of()));
        // layer.1, layer.2, layer.10: model order, not string order
        assertTrue(page.indexOf("m.layers.1.w") < page.indexOf("m.layers.2.w") && page.indexOf("m.layers.2.w") < page.indexOf("m.layers.10.w"));
        for (String col : new String[] {"loss", "bound", "loss_over_bound", "clipped", "eval_rel_error", "bits_per_weight"}) {
            assertEquals(3, count(page, "class=\"mark[^\"]*\" data-series=\"[^\"]*\" data-row=\"\\d\" data-col=\"" + col + "\""), col);
        }
        // a zero loss on the log axis and an unmeasured held-out error: crosses on the floor, with the reason on hover
        assertEquals(2, count(page, "class=\"mark na\""));
        assertTrue(page.contains("not on this axis (≤ 0 on a log scale)") && page.contains("not measured"));
        // the clipped layer is a triangle in its own legend entry; the escalated layer carries a D with its meaning
        assertTrue(page.contains("layer with clipped weights (bound not guaranteed)"));
        assertEquals(1, count(page, "<path class=\"mark\" data-series=\"clipped\""));
        assertTrue(page.contains("damping escalated, 3 attempts"));
        assertTrue(page.contains("1/3: uniform rounding errors (theory)"));
        assertEquals(page, HtmlReport.render(new RunData("/tmp/r", List.of(run), List.of(), List.of())), "deterministic");
    }

    @Test
    void credentialsInUrisAreNeverShown() {
        RunData data = new RunData("s3a://AKIAEXAMPLE:s3cr3t@bucket/run", List.of(), List.of(),
                List.of("cannot read s3a://AKIAEXAMPLE:s3cr3t@bucket/run/evaluation/part-1.parquet"));
        String page = HtmlReport.render(data);
        assertTrue(page.contains("s3a://bucket/run"), page);
        assertTrue(!page.contains("s3cr3t") && !page.contains("AKIAEXAMPLE"), page);
        assertTrue(page.contains("Nothing to show"));
    }

    @Test
    void naturalOrderComparesNumbersAsNumbers() {
        List<String> names = new java.util.ArrayList<>(List.of("b.10", "b.9", "a.100.x", "a.20.x", "b.1"));
        names.sort(RunData.NATURAL);
        assertEquals(List.of("a.20.x", "a.100.x", "b.1", "b.9", "b.10"), names);
    }
}
