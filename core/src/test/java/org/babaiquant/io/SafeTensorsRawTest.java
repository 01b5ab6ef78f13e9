package org.babaiquant.io;

import org.babaiquant.core.Half;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.babaiquant.BadInputException;
import org.babaiquant.io.SafeTensorsWriter.RawTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/** {@link SafeTensors#writeRaw}, {@link SafeTensors#readRaw}, the {@link ByteSource} readers, shard indexes. */
class SafeTensorsRawTest {

    @TempDir
    Path dir;

    /** dtype, bytes per element: every whole-byte dtype the reference implementation knows. */
    private static final Object[][] DTYPES = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
        {"F8_E8M0", 1}, {"C64", 8},
    };

    // ------------------------------------------------------------------------------------------------ round trips

    @Test
    void everyDtypeRoundTripsThroughFileStreamAndMemory() throws IOException {
        Random rnd = new Random(3);
        long[][] shapes = {{3, 5}, {7}, {}, {2, 0, 4}, {2, 3, 2}};
        List<RawTensor> tensors = new ArrayList<>();
        for (Object[] d : DTYPES) {
            for (int s = 0; s < shapes.length; s++) {
                tensors.add(random(rnd, "t." + d[0] + "." + s, (String) d[0], shapes[s], (Integer) d[1]));
            }
        }
        tensors.add(new RawTensor("packed.f4", "F4", new long[]{2, 4}, new byte[]{0x12, 0x34, 0x56, 0x78}));
        Map<String, String> meta = Map.of("format", "pt", "quant_method", "gptq");

        Path f = dir.resolve("all.safetensors");
        SafeTensorsWriter.writeRaw(f, tensors, meta);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        SafeTensorsWriter.writeRaw(out, tensors, meta);
        byte[] bytes = out.toByteArray();
        assertArrayEquals(Files.readAllBytes(f), bytes, "file and stream writers agree byte for byte");

        try (ByteSource file = ByteSource.of(f); ByteSource mem = ByteSource.of("mem", bytes)) {
            for (ByteSource src : List.of(file, mem)) {
                SafeTensors.Header h = SafeTensors.header(src);
                assertEquals(meta, h.metadata());
                assertEquals(tensors.stream().map(RawTensor::name).toList(), List.copyOf(h.tensors().keySet()),
                        "header order is list order");
                long offset = 0;
                for (RawTensor t : tensors) {
                    SafeTensors.TensorInfo info = h.tensors().get(t.name());
                    assertEquals(t.dtype(), info.dtype(), t.name());
                    assertArrayEquals(t.shape(), info.shape(), t.name());
                    assertEquals(offset, info.begin(), "data laid out back to back in list order: " + t.name());
                    offset = info.end();
                    assertArrayEquals(t.data(), SafeTensors.readRaw(src, h, t.name()), t.name());
                    assertArrayEquals(t.data(), SafeTensors.readRaw(src, t.name()), t.name());
                    assertArrayEquals(t.data(), Arrays.copyOfRange(bytes, (int) (h.dataStart() + info.begin()),
                            (int) (h.dataStart() + info.end())), "dataStart + begin is absolute: " + t.name());
                }
                assertEquals(src.size(), h.dataStart() + offset, "nothing after the last tensor");
                assertEquals(h.dataStart(), SafeTensors.dataStart(src));
                assertEquals(h.tensors().keySet(), SafeTensors.list(src).keySet());
                assertEquals(meta, SafeTensors.metadata(src));
            }
        }
        assertEquals(SafeTensors.dataStart(f), SafeTensors.dataStart(ByteSource.of("mem", bytes)));
        assertArrayEquals(tensors.get(1).data(), SafeTensors.readRaw(f, tensors.get(1).name()));
    }

    @Test
    void floatTensorsWrittenRawReadBackAsMatrices() {
        double[][] m = {{1.5, -2, 0.25}, {65504, 0x1p-24, -0.0}};
        ByteBuffer f16 = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer f64 = ByteBuffer.allocate(48).order(ByteOrder.LITTLE_ENDIAN);
        for (double[] row : m) {
            for (double v : row) {
                f16.putShort(Half.fromFloat((float) v));
                f64.putDouble(v);
            }
        }
        Path f = dir.resolve("m.safetensors");
        SafeTensorsWriter.writeRaw(f, List.of(new RawTensor("h", "F16", new long[]{2, 3}, f16.array()),
                new RawTensor("d", "F64", new long[]{2, 3}, f64.array())), null);
        try (ByteSource src = ByteSource.of(f)) {
            SafeTensors.Header h = SafeTensors.header(src);
            for (String name : List.of("h", "d")) {
                double[][] back = SafeTensors.readMatrix(src, h, name);
                for (int i = 0; i < 2; i++) {
                    assertArrayEquals(m[i], back[i], 0, name);
                }
                assertEquals(Double.doubleToRawLongBits(-0.0), Double.doubleToRawLongBits(back[1][2]));
            }
            assertArrayEquals(SafeTensors.readMatrix(f, "h")[0], SafeTensors.readMatrix(src, "h")[0], 0);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        assertTrue(SafeTensors.metadata(f).isEmpty(), "null metadata: no __metadata__ entry");
    }

    /** The double[][] writer and the raw writer produce the same file for the same tensors. */
    @Test
    void matrixWriterIsTheRawWriterWithConversion() throws IOException {
        double[][] a = {{1, 2.5, -3}, {0.1, 1e-3, 7}};
        double[][] b = {{4}};
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        tensors.put("model.a", a);
        tensors.put("b \"quoted\"", b);
        for (String dtype : List.of("F64", "F32", "F16", "BF16")) {
            Path viaMatrix = dir.resolve("m" + dtype + ".safetensors");
            SafeTensorsWriter.write(viaMatrix, tensors, dtype);
            List<RawTensor> raw = new ArrayList<>();
            for (Map.Entry<String, double[][]> e : tensors.entrySet()) {
                raw.add(new RawTensor(e.getKey(), dtype, new long[]{e.getValue().length, e.getValue()[0].length},
                        encode(e.getValue(), dtype)));
            }
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            SafeTensorsWriter.writeRaw(out, raw, Map.of("format", "pt"));
            assertArrayEquals(Files.readAllBytes(viaMatrix), out.toByteArray(), dtype);
        }
    }

    // ------------------------------------------------------------------------------------------------ bytes

    @Test
    void headerBytesAreTheReferenceLayout() throws IOException {
        byte[] data = new byte[12];
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        SafeTensorsWriter.writeRaw(out, List.of(new RawTensor("wq", "F16", new long[]{2, 3}, data)), Map.of("format", "pt"));
        String json = "{\"__metadata__\":{\"format\":\"pt\"},\"wq\":{\"dtype\":\"F16\",\"shape\":[2,3],"
                + "\"data_offsets\":[0,12]}}";
        assertEquals(89, json.length());
        byte[] bytes = out.toByteArray();
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(96, b.getLong(0), "89 rounded up to a multiple of 8");
        assertEquals(json + "       ", new String(bytes, 8, 96, StandardCharsets.UTF_8));
        assertEquals(8 + 96 + 12, bytes.length);

        ByteArrayOutputStream empty = new ByteArrayOutputStream();
        SafeTensorsWriter.writeRaw(empty, List.of(), Map.of());
        byte[] e = empty.toByteArray();
        assertEquals(16, e.length);
        assertEquals(8, ByteBuffer.wrap(e).order(ByteOrder.LITTLE_ENDIAN).getLong(0));
        assertEquals("{}      ", new String(e, 8, 8, StandardCharsets.UTF_8));
        assertTrue(SafeTensors.list(ByteSource.of("empty", e)).isEmpty());

        SafeTensorsWriter.writeRaw(out = new ByteArrayOutputStream(),
                List.of(new RawTensor("s", "I64", new long[]{}, new byte[8])), null);
        String scalar = "{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}";
        assertEquals(53, scalar.length());
        assertEquals(scalar + "   ", new String(out.toByteArray(), 8, 56,
                StandardCharsets.UTF_8));
    }

    @Test
    void headerIsPaddedWithSpacesToEightBytesForEveryLength() throws IOException {
        for (int len = 1; len <= 24; len++) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            SafeTensorsWriter.writeRaw(out, List.of(new RawTensor("x".repeat(len), "U8", new long[]{3}, new byte[]{1, 2, 3})),
                    null);
            byte[] bytes = out.toByteArray();
            long n = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
            assertEquals(0, n % 8, "length " + len);
            String text = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
            String json = text.stripTrailing();
            assertTrue(json.endsWith("}") && n - json.length() < 8, text);
            assertEquals(" ".repeat((int) n - json.length()), text.substring(json.length()), "spaces only");
            assertArrayEquals(new byte[]{1, 2, 3}, Arrays.copyOfRange(bytes, (int) (8 + n), bytes.length));
        }
    }

    @Test
    void sameInputSameBytes() throws IOException {
        Random rnd = new Random(8);
        List<RawTensor> tensors = List.of(random(rnd, "a", "F16", new long[]{4, 4}, 2),
                random(rnd, "b", "I32", new long[]{3}, 4));
        Map<String, String> ordered = new LinkedHashMap<>();
        ordered.put("z", "1");
        ordered.put("a", "2");
        ordered.put("format", "pt");
        Map<String, String> reversed = new LinkedHashMap<>();
        reversed.put("format", "pt");
        reversed.put("a", "2");
        reversed.put("z", "1");
        Path f1 = dir.resolve("1.safetensors");
        Path f2 = dir.resolve("2.safetensors");
        SafeTensorsWriter.writeRaw(f1, tensors, ordered);
        SafeTensorsWriter.writeRaw(f2, tensors, new HashMap<>(reversed));
        assertArrayEquals(Files.readAllBytes(f1), Files.readAllBytes(f2), "metadata order does not matter");
        SafeTensorsWriter.writeRaw(f2, tensors, reversed); // overwrite in place
        assertArrayEquals(Files.readAllBytes(f1), Files.readAllBytes(f2));
        try (var files = Files.list(dir)) {
            assertEquals(2, files.count(), "no temporary file left behind");
        }
    }

    // ------------------------------------------------------------------------------------------------ bad input

    @Test
    void rawTensorIsValidated() {
        assertIae(() -> new RawTensor("w", "F32", new long[]{2, 2}, new byte[12]), "needs 16 bytes", "12");
        assertIae(() -> new RawTensor("w", "F16", new long[]{-1}, new byte[0]), "negative");
        assertIae(() -> new RawTensor("w", "F128", new long[]{1}, new byte[16]), "F128");
        assertIae(() -> new RawTensor("w", "F4", new long[]{3}, new byte[2]), "12 bits");
        assertIae(() -> new RawTensor("w", "BOOL", new long[]{3}, new byte[]{0, 1, 2}), "BOOL", "2");
        assertIae(() -> new RawTensor("__metadata__", "U8", new long[]{0}, new byte[0]), "__metadata__");
        assertIae(() -> new RawTensor("", "U8", new long[]{0}, new byte[0]), "invalid tensor name");
        assertIae(() -> new RawTensor("w", "U8", null, new byte[0]), "shape");
        assertIae(() -> new RawTensor("w", "U8", new long[]{0}, null), "data");
        assertIae(() -> new RawTensor("w", "U8", new long[]{1L << 40, 1L << 40}, new byte[0]), "overflows");
        long[] shape = {2};
        RawTensor t = new RawTensor("w", "U8", shape, new byte[2]);
        shape[0] = 5;
        assertArrayEquals(new long[]{2}, t.shape(), "shape is copied");
        assertEquals(t, new RawTensor("w", "U8", new long[]{2}, new byte[2]));
        assertEquals("w U8[2] (2 bytes)", t.toString());
    }

    @Test
    void writerRejectsDuplicatesAndNullsAndWritesNothing() {
        RawTensor a = new RawTensor("a", "U8", new long[]{1}, new byte[1]);
        Path f = dir.resolve("bad.safetensors");
        assertIae(() -> SafeTensorsWriter.writeRaw(f, List.of(a, a), null), "duplicate", "'a'");
        Map<String, String> nullValue = new HashMap<>();
        nullValue.put("k", null);
        assertIae(() -> SafeTensorsWriter.writeRaw(f, List.of(a), nullValue), "null metadata");
        assertIae(() -> SafeTensorsWriter.writeRaw(f, Arrays.asList(a, null), null), "null tensor");
        assertFalse(Files.exists(f));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertIae(() -> SafeTensorsWriter.writeRaw(out, List.of(a, a), null), "duplicate");
        assertEquals(0, out.size());
    }

    @Test
    void readRawErrorsNameTheSource() throws IOException {
        Path f = dir.resolve("r.safetensors");
        SafeTensorsWriter.writeRaw(f, List.of(new RawTensor("model.w", "U8", new long[]{2}, new byte[2])), null);
        BadInputException e = assertThrows(BadInputException.class, () -> SafeTensors.readRaw(f, "w"));
        assertTrue(e.getMessage().contains("r.safetensors") && e.getMessage().contains("'w'")
                && e.getMessage().contains("model.w"), e.getMessage());
        try (ByteSource src = ByteSource.of(f)) {
            e = assertThrows(BadInputException.class, () -> SafeTensors.readRaw(src, "w"));
            assertTrue(e.getMessage().contains("r.safetensors"), e.getMessage());
        }
    }

    /** A 3 GiB tensor is listed, but readRaw refuses it before reading a byte: it cannot fit a byte[]. */
    @Test
    void readRawRefusesTensorsOverTwoGiB() {
        long big = 3L << 30;
        String json = "{\"huge\":{\"dtype\":\"U8\",\"shape\":[" + big + "],\"data_offsets\":[0," + big + "]}}";
        byte[] head = header(json);
        ByteSource sparse = new ByteSource() {
            @Override
            public String name() {
                return "s3a://bucket/huge.safetensors";
            }

            @Override
            public long size() {
                return head.length + big;
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                if (position + dst.remaining() > head.length) {
                    throw new AssertionError("read the data: " + position + " + " + dst.remaining());
                }
                dst.put(head, (int) position, dst.remaining());
            }

            @Override
            public void close() {
            }
        };
        assertEquals(big, SafeTensors.list(sparse).get("huge").end());
        BadInputException e = assertThrows(BadInputException.class, () -> SafeTensors.readRaw(sparse, "huge"));
        assertTrue(e.getMessage().contains("s3a://bucket/huge.safetensors") && e.getMessage().contains("'huge'")
                && e.getMessage().contains("2 GiB") && e.getMessage().contains(Long.toString(big)), e.getMessage());
    }

    @Test
    void truncatedSourceIsBadInputNamingIt() {
        byte[] head = header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}");
        byte[] all = Arrays.copyOf(head, head.length + 16);
        ByteSource lying = new ByteSource() { // claims the full size, ends early: a file truncated while we read
            @Override
            public String name() {
                return "hdfs://nn/ckpt/shard.safetensors";
            }

            @Override
            public long size() {
                return all.length;
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                if (position + dst.remaining() > head.length + 4) {
                    throw new EOFException("end of stream");
                }
                dst.put(all, (int) position, dst.remaining());
            }

            @Override
            public void close() {
            }
        };
        for (Executable r : List.<Executable>of(() -> SafeTensors.readRaw(lying, "w"),
                () -> SafeTensors.readMatrix(lying, "w"))) {
            BadInputException e = assertThrows(BadInputException.class, r);
            assertTrue(e.getMessage().contains("hdfs://nn/ckpt/shard.safetensors")
                    && e.getMessage().contains("truncated"), e.getMessage());
        }
        BadInputException e = assertThrows(BadInputException.class,
                () -> SafeTensors.list(ByteSource.of("cut.safetensors", Arrays.copyOf(head, head.length - 5))));
        assertTrue(e.getMessage().contains("cut.safetensors") && e.getMessage().contains("larger than the rest"),
                e.getMessage());
    }

    @Test
    void headerFromAnotherSourceIsRefused() {
        List<RawTensor> one = List.of(new RawTensor("w", "U8", new long[]{2}, new byte[]{1, 2}));
        List<RawTensor> two = List.of(new RawTensor("w", "U8", new long[]{4}, new byte[]{1, 2, 3, 4}));
        ByteSource a = ByteSource.of("a.safetensors", bytes(one));
        ByteSource b = ByteSource.of("b.safetensors", bytes(two));
        SafeTensors.Header h = SafeTensors.header(a);
        assertEquals("a.safetensors", h.source());
        BadInputException e = assertThrows(BadInputException.class, () -> SafeTensors.readRaw(b, h, "w"));
        assertTrue(e.getMessage().contains("b.safetensors") && e.getMessage().contains("a.safetensors"),
                e.getMessage());
        assertThrows(UnsupportedOperationException.class, () -> h.tensors().clear());
    }

    // ------------------------------------------------------------------------------------------------ index

    @Test
    void shardIndexIsParsedInFileOrder() {
        String json = "{\n  \"metadata\": {\"total_size\": 16060522496, \"ratio\": 1.5e3, \"tag\": \"x\","
                + " \"nested\": {\"a\": [1, true, null]}},\n  \"weight_map\": {\n"
                + "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
                + "    \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"\n  }\n}\n";
        ShardIndex idx = ShardIndex.read(ByteSource.of("idx.json", utf8(json)));
        assertEquals(List.of("lm_head.weight", "model.embed_tokens.weight"), List.copyOf(idx.weightMap().keySet()));
        assertEquals("model-00001-of-00002.safetensors", idx.weightMap().get("model.embed_tokens.weight"));
        assertEquals("16060522496", idx.metadata().get("total_size"));
        assertEquals("1.5e3", idx.metadata().get("ratio"));
        assertEquals("x", idx.metadata().get("tag"));
        assertEquals("{\"a\":[1,true,null]}", idx.metadata().get("nested"));
        ShardIndex bare = ShardIndex.read(ByteSource.of("i.json",
                utf8("{\"weight_map\": {\"w\": \"a.safetensors\"}}")));
        assertTrue(bare.metadata().isEmpty());
    }

    @Test
    void badShardIndexesNameTheFile() {
        String[][] cases = {
            {"[1]", "JSON object"},
            {"{\"metadata\": {}}", "no \"weight_map\""},
            {"{\"weight_map\": []}", "non-object"},
            {"{\"weight_map\": {}}", "empty"},
            {"{\"weight_map\": {\"w\": 3}}", "'w'"},
            {"{\"weight_map\": {\"w\": \"../up.safetensors\"}}", "plain file name"},
            {"{\"weight_map\": {\"w\": \"sub/a.safetensors\"}}", "plain file name"},
            {"{\"weight_map\": {\"w\": \"a\", \"w\": \"b\"}}", "duplicate key"},
            {"{\"weight_map\": {\"w\": \"a\"}, \"metadata\": 5}", "\"metadata\" must be an object"},
            {"{\"weight_map\": {\"w\": \"a\"}", "malformed shard index JSON"},
            {"{\"weight_map\": {\"w\": \"a\"}, \"metadata\": {\"x\": 1.}}", "digit"},
        };
        for (String[] c : cases) {
            BadInputException e = assertThrows(BadInputException.class,
                    () -> ShardIndex.read(ByteSource.of("ckpt/model.safetensors.index.json", utf8(c[0]))), c[0]);
            assertTrue(e.getMessage().contains("ckpt/model.safetensors.index.json") && e.getMessage().contains(c[1]),
                    c[0] + " -> " + e.getMessage());
        }
    }

    /** The index parser's lenient numbers do not leak into safetensors headers. */
    @Test
    void headersStillRejectFractions() {
        byte[] f = header("{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}");
        BadInputException e = assertThrows(BadInputException.class,
                () -> SafeTensors.list(ByteSource.of("frac.safetensors", Arrays.copyOf(f, f.length + 1))));
        assertTrue(e.getMessage().contains("only integers"), e.getMessage());
    }

    // ------------------------------------------------------------------------------------------------ helpers

    private static RawTensor random(Random rnd, String name, String dtype, long[] shape, int itemSize) {
        long count = 1;
        for (long d : shape) {
            count *= d;
        }
        byte[] data = new byte[(int) count * itemSize];
        rnd.nextBytes(data);
        if (dtype.equals("BOOL")) {
            for (int i = 0; i < data.length; i++) {
                data[i] &= 1;
            }
        }
        return new RawTensor(name, dtype, shape, data);
    }

    private static byte[] encode(double[][] m, String dtype) {
        int item = dtype.equals("F64") ? 8 : dtype.equals("F32") ? 4 : 2;
        ByteBuffer b = ByteBuffer.allocate(m.length * m[0].length * item).order(ByteOrder.LITTLE_ENDIAN);
        for (double[] row : m) {
            for (double v : row) {
                switch (dtype) {
                    case "F64" -> b.putDouble(v);
                    case "F32" -> b.putFloat((float) v);
                    case "F16" -> b.putShort(Half.fromFloat((float) v));
                    default -> b.putShort(Half.bf16FromFloat((float) v));
                }
            }
        }
        return b.array();
    }

    private static byte[] bytes(List<RawTensor> tensors) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            SafeTensorsWriter.writeRaw(out, tensors, null);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        return out.toByteArray();
    }

    /** The 8-byte length and this exact header text, no data. */
    private static byte[] header(String json) {
        byte[] text = utf8(json);
        return ByteBuffer.allocate(8 + text.length).order(ByteOrder.LITTLE_ENDIAN).putLong(text.length).put(text)
                .array();
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static void assertIae(Executable r, String... fragments) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r);
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message should mention '" + f + "': " + e.getMessage());
        }
    }
}
