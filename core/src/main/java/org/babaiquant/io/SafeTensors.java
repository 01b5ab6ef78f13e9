package org.babaiquant.io;

import java.io.EOFException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import org.babaiquant.BadInputException;
import org.babaiquant.core.Half;
import org.babaiquant.core.Json;

/**
 * Hugging Face {@code .safetensors} files: how checkpoints ship, so how we read original weights and write
 * quantized ones.
 *
 * <p>Byte map (huggingface/safetensors); integers little-endian:
 * <pre>
 *  offset   size  field
 *  0        8     N: header length, uint64
 *  8        N     header: UTF-8 JSON object, may be padded with trailing spaces
 *                   {"__metadata__": {"format": "pt"},
 *                    "model.layers.0.q_proj.weight": {"dtype": "F16", "shape": [4096, 4096],
 *                                                     "data_offsets": [0, 33554432]}, ...}
 *  8+N      ...   data buffer; a tensor's bytes are [8+N+begin, 8+N+end), C order, little-endian
 * </pre>
 * The header is untrusted input: its length is capped at {@link #MAX_HEADER_BYTES} (so a corrupt length cannot make
 * us allocate gigabytes), it is parsed by the strict {@link Json} reader (duplicate keys, fractions and deep nesting rejected), every offset is checked against the data
 * buffer, and every byte range must be exactly {@code product(shape) * dtype size}. Reading a tensor reads only its
 * own bytes with positional reads: checkpoints are tens of gigabytes.
 *
 * <p>Every reader takes a {@link ByteSource} (a local file, an object behind a Hadoop file system, bytes in memory);
 * the {@link Path} overloads open the file, do one thing and close it. To read many tensors of one file, parse the
 * header once with {@link #header(ByteSource)} and pass it to {@link #readMatrix(ByteSource, Header, String)} or
 * {@link #readRaw(ByteSource, Header, String)}.
 *
 * <p>Sharded checkpoints ({@code model.safetensors.index.json}) are parsed by {@link ShardIndex#read(ByteSource)};
 * files are written by {@link SafeTensorsWriter}; 16-bit floats go through {@code core.Half}.
 */
public final class SafeTensors {

    /** Header size cap. The reference implementation uses 100 MB; a 70B checkpoint header is well under 1 MB. */
    static final long MAX_HEADER_BYTES = 100L << 20;

    /** Shard index size cap; a 70B checkpoint's index is about 100 kB. */
    static final long MAX_INDEX_BYTES = 100L << 20;

    /**
     * Largest tensor {@link #readRaw} returns: a Java array holds at most {@code Integer.MAX_VALUE} elements, and VMs
     * reserve a few header words (the same margin {@code ArrayList} keeps).
     */
    static final int MAX_RAW_BYTES = Integer.MAX_VALUE - 8;

    static final int CHUNK_BYTES = 1 << 22;

    static final String METADATA_KEY = "__metadata__";

    private SafeTensors() {
    }

    /**
     * One entry of the header.
     *
     * @param begin first byte, relative to the start of the data buffer
     * @param end   one past the last byte, relative to the start of the data buffer
     */
    public record TensorInfo(String name, String dtype, long[] shape, long begin, long end) {
        public TensorInfo {
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        @Override
        public String toString() {
            return name + " " + dtype + Arrays.toString(shape) + " @[" + begin + ", " + end + ")";
        }
    }

    /**
     * A parsed, validated header.
     *
     * @param source    the {@link ByteSource#name()} it was read from
     * @param size      that source's size when the header was read; reads check it still matches
     * @param tensors   the tensors in header order (unmodifiable)
     * @param metadata  the {@code __metadata__} strings, empty if the file has none (unmodifiable)
     * @param dataStart absolute offset of the data buffer ({@code 8 + N}): tensor {@code t}'s bytes are
     *                  {@code [dataStart + t.begin(), dataStart + t.end())}
     */
    public record Header(String source, long size, Map<String, TensorInfo> tensors, Map<String, String> metadata,
                         long dataStart) {
        public Header {
            tensors = Collections.unmodifiableMap(new LinkedHashMap<>(tensors));
            metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
        }
    }

    // ------------------------------------------------------------------------------------------------ reading

    /** The tensors in the file, in header order; validated against the file size. */
    public static Map<String, TensorInfo> list(Path file) {
        return withFile(file, SafeTensors::list);
    }

    /** The tensors in the source, in header order; validated against the source size. */
    public static Map<String, TensorInfo> list(ByteSource src) {
        return header(src).tensors();
    }

    /** The {@code __metadata__} string map, empty if the file has none. */
    public static Map<String, String> metadata(Path file) {
        return withFile(file, SafeTensors::metadata);
    }

    /** The {@code __metadata__} string map, empty if the source has none. */
    public static Map<String, String> metadata(ByteSource src) {
        return header(src).metadata();
    }

    /** Absolute offset of the data buffer: tensor {@code t}'s bytes are at {@code dataStart + t.begin()}. */
    public static long dataStart(Path file) {
        return withFile(file, SafeTensors::dataStart);
    }

    /** Absolute offset of the data buffer: tensor {@code t}'s bytes are at {@code dataStart + t.begin()}. */
    public static long dataStart(ByteSource src) {
        return header(src).dataStart();
    }

    /**
     * Reads and validates the header: length cap, strict JSON, every tensor's offsets within the data buffer and
     * its byte count equal to {@code product(shape) * dtype size}.
     *
     * @throws BadInputException    for a malformed or truncated file, naming it
     * @throws UncheckedIOException for a failed read
     */
    public static Header header(ByteSource src) {
        try {
            return readHeader(src);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + src.name() + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads one 2-D tensor of dtype F32, F16, BF16 or F64 as rows of doubles (conversions are exact).
     *
     * @throws BadInputException for an unknown name (the message lists some that exist), a tensor that is not 2-D,
     *                           another dtype, or a malformed file
     */
    public static double[][] readMatrix(Path file, String tensorName) {
        return withFile(file, src -> readMatrix(src, tensorName));
    }

    /** {@link #readMatrix(Path, String)} from any source. */
    public static double[][] readMatrix(ByteSource src, String tensorName) {
        return readMatrix(src, header(src), tensorName);
    }

    /**
     * {@link #readMatrix(Path, String)} with a header already read from {@code src} by {@link #header}: one
     * positional read per chunk of rows, nothing else.
     */
    public static double[][] readMatrix(ByteSource src, Header header, String tensorName) {
        try {
            TensorInfo t = lookUp(src, header, tensorName);
            String where = src.name();
            if (t.shape.length != 2) {
                throw new BadInputException(where + ": tensor '" + tensorName + "' has shape "
                        + Arrays.toString(t.shape) + "; expected a 2-D matrix");
            }
            int itemSize = floatItemSize(t.dtype);
            if (itemSize < 0) {
                throw new BadInputException(where + ": tensor '" + tensorName + "' has dtype " + t.dtype
                        + "; readMatrix supports " + FLOAT_DTYPES);
            }
            if (t.shape[0] > Integer.MAX_VALUE || t.shape[1] > Integer.MAX_VALUE
                    || t.shape[0] * t.shape[1] > Integer.MAX_VALUE) {
                throw new BadInputException(where + ": tensor '" + tensorName + "' of shape "
                        + Arrays.toString(t.shape) + " is too large for a Java array");
            }
            int rows = (int) t.shape[0];
            int cols = (int) t.shape[1];
            double[][] out = new double[rows][cols];
            long rowBytes = (long) cols * itemSize;
            if (rows == 0 || cols == 0) {
                return out;
            }
            int rowsPerChunk = (int) Math.max(1, Math.min(rows, CHUNK_BYTES / rowBytes));
            ByteBuffer buf = ByteBuffer.allocate((int) (rowsPerChunk * rowBytes)).order(ByteOrder.LITTLE_ENDIAN);
            float[] f32 = itemSize == 4 ? new float[cols] : null;
            short[] f16 = itemSize == 2 ? new short[cols] : null;
            long pos = header.dataStart + t.begin;
            for (int first = 0; first < rows; first += rowsPerChunk) {
                int count = Math.min(rowsPerChunk, rows - first);
                buf.clear().limit((int) (count * rowBytes));
                readFully(src, pos, buf);
                buf.flip();
                pos += count * rowBytes;
                switch (t.dtype) {
                    case "F64": {
                        DoubleBuffer db = buf.asDoubleBuffer();
                        for (int r = first; r < first + count; r++) {
                            db.get(out[r]);
                        }
                        break;
                    }
                    case "F32": {
                        FloatBuffer fb = buf.asFloatBuffer();
                        for (int r = first; r < first + count; r++) {
                            fb.get(f32);
                            double[] row = out[r];
                            for (int j = 0; j < cols; j++) {
                                row[j] = f32[j];
                            }
                        }
                        break;
                    }
                    case "F16": {
                        ShortBuffer sb = buf.asShortBuffer();
                        for (int r = first; r < first + count; r++) {
                            sb.get(f16);
                            double[] row = out[r];
                            for (int j = 0; j < cols; j++) {
                                row[j] = Half.toFloat(f16[j]);
                            }
                        }
                        break;
                    }
                    default: { // BF16
                        ShortBuffer sb = buf.asShortBuffer();
                        for (int r = first; r < first + count; r++) {
                            sb.get(f16);
                            double[] row = out[r];
                            for (int j = 0; j < cols; j++) {
                                row[j] = Half.bf16ToFloat(f16[j]);
                            }
                        }
                        break;
                    }
                }
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + src.name() + ": " + e.getMessage(), e);
        }
    }

    /**
     * The tensor's bytes exactly as stored (any dtype, little-endian, C order): what a writer copies through
     * unchanged, e.g. the embeddings and norms of a quantized checkpoint.
     *
     * @throws BadInputException for an unknown name, a tensor over 2 GiB (a Java array's limit), a malformed file
     */
    public static byte[] readRaw(Path file, String tensorName) {
        return withFile(file, src -> readRaw(src, tensorName));
    }

    /** {@link #readRaw(Path, String)} from any source. */
    public static byte[] readRaw(ByteSource src, String tensorName) {
        return readRaw(src, header(src), tensorName);
    }

    /** {@link #readRaw(Path, String)} with a header already read from {@code src} by {@link #header}. */
    public static byte[] readRaw(ByteSource src, Header header, String tensorName) {
        try {
            TensorInfo t = lookUp(src, header, tensorName);
            long n = t.end - t.begin;
            if (n > MAX_RAW_BYTES) {
                throw new BadInputException(src.name() + ": tensor '" + tensorName + "' (" + t.dtype
                        + Arrays.toString(t.shape) + ") is " + n + " bytes; readRaw returns one byte[], which holds"
                        + " at most " + MAX_RAW_BYTES + " (2 GiB): read it in parts with ByteSource.readFully at"
                        + " header.dataStart() + begin");
            }
            byte[] out = new byte[(int) n];
            readFully(src, header.dataStart + t.begin, ByteBuffer.wrap(out));
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + src.name() + ": " + e.getMessage(), e);
        }
    }

    /** The named tensor, after checking that the header belongs to this source as it is now. */
    private static TensorInfo lookUp(ByteSource src, Header header, String tensorName) throws IOException {
        long size = src.size();
        if (size != header.size) {
            throw new BadInputException(src.name() + ": is " + size + " bytes but its header was read when "
                    + header.source + " was " + header.size + " bytes; the file changed while being read, or the"
                    + " header belongs to another file");
        }
        TensorInfo t = header.tensors.get(tensorName);
        if (t == null) {
            throw new BadInputException(src.name() + ": no tensor named '" + tensorName + "'; "
                    + describeNames(header.tensors.keySet(), tensorName));
        }
        return t;
    }

    private interface SourceReader<T> {
        T read(ByteSource src);
    }

    private static <T> T withFile(Path file, SourceReader<T> reader) {
        try (ByteSource src = ByteSource.of(file)) {
            return reader.read(src);
        } catch (IOException e) { // from close
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /** Fills {@code buf} from {@code pos}; the source ending first is a BadInputException (the file is truncated). */
    static void readFully(ByteSource src, long pos, ByteBuffer buf) throws IOException {
        int n = buf.remaining();
        try {
            src.readFully(pos, buf);
        } catch (EOFException e) {
            throw new BadInputException(src.name() + ": truncated: unexpected end of file reading " + n
                    + " bytes at byte " + pos, e);
        }
    }

    private static Header readHeader(ByteSource src) throws IOException {
        String file = src.name();
        long size = src.size();
        if (size < 8) {
            throw new BadInputException(file + ": not a .safetensors file (" + size
                    + " bytes, too short for the 8-byte header length)");
        }
        ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        readFully(src, 0, lenBuf);
        long n = lenBuf.getLong(0); // uint64: a negative long is a length over 2^63, caught below
        if (n < 0 || n > MAX_HEADER_BYTES) {
            throw new BadInputException(file + ": .safetensors header length " + Long.toUnsignedString(n)
                    + " is over the limit of " + MAX_HEADER_BYTES + " bytes; not a .safetensors file or corrupt");
        }
        if (n > size - 8) {
            throw new BadInputException(file + ": .safetensors header length " + n + " is larger than the rest of the"
                    + " file (" + (size - 8) + " bytes); truncated or not a .safetensors file");
        }
        ByteBuffer hb = ByteBuffer.allocate((int) n);
        readFully(src, 8, hb);
        String json = decodeUtf8(hb.flip(), file, ".safetensors header");
        Object root = Json.parse(json, file, ".safetensors header", Json.Numbers.INTEGERS);
        if (!(root instanceof Map)) {
            throw new BadInputException(file + ": .safetensors header must be a JSON object");
        }
        long dataStart = 8 + n;
        long dataSize = size - dataStart;
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        Map<String, String> metadata = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : asObject(root).entrySet()) {
            String name = e.getKey();
            if (name.equals(METADATA_KEY)) {
                if (!(e.getValue() instanceof Map)) {
                    throw new BadInputException(file + ": __metadata__ must be an object of strings");
                }
                for (Map.Entry<String, Object> m : asObject(e.getValue()).entrySet()) {
                    if (!(m.getValue() instanceof String)) {
                        throw new BadInputException(file + ": __metadata__ value for '" + m.getKey()
                                + "' must be a string, found " + m.getValue());
                    }
                    metadata.put(m.getKey(), (String) m.getValue());
                }
                continue;
            }
            tensors.put(name, parseTensor(name, e.getValue(), dataSize, file));
        }
        return new Header(file, size, tensors, metadata, dataStart);
    }

    static String decodeUtf8(ByteBuffer bytes, String file, String what) {
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(bytes).toString();
        } catch (CharacterCodingException e) {
            throw new BadInputException(file + ": " + what + " is not valid UTF-8", e);
        }
    }

    /** Compact JSON text of a parsed value, for messages and for index metadata that is not a string. */
    static String toJson(Object v) {
        return Json.compact(v);
    }

    private static TensorInfo parseTensor(String name, Object value, long dataSize, String file) {
        String where = file + ": tensor '" + name + "'";
        if (!(value instanceof Map)) {
            throw new BadInputException(where + ": entry must be an object with dtype, shape, data_offsets");
        }
        Map<String, Object> obj = asObject(value);
        Object dtypeObj = obj.get("dtype");
        if (!(dtypeObj instanceof String)) {
            throw new BadInputException(where + ": missing or non-string \"dtype\"");
        }
        String dtype = (String) dtypeObj;
        int bits = dtypeBits(dtype);
        if (bits < 0) {
            throw new BadInputException(where + ": unknown dtype \"" + dtype + "\"");
        }
        long[] shape = longArray(obj.get("shape"), where, "shape");
        long[] offsets = longArray(obj.get("data_offsets"), where, "data_offsets");
        if (offsets.length != 2) {
            throw new BadInputException(where + ": data_offsets must be [begin, end], found "
                    + Arrays.toString(offsets));
        }
        long begin = offsets[0];
        long end = offsets[1];
        if (begin < 0 || begin > end || end > dataSize) {
            throw new BadInputException(where + ": data_offsets [" + begin + ", " + end
                    + "] are not within the data buffer of " + dataSize + " bytes (need 0 <= begin <= end <= "
                    + dataSize + "); truncated file?");
        }
        long count = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new BadInputException(where + ": negative dimension in shape " + Arrays.toString(shape));
            }
            try {
                count = Math.multiplyExact(count, d);
            } catch (ArithmeticException ex) {
                throw new BadInputException(where + ": shape " + Arrays.toString(shape) + " overflows");
            }
        }
        // Compare in bits: sub-byte dtypes (F4, F6) pack several elements per byte.
        long expectedBits;
        try {
            expectedBits = Math.multiplyExact(count, (long) bits);
        } catch (ArithmeticException ex) {
            throw new BadInputException(where + ": shape " + Arrays.toString(shape) + " overflows");
        }
        if ((end - begin) * 8 != expectedBits) {
            String need = expectedBits % 8 == 0 ? (expectedBits / 8) + " bytes" : expectedBits + " bits";
            throw new BadInputException(where + ": " + dtype + " " + Arrays.toString(shape) + " needs "
                    + need + " but data_offsets [" + begin + ", " + end + "] span " + (end - begin) + " bytes");
        }
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    /** The float dtypes {@link #readMatrix} converts and {@link SafeTensorsWriter#write} writes. */
    static final String FLOAT_DTYPES = "F32, F16, BF16, F64";

    /** Bytes per element of a float dtype of {@link #FLOAT_DTYPES}, or -1. */
    static int floatItemSize(String dtype) {
        return switch (dtype) {
            case "F64" -> 8;
            case "F32" -> 4;
            case "F16", "BF16" -> 2;
            default -> -1;
        };
    }

    /**
     * Bits per element of every dtype the reference implementation knows, or -1. The reader lists tensors of any of
     * these so that a whole checkpoint can be inspected; {@link #readMatrix} converts only the float ones.
     */
    static int dtypeBits(String dtype) {
        switch (dtype) {
            case "F4":
                return 4;
            case "F6_E2M3":
            case "F6_E3M2":
                return 6;
            case "BOOL":
            case "U8":
            case "I8":
            case "F8_E5M2":
            case "F8_E4M3":
            case "F8_E8M0":
                return 8;
            case "I16":
            case "U16":
            case "F16":
            case "BF16":
                return 16;
            case "I32":
            case "U32":
            case "F32":
                return 32;
            case "I64":
            case "U64":
            case "F64":
            case "C64":
                return 64;
            default:
                return -1;
        }
    }

    private static long[] longArray(Object value, String where, String key) {
        if (!(value instanceof List)) {
            throw new BadInputException(where + ": missing or non-array \"" + key + "\"");
        }
        List<?> list = (List<?>) value;
        long[] out = new long[list.size()];
        for (int i = 0; i < out.length; i++) {
            if (!(list.get(i) instanceof Long)) {
                throw new BadInputException(where + ": \"" + key + "\" must hold integers, found " + list.get(i));
            }
            out[i] = (Long) list.get(i);
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asObject(Object o) {
        return (Map<String, Object>) o;
    }

    /**
     * "available (N): a, b, ..." listing first the names that differ from the wanted one only by a prefix (the usual
     * mistake: {@code layers.0.mlp.up_proj.weight} for {@code model.layers.0.mlp.up_proj.weight}), then others.
     */
    private static String describeNames(Set<String> names, String wanted) {
        if (names.isEmpty()) {
            return "the file holds no tensors";
        }
        TreeSet<String> sorted = new TreeSet<>(names);
        List<String> shown = new ArrayList<>();
        for (String n : sorted) {
            if (shown.size() < 10 && (n.endsWith(wanted) || wanted.endsWith(n))) {
                shown.add(n);
            }
        }
        for (String n : sorted) {
            if (shown.size() < 10 && !shown.contains(n)) {
                shown.add(n);
            }
        }
        return "available (" + names.size() + "): " + String.join(", ", shown)
                + (names.size() > shown.size() ? ", ..." : "");
    }
}
