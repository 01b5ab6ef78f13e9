package org.babaiquant;

import org.babaiquant.core.Half;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.io.ByteSource;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.io.SafeTensorsWriter;
import org.babaiquant.io.SafeTensorsWriter.RawTensor;
import org.babaiquant.spark.ModelWeights;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link ModelWeights} over a Hugging Face style sharded checkpoint written with {@link SafeTensors#writeRaw}: two
 * shards and {@code model.safetensors.index.json}, opened through Hadoop's local file system (no Spark session).
 */
class ModelWeightsTest {

    private static final String SHARD1 = "model-00001-of-00002.safetensors";
    private static final String SHARD2 = "model-00002-of-00002.safetensors";

    /** Halves are exact in F16: every value below is a small multiple of 1/8. */
    private static final double[][] Q0 = {{1, -2, 0.5, 0.125}, {3, 4, -0.25, 8}, {0, -1, 2, 16}};
    private static final double[][] Q1 = {{-1, 2, -0.5, 0.375}, {5, 6, 0.75, -8}, {1, 1, 1, 1}};
    private static final double[][] EMBED = {{0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}, {0.7, 0.8}, {0.9, 1.0}};
    private static final double[][] HEAD = {{1.1, 1.2, 1.3, 1.4, 1.5}, {1.6, 1.7, 1.8, 1.9, 2.0}};

    @TempDir
    Path dir;

    private final Configuration conf = new Configuration();
    private Path ckpt;
    private RawTensor q0;
    private RawTensor embed;
    private RawTensor q1;
    private RawTensor head;
    private RawTensor unmapped;

    @BeforeEach
    void writeShardedCheckpoint() throws IOException {
        ckpt = Files.createDirectory(dir.resolve("ckpt"));
        q0 = tensor("model.layers.0.self_attn.q_proj.weight", "F16", Q0);
        embed = tensor("model.embed_tokens.weight", "F32", EMBED);
        q1 = tensor("model.layers.1.self_attn.q_proj.weight", "F16", Q1);
        head = tensor("lm_head.weight", "F32", HEAD);
        unmapped = new RawTensor("stray", "I32", new long[]{1}, new byte[4]);
        SafeTensorsWriter.writeRaw(ckpt.resolve(SHARD1), List.of(q0, embed), Map.of("format", "pt"));
        SafeTensorsWriter.writeRaw(ckpt.resolve(SHARD2), List.of(head, unmapped, q1), Map.of("format", "pt", "shard", "2"));
        // index order differs from both shard order and header order: names() must not depend on it
        writeIndex("""
                "lm_head.weight": "%2$s",
                "model.layers.1.self_attn.q_proj.weight": "%2$s",
                "model.embed_tokens.weight": "%1$s",
                "model.layers.0.self_attn.q_proj.weight": "%1$s"
                """.formatted(SHARD1, SHARD2));
    }

    // ------------------------------------------------------------------------------------------------ reading

    @Test
    void shardedCheckpointThroughFileUriAndPlainPath() {
        Path index = ckpt.resolve(ModelWeights.INDEX_FILE);
        for (String uri : List.of(ckpt.toUri().toString(), index.toUri().toString(), ckpt.toString(),
                index.toString())) {
            try (ModelWeights w = ModelWeights.open(conf, uri)) {
                assertTrue(uri.startsWith("file:") || uri.startsWith("/"), uri);
                assertTrue(w.uri().endsWith("ckpt/" + ModelWeights.INDEX_FILE), w.uri());
                assertEquals(List.of(q0.name(), embed.name(), head.name(), q1.name()), w.names(),
                        "by shard file, then header order; the unmapped 'stray' is not part of the model");
                assertEquals(List.of(SHARD1, SHARD2), w.shards());
                assertEquals(SHARD1, w.shardOf(embed.name()));
                assertEquals(SHARD2, w.shardOf(q1.name()));
                assertEquals(Map.of("format", "pt"), w.metadata(), "the first shard's");

                SafeTensors.TensorInfo info = w.info(q1.name());
                assertEquals("F16", info.dtype());
                assertArrayEquals(new long[]{3, 4}, info.shape());
                assertEquals(HEAD.length * HEAD[0].length * 4 + 4, info.begin(), "after lm_head and stray");

                assertMatrixEquals(Q0, w.readMatrix(q0.name()), 0);
                assertMatrixEquals(Q1, w.readMatrix(q1.name()), 0);
                assertMatrixEquals(EMBED, w.readMatrix(embed.name()), 1e-7);
                assertMatrixEquals(HEAD, w.readMatrix(head.name()), 1e-7);
                for (RawTensor t : List.of(q0, embed, q1, head)) {
                    assertArrayEquals(t.data(), w.readRaw(t.name()), t.name());
                }
            }
        }
    }

    @Test
    void rawBytesCopyIntoAnIdenticalCheckpoint() throws IOException {
        try (ModelWeights w = ModelWeights.open(conf, ckpt.toString())) {
            List<RawTensor> copy = w.names().stream().filter(n -> w.shardOf(n).equals(SHARD1))
                    .map(n -> new RawTensor(n, w.info(n).dtype(), w.info(n).shape(), w.readRaw(n))).toList();
            Path out = dir.resolve("copy.safetensors");
            SafeTensorsWriter.writeRaw(out, copy, w.metadata());
            assertArrayEquals(Files.readAllBytes(ckpt.resolve(SHARD1)), Files.readAllBytes(out));
        }
    }

    @Test
    void hadoopByteSourceReadsLikeAFile() throws IOException {
        Path shard = ckpt.resolve(SHARD2);
        byte[] all = Files.readAllBytes(shard);
        try (ByteSource src = ModelWeights.byteSource(conf, shard.toUri().toString())) {
            assertTrue(src.name().startsWith("file:") && src.name().endsWith(SHARD2), src.name());
            assertEquals(all.length, src.size());
            SafeTensors.Header h = SafeTensors.header(src);
            assertEquals(SafeTensors.dataStart(shard), h.dataStart());
            assertArrayEquals(q1.data(), SafeTensors.readRaw(src, h, q1.name()));
            ByteBuffer direct = ByteBuffer.allocateDirect(all.length - 3);
            src.readFully(3, direct);
            byte[] got = new byte[all.length - 3];
            direct.flip().get(got);
            assertArrayEquals(Arrays.copyOfRange(all, 3, all.length), got);
            assertThrows(EOFException.class, () -> src.readFully(all.length - 1, ByteBuffer.allocate(2)));
        }
        assertBad(() -> ModelWeights.byteSource(conf, dir.resolve("none").toString()), "none");
    }

    @Test
    void directoryResolution() throws IOException {
        // both an index and model.safetensors: the index wins
        SafeTensorsWriter.writeRaw(ckpt.resolve(ModelWeights.SINGLE_FILE), List.of(head), null);
        try (ModelWeights w = ModelWeights.open(conf, ckpt.toString())) {
            assertEquals(4, w.names().size());
        }
        Files.delete(ckpt.resolve(ModelWeights.INDEX_FILE));
        try (ModelWeights w = ModelWeights.open(conf, ckpt.toUri().toString())) {
            assertTrue(w.uri().endsWith("/" + ModelWeights.SINGLE_FILE), w.uri());
            assertEquals(List.of(head.name()), w.names());
            assertEquals(List.of(ModelWeights.SINGLE_FILE), w.shards());
            assertEquals(ModelWeights.SINGLE_FILE, w.shardOf(head.name()));
            assertTrue(w.metadata().isEmpty());
        }
        Files.delete(ckpt.resolve(ModelWeights.SINGLE_FILE));
        BadInputException several = assertBad(() -> ModelWeights.open(conf, ckpt.toString()), "ckpt");
        assertTrue(several.getMessage().contains(SHARD1) && several.getMessage().contains(SHARD2),
                several.getMessage());
        Files.delete(ckpt.resolve(SHARD1));
        try (ModelWeights w = ModelWeights.open(conf, ckpt.toString())) {
            assertEquals(List.of(head.name(), unmapped.name(), q1.name()), w.names(), "a lone file: all tensors");
        }
        Path empty = Files.createDirectory(dir.resolve("empty"));
        assertBad(() -> ModelWeights.open(conf, empty.toString()), "empty", "neither");
        assertBad(() -> ModelWeights.open(conf, dir.resolve("missing").toUri().toString()), "missing");
    }

    @Test
    void singleFileByName() {
        try (ModelWeights w = ModelWeights.open(conf, ckpt.resolve(SHARD2).toUri().toString())) {
            assertEquals(List.of(head.name(), unmapped.name(), q1.name()), w.names());
            assertEquals(Map.of("format", "pt", "shard", "2"), w.metadata());
            assertArrayEquals(unmapped.data(), w.readRaw("stray"));
        }
    }

    @Test
    void unknownTensorAndUseAfterClose() {
        ModelWeights w = ModelWeights.open(conf, ckpt.toString());
        BadInputException e = assertBad(() -> w.readMatrix("layers.0.self_attn.q_proj.weight"),
                ModelWeights.INDEX_FILE, "'layers.0.self_attn.q_proj.weight'");
        assertTrue(e.getMessage().contains(q0.name()), "suggests the near miss: " + e.getMessage());
        assertBad(() -> w.info("stray"), "'stray'");
        w.close();
        w.close(); // closing twice is harmless
        assertThrows(IllegalStateException.class, () -> w.readRaw(q0.name()));
    }

    // ------------------------------------------------------------------------------------------------ corrupt

    @Test
    void indexNamingAMissingShard() throws IOException {
        writeIndex("\"%s\": \"%s\", \"%s\": \"model-00003-of-00002.safetensors\""
                .formatted(q0.name(), SHARD1, head.name()));
        assertBad(() -> ModelWeights.open(conf, ckpt.toString()), ModelWeights.INDEX_FILE,
                "model-00003-of-00002.safetensors", "does not exist", "'" + head.name() + "'");
    }

    @Test
    void indexMappingATensorTheShardLacks() throws IOException {
        writeIndex("\"%s\": \"%s\", \"%s\": \"%s\"".formatted(q0.name(), SHARD1, head.name(), SHARD1));
        assertBad(() -> ModelWeights.open(conf, ckpt.toUri().toString()), ModelWeights.INDEX_FILE,
                "'" + head.name() + "'", "'" + SHARD1 + "'", "no such tensor");
    }

    @Test
    void truncatedShardHeader() throws IOException {
        Path shard = ckpt.resolve(SHARD2);
        byte[] all = Files.readAllBytes(shard);
        Files.write(shard, Arrays.copyOf(all, 40)); // the length says more header than there is
        assertBad(() -> ModelWeights.open(conf, ckpt.toString()), SHARD2, "larger than the rest of the file");
        Files.write(shard, Arrays.copyOf(all, 5));
        assertBad(() -> ModelWeights.open(conf, ckpt.toString()), SHARD2, "too short");
    }

    @Test
    void truncatedShardData() throws IOException {
        Path shard = ckpt.resolve(SHARD2);
        byte[] all = Files.readAllBytes(shard);
        Files.write(shard, Arrays.copyOf(all, all.length - 1));
        assertBad(() -> ModelWeights.open(conf, ckpt.toString()), SHARD2, "'" + q1.name() + "'", "data_offsets");
    }

    @Test
    void malformedIndex() throws IOException {
        Files.writeString(ckpt.resolve(ModelWeights.INDEX_FILE), "{\"weight_map\": {\"w\": ");
        assertBad(() -> ModelWeights.open(conf, ckpt.toString()), ModelWeights.INDEX_FILE, "malformed");
        Files.writeString(ckpt.resolve(ModelWeights.INDEX_FILE), "{\"metadata\": {}}");
        assertBad(() -> ModelWeights.open(conf, ckpt.toString()), ModelWeights.INDEX_FILE, "weight_map");
    }

    // ------------------------------------------------------------------------------------------------ helpers

    private void writeIndex(String weightMapBody) throws IOException {
        String json = "{\n  \"metadata\": {\"total_size\": 123},\n  \"weight_map\": {\n" + weightMapBody + "\n  }\n}\n";
        Files.writeString(ckpt.resolve(ModelWeights.INDEX_FILE), json, StandardCharsets.UTF_8);
    }

    private static RawTensor tensor(String name, String dtype, double[][] m) {
        int item = dtype.equals("F16") ? 2 : 4;
        ByteBuffer b = ByteBuffer.allocate(m.length * m[0].length * item).order(ByteOrder.LITTLE_ENDIAN);
        for (double[] row : m) {
            for (double v : row) {
                if (item == 2) {
                    b.putShort(Half.fromFloat((float) v));
                } else {
                    b.putFloat((float) v);
                }
            }
        }
        return new RawTensor(name, dtype, new long[]{m.length, m[0].length}, b.array());
    }

    private static BadInputException assertBad(Executable r, String... fragments) {
        BadInputException e = assertThrows(BadInputException.class, r);
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message should mention '" + f + "': " + e.getMessage());
        }
        return e;
    }

    private static void assertMatrixEquals(double[][] expected, double[][] actual, double tol) {
        assertEquals(expected.length, actual.length);
        for (int i = 0; i < expected.length; i++) {
            assertArrayEquals(expected[i], actual[i], tol, "row " + i);
        }
    }
}
