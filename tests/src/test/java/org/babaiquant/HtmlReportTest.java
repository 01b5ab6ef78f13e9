package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.example.data.Group;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.onnx.EvaluationReport;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@code report --html} on real runs: the demo (capture on Brown text, Hessians, RTN/GPTQ/HPTQ at two budgets,
 * evaluation on Austen paragraphs) and the repository pipeline (MiniLM layer 0, held-out error), rendered in headless
 * Chromium. From the DOM: the page's script ran, every chart has exactly one mark per table row and column it draws,
 * every mark carries its table cell's value, the tables hold the Parquet's values, marks sit in the order of their
 * values, and a narrow window needs no page-wide horizontal scrolling. From screenshots: every mark changed pixels
 * (the page with marks against the same page with marks hidden). Partial and malformed run folders give a page that
 * lists what is missing. Skips (assumption) the browser checks only where no chromium is installed.
 */
class HtmlReportTest {
    private static final Configuration CONF = new Configuration();

    @TempDir
    static Path shared;
    static Path demo;
    static QuantizeLayerCliTest.Run demoRun;

    @BeforeAll
    static void runTheDemo() {
        // -Dbabai.test.demo-work=DIR keeps the demo's work folder between runs (the demo then only redoes its evaluation)
        String kept = System.getProperty("babai.test.demo-work");
        demo = kept != null ? Path.of(kept) : shared.resolve("demo");
        if (kept != null && Files.isDirectory(demo.resolve("evaluation"))) {
            try {
                deleteTree(demo.resolve("evaluation")); // a rerun adds its rows to the table
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
        demoRun = QuantizeLayerCliTest.run("demo", "--work", demo.toString(), "--calib-paragraphs", "16", "--rows-per-seq", "32",
                "--eval-paragraphs", "8", "--bits", "3,4", "--methods", "rtn,gptq");
        System.out.println(demoRun.out());
        assertEquals(0, demoRun.status(), demoRun.out() + demoRun.err());
    }

    private static HeadlessChromium chromium() {
        HeadlessChromium c = HeadlessChromium.find(shared);
        assumeTrue(c != null, "no chromium on PATH: the browser checks are skipped (apt-get install -y chromium)");
        return c;
    }

    private static QuantizeLayerCliTest.Run report(String uri, Path html, String... extra) {
        List<String> args = new ArrayList<>(List.of("report", uri, "--html", html.toString()));
        args.addAll(List.of(extra));
        return QuantizeLayerCliTest.run(args.toArray(String[]::new));
    }

    @Test
    void demoReportDrawsEveryRowAndHoldsTheParquetValuesInChromium(@TempDir Path tmp) throws Exception {
        // the page the demo wrote at its end is the one `report WORK --html FILE --model ONNX` writes, byte for byte
        Path html = demo.resolve("report.html");
        assertTrue(demoRun.out().contains("report: " + html), demoRun.out());
        Path again = tmp.resolve("report.html");
        QuantizeLayerCliTest.Run r = report(demo.toString(), again, "--model", org.babaiquant.onnx.BundledMiniLm.onnx().toString());
        assertEquals(0, r.status(), r.out() + r.err());
        assertEquals("", r.err(), "a complete demo run has nothing missing");
        assertEquals(Files.readString(again), Files.readString(html));
        String page = Files.readString(html);
        assertFalse(page.matches("(?s).*(https?:)?//[a-z0-9.-]+\\.[a-z]{2,}/.*(src|href)=.*") || page.contains("src=\"http")
                || page.contains("href=\"http"), "self-contained: nothing to fetch");

        HeadlessChromium chromium = chromium();
        Rendered dom = Rendered.of(chromium, html, tmp, 1280);
        assertEquals("ready", dom.root.get("data-sortable"), "the page's script ran to its end");
        // four runs (2 methods × 2 budgets), 36 linears each, and six evaluation rows
        assertEquals(4, dom.tableRows("t-runs").size());
        List<Group> evals = EvaluationReport.read(CONF, demo.resolve("evaluation").toString());
        assertEquals(4, evals.size());
        Map<String, Map<String, String>> evalTable = dom.tableRows("t-eval");
        assertEquals(4, evalTable.size());
        for (Group g : evals) {
            Map<String, String> row = evalTable.values().stream().filter(c -> c.get("quantized").equals(g.getString("quantized", 0)))
                    .findFirst().orElseThrow(() -> new AssertionError("no table row for " + g.getString("quantized", 0)));
            for (String col : new String[] {"bits_per_weight", "mean_cosine", "min_cosine", "retrieval_agreement", "mean_loss_over_bound"}) {
                assertEquals(g.getDouble(col, 0), Double.parseDouble(row.get(col)), 0.0, col + " of " + row.get("quantized"));
            }
            assertEquals(g.getString("method", 0), row.get("method"));
            assertEquals(g.getInteger("bits", 0), Double.parseDouble(row.get("bits")), 0.0);
        }
        int runTables = 0;
        for (String table : dom.tables()) {
            if (!table.startsWith("t-run-")) {
                continue;
            }
            runTables++;
            Map<String, Map<String, String>> rows = dom.tableRows(table);
            assertEquals(36, rows.size(), table);
            String runUri = dom.runUri(table);
            Map<String, Group> parquet = new HashMap<>();
            QuantizedLayout.readAll(CONF, runUri, "reports", g -> parquet.put(g.getString("layer", 0), g));
            assertEquals(36, parquet.size(), runUri);
            for (Map<String, String> row : rows.values()) {
                Group g = parquet.get(row.get("layer"));
                assertNotNull(g, "table row " + row + " is a layer of " + runUri);
                for (String col : new String[] {"loss", "bound", "loss_over_bound", "eval_rel_error", "damping", "bits_per_weight", "seconds"}) {
                    assertEquals(g.getDouble(col, 0), Double.parseDouble(row.get(col)), 0.0, col + " of " + row.get("layer"));
                }
                assertEquals(g.getLong("clipped", 0), Double.parseDouble(row.get("clipped")), 0.0);
                assertEquals(g.getInteger("damping_attempts", 0), Double.parseDouble(row.get("damping_attempts")), 0.0);
            }
            // model order: layer.N blocks in numeric order
            List<Integer> blocks = rows.values().stream().map(c -> Integer.parseInt(c.get("layer").replaceAll(".*layer\\.(\\d+)/.*", "$1"))).toList();
            assertEquals(blocks.stream().sorted().toList(), blocks, "layers in model order");
        }
        assertEquals(4, runTables);
        // every run draws loss+bound, ratio, clipped and bits charts; the evaluation draws three
        assertEquals(4 * 4 + 3, dom.charts().size());
        dom.assertEveryChartDrawsEveryRowWithItsTableValue();
        dom.assertMarksSitInTheOrderOfTheirValues();
        dom.assertEveryMarkChangedPixels(chromium, html, tmp);

        Rendered narrow = Rendered.of(chromium, html, tmp, 360);
        assertTrue(Integer.parseInt(narrow.root.get("data-sw")) <= Integer.parseInt(narrow.root.get("data-cw")),
                "a 360 px window needs no page-wide horizontal scrolling: " + narrow.root);
    }

    /** Copies a local folder tree. */
    private static void copy(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path d = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(d);
                } else {
                    Files.copy(p, d);
                }
            }
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }

    /**
     * The repository pipeline's run (MiniLM layer 0, held-out error) with one layer's report removed (shards and
     * rows left: an interrupted layer), one report truncated and a non-Parquet file in the evaluation table: the
     * command warns about each by name and the page lists them above what is still there.
     */
    @Test
    void partialRunGivesAPageThatListsWhatIsMissing(@TempDir Path tmp) throws Exception {
        // the pipeline's report stage wrote its page into the quantize output
        String pipelinePage = Files.readString(PipelineTest.LocalRun.work().resolve("quantized/report.html"));
        assertEquals(6, pipelinePage.split("data-col=\"layer\"", -1).length - 1, "six layers in the pipeline's page");
        Path work = tmp.resolve("work");
        copy(PipelineTest.LocalRun.work().resolve("quantized"), work.resolve("quantized"));
        copy(demo.resolve("evaluation"), work.resolve("evaluation"));
        Path whole = tmp.resolve("whole.html");
        QuantizeLayerCliTest.Run full = report(work.toString(), whole);
        assertEquals(0, full.status(), full.err());
        assertEquals("", full.err());
        assertTrue(Files.readString(whole).contains("chart-run-0-eval"), "the pipeline measured held-out error: its chart is drawn");

        deleteTree(work.resolve("quantized/reports/layer=encoder.layer.0.output.dense.weight"));
        Path key = work.resolve("quantized/reports/layer=encoder.layer.0.attention.self.key.weight/part-00000.parquet");
        byte[] bytes = Files.readAllBytes(key);
        Files.write(key, java.util.Arrays.copyOf(bytes, bytes.length / 2));
        Files.writeString(work.resolve("evaluation/part-garbage.parquet"), "not <b>Parquet</b>");
        try (Stream<Path> parts = Files.list(work.resolve("evaluation"))) { // a rerun's row of the same quantized output
            Path one = parts.filter(p -> p.getFileName().toString().endsWith(".parquet") && !p.toString().contains("garbage")).findFirst().orElseThrow();
            Files.copy(one, work.resolve("evaluation/part-rerun.parquet"));
        }
        Path html = tmp.resolve("partial.html");
        QuantizeLayerCliTest.Run r = report(work.toString(), html);
        assertEquals(0, r.status(), r.err());
        List<String> warnings = r.err().lines().toList();
        assertEquals(3, warnings.size(), r.err());
        assertTrue(warnings.stream().anyMatch(w -> w.contains("layer=encoder.layer.0.output.dense.weight") && w.contains("not committed")), r.err());
        assertTrue(warnings.stream().anyMatch(w -> w.contains("cannot read") && w.contains("attention.self.key.weight/part-00000.parquet")), r.err());
        assertTrue(warnings.stream().anyMatch(w -> w.contains("cannot read") && w.contains("part-garbage.parquet")), r.err());
        assertTrue(r.out().contains("4 layers: Σ loss"), r.out());
        assertTrue(r.out().contains("1 older evaluation row(s) of the same quantized outputs"), r.out());
        String page = Files.readString(html);
        assertTrue(page.contains("Missing or unreadable: 3 item(s)"), page);
        assertFalse(page.contains("not <b>Parquet</b>"));

        HeadlessChromium chromium = chromium();
        Rendered dom = Rendered.of(chromium, html, tmp, 1000);
        assertEquals("ready", dom.root.get("data-sortable"));
        assertEquals(3, dom.tags.stream().filter(t -> t.name().equals("li") && t.at() > dom.dom.indexOf("id=\"missing\"")
                && t.at() < dom.dom.indexOf("</section>", dom.dom.indexOf("id=\"missing\""))).count());
        assertEquals(4, dom.tableRows("t-run-0").size());
        assertEquals(4, dom.tableRows("t-eval").size(), "the rerun's row replaces the older one of the same run");
        dom.assertEveryChartDrawsEveryRowWithItsTableValue();
        dom.assertEveryMarkChangedPixels(chromium, html, tmp);
    }

    /** An empty folder: exit 2 with one line, and a page that says there is nothing; a missing URI: exit 2, no page. */
    @Test
    void emptyOrMissingRunFolder(@TempDir Path tmp) throws Exception {
        Path empty = Files.createDirectories(tmp.resolve("empty run"));
        Path html = tmp.resolve("empty.html");
        QuantizeLayerCliTest.Run r = report(empty.toString(), html);
        assertEquals(2, r.status(), r.out() + r.err());
        List<String> errors = r.err().lines().filter(l -> l.contains("error:")).toList();
        assertEquals(1, errors.size(), r.err());
        assertTrue(errors.get(0).contains("nothing to report under " + empty), r.err());
        assertTrue(Files.readString(html).contains("Nothing to show"));

        Path missing = tmp.resolve("no such run");
        Path none = tmp.resolve("none.html");
        QuantizeLayerCliTest.Run m = report(missing.toString(), none);
        assertEquals(2, m.status());
        assertTrue(m.err().contains(missing + " does not exist"), m.err());
        assertFalse(Files.exists(none), "no page for a URI that does not exist");

        HeadlessChromium chromium = chromium();
        Rendered dom = Rendered.of(chromium, html, tmp, 800);
        assertEquals("ready", dom.root.get("data-sortable"));
        assertTrue(dom.dom.contains("Nothing to show"));
        assertTrue(dom.charts().isEmpty());
    }

    /**
     * A layer whose name is markup: quantized for real (the MiniLM query weight under that name, the pipeline's
     * Hessians), the page shows the name as text everywhere and runs no script but its own.
     */
    @Test
    void namesFromTheDataAreEscaped(@TempDir Path tmp) throws Exception {
        String evil = "enc<script>alert(\"x\")</script>&'<img src=x onerror=alert(1)>q.weight";
        Path model = tmp.resolve("model.safetensors");
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        tensors.put(evil, Npy.readMatrix(RealData.miniLm().resolve("weights/layer0_q_proj.weight.npy")));
        SafeTensorsWriter.write(model, tensors, "F32");
        Path out = tmp.resolve("q");
        MethodSpec spec = MethodSpec.grid("gptq", new QuantGrid.Spec(4, 128, false, false), ColumnOrder.ACT_ORDER, true, 0.01);
        QuantizeJob.run(SparkTestSession.get(), new QuantizeJob.Config(model.toString(), PipelineTest.LocalRun.work().resolve("hessians").toString(),
                out.toString(), spec, null, List.of("enc.*q\\.weight=layer0_attn_in"), null, null, 0, "auto", 0, false), s -> { });
        Path html = tmp.resolve("evil.html");
        QuantizeLayerCliTest.Run r = report(out.toString(), html);
        assertEquals(0, r.status(), r.err());
        String page = Files.readString(html);
        assertFalse(page.contains("<script>alert") || page.contains("<img"), "markup from the data is never markup on the page");
        assertTrue(page.contains("enc&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;&lt;img src=x onerror=alert(1)&gt;q.weight"));

        HeadlessChromium chromium = chromium();
        Rendered dom = Rendered.of(chromium, html, tmp, 1000);
        assertEquals("ready", dom.root.get("data-sortable"));
        assertEquals(List.of("script", "script"), dom.tags.stream().map(HeadlessChromium.Tag::name).filter(n -> n.equals("script")).toList(),
                "the page's script and the test's probe, nothing else");
        assertTrue(dom.tags.stream().noneMatch(t -> t.name().equals("img")));
        assertEquals(evil, dom.tableRows("t-run-0").get("0").get("layer"));
        dom.assertEveryChartDrawsEveryRowWithItsTableValue();
    }

    /** A run in an S3 bucket (a real S3 server): read through s3a://, the page written there, no temporary file left. */
    @Test
    void reportsAnS3aRunAndWritesThePageThere(@TempDir Path tmp) throws Exception {
        try (S3TestServer s3 = S3TestServer.start(tmp.resolve("s3"), false, "report-runs")) {
            Path settings = s3.writeSettingsFile(tmp.resolve("s3a.properties"));
            Configuration s3conf = s3.configure(new Configuration());
            org.apache.hadoop.fs.Path remote = new org.apache.hadoop.fs.Path("s3a://report-runs/r1/quantized");
            org.apache.hadoop.fs.FileSystem s3fs = remote.getFileSystem(s3conf);
            org.apache.hadoop.fs.FileUtil.copy(org.apache.hadoop.fs.FileSystem.getLocal(CONF),
                    new org.apache.hadoop.fs.Path(PipelineTest.LocalRun.work().resolve("quantized").toString()), s3fs, remote, false, s3conf);
            String previous = System.getProperty(org.babaiquant.spark.HadoopConfs.FILE_PROPERTY);
            System.setProperty(org.babaiquant.spark.HadoopConfs.FILE_PROPERTY, settings.toString());
            QuantizeLayerCliTest.Run r;
            try {
                r = QuantizeLayerCliTest.run("report", "s3a://report-runs/r1", "--html", "s3a://report-runs/r1/report.html");
            } finally {
                if (previous == null) {
                    System.clearProperty(org.babaiquant.spark.HadoopConfs.FILE_PROPERTY);
                } else {
                    System.setProperty(org.babaiquant.spark.HadoopConfs.FILE_PROPERTY, previous);
                }
            }
            assertEquals(0, r.status(), r.out() + r.err());
            assertTrue(r.out().contains("6 layers: Σ loss"), r.out());
            String page;
            try (java.io.InputStream in = s3fs.open(new org.apache.hadoop.fs.Path("s3a://report-runs/r1/report.html"))) {
                page = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            assertEquals(6, page.split("data-col=\"layer\"", -1).length - 1, "six layers in the page's table");
            assertTrue(page.contains("s3a://report-runs/r1"));
            List<String> names = new ArrayList<>();
            for (org.apache.hadoop.fs.FileStatus st : s3fs.listStatus(new org.apache.hadoop.fs.Path("s3a://report-runs/r1"))) {
                names.add(st.getPath().getName());
            }
            assertEquals(List.of("quantized", "report.html"), names.stream().sorted().toList(), "no temporary file left: " + names);
        }
    }

    /** The page, its DOM after Chromium ran it (with mark positions recorded by an injected script), parsed. */
    static final class Rendered {
        final String dom;
        final List<HeadlessChromium.Tag> tags;
        final HeadlessChromium.Tag root;
        final Path instrumented;
        final int width;
        final int height;

        private Rendered(String dom, Path instrumented, int width) {
            this.dom = dom;
            this.tags = HeadlessChromium.tags(dom);
            this.root = tags.stream().filter(t -> t.name().equals("html")).findFirst().orElseThrow();
            this.instrumented = instrumented;
            this.width = width;
            this.height = Integer.parseInt(root.get("data-sh"));
        }

        /** Records layout facts into attributes: page size, and each mark's centre in page pixels. */
        private static final String PROBE = "<script>(function(){var d=document.documentElement;"
                + "d.setAttribute('data-sw',d.scrollWidth);d.setAttribute('data-cw',d.clientWidth);d.setAttribute('data-sh',d.scrollHeight);"
                + "document.querySelectorAll('.mark').forEach(function(m){var r=m.getBoundingClientRect();"
                + "m.setAttribute('data-px',(r.left+r.width/2+scrollX).toFixed(1));m.setAttribute('data-py',(r.top+r.height/2+scrollY).toFixed(1));});"
                + "})();</script>";

        static Rendered of(HeadlessChromium chromium, Path html, Path tmp, int width) throws Exception {
            String page = Files.readString(html, StandardCharsets.UTF_8);
            Path probed = tmp.resolve("probed-" + width + ".html");
            Files.writeString(probed, page.replace("</body>", PROBE + "</body>"), StandardCharsets.UTF_8);
            // once to learn the page height, once laid out in a window that shows all of it (as the screenshots are)
            Rendered first = new Rendered(chromium.dumpDom(probed, width, 800), probed, width);
            return new Rendered(chromium.dumpDom(probed, width, first.height), probed, width);
        }

        List<String> tables() {
            return tags.stream().filter(t -> t.name().equals("table")).map(t -> t.get("id")).toList();
        }

        List<String> charts() {
            return tags.stream().filter(t -> t.name().equals("svg") && t.get("id") != null).map(t -> t.get("id")).toList();
        }

        /** The run URI printed above a run's table (the section's code element). */
        String runUri(String table) {
            String section = "run-" + table.substring("t-run-".length());
            int at = tags.stream().filter(t -> section.equals(t.get("id"))).findFirst().orElseThrow().at();
            int code = dom.indexOf("<code>", at) + "<code>".length();
            return HeadlessChromium.unescape(dom.substring(code, dom.indexOf("</code>", code)));
        }

        /** Row (data-row) → column (data-col) → exact value (data-v) of one table. */
        Map<String, Map<String, String>> tableRows(String id) {
            Map<String, Map<String, String>> rows = new LinkedHashMap<>();
            boolean in = false;
            Map<String, String> row = null;
            int end = -1;
            for (HeadlessChromium.Tag t : tags) {
                if (t.name().equals("table")) {
                    in = id.equals(t.get("id"));
                    end = in ? dom.indexOf("</table>", t.at()) : -1;
                    continue;
                }
                if (!in || t.at() > end) {
                    continue;
                }
                if (t.name().equals("tr") && t.get("data-row") != null) {
                    row = new LinkedHashMap<>();
                    rows.put(t.get("data-row"), row);
                } else if (t.name().equals("td") && row != null) {
                    row.put(t.get("data-col"), t.get("data-v"));
                }
            }
            assertFalse(rows.isEmpty(), "table " + id + " has rows");
            return rows;
        }

        /** Chart id → its mark tags. */
        Map<String, List<HeadlessChromium.Tag>> marks() {
            Map<String, List<HeadlessChromium.Tag>> out = new LinkedHashMap<>();
            String chart = null;
            int end = -1;
            for (HeadlessChromium.Tag t : tags) {
                if (t.name().equals("svg") && t.get("id") != null) {
                    chart = t.get("id");
                    end = dom.indexOf("</svg>", t.at());
                    out.put(chart, new ArrayList<>());
                } else if (chart != null && t.at() < end && t.get("class") != null && t.get("class").startsWith("mark")) {
                    out.get(chart).add(t);
                }
            }
            return out;
        }

        String tableOf(String chart) {
            return tags.stream().filter(t -> chart.equals(t.get("id"))).findFirst().orElseThrow().get("data-table");
        }

        void assertEveryChartDrawsEveryRowWithItsTableValue() {
            for (Map.Entry<String, List<HeadlessChromium.Tag>> c : marks().entrySet()) {
                Map<String, Map<String, String>> rows = tableRows(tableOf(c.getKey()));
                Map<String, List<HeadlessChromium.Tag>> byCol = c.getValue().stream().collect(Collectors.groupingBy(t -> t.get("data-col"),
                        LinkedHashMap::new, Collectors.toList()));
                assertFalse(byCol.isEmpty(), c.getKey() + " drew no mark");
                for (Map.Entry<String, List<HeadlessChromium.Tag>> col : byCol.entrySet()) {
                    assertEquals(rows.size(), col.getValue().size(), c.getKey() + ": one " + col.getKey() + " mark per table row");
                    assertEquals(rows.keySet(), col.getValue().stream().map(t -> t.get("data-row")).collect(Collectors.toSet()),
                            c.getKey() + ": every row drawn once");
                    for (HeadlessChromium.Tag m : col.getValue()) {
                        assertEquals(rows.get(m.get("data-row")).get(col.getKey()), m.get("data-v"),
                                c.getKey() + " row " + m.get("data-row") + " " + col.getKey() + ": chart and table agree");
                    }
                }
            }
        }

        /** Larger values are higher up; on the layer charts, layers run left to right in table order. */
        void assertMarksSitInTheOrderOfTheirValues() {
            for (Map.Entry<String, List<HeadlessChromium.Tag>> c : marks().entrySet()) {
                Map<String, List<HeadlessChromium.Tag>> byCol = c.getValue().stream().filter(t -> !t.get("class").contains("na"))
                        .collect(Collectors.groupingBy(t -> t.get("data-col")));
                for (List<HeadlessChromium.Tag> ms : byCol.values()) {
                    List<HeadlessChromium.Tag> byValue = ms.stream().sorted(Comparator.comparingDouble(t -> Double.parseDouble(t.get("data-v")))).toList();
                    for (int i = 1; i < byValue.size(); i++) {
                        HeadlessChromium.Tag a = byValue.get(i - 1);
                        HeadlessChromium.Tag b = byValue.get(i);
                        double ya = Double.parseDouble(a.get("data-py"));
                        double yb = Double.parseDouble(b.get("data-py"));
                        boolean same = Double.parseDouble(a.get("data-v")) == Double.parseDouble(b.get("data-v"));
                        assertTrue(same ? Math.abs(ya - yb) < 0.6 : yb < ya + 0.6, c.getKey() + ": " + b.get("data-v") + " is drawn above " + a.get("data-v"));
                    }
                    if (c.getKey().startsWith("chart-run-")) {
                        List<HeadlessChromium.Tag> byRow = ms.stream().sorted(Comparator.comparingInt(t -> Integer.parseInt(t.get("data-row")))).toList();
                        for (int i = 1; i < byRow.size(); i++) {
                            assertTrue(Double.parseDouble(byRow.get(i).get("data-px")) > Double.parseDouble(byRow.get(i - 1).get("data-px")),
                                    c.getKey() + ": row " + i + " right of row " + (i - 1));
                        }
                    }
                }
            }
        }

        /** Screenshots of the whole page with and without the marks: every mark changed a pixel near its centre. */
        void assertEveryMarkChangedPixels(HeadlessChromium chromium, Path html, Path tmp) throws Exception {
            Path hidden = tmp.resolve("hidden-" + width + ".html");
            Files.writeString(hidden, Files.readString(instrumented).replace("</head>", "<style>.mark{visibility:hidden}</style></head>"));
            BufferedImage with = chromium.screenshot(instrumented, width, height, tmp.resolve("with.png"));
            BufferedImage without = chromium.screenshot(hidden, width, height, tmp.resolve("without.png"));
            assertEquals(height, with.getHeight());
            int checked = 0;
            for (Map.Entry<String, List<HeadlessChromium.Tag>> c : marks().entrySet()) {
                for (HeadlessChromium.Tag m : c.getValue()) {
                    int x = (int) Math.round(Double.parseDouble(m.get("data-px")));
                    int y = (int) Math.round(Double.parseDouble(m.get("data-py")));
                    boolean changed = false;
                    for (int dy = -3; dy <= 3 && !changed; dy++) {
                        for (int dx = -3; dx <= 3 && !changed; dx++) {
                            int px = x + dx;
                            int py = y + dy;
                            changed = px >= 0 && py >= 0 && px < with.getWidth() && py < with.getHeight()
                                    && with.getRGB(px, py) != without.getRGB(px, py);
                        }
                    }
                    assertTrue(changed, c.getKey() + " row " + m.get("data-row") + " " + m.get("data-col") + ": no pixel drawn at " + x + "," + y);
                    checked++;
                }
            }
            assertTrue(checked > 0);
        }
    }
}
