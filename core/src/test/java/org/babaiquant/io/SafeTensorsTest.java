package org.babaiquant.io;

import org.babaiquant.core.Half;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsTest {

    @TempDir
    Path dir;

    /** Smallest positive half (subnormal), 2^-24. */
    private static final double HALF_TINY = 0x1p-24;

    // ------------------------------------------------------------------------------------------------ round trips

    @Test
    void f32RoundTripIsExactAndHeaderIsListed() {
        Random rnd = new Random(11);
        double[][] a = new double[5][7];
        for (double[] row : a) {
            for (int j = 0; j < row.length; j++) {
                row[j] = (float) rnd.nextGaussian();
            }
        }
        double[][] b = {{1, 2}, {3, 4}, {5, 6}};
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        tensors.put("model.layers.0.q_proj.weight", a);
        tensors.put("model.layers.0.k_proj.weight", b);
        Path f = dir.resolve("m.safetensors");
        SafeTensorsWriter.write(f, tensors, "F32");

        Map<String, SafeTensors.TensorInfo> list = SafeTensors.list(f);
        assertEquals(List.of("model.layers.0.q_proj.weight", "model.layers.0.k_proj.weight"),
                List.copyOf(list.keySet()));
        SafeTensors.TensorInfo qi = list.get("model.layers.0.q_proj.weight");
        assertEquals("F32", qi.dtype());
        assertArrayEquals(new long[]{5, 7}, qi.shape());
        assertEquals(0, qi.begin());
        assertEquals(140, qi.end());
        assertEquals(140, list.get("model.layers.0.k_proj.weight").begin());
        assertEquals(Map.of("format", "pt"), SafeTensors.metadata(f));

        assertMatrixEquals(a, SafeTensors.readMatrix(f, "model.layers.0.q_proj.weight"), 0);
        assertMatrixEquals(b, SafeTensors.readMatrix(f, "model.layers.0.k_proj.weight"), 0);
    }

    @Test
    void headerIsPaddedToEightBytes() throws IOException {
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        tensors.put("x", new double[][]{{1}});
        Path f = dir.resolve("p.safetensors");
        SafeTensorsWriter.write(f, tensors, "F32");
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
        long n = b.getLong(0);
        assertEquals(0, n % 8);
        assertEquals(8 + n + 4, b.capacity());
    }

    @Test
    void f64RoundTripIsExact() {
        double[][] a = {{Math.PI, -1e-300}, {1e300, 0.1}};
        Path f = dir.resolve("d.safetensors");
        SafeTensorsWriter.write(f, single("w", a), "F64");
        assertMatrixEquals(a, SafeTensors.readMatrix(f, "w"), 0);
    }

    @Test
    void f16KnownValues() {
        double[][] a = {{1.0, -2.5, 65504, 1e-7}, {HALF_TINY, 0.1, 65520, -1e-8}};
        Path f = dir.resolve("h.safetensors");
        SafeTensorsWriter.write(f, single("w", a), "F16");
        assertEquals(16, SafeTensors.list(f).get("w").end());
        double[][] back = SafeTensors.readMatrix(f, "w");
        assertEquals(1.0, back[0][0], 0);
        assertEquals(-2.5, back[0][1], 0);
        assertEquals(65504, back[0][2], 0); // largest half
        assertEquals(0x1p-23, back[0][3], 0); // 1e-7 = 1.68 * 2^-24 rounds to the subnormal 2 * 2^-24
        assertEquals(HALF_TINY, back[1][0], 0);
        assertEquals(0.0999755859375, back[1][1], 0); // 0.1 to 10 mantissa bits: 1638 * 2^-14
        assertEquals(Double.POSITIVE_INFINITY, back[1][2], 0); // halfway to 2^16 ties to even: infinity
        assertEquals(Double.doubleToRawLongBits(-0.0), Double.doubleToRawLongBits(back[1][3])); // underflow keeps sign
    }

    @Test
    void bf16KnownValues() {
        double[][] a = {{1.0, -2.5, 3.14159, 1e-7}, {1 + 0x1p-8, 1 + 3 * 0x1p-8, -65504, 0}};
        Path f = dir.resolve("b.safetensors");
        SafeTensorsWriter.write(f, single("w", a), "BF16");
        double[][] back = SafeTensors.readMatrix(f, "w");
        assertEquals(1.0, back[0][0], 0);
        assertEquals(-2.5, back[0][1], 0);
        assertEquals(3.140625, back[0][2], 0); // 8 significant bits
        assertEquals(1e-7, back[0][3], 1e-7 * 0x1p-8); // within half an ulp of bfloat16
        assertEquals(1.0, back[1][0], 0); // tie, kept mantissa even: down
        assertEquals(1 + 0x1p-6, back[1][1], 0); // tie, kept mantissa odd: up
        assertEquals(-65536, back[1][2], 0);
        assertEquals(0, back[1][3], 0);
    }

    /** Every non-NaN half survives half -> float -> half, which pins down both conversions on the whole range. */
    @Test
    void halfConversionRoundTripsAllBitPatterns() {
        for (int h = 0; h < 0x10000; h++) {
            float f = Half.toFloat((short) h);
            if (Float.isNaN(f)) {
                assertTrue((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0, Integer.toHexString(h));
                assertTrue(Float.isNaN(Half.toFloat(Half.fromFloat(f))));
                continue;
            }
            assertEquals(h, Half.fromFloat(f) & 0xffff, "half 0x" + Integer.toHexString(h));
        }
        assertEquals(0x1p-14f, Half.toFloat((short) 0x0400), 0f); // smallest normal
        assertEquals(0x3ffp-24f, Half.toFloat((short) 0x03ff), 0f); // largest subnormal
        assertEquals(Float.NEGATIVE_INFINITY, Half.toFloat((short) 0xfc00), 0f);
    }

    @Test
    void halfRoundingTiesToEven() {
        assertEquals(0x3c00, Half.fromFloat(1 + 0x1p-11f)); // halfway 1 .. 1+2^-10: even is 1
        assertEquals(0x3c02, Half.fromFloat(1 + 3 * 0x1p-11f)); // halfway, odd below: up
        assertEquals(0x3c01, Half.fromFloat(1 + 0x1p-11f + 0x1p-20f)); // just above halfway: up
        assertEquals(0x0000, Half.fromFloat(0x1p-25f)); // halfway 0 .. tiny: even is 0
        assertEquals(0x0002, Half.fromFloat(3 * 0x1p-25f)); // halfway tiny .. 2 tiny: even is 2
        assertEquals(0x0400, Half.fromFloat(0x3ffp-24f + 0x1p-25f)); // subnormal rounds up into normal
        assertEquals(0x7bff, Half.fromFloat(65519.99f));
        assertEquals(0x7c00, Half.fromFloat(65520f));
        assertEquals(0xfc00, Half.fromFloat(Float.NEGATIVE_INFINITY) & 0xffff);
        assertTrue(Float.isNaN(Half.toFloat(Half.fromFloat(Float.NaN))));
    }

    @Test
    void bf16ConversionRoundTripsAllBitPatterns() {
        for (int h = 0; h < 0x10000; h++) {
            float f = Half.bf16ToFloat((short) h);
            if (!Float.isNaN(f)) {
                assertEquals(h, Half.bf16FromFloat(f) & 0xffff);
            }
        }
        assertEquals(0x7f80, Half.bf16FromFloat(Float.MAX_VALUE)); // above the largest bf16's halfway point
        assertTrue(Float.isNaN(Half.bf16ToFloat(Half.bf16FromFloat(Float.intBitsToFloat(0x7f800001)))));
    }

    @Test
    void namesWithEscapesAndForeignMetadataAreParsed() throws IOException {
        String json = "{\"__metadata__\": {\"note\": \"a\\nb \\u00e9 \\ud83d\\ude00\"},"
                + " \"odd \\\"name\\\"\": {\"dtype\": \"F32\", \"shape\": [1, 1], \"data_offsets\": [0, 4]},"
                + " \"ids\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [4, 20]}}";
        ByteBuffer data = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN).putFloat(2.5f).putLong(1).putLong(2);
        Path f = file(json, data.array());
        assertEquals("a\nb \u00e9 \ud83d\ude00", SafeTensors.metadata(f).get("note"));
        assertEquals(2.5, SafeTensors.readMatrix(f, "odd \"name\"")[0][0], 0);
        assertEquals("I64", SafeTensors.list(f).get("ids").dtype());
    }

    // ------------------------------------------------------------------------------------------------ bad input

    @Test
    void headerLengthLargerThanFile() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(1000);
        Path f = dir.resolve("short.safetensors");
        Files.write(f, b.array());
        assertBad(f, "larger than the rest of the file");
        Files.write(f, new byte[3]);
        assertBad(f, "too short");
    }

    @Test
    void absurdHeaderLength() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(-1);
        Path f = dir.resolve("absurd.safetensors");
        Files.write(f, b.array());
        BadInputException e = assertBad(f, "over the limit");
        assertTrue(e.getMessage().contains("18446744073709551615"), e.getMessage());
    }

    @Test
    void offsetsBeyondData() throws IOException {
        Path f = file("{\"w\": {\"dtype\": \"F32\", \"shape\": [4, 4], \"data_offsets\": [0, 64]}}", new byte[16]);
        BadInputException e = assertBad(f, "data_offsets [0, 64]");
        assertTrue(e.getMessage().contains("'w'") && e.getMessage().contains("16 bytes"), e.getMessage());
        Path g = file("{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", new byte[16]);
        assertBad(g, "begin <= end");
    }

    @Test
    void dtypeShapeSizeMismatch() throws IOException {
        Path f = file("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", new byte[16]);
        BadInputException e = assertBad(f, "needs 16 bytes");
        assertTrue(e.getMessage().contains("span 12"), e.getMessage());
    }

    @Test
    void unknownDtype() throws IOException {
        Path f = file("{\"w\": {\"dtype\": \"F128\", \"shape\": [1], \"data_offsets\": [0, 16]}}", new byte[16]);
        assertBad(f, "F128");
    }

    @Test
    void unknownTensorNameListsAvailableOnes() {
        LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
        tensors.put("model.layers.0.mlp.up_proj.weight", new double[][]{{1}});
        tensors.put("model.layers.0.mlp.down_proj.weight", new double[][]{{1}});
        Path f = dir.resolve("n.safetensors");
        SafeTensorsWriter.write(f, tensors, "F32");
        BadInputException e = assertThrows(BadInputException.class,
                () -> SafeTensors.readMatrix(f, "layers.0.mlp.up_proj.weight"));
        String m = e.getMessage();
        assertTrue(m.contains("n.safetensors") && m.contains("'layers.0.mlp.up_proj.weight'"), m);
        assertTrue(m.indexOf("model.layers.0.mlp.up_proj.weight") < m.indexOf("model.layers.0.mlp.down_proj.weight"),
                "the near miss should be listed first: " + m);
    }

    @Test
    void wrongRankOrDtypeForReadMatrix() throws IOException {
        Path f = file("{\"v\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                + " \"i\": {\"dtype\": \"I32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", new byte[16]);
        BadInputException rank = assertThrows(BadInputException.class, () -> SafeTensors.readMatrix(f, "v"));
        assertTrue(rank.getMessage().contains("[4]") && rank.getMessage().contains("2-D"), rank.getMessage());
        BadInputException dtype = assertThrows(BadInputException.class, () -> SafeTensors.readMatrix(f, "i"));
        assertTrue(dtype.getMessage().contains("I32"), dtype.getMessage());
    }

    @Test
    void malformedJson() throws IOException {
        String ok = "\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}";
        String[] bad = {
            "{" + ok,                                   // unterminated object
            "{" + ok + ",}",                            // trailing comma
            "{'w': 1}",                                 // single quotes
            "{" + ok + ", " + ok + "}",                 // duplicate key
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", // fraction
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [01], \"data_offsets\": [0, 4]}}",  // leading zero
            "{\"w\": \"\\x\"}",                         // invalid escape
            "{\"w\": tru}",                             // bad literal
            "{" + ok + "} x",                           // trailing garbage
            "[1, 2]",                                   // not an object
            "{\"w\": " + "[".repeat(100) + "]".repeat(100) + "}", // too deep
        };
        for (String json : bad) {
            Path f = file(json, new byte[4]);
            BadInputException e = assertThrows(BadInputException.class, () -> SafeTensors.list(f), json);
            assertTrue(e.getMessage().contains(f.getFileName().toString()), e.getMessage());
        }
    }

    @Test
    void badMetadataAndEntries() throws IOException {
        assertBad(file("{\"__metadata__\": {\"n\": 1}}", new byte[0]), "__metadata__");
        assertBad(file("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", new byte[4]), "dtype");
        assertBad(file("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", new byte[4]), "shape");
        assertBad(file("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]}}", new byte[4]),
                "[begin, end]");
        assertBad(file("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", new byte[4]),
                "negative");
    }

    @Test
    void invalidUtf8Header() throws IOException {
        byte[] json = "{\"w\": 1}".getBytes(StandardCharsets.UTF_8);
        json[3] = (byte) 0xff;
        ByteBuffer b = ByteBuffer.allocate(8 + json.length).order(ByteOrder.LITTLE_ENDIAN).putLong(json.length)
                .put(json);
        Path f = dir.resolve("u.safetensors");
        Files.write(f, b.array());
        assertBad(f, "UTF-8");
    }

    @Test
    void writerRejectsBadArguments() {
        Path f = dir.resolve("x.safetensors");
        assertThrows(IllegalArgumentException.class, () -> SafeTensorsWriter.write(f, single("w", new double[][]{{1}}), "I8"));
        assertThrows(IllegalArgumentException.class,
                () -> SafeTensorsWriter.write(f, single("w", new double[][]{{1, 2}, {3}}), "F32"));
        assertThrows(IllegalArgumentException.class,
                () -> SafeTensorsWriter.write(f, single("__metadata__", new double[][]{{1}}), "F32"));
    }

    // ------------------------------------------------------------------------------------------------ helpers

    private static LinkedHashMap<String, double[][]> single(String name, double[][] m) {
        LinkedHashMap<String, double[][]> t = new LinkedHashMap<>();
        t.put(name, m);
        return t;
    }

    /** A file with this exact header text and data buffer. */
    private Path file(String json, byte[] data) throws IOException {
        byte[] header = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(header.length).put(header).put(data);
        Path f = Files.createTempFile(dir, "t", ".safetensors");
        Files.write(f, b.array());
        return f;
    }

    private static BadInputException assertBad(Path f, String fragment) {
        BadInputException e = assertThrows(BadInputException.class, () -> SafeTensors.list(f));
        assertTrue(e.getMessage().contains(f.getFileName().toString()), "message should name the file: "
                + e.getMessage());
        assertTrue(e.getMessage().contains(fragment), "message should mention '" + fragment + "': " + e.getMessage());
        return e;
    }

    private static void assertMatrixEquals(double[][] expected, double[][] actual, double tol) {
        assertEquals(expected.length, actual.length);
        for (int i = 0; i < expected.length; i++) {
            assertArrayEquals(expected[i], actual[i], tol, "row " + i);
        }
    }
}
