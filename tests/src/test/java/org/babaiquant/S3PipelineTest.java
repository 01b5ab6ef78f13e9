package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.RemoteIterator;
import org.babaiquant.cli.PipelineCommand;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole pipeline on s3a:// against a real S3 server (S3Proxy on 127.0.0.1, path-style, test credentials): the
 * model is assembled into the bucket, activations, Hessians, shards, reports and the GPTQ export are written there and
 * read back from there, and every artifact equals the local run's byte for byte (shards and reports: every column but
 * the fingerprint, which hashes the held-out activations' URI, and the measured seconds).
 * Then the server is killed mid-stage: the pipeline fails with a retryable, clear message, nothing partial is
 * committed, and after a restart the same command finishes the job with the same bytes.
 */
class S3PipelineTest {
    private static final Configuration LOCAL = new Configuration();
    @TempDir
    static Path dir;
    static S3TestServer s3;
    static Path settings;
    static Configuration s3conf;

    @BeforeAll
    static void startServer() {
        s3 = S3TestServer.start(dir.resolve("s3"), true, "chain", "flaky");
        settings = s3.writeSettingsFile(dir.resolve("s3a.properties"));
        s3conf = s3.configure(new Configuration());
        SparkTestSession.get();
    }

    @AfterAll
    static void stopServer() {
        if (s3 != null) {
            s3.close();
        }
    }

    private static QuantizeLayerCliTest.Run pipeline(String work, String... extra) throws IOException {
        List<String> args = new ArrayList<>(List.of("pipeline", "--config", PipelineTest.repoConfig(dir).toString(), "--set", "work=" + work,
                "--set", "spark.hadoopConf=" + settings));
        args.addAll(List.of(extra));
        return QuantizeLayerCliTest.run(args.toArray(String[]::new));
    }

    /** Every file under a root, by path relative to it, without checksum files and temporary folders. */
    static Map<String, byte[]> files(Configuration conf, String root) throws IOException {
        org.apache.hadoop.fs.Path r = new org.apache.hadoop.fs.Path(root);
        FileSystem fs = r.getFileSystem(conf);
        String prefix = fs.makeQualified(r).toString();
        Map<String, byte[]> m = new TreeMap<>();
        RemoteIterator<LocatedFileStatus> it = fs.listFiles(r, true);
        while (it.hasNext()) {
            LocatedFileStatus st = it.next();
            String rel = st.getPath().toString().substring(prefix.length() + 1);
            if (rel.endsWith(".crc") || rel.contains("_tmp")) {
                continue;
            }
            // Spark names part files with a random job id: compare them by their place in the sorted folder
            rel = rel.replaceAll("part-(\\d+)-[0-9a-f-]{36}", "part-$1-UUID");
            byte[] b = new byte[(int) st.getLen()];
            try (var in = fs.open(st.getPath())) {
                in.readFully(0, b);
            }
            m.put(rel, b);
        }
        return m;
    }

    /**
     * A quantize table decoded row by row, every column but {@code seconds} (measured) and {@code fingerprint} (it
     * hashes the run's inputs, including the held-out activations' URI, which differs between the runs by design).
     */
    static List<String> decoded(Configuration conf, String out, String kind) {
        List<String> rows = new ArrayList<>();
        QuantizedLayout.readAll(conf, out, kind, g -> {
            StringBuilder sb = new StringBuilder();
            org.apache.parquet.schema.GroupType t = g.getType();
            for (int i = 0; i < t.getFieldCount(); i++) {
                String name = t.getFieldName(i);
                if (name.equals("seconds") || name.equals("fingerprint")) {
                    continue;
                }
                for (int k = 0; k < g.getFieldRepetitionCount(i); k++) {
                    boolean binary = t.getType(i).isPrimitive() && t.getType(i).asPrimitiveType().getPrimitiveTypeName()
                            == org.apache.parquet.schema.PrimitiveType.PrimitiveTypeName.BINARY && t.getType(i).getLogicalTypeAnnotation() == null;
                    sb.append(name).append('=').append(binary ? java.util.Arrays.toString(g.getBinary(i, k).getBytes()) : g.getValueToString(i, k))
                            .append('\n');
                }
            }
            rows.add(sb.toString());
        });
        java.util.Collections.sort(rows);
        return rows;
    }

    static void assertSameArtifacts(Path local, String remote) throws IOException {
        for (String kind : new String[] {"model", "activations", "eval-activations", "hessians", "quantized/rows", "gptq"}) {
            Map<String, byte[]> a = files(LOCAL, local.resolve(kind).toString());
            Map<String, byte[]> b = files(s3conf, remote + "/" + kind);
            assertEquals(a.keySet(), b.keySet(), kind);
            for (String k : a.keySet()) {
                assertArrayEquals(a.get(k), b.get(k), kind + "/" + k + " differs between the local and the S3 run");
            }
        }
        for (String kind : new String[] {"shards", "reports"}) {
            assertEquals(decoded(LOCAL, local.resolve("quantized").toString(), kind), decoded(s3conf, remote + "/quantized", kind), kind);
        }
    }

    @Test
    void wholePipelineOnS3EqualsTheLocalRunByteForByte() throws IOException {
        Path local = PipelineTest.LocalRun.work();
        QuantizeLayerCliTest.Run r = pipeline("s3a://chain/run");
        assertEquals(0, r.status(), r.out() + r.err());
        assertFalse((r.out() + r.err()).contains(S3TestServer.CREDENTIAL), "the secret key is never printed");
        assertTrue(r.out().contains("self-check passed"), r.out());
        assertSameArtifacts(local, "s3a://chain/run");
        // the stand-alone commands read the same bucket through HadoopConfs (here: the test session's settings)
        QuantizeLayerCliTest.Run report = QuantizeLayerCliTest.run("report", "s3a://chain/run/quantized");
        assertEquals(0, report.status(), report.err());
        assertTrue(report.out().contains("6 layers"), report.out());
        // and the Zeppelin note's SQL reads the reports from the bucket too
        for (String[] p : PipelineTest.zeppelinSql("s3a://chain/run/quantized")) {
            assertFalse(SparkTestSession.get().sql(p[1]).collectAsList().isEmpty(), p[0]);
        }
    }

    /** Kills the server as soon as {@code marker} exists in its filesystem store (a stage has committed its first unit). */
    private static Thread killWhen(Path marker, AtomicBoolean killed) {
        Thread t = new Thread(() -> {
            long deadline = System.nanoTime() + 300_000_000_000L;
            while (System.nanoTime() < deadline && !Thread.currentThread().isInterrupted()) {
                if (Files.exists(marker)) {
                    s3.stop();
                    killed.set(true);
                    return;
                }
                try {
                    Thread.sleep(10);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "s3-killer");
        t.setDaemon(true);
        t.start();
        return t;
    }

    private static List<String> committed(Path storeDir, String prefix) throws IOException {
        if (!Files.isDirectory(storeDir)) {
            return List.of();
        }
        try (var s = Files.list(storeDir)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith(prefix)).sorted().toList();
        }
    }

    @Test
    void serverKilledMidStageFailsRetryablyCommitsNothingPartialAndARerunFinishes() throws Exception {
        Path local = PipelineTest.LocalRun.work();
        Path store = dir.resolve("s3/store/flaky/run");
        String work = "s3a://flaky/run";
        assertEquals(0, pipeline(work, "--stages", "import").status());

        // 1. killed while the Hessian stage commits its sites one by one
        AtomicBoolean killed = new AtomicBoolean();
        Thread killer = killWhen(store.resolve("hessians/site=layer0_attn_in/_SUCCESS"), killed);
        QuantizeLayerCliTest.Run h = pipeline(work, "--stages", "hessian");
        killer.interrupt();
        assertTrue(killed.get(), "the server was killed during the hessian stage");
        assertEquals(PipelineCommand.EXIT_RETRYABLE, h.status(), h.out() + h.err());
        assertTrue(h.err().contains("storage endpoint is unreachable") && h.err().contains("retry"), h.err());
        s3.start();
        List<String> sites = committed(store.resolve("hessians"), "site=");
        assertTrue(sites.size() < 4, "the kill left sites unfinished: " + sites);
        for (String site : sites) {
            // a site folder may exist half-copied on S3, but it is committed only with both the marker and the sidecar
            boolean marker = Files.exists(store.resolve("hessians").resolve(site).resolve("_SUCCESS"));
            boolean sidecar = Files.exists(store.resolve("hessians").resolve(site).resolve("_hessian.json"));
            if (marker) {
                assertTrue(sidecar, site + " has _SUCCESS without its sidecar");
                try (var s = Files.list(store.resolve("hessians").resolve(site))) {
                    assertTrue(s.anyMatch(p -> p.getFileName().toString().endsWith(".parquet")), site + " committed without data");
                }
            }
        }

        // 2. killed while the quantize stage commits its layers
        killed.set(false);
        killer = killWhen(store.resolve("quantized/reports"), killed);
        QuantizeLayerCliTest.Run q = pipeline(work, "--stages", "hessian,quantize");
        killer.interrupt();
        assertTrue(killed.get(), "the server was killed during the quantize stage");
        assertEquals(PipelineCommand.EXIT_RETRYABLE, q.status(), q.out() + q.err());
        assertTrue(q.err().contains("stage quantize: the storage endpoint is unreachable"), q.err());
        s3.start();
        List<String> layers = committed(store.resolve("quantized/reports"), "layer=");
        assertTrue(layers.size() < 6, "the kill left layers unfinished: " + layers);
        for (String layer : layers) {
            String name = layer.substring("layer=".length());
            // a report exists only for a layer whose shards and rows were committed before it
            QuantizedLayout.LayerShards shards = QuantizedLayout.readLayer(s3conf, work + "/quantized", name);
            assertTrue(shards.rows() > 0, name);
            assertTrue(Files.isDirectory(store.resolve("quantized/rows").resolve(layer)), name);
        }

        // 3. the same command again finishes the job: same bytes as the local run
        QuantizeLayerCliTest.Run again = pipeline(work);
        assertEquals(0, again.status(), again.out() + again.err());
        assertTrue(again.out().contains(layers.size() + " skipped as up to date"), again.out());
        assertSameArtifacts(local, work);
    }
}
