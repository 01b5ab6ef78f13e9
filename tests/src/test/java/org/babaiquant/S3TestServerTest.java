package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.babaiquant.spark.HadoopConfs;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The S3 test server through Hadoop's S3A client, and how HadoopConfs layers settings without printing secrets. */
class S3TestServerTest {
    @Test
    void s3aWritesRenamesListsAndReadsBackThenFailsFastWhenTheServerIsGone(@TempDir java.nio.file.Path tmp) throws IOException {
        try (S3TestServer s3 = S3TestServer.start(tmp, true, "smoke")) {
            Configuration conf = s3.configure(new Configuration());
            Path dir = new Path("s3a://smoke/a/_tmp/site=x");
            FileSystem fs = dir.getFileSystem(conf);
            try (FSDataOutputStream o = fs.create(new Path(dir, "part-0.bin"), false)) {
                o.write("hello".getBytes(StandardCharsets.UTF_8));
            }
            fs.create(new Path(dir, "_SUCCESS"), false).close();
            assertTrue(fs.rename(dir, new Path("s3a://smoke/a/site=x")));
            assertFalse(fs.exists(dir));
            assertEquals(2, fs.listStatus(new Path("s3a://smoke/a/site=x")).length);
            byte[] b = new byte[5];
            try (var in = fs.open(new Path("s3a://smoke/a/site=x/part-0.bin"))) {
                in.readFully(0, b);
            }
            assertEquals("hello", new String(b, StandardCharsets.UTF_8));
            s3.stop();
            long t0 = System.nanoTime();
            IOException e = assertThrows(IOException.class, () -> fs.getFileStatus(new Path("s3a://smoke/a/site=x/part-0.bin")));
            assertTrue((System.nanoTime() - t0) / 1e9 < 60, "fails fast with the test's retry settings");
            assertTrue(org.babaiquant.spark.StorageFailures.unreachable(e) != null, e.toString());
        }
    }

    @Test
    void settingsLayerFilesAndSystemPropertiesAndNeverShowSecrets(@TempDir java.nio.file.Path tmp) throws IOException {
        java.nio.file.Path f = tmp.resolve("s3a.properties");
        Files.writeString(f, "spark.hadoop.fs.s3a.endpoint=http://file\nfs.s3a.path.style.access=true\nfs.s3a.secret.key=SHOULD-NOT-PRINT\n");
        System.setProperty("spark.hadoop.fs.s3a.endpoint", "http://sysprop");
        try {
            Map<String, String> s = HadoopConfs.settings(f.toString());
            assertEquals("http://sysprop", s.get("fs.s3a.endpoint"), "system properties win over the file");
            assertEquals("true", s.get("fs.s3a.path.style.access"));
            String shown = HadoopConfs.describe(s);
            assertFalse(shown.contains("SHOULD-NOT-PRINT"), shown);
            assertTrue(shown.contains("fs.s3a.secret.key=<redacted>") && shown.contains("fs.s3a.path.style.access=true"), shown);
            assertEquals("<redacted>", HadoopConfs.redact("fs.s3a.access.key", "AKIA..."));
            assertEquals("org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
                    HadoopConfs.redact("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"));
        } finally {
            System.clearProperty("spark.hadoop.fs.s3a.endpoint");
        }
    }
}
