package org.babaiquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Random;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NpyTest {

    @TempDir
    Path dir;

    // ------------------------------------------------------------------------------------------------ round trips

    @Test
    void f32MatrixRoundTrip() {
        double[][] w = {{1, -2.5, 0.1f}, {3e-8f, Float.MAX_VALUE, -0.0}};
        Path f = dir.resolve("w.npy");
        NpyWriter.writeF32(f, w);
        assertEquals("<f4", Npy.readHeader(f).dtype());
        assertArrayEquals(new int[]{2, 3}, Npy.readHeader(f).shape());
        double[][] back = Npy.readMatrix(f);
        for (int i = 0; i < w.length; i++) {
            assertArrayEquals(w[i], back[i], 0.0);
        }
        float[][] backF = Npy.readMatrixF32(f);
        assertArrayEquals(new float[]{1, -2.5f, 0.1f}, backF[0], 0f);
    }

    @Test
    void f32RoundsDoublesToNearestFloat() {
        Path f = dir.resolve("r.npy");
        NpyWriter.writeF32(f, new double[][]{{0.1, 1.0 / 3}});
        assertArrayEquals(new double[]{0.1f, 1.0f / 3}, Npy.readMatrix(f)[0], 0.0);
    }

    @Test
    void f64MatrixRoundTripIsExact() {
        Random rnd = new Random(7);
        double[][] w = new double[17][9];
        for (double[] row : w) {
            for (int j = 0; j < row.length; j++) {
                row[j] = rnd.nextGaussian() * Math.pow(10, rnd.nextInt(20) - 10);
            }
        }
        Path f = dir.resolve("w64.npy");
        NpyWriter.writeF64(f, w);
        assertEquals("<f8", Npy.readHeader(f).dtype());
        double[][] back = Npy.readMatrix(f);
        for (int i = 0; i < w.length; i++) {
            assertArrayEquals(w[i], back[i], 0.0);
        }
    }

    @Test
    void i32MatrixRoundTrip() {
        int[][] rows = {{0, 1, -1}, {Integer.MAX_VALUE, Integer.MIN_VALUE, 42}};
        Path f = dir.resolve("i.npy");
        NpyWriter.writeI32(f, rows);
        assertEquals("<i4", Npy.readHeader(f).dtype());
        double[][] back = Npy.readMatrix(f);
        assertArrayEquals(new double[]{Integer.MAX_VALUE, Integer.MIN_VALUE, 42}, back[1], 0.0);
        assertArrayEquals(new double[]{0, 1, -1}, back[0], 0.0);
    }

    /** uint8 codes: np.save's bytes exactly (header checked against numpy 2.4: a (2, 3) uint8 array is 134 bytes). */
    @Test
    void u8MatrixIsNumpysBytesAndReadsBack() throws IOException {
        Path f = dir.resolve("u8.npy");
        NpyWriter.writeU8(f, new int[][]{{0, 7, 255}, {1, 2, 3}});
        byte[] file = Files.readAllBytes(f);
        assertEquals(134, file.length);
        assertArrayEquals(numpyHeader("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 128), Arrays.copyOf(file, 128));
        assertArrayEquals(new byte[]{0, 7, (byte) 255, 1, 2, 3}, Arrays.copyOfRange(file, 128, 134));
        assertEquals("|u1", Npy.readHeader(f).dtype());
        double[][] back = Npy.readMatrix(f);
        assertArrayEquals(new double[]{0, 7, 255}, back[0], 0.0);
        assertArrayEquals(new double[]{1, 2, 3}, back[1], 0.0);
        assertArrayEquals(new float[]{1, 2, 3}, Npy.readMatrixF32(f)[1], 0f);
    }

    @Test
    void u8RefusesValuesOutsideTheByteAndWritesNothing() {
        Path f = dir.resolve("bad-u8.npy");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> NpyWriter.writeU8(f, new int[][]{{0, 1}, {256, 2}}));
        assertTrue(e.getMessage().contains("[1, 0]") && e.getMessage().contains("256"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> NpyWriter.writeU8(f, new int[][]{{-1}}));
        assertFalse(Files.exists(f));
    }

    /** Rows longer than the 1 MiB write buffer go out in pieces: every element lands where it belongs. */
    @Test
    void bulkWritesSplitRowsAcrossTheWriteBuffer() {
        int cols = 300_001; // 1.2 MB of float32, 2.4 MB of float64 per row: each row crosses the buffer
        double[][] w = new double[3][cols];
        int[][] k = new int[3][cols];
        for (int r = 0; r < 3; r++) {
            for (int j = 0; j < cols; j++) {
                w[r][j] = r * 1e6 + j + 0.25;
                k[r][j] = (r * 31 + j) & 0xFF;
            }
        }
        Path f32 = dir.resolve("long32.npy");
        Path f64 = dir.resolve("long64.npy");
        Path i32 = dir.resolve("longi.npy");
        Path u8 = dir.resolve("longu.npy");
        NpyWriter.writeF32(f32, w);
        NpyWriter.writeF64(f64, w);
        NpyWriter.writeI32(i32, k);
        NpyWriter.writeU8(u8, k);
        float[][] f64AsFloat = Npy.readMatrixF32(f64);
        float[][] i32AsFloat = Npy.readMatrixF32(i32);
        float[][] u8AsFloat = Npy.readMatrixF32(u8);
        double[][] b32 = Npy.readMatrix(f32);
        double[][] b64 = Npy.readMatrix(f64);
        double[][] bi = Npy.readMatrix(i32);
        double[][] bu = Npy.readMatrix(u8);
        for (int r = 0; r < 3; r++) {
            for (int j = 0; j < cols; j++) {
                assertEquals((float) w[r][j], b32[r][j], 0.0);
                assertEquals(w[r][j], b64[r][j], 0.0);
                assertEquals(k[r][j], bi[r][j], 0.0);
                assertEquals(k[r][j], bu[r][j], 0.0);
                assertEquals((float) w[r][j], f64AsFloat[r][j], 0f, "float64 rows read as floats round to nearest");
                assertEquals(k[r][j], i32AsFloat[r][j], 0f);
                assertEquals(k[r][j], u8AsFloat[r][j], 0f);
            }
        }
    }

    @Test
    void vectorsRoundTrip() {
        Path f = dir.resolve("v.npy");
        NpyWriter.writeF32(f, new int[]{5}, new float[]{1, 2, 3, 4, 5.5f});
        assertArrayEquals(new int[]{5}, Npy.readHeader(f).shape());
        assertArrayEquals(new double[]{1, 2, 3, 4, 5.5}, Npy.readVector(f), 0.0);

        Path g = dir.resolve("g.npy");
        NpyWriter.writeI32(g, new int[]{4}, new int[]{0, 0, 1, 1});
        assertArrayEquals(new double[]{0, 0, 1, 1}, Npy.readVector(g), 0.0);
    }

    @Test
    void shapedWritesKeepCOrder() {
        Path f = dir.resolve("s.npy");
        NpyWriter.writeI32(f, new int[]{2, 3}, new int[]{0, 1, 2, 10, 11, 12});
        double[][] m = Npy.readMatrix(f);
        assertArrayEquals(new double[]{10, 11, 12}, m[1], 0.0);
    }

    @Test
    void emptyMatrixRoundTrips() {
        Path f = dir.resolve("e.npy");
        NpyWriter.writeF64(f, new double[0][]);
        assertArrayEquals(new int[]{0, 0}, Npy.readHeader(f).shape());
        assertEquals(0, Npy.readMatrix(f).length);
    }

    @Test
    void largeMatrixCrossesReadChunks() {
        // 3000 x 700 float32 = 8.4 MB: more than two 4 MiB read chunks, with a partial last chunk.
        int rows = 3000;
        int cols = 700;
        float[] data = new float[rows * cols];
        for (int i = 0; i < data.length; i++) {
            data[i] = i * 0.5f;
        }
        Path f = dir.resolve("big.npy");
        NpyWriter.writeF32(f, new int[]{rows, cols}, data);
        float[][] m = Npy.readMatrixF32(f);
        for (int r = 0; r < rows; r += 499) {
            assertEquals((r * cols + 3) * 0.5f, m[r][3], 0f);
        }
        assertEquals((rows * cols - 1) * 0.5f, m[rows - 1][cols - 1], 0f);
    }

    @Test
    void writeReplacesAndLeavesNoTemporaryFiles() throws IOException {
        Path f = dir.resolve("w.npy");
        NpyWriter.writeF32(f, new double[][]{{1, 2}});
        NpyWriter.writeF32(f, new double[][]{{3}});
        assertArrayEquals(new double[]{3}, Npy.readMatrix(f)[0], 0.0);
        try (var files = Files.list(dir)) {
            assertEquals(1, files.count());
        }
    }

    @Test
    void raggedRowsAreRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> NpyWriter.writeF32(dir.resolve("x.npy"), new double[][]{{1, 2}, {3}}));
        assertTrue(e.getMessage().contains("row 1 has 1"), e.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> NpyWriter.writeF32(dir.resolve("x.npy"), new int[]{2, 2}, new float[3]));
    }

    // ------------------------------------------------------------------------------------------------ header bytes

    /** What {@code np.save} writes for a (3, 4) float32 array (checked against numpy 2.4). */
    @Test
    void headerIsByteIdenticalToNumpy() throws IOException {
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
        byte[] expected = numpyHeader(dict, 128);
        assertEquals(0x76, expected[8] & 0xff); // header length 118, as in the real data files
        assertArrayEquals(expected, NpyWriter.header("<f4", new int[]{3, 4}));

        Path f = dir.resolve("a.npy");
        NpyWriter.writeF32(f, new int[]{3, 4}, new float[12]);
        byte[] file = Files.readAllBytes(f);
        assertEquals(128 + 12 * 4, file.length);
        assertArrayEquals(expected, Arrays.copyOf(file, 128));
    }

    @Test
    void oneDimensionalShapeHasTrailingComma() {
        String dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }";
        assertArrayEquals(numpyHeader(dict, 128), NpyWriter.header("<i4", new int[]{5}));
    }

    /**
     * numpy reserves 21 - len(str(shape[0])) spaces so the first axis can grow in place; with 16 axes that pushes the
     * header from 128 to 192 bytes (numpy 2.4 writes header length 0xb6 = 182 here).
     */
    @Test
    void headerKeepsNumpysGrowthPadding() {
        int[] shape = new int[16];
        Arrays.fill(shape, 1);
        String dims = String.join(", ", java.util.Collections.nCopies(16, "1"));
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
        byte[] expected = numpyHeader(dict, 192);
        assertEquals(0xb6, expected[8] & 0xff);
        assertArrayEquals(expected, NpyWriter.header("<f4", shape));
    }

    @Test
    void headersAreMultiplesOf64() {
        for (int[] shape : new int[][]{{}, {0}, {7}, {384, 384}, {1536, 384}, {123456789, 1}, {2, 3, 4, 5}}) {
            byte[] h = NpyWriter.header("<f8", shape);
            assertEquals(0, h.length % 64, Arrays.toString(shape));
            assertEquals('\n', h[h.length - 1]);
        }
    }

    // ------------------------------------------------------------------------------------------------ real data

    @Test
    void readsTheMiniLmWeights() {
        Path weights = dataDir().resolve("weights");
        Path f = weights.resolve("layer0_q_proj.weight.npy");
        Npy.NpyHeader h = Npy.readHeader(f);
        assertEquals("<f4", h.dtype());
        assertArrayEquals(new int[]{384, 384}, h.shape());
        assertEquals(128, h.dataOffset());
        double[][] w = Npy.readMatrix(f);
        assertEquals(384, w.length);
        double sumSq = 0;
        for (double[] row : w) {
            assertEquals(384, row.length);
            for (double v : row) {
                assertTrue(Double.isFinite(v));
                sumSq += v * v;
            }
        }
        assertTrue(sumSq > 0, "all-zero weights");
        // Spot values and the float64 sum as numpy reports them for this file.
        assertEquals(Float.intBitsToFloat(0xbe182fbe), w[0][0], 0);
        assertEquals(Float.intBitsToFloat(0x3c5362da), w[17][200], 0);
        assertEquals(Float.intBitsToFloat(0xbdae91c0), w[383][383], 0);
        double sum = 0;
        for (double[] row : w) {
            for (double v : row) {
                sum += v;
            }
        }
        assertEquals(13.52819408863644, sum, 1e-9);
        assertEquals(384, Npy.readVector(weights.resolve("layer0_q_proj.bias.npy")).length);
    }

    @Test
    void readsTheMiniLmActivationsAndRowIndex() {
        Path act = dataDir().resolve("activations");
        float[][] x = Npy.readMatrixF32(act.resolve("layer0_attn_in.calib.npy"));
        assertEquals(384, x[0].length);
        Npy.NpyHeader rows = Npy.readHeader(act.resolve("rows.calib.npy"));
        assertEquals("<i4", rows.dtype());
        assertEquals(3, rows.shape()[1]);
        double[][] r = Npy.readMatrix(act.resolve("rows.calib.npy"));
        assertEquals(rows.shape()[0], r.length);
        assertArrayEquals(new double[]{0, 2, 1999}, r[0], 0);
    }

    /**
     * The checked-in MiniLM data: {@code -Dbabai.data.dir=...} (the folder holding weights/ and activations/), else
     * {@code data/minilm-l6-v2} found by walking up from the working directory. Skips the test when neither exists.
     */
    static Path dataDir() {
        String prop = System.getProperty("babai.data.dir");
        if (prop != null && !prop.isBlank()) {
            return Paths.get(prop);
        }
        for (Path p = Paths.get("").toAbsolutePath(); p != null; p = p.getParent()) {
            Path candidate = p.resolve("data").resolve("minilm-l6-v2");
            if (Files.isDirectory(candidate)) {
                return candidate;
            }
        }
        Assumptions.abort("data/minilm-l6-v2 not found above " + Paths.get("").toAbsolutePath()
                + "; set -Dbabai.data.dir");
        return null;
    }

    // ------------------------------------------------------------------------------------------------ bad input

    @Test
    void missingFileNamesThePath() {
        Path f = dir.resolve("nope.npy");
        BadInputException e = assertThrows(BadInputException.class, () -> Npy.readMatrix(f));
        assertTrue(e.getMessage().contains("nope.npy"), e.getMessage());
    }

    @Test
    void badMagic() throws IOException {
        Path f = dir.resolve("bad.npy");
        byte[] bytes = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", new byte[4]);
        bytes[1] = 'X';
        Files.write(f, bytes);
        assertBad(f, "magic");
        Files.write(f, "hello".getBytes(StandardCharsets.US_ASCII));
        assertBad(f, "not a .npy file");
    }

    @Test
    void truncatedData() throws IOException {
        Path f = dir.resolve("t.npy");
        Files.write(f, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new byte[23]));
        BadInputException e = assertBad(f, "truncated");
        assertTrue(e.getMessage().contains("24"), e.getMessage());
    }

    @Test
    void trailingBytes() throws IOException {
        Path f = dir.resolve("t.npy");
        Files.write(f, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new byte[28]));
        assertBad(f, "trailing");
    }

    @Test
    void truncatedHeader() throws IOException {
        Path f = dir.resolve("h.npy");
        byte[] full = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", new byte[4]);
        Files.write(f, Arrays.copyOf(full, 40));
        assertBad(f, "truncated");
    }

    @Test
    void bigEndian() throws IOException {
        Path f = dir.resolve("be.npy");
        Files.write(f, npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", new byte[8]));
        BadInputException e = assertBad(f, "'>f4'");
        assertTrue(e.getMessage().contains("big-endian"), e.getMessage());
    }

    @Test
    void fortranOrder() throws IOException {
        Path f = dir.resolve("fo.npy");
        Files.write(f, npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", new byte[16]));
        assertBad(f, "Fortran");
    }

    @Test
    void unsupportedDtype() throws IOException {
        Path f = dir.resolve("c.npy");
        Files.write(f, npy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", new byte[16]));
        BadInputException e = assertBad(f, "'<c8'");
        assertTrue(e.getMessage().contains("<f4"), "should list the supported dtypes: " + e.getMessage());
        Files.write(f, npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", new byte[16]));
        assertBad(f, "'|O'");
        Files.write(f, npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", new byte[8]));
        assertBad(f, "structured");
    }

    @Test
    void wrongRankNamesTheShape() throws IOException {
        Path f = dir.resolve("3d.npy");
        Files.write(f, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", new byte[96]));
        BadInputException e = assertThrows(BadInputException.class, () -> Npy.readMatrix(f));
        assertTrue(e.getMessage().contains("(2, 3, 4)") && e.getMessage().contains("3d.npy"), e.getMessage());
        assertThrows(BadInputException.class, () -> Npy.readMatrixF32(f));
        BadInputException v = assertThrows(BadInputException.class, () -> Npy.readVector(f));
        assertTrue(v.getMessage().contains("1-D"), v.getMessage());
    }

    @Test
    void shapeOverflowingIntIsRejectedBeforeAllocating() throws IOException {
        Path f = dir.resolve("o.npy");
        Files.write(f, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }", new byte[4]));
        assertBad(f, "(100000, 100000)");
    }

    @Test
    void hugeHeaderLengthIsRejected() throws IOException {
        Path f = dir.resolve("hh.npy");
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[]{(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0}).putInt(Npy.MAX_HEADER_BYTES + 1);
        Files.write(f, b.array());
        assertBad(f, "over the limit");
    }

    @Test
    void malformedHeaderDict() throws IOException {
        Path f = dir.resolve("m.npy");
        Files.write(f, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", new byte[8]));
        assertBad(f, "malformed");
        Files.write(f, npy("{'descr': '<f4', 'shape': (2,), }", new byte[8]));
        assertBad(f, "keys");
    }

    @Test
    void readsVersion2Headers() throws IOException {
        String dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] text = pad(dict, 128 - 12);
        ByteBuffer pre = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        pre.put(new byte[]{(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0}).putInt(text.length);
        out.write(pre.array());
        out.write(text);
        out.write(new byte[]{7, 0, 0, 0, -1, -1, -1, -1});
        Path f = dir.resolve("v2.npy");
        Files.write(f, out.toByteArray());
        assertEquals(128, Npy.readHeader(f).dataOffset());
        assertArrayEquals(new double[]{7, -1}, Npy.readVector(f), 0.0);
    }

    // ------------------------------------------------------------------------------------------------ helpers

    private static BadInputException assertBad(Path f, String fragment) {
        BadInputException e = assertThrows(BadInputException.class, () -> Npy.readMatrix(f));
        assertTrue(e.getMessage().contains(f.getFileName().toString()), "message should name the file: "
                + e.getMessage());
        assertTrue(e.getMessage().contains(fragment), "message should mention '" + fragment + "': " + e.getMessage());
        return e;
    }

    /** Version 1.0 header built by hand: magic, 1, 0, uint16 length, dict, spaces, newline, to {@code total} bytes. */
    private static byte[] numpyHeader(String dict, int total) {
        byte[] text = pad(dict, total - 10);
        byte[] out = new byte[total];
        byte[] magic = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (byte) (text.length & 0xff),
                (byte) (text.length >>> 8)};
        System.arraycopy(magic, 0, out, 0, 10);
        System.arraycopy(text, 0, out, 10, text.length);
        return out;
    }

    private static byte[] pad(String dict, int length) {
        StringBuilder sb = new StringBuilder(dict);
        while (sb.length() < length - 1) {
            sb.append(' ');
        }
        return sb.append('\n').toString().getBytes(StandardCharsets.ISO_8859_1);
    }

    /** A version 1.0 file with an arbitrary (possibly wrong) dict and data section. */
    private static byte[] npy(String dict, byte[] data) {
        int total = (10 + dict.length() + 1 + 63) / 64 * 64;
        byte[] header = numpyHeader(dict, total);
        byte[] out = Arrays.copyOf(header, header.length + data.length);
        System.arraycopy(data, 0, out, header.length, data.length);
        return out;
    }
}
