package org.babaiquant;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code pipeline --config conf/pipeline.yaml} on the bundled data (the repository's own config file), a rerun that
 * skips every stage, the import overwrite policy, and the Zeppelin note's SQL run against the pipeline's reports.
 */
class PipelineTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final org.apache.hadoop.conf.Configuration CONF = new org.apache.hadoop.conf.Configuration();

    /** One local end-to-end run per test JVM, shared with S3PipelineTest (which byte-compares against it). */
    static final class LocalRun {
        private static Path work;
        private static QuantizeLayerCliTest.Run first;

        static synchronized Path work() {
            if (work == null) {
                try {
                    Path dir = Files.createTempDirectory("babai-pipeline-local");
                    work = dir.resolve("work");
                    first = QuantizeLayerCliTest.run("pipeline", "--config", repoConfig(dir).toString(), "--set", "work=" + work);
                    assertEquals(0, first.status(), first.out() + first.err());
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
            return work;
        }
    }

    /** conf/pipeline.yaml with its repository-relative data paths made absolute (the tests run in tests/). */
    static Path repoConfig(Path dir) throws IOException {
        String yaml = Files.readString(RealData.repoRoot().resolve("conf/pipeline.yaml"));
        Path cfg = dir.resolve("pipeline.yaml");
        Files.writeString(cfg, yaml.replaceAll("(?<=[\\s\\[])data/minilm-l6-v2/",
                Matcher.quoteReplacement(RealData.miniLm().toAbsolutePath().normalize() + "/")));
        return cfg;
    }

    @Test
    void runsEveryStageFromTheRepositoryConfigAndARerunSkipsAllWork(@TempDir Path tmp) throws IOException {
        Path work = LocalRun.work();
        assertTrue(LocalRun.first.out().contains("6 layers"), LocalRun.first.out());
        assertTrue(LocalRun.first.out().contains("self-check passed"), LocalRun.first.out());
        for (String kind : new String[] {"shards", "rows", "reports"}) {
            try (var s = Files.list(work.resolve("quantized").resolve(kind))) {
                assertEquals(6, s.filter(p -> p.getFileName().toString().startsWith("layer=")).count(), kind);
            }
        }
        assertTrue(Files.exists(work.resolve("gptq/model.safetensors")));
        assertTrue(Files.exists(work.resolve("hessians/site=layer0_ffn_down_in/_SUCCESS")));
        QuantizeLayerCliTest.Run again = QuantizeLayerCliTest.run("pipeline", "--config", repoConfig(tmp).toString(), "--set", "work=" + work);
        assertEquals(0, again.status(), again.out() + again.err());
        String out = again.out();
        assertEquals(8, count(out, "up to date \\(inputs fingerprint"), out); // 4 calibration + 4 held-out sites
        assertEquals(4, count(out, "site layer0_[a-z_]+: up to date \\(fingerprint"), out);
        assertTrue(out.contains("6 layer(s), 6 skipped as up to date"), out);
        assertTrue(out.contains("model " + work.resolve("model/model.safetensors") + ": up to date, skipped"), out);
        assertTrue(out.contains("export " + work.resolve("gptq") + ": up to date (6 layers), skipped"), out);
        assertTrue(out.contains("6 layers: Σ loss"), "the report stage prints the table: " + out);
    }

    @Test
    void importRefusesChangedInputsUnlessTheConfigSaysOverwrite(@TempDir Path tmp) throws IOException {
        Path cfg = repoConfig(tmp);
        String work = "work=" + tmp.resolve("w");
        assertEquals(0, QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--stages", "import", "--set", work).status());
        String other = "import.sites={layer0_attn_in: [" + RealData.miniLm().resolve("activations/layer0_attn_in.eval.npy") + "]}";
        QuantizeLayerCliTest.Run refused = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--stages", "import", "--set", work,
                "--set", other, "--set", "import.eval={}");
        assertEquals(2, refused.status(), refused.out() + refused.err());
        assertTrue(refused.err().contains("different inputs") && refused.err().contains("ifExists: overwrite"), refused.err());
        QuantizeLayerCliTest.Run replaced = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--stages", "import", "--set", work,
                "--set", other, "--set", "import.eval={}", "--set", "import.ifExists=overwrite");
        assertEquals(0, replaced.status(), replaced.out() + replaced.err());
        assertTrue(replaced.out().contains("site layer0_attn_in: 512 tokens") || replaced.out().contains("site layer0_attn_in: "), replaced.out());
        QuantizeLayerCliTest.Run fail = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--stages", "import", "--set", work,
                "--set", "import.ifExists=fail");
        assertEquals(2, fail.status());
        assertTrue(fail.err().contains("already exists and import.ifExists is fail"), fail.err());
    }

    /**
     * conf/pipeline-onnx.yaml, made small: capture on Spark → Hessians → quantize the six layer-0 linears of the
     * bundled MiniLM → report; a rerun skips the capture by its fingerprint, and changed inputs are refused under
     * ifExists: skip.
     */
    @Test
    void onnxPipelineCapturesQuantizesAndSkipsAnUnchangedCapture(@TempDir Path tmp) {
        Path cfg = RealData.repoRoot().resolve("conf/pipeline-onnx.yaml");
        String brown = RealData.repoRoot().resolve("data/text/brown.calib.txt").toString();
        String[] args = {"pipeline", "--config", cfg.toString(), "--set", "work=" + tmp, "--set", "capture.text=[" + brown + "]",
                "--set", "capture.samples=12", "--set", "capture.rowsPerSeq=32", "--set", "quantize.layers=/encoder/layer\\.0/.*"};
        QuantizeLayerCliTest.Run first = QuantizeLayerCliTest.run(args);
        assertEquals(0, first.status(), first.err() + first.out());
        assertTrue(first.out().contains("== capture done") && first.out().contains("== report done"), first.out());
        assertEquals(24, org.babaiquant.spark.ActivationLayout.sites(CONF, tmp.resolve("activations").toString()).size());
        List<org.apache.parquet.example.data.Group> reports = new ArrayList<>();
        org.babaiquant.spark.QuantizedLayout.readDir(CONF, org.babaiquant.spark.QuantizedLayout.dir(tmp.resolve("quantized").toString(),
                "reports", "/encoder/layer.0/attention/self/query/MatMul"), reports::add);
        assertEquals(1, reports.size());
        assertEquals(4, reports.get(0).getInteger("bits", 0));

        QuantizeLayerCliTest.Run again = QuantizeLayerCliTest.run(args);
        assertEquals(0, again.status(), again.err());
        assertTrue(again.out().contains("is up to date"), again.out());

        String[] changed = java.util.Arrays.copyOf(args, args.length + 2);
        changed[args.length] = "--set";
        changed[args.length + 1] = "capture.samples=13";
        QuantizeLayerCliTest.Run refused = QuantizeLayerCliTest.run(changed);
        assertEquals(2, refused.status(), refused.out());
        assertTrue(refused.err().contains("already holds activations with different inputs"), refused.err());
    }

    @Test
    void dryRunValidatesTheConfigAndTyposAreErrors(@TempDir Path tmp) throws IOException {
        Path cfg = repoConfig(tmp);
        QuantizeLayerCliTest.Run dry = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--dry-run", "--set",
                "work=s3a://bucket/run", "--set", "quantize.method=babai");
        assertEquals(0, dry.status(), dry.err());
        assertTrue(dry.out().contains("quantize s3a://bucket/run/model/model.safetensors with babai → s3a://bucket/run/quantized"), dry.out());
        QuantizeLayerCliTest.Run typo = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--dry-run", "--set", "quantize.bitz=3");
        assertEquals(2, typo.status());
        assertTrue(typo.err().contains("unknown key 'quantize.bitz'"), typo.err());
        QuantizeLayerCliTest.Run method = QuantizeLayerCliTest.run("pipeline", "--config", cfg.toString(), "--dry-run", "--set", "quantize.method=best");
        assertEquals(2, method.status(), method.err());
    }

    /** The note's SQL paragraphs that read the quantize output, with the note form $${out=...} set to it. */
    static List<String[]> zeppelinSql(String out) throws IOException {
        return zeppelinSql("out", out);
    }

    /**
     * The note's SQL paragraphs that use the note form {@code form} (and no other), with $${form=...} set to
     * {@code value}; each as {title, query}. Every SQL paragraph must carry chart settings.
     */
    static List<String[]> zeppelinSql(String form, String value) throws IOException {
        String note = Files.readString(RealData.repoRoot().resolve("notebooks/babai-quant-analysis.zpln"));
        @SuppressWarnings("unchecked")
        java.util.Map<String, Object> json = new com.fasterxml.jackson.databind.ObjectMapper().readValue(note, java.util.Map.class);
        List<String[]> sql = new ArrayList<>();
        java.util.regex.Pattern anyForm = java.util.regex.Pattern.compile("\\$\\$\\{([a-z]+)=[^}]*}");
        for (Object p : (List<?>) json.get("paragraphs")) {
            java.util.Map<?, ?> para = (java.util.Map<?, ?>) p;
            String text = String.valueOf(para.get("text"));
            if (text.startsWith("%spark.sql")) {
                java.util.Map<?, ?> results = (java.util.Map<?, ?>) ((java.util.Map<?, ?>) para.get("config")).get("results");
                assertFalse(results.isEmpty(), "paragraph " + para.get("title") + " has chart settings");
                Matcher forms = anyForm.matcher(text);
                boolean mine = false;
                boolean other = false;
                while (forms.find()) {
                    mine |= forms.group(1).equals(form);
                    other |= !forms.group(1).equals(form);
                }
                if (mine && !other) {
                    String q = text.substring("%spark.sql".length()).trim()
                            .replaceAll("\\$\\$\\{" + form + "=[^}]*}", Matcher.quoteReplacement(value));
                    sql.add(new String[] {String.valueOf(para.get("title")), q});
                }
            }
        }
        return sql;
    }

    @Test
    void everyZeppelinSqlParagraphReturnsRowsOnThePipelineReports() throws IOException {
        Path work = LocalRun.work();
        List<String[]> paragraphs = zeppelinSql(work.resolve("quantized").toString());
        assertTrue(paragraphs.size() >= 5, "loss vs bound, distribution, bpw vs error, clipped, slowest, shards");
        for (String[] p : paragraphs) {
            List<Row> rows = SPARK.sql(p[1]).collectAsList();
            assertFalse(rows.isEmpty(), p[0] + " returned no rows:\n" + p[1]);
        }
        List<Row> lossBound = SPARK.sql(paragraphs.get(0)[1]).collectAsList();
        assertEquals(6, lossBound.size(), "one row per layer");
        for (Row r : lossBound) {
            assertTrue(r.getDouble(r.fieldIndex("loss")) > 0 && r.getDouble(r.fieldIndex("bound")) > 0, r.toString());
        }
    }

    private static int count(String s, String regex) {
        Matcher m = Pattern.compile(regex).matcher(s);
        int n = 0;
        while (m.find()) {
            n++;
        }
        return n;
    }
}
