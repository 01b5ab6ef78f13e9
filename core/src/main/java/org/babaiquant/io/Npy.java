package org.babaiquant.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;

import org.babaiquant.BadInputException;

/**
 * NumPy {@code .npy} files: the format the calibration data, weights and codes travel in between Python and Java.
 *
 * <p>Byte map (numpy {@code lib/format.py}); all integers little-endian:
 * <pre>
 *  offset  size  field
 *  0       6     magic  \x93 'N' 'U' 'M' 'P' 'Y'
 *  6       1     major version: 1, 2 or 3
 *  7       1     minor version: 0
 *  8       2|4   header length HLEN: uint16 in version 1.0, uint32 in 2.0 and 3.0
 *  10|12   HLEN  header: a Python dict literal, latin-1 (1.0, 2.0) or UTF-8 (3.0), space padded, ending in '\n'
 *                  {'descr': '&lt;f4', 'fortran_order': False, 'shape': (3, 4), }
 *  10+HLEN ...   data: product(shape) elements, C order (last index fastest), no trailer
 * </pre>
 * numpy pads the header so that the data starts at a multiple of 64 bytes; the writer here does the same, byte for
 * byte, so files written in Java and by {@code np.save} are identical.
 *
 * <p>Only what this project exchanges is supported: little-endian {@code <f4}, {@code <f8}, {@code <i4} and
 * {@code |u1} (uint8: the codes of a clipped grid of at most 8 bits), C order.
 * Anything else (big-endian, Fortran order, object or structured dtypes, a data section whose length does not match
 * the header) is a {@link BadInputException} naming the file, because silently reinterpreting bytes would quantize
 * garbage.
 */
public final class Npy {

    /** Largest header we accept. numpy itself refuses headers over 10 000 bytes by default; this is generous. */
    static final int MAX_HEADER_BYTES = 1 << 20;

    /** Read and write in chunks of about this many bytes, so that memory stays bounded for large arrays. */
    private static final int CHUNK_BYTES = 1 << 22;

    static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};

    /** numpy aligns the start of the data to this many bytes ({@code ARRAY_ALIGN}). */
    static final int ALIGN = 64;

    /**
     * numpy (since 1.23) reserves room for the first axis to grow to this many digits, so that arrays can be appended
     * to in place ({@code GROWTH_AXIS_MAX_DIGITS}); we copy it to stay byte-identical.
     */
    static final int GROWTH_AXIS_MAX_DIGITS = 21;

    private Npy() {
    }

    /**
     * What the header of a {@code .npy} file says.
     *
     * @param dtype      numpy type descriptor, one of {@code <f4}, {@code <f8}, {@code <i4}, {@code |u1}
     * @param shape      array shape; empty for a 0-d array
     * @param dataOffset byte offset of the first element in the file
     */
    public record NpyHeader(String dtype, int[] shape, long dataOffset) {
        public NpyHeader {
            shape = shape.clone();
        }

        @Override
        public int[] shape() {
            return shape.clone();
        }

        /** Number of elements; the header reader guarantees it fits in an int. */
        public int elementCount() {
            int n = 1;
            for (int d : shape) {
                n *= d;
            }
            return n;
        }

        /** Bytes per element. */
        public int itemSize() {
            return Npy.itemSize(dtype);
        }

        @Override
        public String toString() {
            return "NpyHeader[dtype=" + dtype + ", shape=" + shapeString(shape) + ", dataOffset=" + dataOffset + "]";
        }
    }

    // ------------------------------------------------------------------------------------------------ reading

    /**
     * Reads and validates the header, including that the file holds exactly the data the header announces.
     *
     * @throws BadInputException if the file is missing, is not a supported {@code .npy} file, or is truncated
     */
    public static NpyHeader readHeader(Path file) {
        try (FileChannel ch = openForRead(file)) {
            return readHeader(ch, file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads a 2-D array of any supported dtype as rows of doubles ({@code result[i][j] = a[i, j]}).
     *
     * @throws BadInputException if the array is not 2-D, or for any reason {@link #readHeader} gives
     */
    public static double[][] readMatrix(Path file) {
        return read2D(file, (rows, cols) -> new double[rows][cols], Npy::decodeDouble);
    }

    /**
     * Reads a 2-D array of any supported dtype as rows of floats. Activations are float32 on disk and large, so this
     * halves the memory of {@link #readMatrix} for them; {@code <f8} data is rounded to nearest float.
     */
    public static float[][] readMatrixF32(Path file) {
        return read2D(file, (rows, cols) -> new float[rows][cols], Npy::decodeFloat);
    }

    /** Decodes {@code count} rows from {@code first} of a chunk into the matrix {@code out}. */
    private interface MatrixDecoder<M> {
        void decode(String dtype, ByteBuffer chunk, M out, int first, int count);
    }

    /** A 2-D array read into a matrix that {@code allocate} makes for its shape. */
    private static <M> M read2D(Path file, java.util.function.BiFunction<Integer, Integer, M> allocate, MatrixDecoder<M> decoder) {
        try (FileChannel ch = openForRead(file)) {
            NpyHeader h = readHeader(ch, file);
            if (h.shape.length != 2) {
                throw new BadInputException(file + ": expected a 2-D array, found shape " + shapeString(h.shape));
            }
            M out = allocate.apply(h.shape[0], h.shape[1]);
            readRows(ch, file, h, h.shape[0], h.shape[1], (chunk, first, count) -> decoder.decode(h.dtype, chunk, out, first, count));
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /** Reads a 1-D array of any supported dtype as doubles. */
    public static double[] readVector(Path file) {
        try (FileChannel ch = openForRead(file)) {
            NpyHeader h = readHeader(ch, file);
            int[] shape = h.shape;
            if (shape.length != 1) {
                throw new BadInputException(file + ": expected a 1-D array, found shape " + shapeString(shape));
            }
            double[][] out = {new double[shape[0]]};
            // A vector is read as one row of a 1 x n matrix.
            readRows(ch, file, h, 1, shape[0], (chunk, first, count) -> decodeDouble(h.dtype, chunk, out, first,
                    count));
            return out[0];
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /** Receives {@code count} consecutive rows starting at row {@code first}, little-endian, positioned at 0. */
    private interface RowChunkDecoder {
        void decode(ByteBuffer chunk, int first, int count);
    }

    /** Reads rows in chunks of about {@link #CHUNK_BYTES} with positional bulk reads, never element by element. */
    private static void readRows(FileChannel ch, Path file, NpyHeader h, int rows, int cols, RowChunkDecoder decoder)
            throws IOException {
        long rowBytes = (long) cols * h.itemSize();
        if (rows == 0 || rowBytes == 0) {
            return;
        }
        if (rowBytes > Integer.MAX_VALUE - 8) {
            throw new BadInputException(file + ": a row of " + cols + " x " + h.dtype + " elements is over 2 GiB");
        }
        int rowsPerChunk = (int) Math.max(1, Math.min(rows, CHUNK_BYTES / rowBytes));
        ByteBuffer buf = ByteBuffer.allocate((int) (rowsPerChunk * rowBytes)).order(ByteOrder.LITTLE_ENDIAN);
        long pos = h.dataOffset;
        for (int first = 0; first < rows; first += rowsPerChunk) {
            int count = Math.min(rowsPerChunk, rows - first);
            buf.clear().limit((int) (count * rowBytes));
            readFully(ch, buf, pos, file);
            buf.flip();
            decoder.decode(buf, first, count);
            pos += count * rowBytes;
        }
    }

    /** Rows of any supported dtype into {@code out}: {@code <f8} copied in bulk, the others widened exactly. */
    private static void decodeDouble(String dtype, ByteBuffer chunk, double[][] out, int first, int count) {
        int end = first + count;
        switch (dtype) {
            case "<f8" -> {
                DoubleBuffer db = chunk.asDoubleBuffer();
                for (int r = first; r < end; r++) {
                    db.get(out[r]);
                }
            }
            case "<f4" -> {
                FloatBuffer fb = chunk.asFloatBuffer();
                widen(out, first, end, fb::get);
            }
            case "<i4" -> {
                IntBuffer ib = chunk.asIntBuffer();
                widen(out, first, end, ib::get);
            }
            case "|u1" -> widen(out, first, end, () -> chunk.get() & 0xFF);
            default -> throw new AssertionError(dtype); // readHeader admits only the four dtypes above
        }
    }

    /** Fills rows {@code [first, end)} element by element from {@code next}, which returns each value in file order. */
    private static void widen(double[][] out, int first, int end, java.util.function.DoubleSupplier next) {
        for (int r = first; r < end; r++) {
            double[] row = out[r];
            for (int c = 0; c < row.length; c++) {
                row[c] = next.getAsDouble();
            }
        }
    }

    /** {@code <f4} rows are copied as they are; the other dtypes go through {@link #decodeDouble}, then to nearest float. */
    private static void decodeFloat(String dtype, ByteBuffer chunk, float[][] out, int first, int count) {
        if ("<f4".equals(dtype)) {
            FloatBuffer fb = chunk.asFloatBuffer();
            for (int r = first; r < first + count; r++) {
                fb.get(out[r]);
            }
            return;
        }
        double[][] row = {new double[out[first].length]};
        int rowBytes = row[0].length * itemSize(dtype);
        for (int r = first; r < first + count; r++) {
            ByteBuffer one = chunk.slice(chunk.position() + (r - first) * rowBytes, rowBytes).order(ByteOrder.LITTLE_ENDIAN);
            decodeDouble(dtype, one, row, 0, 1);
            float[] dst = out[r];
            for (int c = 0; c < dst.length; c++) {
                dst[c] = (float) row[0][c];
            }
        }
    }

    private static NpyHeader readHeader(FileChannel ch, Path file) throws IOException {
        long size = ch.size();
        ByteBuffer pre = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        pre.limit((int) Math.min(12, size));
        readFully(ch, pre, 0, file);
        if (size < 10) {
            throw new BadInputException(file + ": not a .npy file (only " + size + " bytes, too short for the preamble)");
        }
        for (int i = 0; i < MAGIC.length; i++) {
            if (pre.get(i) != MAGIC[i]) {
                throw new BadInputException(file + ": not a .npy file (bad magic: expected \\x93NUMPY, found "
                        + printableBytes(pre, Math.min(6, (int) size)) + ")");
            }
        }
        int major = pre.get(6) & 0xff;
        int minor = pre.get(7) & 0xff;
        long headerLen;
        int prefix;
        if (major == 1 && minor == 0) {
            headerLen = pre.getShort(8) & 0xffff;
            prefix = 10;
        } else if ((major == 2 || major == 3) && minor == 0) {
            if (size < 12) {
                throw new BadInputException(file + ": truncated .npy preamble (version " + major + ".0, " + size
                        + " bytes)");
            }
            headerLen = pre.getInt(8) & 0xffffffffL;
            prefix = 12;
        } else {
            throw new BadInputException(file + ": unsupported .npy format version " + major + "." + minor
                    + " (supported: 1.0, 2.0, 3.0)");
        }
        if (headerLen > MAX_HEADER_BYTES) {
            throw new BadInputException(file + ": .npy header length " + headerLen + " bytes is over the limit of "
                    + MAX_HEADER_BYTES + " bytes; the file is corrupt or not a plain array");
        }
        if (prefix + headerLen > size) {
            throw new BadInputException(file + ": truncated .npy header (header says " + headerLen + " bytes, file has "
                    + (size - prefix) + " after the preamble)");
        }
        ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
        readFully(ch, hb, prefix, file);
        String text;
        try {
            // Version 3.0 exists only to allow UTF-8 in structured field names; 1.0 and 2.0 are latin-1.
            text = (major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1).newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .decode(hb.flip()).toString();
        } catch (CharacterCodingException e) {
            throw new BadInputException(file + ": .npy header is not valid UTF-8", e);
        }
        Map<String, Object> dict = new NpyHeaderParser(text, file).parseDict();
        NpyHeader h = validate(dict, file, prefix + headerLen);
        long dataBytes = (long) h.elementCount() * h.itemSize();
        long actual = size - h.dataOffset;
        if (actual != dataBytes) {
            throw new BadInputException(file + ": header announces " + h.dtype + " " + shapeString(h.shape) + " = "
                    + dataBytes + " data bytes, but the file has " + actual
                    + (actual < dataBytes ? " (truncated)" : " (trailing bytes)"));
        }
        return h;
    }

    private static NpyHeader validate(Map<String, Object> dict, Path file, long dataOffset) {
        if (!dict.keySet().equals(java.util.Set.of("descr", "fortran_order", "shape"))) {
            throw new BadInputException(file + ": .npy header must have exactly the keys descr, fortran_order, shape;"
                    + " found " + dict.keySet());
        }
        Object descr = dict.get("descr");
        if (!(descr instanceof String)) {
            throw new BadInputException(file + ": unsupported dtype " + descr
                    + " (structured dtypes are not supported; expected <f4, <f8, <i4 or |u1)");
        }
        String dtype = (String) descr;
        if (itemSize(dtype) < 0) {
            String why = dtype.startsWith(">") ? " (big-endian; convert with a.astype('<" + dtype.substring(1) + "'))"
                    : "";
            throw new BadInputException(file + ": unsupported dtype '" + dtype + "'" + why
                    + "; supported: '<f4', '<f8', '<i4', '|u1'");
        }
        Object fortran = dict.get("fortran_order");
        if (!(fortran instanceof Boolean)) {
            throw new BadInputException(file + ": fortran_order must be True or False, found " + fortran);
        }
        if ((Boolean) fortran) {
            throw new BadInputException(file + ": Fortran-order arrays are not supported; save with "
                    + "np.save(path, np.ascontiguousarray(a))");
        }
        Object shapeObj = dict.get("shape");
        if (!(shapeObj instanceof long[])) {
            throw new BadInputException(file + ": shape must be a tuple of integers, found " + shapeObj);
        }
        long[] dims = (long[]) shapeObj;
        int[] shape = new int[dims.length];
        long count = 1;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] < 0 || dims[i] > Integer.MAX_VALUE) {
                throw new BadInputException(file + ": shape " + Arrays.toString(dims) + " has dimension " + dims[i]
                        + " outside 0.." + Integer.MAX_VALUE);
            }
            shape[i] = (int) dims[i];
            count *= dims[i]; // no overflow: checked against int range after every step
            if (count > Integer.MAX_VALUE) {
                throw new BadInputException(file + ": shape " + shapeString(shape) + " has over " + Integer.MAX_VALUE
                        + " elements, more than a Java array holds");
            }
        }
        return new NpyHeader(dtype, shape, dataOffset);
    }

    /** Bytes per element, or -1 for an unsupported descriptor. */
    static int itemSize(String dtype) {
        switch (dtype) {
            case "<f4":
            case "<i4":
                return 4;
            case "<f8":
                return 8;
            case "|u1":
                return 1;
            default:
                return -1;
        }
    }

    // ------------------------------------------------------------------------------ file helpers (shared in io)

    /** Writes the contents of a file through a channel. */
    interface ChannelWriter {
        void write(FileChannel ch) throws IOException;
    }

    /**
     * Writes a file through the {@link Commit} protocol: to a temporary sibling, renamed into place (replacing an
     * older file), so that a crash or a reader racing the writer never sees a half-written file under the final name;
     * the temporary is removed on failure, and a leftover of a killed writer by the next write of the same file.
     */
    static void writeAtomically(Path target, ChannelWriter writer) {
        try (LocalCommit c = LocalCommit.file(target, Commit.IfExists.REPLACE)) {
            // Not Files.createTempFile: that makes the file owner-only (0600), and the rename would keep it so.
            try (FileChannel ch = FileChannel.open(c.temp(), StandardOpenOption.WRITE, StandardOpenOption.CREATE_NEW)) {
                writer.write(ch);
                ch.force(false);
            }
            c.commit();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + target + ": " + e, e);
        }
    }

    static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
        while (buf.hasRemaining()) {
            ch.write(buf);
        }
    }

    /** Fills {@code buf} from {@code pos}; hitting end of file is a BadInputException (the file is truncated). */
    static void readFully(FileChannel ch, ByteBuffer buf, long pos, Path file) throws IOException {
        long p = pos;
        while (buf.hasRemaining()) {
            int n = ch.read(buf, p);
            if (n < 0) {
                throw new BadInputException(file + ": truncated: unexpected end of file at byte " + p);
            }
            p += n;
        }
    }

    /** Opens for reading; a missing file is bad input (the user named it), not an I/O failure. */
    static FileChannel openForRead(Path file) throws IOException {
        try {
            return FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new BadInputException("no such file: " + file);
        }
    }

    // ------------------------------------------------------------------------------------------------ helpers

    /** Python tuple syntax, as numpy writes it: {@code ()}, {@code (5,)}, {@code (3, 4)}. */
    static String shapeString(int[] shape) {
        if (shape.length == 1) {
            return "(" + shape[0] + ",)";
        }
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            sb.append(i == 0 ? "" : ", ").append(shape[i]);
        }
        return sb.append(')').toString();
    }

    /**
     * Returns the common row length (0 for no rows); null or ragged rows are an IllegalArgumentException.
     * {@code rows} is a {@code double[][]} or {@code int[][]}.
     */
    static int checkRectangular(Object[] rows, Object where) {
        if (rows == null) {
            throw new IllegalArgumentException("rows is null (writing " + where + ")");
        }
        int cols = -1;
        for (int r = 0; r < rows.length; r++) {
            if (rows[r] == null) {
                throw new IllegalArgumentException("row " + r + " is null (writing " + where + ")");
            }
            int len = java.lang.reflect.Array.getLength(rows[r]);
            if (cols < 0) {
                cols = len;
            } else if (len != cols) {
                throw new IllegalArgumentException("ragged rows writing " + where + ": row 0 has " + cols
                        + " columns, row " + r + " has " + len);
            }
        }
        return Math.max(cols, 0);
    }

    static void checkShape(int[] shape, int length, Path file) {
        long count = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape)
                        + " (writing " + file + ")");
            }
            count *= d;
            if (count > Integer.MAX_VALUE) {
                count = Long.MAX_VALUE;
                break;
            }
        }
        if (count != length) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs " + count
                    + " elements but data has " + length + " (writing " + file + ")");
        }
    }

    static int roundUp(int n, int multiple) {
        return (n + multiple - 1) / multiple * multiple;
    }

    private static String printableBytes(ByteBuffer b, int n) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            int c = b.get(i) & 0xff;
            sb.append(c >= 0x20 && c < 0x7f ? String.valueOf((char) c) : String.format("\\x%02x", c));
        }
        return sb.toString();
    }
}
