package org.babaiquant;

import org.babaiquant.cli.PipelineCommand;
import org.babaiquant.spark.HadoopConfs;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.UUID;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue-13 regression tests through the real command line (in-process {@code Main.run}), real files and local Spark:
 * path traversal (1), credentials (8), bad {@code --out} (10), leftovers of a killed run (11), one retry status (12).
 */
class ReliabilityTest {
    private static final Path DIR = RealData.miniLm();
    private static final String X = DIR.resolve("activations/layer0_attn_in.calib.npy").toString();

    private static QuantizeLayerCliTest.Run run(String... args) {
        return QuantizeLayerCliTest.run(args);
    }

    private static List<String> names(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /** Defect 1: a site name never reaches outside --out, with or without --overwrite; nothing is deleted. */
    @Test
    void siteNamesCannotEscapeTheOutput(@TempDir Path tmp) throws IOException {
        Path victim = Files.createDirectories(tmp.resolve("victim"));
        Files.writeString(victim.resolve("precious"), "keep");
        Path out = tmp.resolve("x/out");
        for (String site : new String[] {"../../victim", "../../../OUTSIDE", "a/b", ".hidden", "_tmp", ""}) {
            for (boolean overwrite : new boolean[] {true, false}) {
                QuantizeLayerCliTest.Run r = overwrite
                        ? run("import-activations", "--npy", site + "=" + X, "--out", out.toString(), "--overwrite")
                        : run("import-activations", "--npy", site + "=" + X, "--out", out.toString());
                assertEquals(2, r.status(), site + ": " + r.out() + r.err());
                assertTrue(r.err().contains(site.isEmpty() ? "SITE=FILE" : "site name '" + site + "'"), r.err());
                assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
            }
        }
        assertEquals(List.of("victim"), names(tmp), "nothing written beside --out");
        assertEquals("keep", Files.readString(victim.resolve("precious")));
        assertEquals(List.of("precious"), names(victim));
    }

    /** Defect 1 in the pipeline: import.sites keys are checked before any folder or record is made. */
    @Test
    void pipelineImportSitesCannotEscapeWork(@TempDir Path tmp) throws IOException {
        Path cfg = PipelineTest.repoConfig(tmp);
        Path work = tmp.resolve("w/work");
        QuantizeLayerCliTest.Run r = run("pipeline", "--config", cfg.toString(), "--stages", "import", "--set",
                "work=" + work, "--set", "import.sites={\"../../../E\": [" + X + "]}", "--set", "import.eval=null");
        assertEquals(2, r.status(), r.out() + r.err());
        assertTrue(r.err().contains("site name '../../../E'"), r.err());
        assertEquals(List.of("pipeline.yaml"), names(tmp).stream().filter(n -> !n.equals("w")).toList());
        assertFalse(Files.exists(tmp.resolve("E")) || Files.exists(tmp.resolve("E.sha256")));
    }

    /** Defect 8: --dry-run prints no key, secret or URI user-info, whatever the key's shape. */
    @Test
    void dryRunPrintsNoCredentials(@TempDir Path tmp) throws IOException {
        Path props = Files.writeString(tmp.resolve("s3a.properties"), String.join("\n",
                "fs.azure.account.key.myacct.blob.core.windows.net=AZUREKEY0000",
                "fs.s3a.access.key=AKIAEXAMPLE",
                "fs.s3a.secret.key=SECRETEXAMPLE",
                "fs.s3a.session.token=TOKENEXAMPLE",
                "fs.gs.auth.service.account.private.key=PRIVATEEXAMPLE",
                "my.credentials.file=CREDEXAMPLE",
                "db.password=PASSEXAMPLE",
                "fs.s3a.endpoint=http://127.0.0.1:9000"));
        QuantizeLayerCliTest.Run r = run("pipeline", "--config", PipelineTest.repoConfig(tmp).toString(), "--dry-run",
                "--set", "spark.hadoopConf=" + props, "--set", "work=s3a://AKIAUSER:URISECRET@bucket/run");
        assertEquals(0, r.status(), r.out() + r.err());
        String all = r.out() + r.err();
        for (String secret : new String[] {"AZUREKEY0000", "AKIAEXAMPLE", "SECRETEXAMPLE", "TOKENEXAMPLE",
                "PRIVATEEXAMPLE", "CREDEXAMPLE", "PASSEXAMPLE", "URISECRET", "AKIAUSER"}) {
            assertFalse(all.contains(secret), secret + " printed:\n" + all);
        }
        assertTrue(all.contains("s3a://bucket/run"), all);
        assertTrue(all.contains("fs.s3a.endpoint=http://127.0.0.1:9000"), "non-secret settings are still shown:\n" + all);
        assertTrue(HadoopConfs.sensitive("fs.azure.account.key.acct.blob.core.windows.net"));
        assertFalse(HadoopConfs.sensitive("fs.s3a.endpoint"));
    }

    /** Defect 8 and 12: report's error never echoes user-info; unreachable storage is 75 as in the pipeline. */
    @Test
    void reportRedactsAndUnreachableStorageIsRetryable() throws IOException {
        int closed;
        try (ServerSocket s = new ServerSocket(0)) {
            closed = s.getLocalPort();
        }
        String[][] props = {
            {"spark.hadoop.fs.s3a.endpoint", "http://127.0.0.1:" + closed},
            {"spark.hadoop.fs.s3a.endpoint.region", "us-east-1"},
            {"spark.hadoop.fs.s3a.path.style.access", "true"},
            {"spark.hadoop.fs.s3a.connection.ssl.enabled", "false"},
            {"spark.hadoop.fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"},
            {"spark.hadoop.fs.s3a.access.key", "id"},
            {"spark.hadoop.fs.s3a.secret.key", "secret"},
            {"spark.hadoop.fs.s3a.attempts.maximum", "1"},
            {"spark.hadoop.fs.s3a.retry.limit", "1"},
            {"spark.hadoop.fs.s3a.retry.interval", "10ms"},
            {"spark.hadoop.fs.s3a.connection.establish.timeout", "1s"},
        };
        for (String[] p : props) {
            System.setProperty(p[0], p[1]);
        }
        try {
            QuantizeLayerCliTest.Run down = run("report", "s3a://bucket/q");
            assertEquals(PipelineCommand.EXIT_RETRYABLE, down.status(), down.out() + down.err());
            assertTrue(down.err().contains("storage endpoint is unreachable") && down.err().contains("retry"), down.err());
            QuantizeLayerCliTest.Run creds = run("report", "s3a://AKIAUSER:URISECRET@bucket/q");
            assertTrue(creds.status() == 2 || creds.status() == PipelineCommand.EXIT_RETRYABLE, creds.out() + creds.err());
            assertFalse((creds.out() + creds.err()).contains("URISECRET") || (creds.out() + creds.err()).contains("AKIAUSER"),
                    creds.out() + creds.err());
        } finally {
            for (String[] p : props) {
                System.clearProperty(p[0]);
            }
        }
    }

    /** Defect 10: hessian --out a regular file is bad input, one line, exit 2; the file is untouched. */
    @Test
    void hessianOutThatIsAFileIsBadInput(@TempDir Path tmp) throws IOException {
        Path act = tmp.resolve("act");
        assertEquals(0, run("import-activations", "--npy", "s=" + X, "--out", act.toString()).status());
        Path file = Files.writeString(tmp.resolve("f"), "not a folder");
        QuantizeLayerCliTest.Run r = run("hessian", "--activations", act.toString(), "--out", file.toString(),
                "--master", "local[1]");
        assertEquals(2, r.status(), r.out() + r.err());
        assertTrue(r.err().contains("is a file, not a folder"), r.err());
        assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
        assertEquals("not a folder", Files.readString(file));
    }

    /** Defect 11: what a killed hessian or import left (_tmp-UNIT-UUID) is removed by the next run of that unit. */
    @Test
    void leftoversOfAKilledRunAreCleanedByTheNextRun(@TempDir Path tmp) throws IOException {
        Path act = tmp.resolve("act");
        Path staleImport = Files.createDirectories(act.resolve("_tmp-site=s-" + UUID.randomUUID()));
        Files.writeString(staleImport.resolve("part-00000-x.parquet"), "half");
        assertEquals(0, run("import-activations", "--npy", "s=" + X, "--out", act.toString()).status());
        assertEquals(List.of("site=s"), names(act));
        Path hes = tmp.resolve("h");
        Path staleHessian = Files.createDirectories(hes.resolve("_tmp-site=s-" + UUID.randomUUID()));
        Files.writeString(staleHessian.resolve("part-00000.parquet"), "half");
        QuantizeLayerCliTest.Run r = run("hessian", "--activations", act.toString(), "--out", hes.toString(),
                "--master", "local[1]");
        assertEquals(0, r.status(), r.out() + r.err());
        assertEquals(List.of("site=s"), names(hes));
        assertTrue(Files.exists(hes.resolve("site=s/_SUCCESS")));
    }
}
