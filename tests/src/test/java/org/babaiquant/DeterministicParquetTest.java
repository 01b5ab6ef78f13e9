package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 13, defect 5: reruns are byte-identical across fresh JVMs, not only within one. Parquet's footer listed a
 * column chunk's encodings in an order that followed identity hash codes, so about half of all fresh runs differed.
 * Four child JVMs write the same activation import and the same quantize-style Parquet file; every byte must agree.
 */
class DeterministicParquetTest {
    private static final String X = RealData.miniLm().resolve("activations/layer0_o_proj_in.calib.npy").toString();

    /** Child JVM entry point: an activation import into DIR/act, and a quantize-style file DIR/layout.parquet. */
    public static void main(String[] args) throws IOException {
        Path dir = Path.of(args[0]);
        int status = org.babaiquant.cli.Main.run("import-activations", "--npy", "s=" + X, "--out", dir.resolve("act").toString());
        if (status != 0) {
            System.exit(status);
        }
        MessageType schema = MessageTypeParser.parseMessageType("message m { required binary layer (STRING);"
                + " required int32 row; required double loss; required binary data; required int64 tokens; }");
        List<Group> rows = new ArrayList<>();
        for (int k = 0; k < 200; k++) {
            rows.add(QuantizedLayout.groups(schema).newGroup().append("layer", "l" + (k % 3)).append("row", k)
                    .append("loss", k * 0.25).append("data", org.apache.parquet.io.api.Binary.fromString("d" + k))
                    .append("tokens", 64L * k));
        }
        QuantizedLayout.write(new Configuration(), new org.apache.hadoop.fs.Path(dir.resolve("layout.parquet").toUri()), schema,
                Map.of("babai.format", "t", "babai.version", "1", "babai.params", "{\"bits\": 4}", "babai.z", "z"), rows);
    }

    private static void child(Path log, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path")));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child JVM timed out");
        assertEquals(0, p.exitValue(), Files.readString(log));
    }

    private static List<Path> parquetFiles(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".parquet")).sorted().toList();
        }
    }

    @Test
    void freshJvmsWriteTheSameBytes(@TempDir Path tmp) throws Exception {
        // before the fix a file's footer varied in about half of all JVMs (two or more encodings per column chunk,
        // several columns): three runs all agreeing by chance was unlikely
        int runs = 3;
        for (int i = 0; i < runs; i++) {
            child(tmp.resolve("run" + i + ".log"), DeterministicParquetTest.class.getName(), tmp.resolve("r" + i).toString());
        }
        List<Path> first = parquetFiles(tmp.resolve("r0"));
        assertEquals(2, first.size(), first.toString());
        for (int i = 1; i < runs; i++) {
            List<Path> files = parquetFiles(tmp.resolve("r" + i));
            assertEquals(2, files.size());
            for (int k = 0; k < 2; k++) {
                assertArrayEquals(Files.readAllBytes(first.get(k)), Files.readAllBytes(files.get(k)),
                        "run " + i + ": " + files.get(k).getFileName());
            }
        }
    }
}
