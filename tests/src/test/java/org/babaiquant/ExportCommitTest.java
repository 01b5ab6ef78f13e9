package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.FileUtil;
import org.babaiquant.io.Commit;
import org.babaiquant.spark.Exports;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The export as one commit unit (spark/Exports), on a real S3 server (S3Proxy on 127.0.0.1) and locally: a complete
 * export carries {@code _SUCCESS}, written last; a non-empty {@code --out} is refused unless replaced on purpose, and
 * then replaced whole; an export that fails midway (after its first shard file was written, or at a bad layer) leaves
 * the old export exactly as it was, creates no new folder and no {@code _tmp-*} anywhere; a killed run's temporary is
 * deleted by the next one; the output may not replace the inputs. Inputs: the MiniLM pipeline run's model and quantize
 * output (PipelineTest.LocalRun), copied into the bucket.
 */
class ExportCommitTest {
    private static final Configuration LOCAL = new Configuration();
    @TempDir
    static Path dir;
    static S3TestServer s3;
    static Configuration s3conf;
    static Path local;

    @BeforeAll
    static void startServerAndCopyInputs() throws IOException {
        local = PipelineTest.LocalRun.work();
        s3 = S3TestServer.start(dir.resolve("s3"), true, "exports");
        s3conf = s3.configure(new Configuration());
        for (String kind : List.of("model", "quantized")) {
            copy(local.resolve(kind), "s3a://exports/in/" + kind);
        }
    }

    @AfterAll
    static void stopServer() {
        if (s3 != null) {
            s3.close();
        }
    }

    private static void copy(Path from, String to) throws IOException {
        org.apache.hadoop.fs.Path dst = new org.apache.hadoop.fs.Path(to);
        FileUtil.copy(FileSystem.getLocal(LOCAL), new org.apache.hadoop.fs.Path(from.toUri()), dst.getFileSystem(s3conf), dst, false, s3conf);
    }

    private static void put(String uri, String text) throws IOException {
        org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(uri);
        try (var o = p.getFileSystem(s3conf).create(p, true)) {
            o.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }

    private static void delete(String uri) throws IOException {
        org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(uri);
        assertTrue(p.getFileSystem(s3conf).delete(p, true), uri);
    }

    private static String export(String format, String out, Commit.IfExists ifExists) {
        return Exports.export(s3conf, format, "s3a://exports/in/quantized", "s3a://exports/in/model/model.safetensors", out, false, ifExists);
    }

    /** Every path under the bucket, as an S3 client lists it, that is a commit temporary (or lies inside one). */
    private static List<String> temporaries() throws IOException {
        org.apache.hadoop.fs.Path root = new org.apache.hadoop.fs.Path("s3a://exports/");
        FileSystem fs = root.getFileSystem(s3conf);
        List<String> found = new java.util.ArrayList<>();
        java.util.ArrayDeque<org.apache.hadoop.fs.Path> todo = new java.util.ArrayDeque<>(List.of(root));
        while (!todo.isEmpty()) {
            for (org.apache.hadoop.fs.FileStatus st : fs.listStatus(todo.pop())) {
                if (st.getPath().getName().startsWith("_tmp")) {
                    found.add(st.getPath().toString());
                } else if (st.isDirectory()) {
                    todo.push(st.getPath());
                }
            }
        }
        return found;
    }

    private static boolean exists(String uri) throws IOException {
        org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(uri);
        return p.getFileSystem(s3conf).exists(p);
    }

    private static void assertSame(Map<String, byte[]> expected, Map<String, byte[]> actual, String what) {
        assertEquals(expected.keySet(), actual.keySet(), what);
        for (String k : expected.keySet()) {
            assertArrayEquals(expected.get(k), actual.get(k), what + ": " + k);
        }
    }

    @Test
    void anExportOnS3IsCommittedWholeOrNotAtAll() throws IOException {
        // 1. a complete export: the same bytes as the local pipeline's export, _SUCCESS included
        export("gptq", "s3a://exports/ex", Commit.IfExists.REFUSE);
        Map<String, byte[]> committed = S3PipelineTest.files(s3conf, "s3a://exports/ex");
        assertTrue(committed.containsKey(Commit.SUCCESS), committed.keySet().toString());
        assertSame(S3PipelineTest.files(LOCAL, local.resolve("gptq").toString()), committed, "S3 export vs local export");
        assertEquals(List.of(), temporaries());

        // 2. refused when it exists; replaced whole on purpose (a stale file of an earlier run does not survive); a
        //    killed run's temporary of the same unit is deleted by the next run
        BadInputException refused = assertThrows(BadInputException.class, () -> export("gptq", "s3a://exports/ex", Commit.IfExists.REFUSE));
        assertTrue(refused.getMessage().contains("already exists") && refused.getMessage().contains("--overwrite"), refused.getMessage());
        put("s3a://exports/ex/stale.txt", "from an earlier run");
        put("s3a://exports/" + Commit.tempPrefix("ex") + UUID.randomUUID() + "/model.safetensors", "half-written by a killed run");
        export("gptq", "s3a://exports/ex", Commit.IfExists.REPLACE);
        assertSame(committed, S3PipelineTest.files(s3conf, "s3a://exports/ex"), "replaced export");
        assertEquals(List.of(), temporaries());

        // 3. fails midway, after model.safetensors was written under the temporary: config.json says the model is
        //    already quantized (read only once the shards are written). The old export is untouched; no new folder.
        put("s3a://exports/in/model/config.json", "{\"quantization_config\": {\"bits\": 4}}\n");
        for (String format : Exports.FORMATS) {
            BadInputException e = assertThrows(BadInputException.class, () -> export(format, "s3a://exports/ex", Commit.IfExists.REPLACE));
            assertTrue(e.getMessage().contains("already has a quantization_config"), e.getMessage());
            e = assertThrows(BadInputException.class, () -> export(format, "s3a://exports/new", Commit.IfExists.REFUSE));
            assertTrue(e.getMessage().contains("already has a quantization_config"), e.getMessage());
            assertSame(committed, S3PipelineTest.files(s3conf, "s3a://exports/ex"), format + ": export after a failed replace");
            assertFalse(exists("s3a://exports/new"), format + ": a failed export created its folder");
            assertEquals(List.of(), temporaries(), format);
        }
        delete("s3a://exports/in/model/config.json");

        // 4. a bad layer midway: its report is committed but its shards are gone (the reports alone pass the checks)
        delete("s3a://exports/in/quantized/shards/layer=encoder.layer.0.intermediate.dense.weight");
        for (String format : Exports.FORMATS) {
            BadInputException e = assertThrows(BadInputException.class, () -> export(format, "s3a://exports/ex", Commit.IfExists.REPLACE));
            assertTrue(e.getMessage().contains("no shards for layer encoder.layer.0.intermediate.dense.weight"), e.getMessage());
            assertSame(committed, S3PipelineTest.files(s3conf, "s3a://exports/ex"), format + ": export after a failed replace");
            assertEquals(List.of(), temporaries(), format);
        }
        copy(local.resolve("quantized/shards/layer=encoder.layer.0.intermediate.dense.weight"),
                "s3a://exports/in/quantized/shards/layer=encoder.layer.0.intermediate.dense.weight");

        // 5. the other format commits the same way
        export("compressed-tensors", "s3a://exports/ct", Commit.IfExists.REFUSE);
        assertTrue(exists("s3a://exports/ct/" + Commit.SUCCESS) && exists("s3a://exports/ct/model.safetensors"));

        // 6. the output is replaced whole, so it may not be (or hold) an input
        for (String out : List.of("s3a://exports/in", "s3a://exports/in/model", "s3a://exports/in/quantized")) {
            for (String format : Exports.FORMATS) {
                BadInputException e = assertThrows(BadInputException.class, () -> export(format, out, Commit.IfExists.REPLACE));
                assertTrue(e.getMessage().contains("would replace"), e.getMessage());
            }
        }
        assertTrue(exists("s3a://exports/in/model/model.safetensors"), "the model is untouched");
    }

    @Test
    void theExportCommandRefusesANonEmptyOutUnlessOverwrite() throws IOException {
        String q = local.resolve("quantized").toString();
        String m = local.resolve("model/model.safetensors").toString();
        Path out = dir.resolve("cli-export");
        QuantizeLayerCliTest.Run first = QuantizeLayerCliTest.run("export", "--quantized", q, "--model", m, "--out", out.toString());
        assertEquals(0, first.status(), first.out() + first.err());
        assertTrue(Files.exists(out.resolve(Commit.SUCCESS)) && Files.exists(out.resolve("quantize_config.json")));
        Files.writeString(out.resolve("stale.txt"), "x");
        QuantizeLayerCliTest.Run again = QuantizeLayerCliTest.run("export", "--quantized", q, "--model", m, "--out", out.toString());
        assertEquals(2, again.status(), again.out() + again.err());
        assertTrue(again.err().contains("already exists") && again.err().strip().lines().count() == 1, again.err());
        assertTrue(Files.exists(out.resolve("stale.txt")), "a refused export changes nothing");
        QuantizeLayerCliTest.Run overwrite = QuantizeLayerCliTest.run("export", "--quantized", q, "--model", m, "--out", out.toString(),
                "--overwrite");
        assertEquals(0, overwrite.status(), overwrite.out() + overwrite.err());
        assertFalse(Files.exists(out.resolve("stale.txt")), "--overwrite replaces the whole folder");
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of(), s.filter(p -> p.getFileName().toString().startsWith("_tmp")).toList());
        }
    }
}
