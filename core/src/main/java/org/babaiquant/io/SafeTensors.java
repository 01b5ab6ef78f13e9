package org.babaiquant.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.nio.channels.FileChannel;
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
 * us allocate gigabytes), it is parsed by a small strict JSON parser, every offset is checked against the data
 * buffer, and every byte range must be exactly {@code product(shape) * dtype size}. Reading a tensor reads only its
 * own bytes with positional reads: checkpoints are tens of gigabytes.
 */
public final class SafeTensors {

    /** Header size cap. The reference implementation uses 100 MB; a 70B checkpoint header is well under 1 MB. */
    static final long MAX_HEADER_BYTES = 100L << 20;

    /** JSON nesting deeper than this is rejected before recursion can overflow the stack; real headers use 3. */
    private static final int MAX_JSON_DEPTH = 64;

    private static final int CHUNK_BYTES = 1 << 22;

    private static final String METADATA_KEY = "__metadata__";

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

    /** A parsed, validated header: the tensors in header order, the metadata, where the data buffer starts. */
    private record Header(Map<String, TensorInfo> tensors, Map<String, String> metadata, long dataStart) {
    }

    // ------------------------------------------------------------------------------------------------ reading

    /** The tensors in the file, in header order; validated against the file size. */
    public static Map<String, TensorInfo> list(Path file) {
        try (FileChannel ch = Npy.openForRead(file)) {
            return Collections.unmodifiableMap(readHeader(ch, file).tensors);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /** The {@code __metadata__} string map, empty if the file has none. */
    public static Map<String, String> metadata(Path file) {
        try (FileChannel ch = Npy.openForRead(file)) {
            return Collections.unmodifiableMap(readHeader(ch, file).metadata);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads one 2-D tensor of dtype F32, F16, BF16 or F64 as rows of doubles (conversions are exact).
     *
     * @throws BadInputException for an unknown name (the message lists some that exist), a tensor that is not 2-D,
     *                           another dtype, or a malformed file
     */
    public static double[][] readMatrix(Path file, String tensorName) {
        try (FileChannel ch = Npy.openForRead(file)) {
            Header header = readHeader(ch, file);
            TensorInfo t = header.tensors.get(tensorName);
            if (t == null) {
                throw new BadInputException(file + ": no tensor named '" + tensorName + "'; "
                        + describeNames(header.tensors.keySet(), tensorName));
            }
            if (t.shape.length != 2) {
                throw new BadInputException(file + ": tensor '" + tensorName + "' has shape "
                        + Arrays.toString(t.shape) + "; expected a 2-D matrix");
            }
            int itemSize;
            switch (t.dtype) {
                case "F64":
                    itemSize = 8;
                    break;
                case "F32":
                    itemSize = 4;
                    break;
                case "F16":
                case "BF16":
                    itemSize = 2;
                    break;
                default:
                    throw new BadInputException(file + ": tensor '" + tensorName + "' has dtype " + t.dtype
                            + "; readMatrix supports F32, F16, BF16, F64");
            }
            if (t.shape[0] > Integer.MAX_VALUE || t.shape[1] > Integer.MAX_VALUE
                    || t.shape[0] * t.shape[1] > Integer.MAX_VALUE) {
                throw new BadInputException(file + ": tensor '" + tensorName + "' of shape "
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
                Npy.readFully(ch, buf, pos, file);
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
                                row[j] = halfToFloat(f16[j]);
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
                                row[j] = bf16ToFloat(f16[j]);
                            }
                        }
                        break;
                    }
                }
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    private static Header readHeader(FileChannel ch, Path file) throws IOException {
        long size = ch.size();
        if (size < 8) {
            throw new BadInputException(file + ": not a .safetensors file (" + size
                    + " bytes, too short for the 8-byte header length)");
        }
        ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        Npy.readFully(ch, lenBuf, 0, file);
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
        Npy.readFully(ch, hb, 8, file);
        String json;
        try {
            json = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(hb.flip()).toString();
        } catch (CharacterCodingException e) {
            throw new BadInputException(file + ": .safetensors header is not valid UTF-8", e);
        }
        Object root = new Json(json, file).parseDocument();
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
        return new Header(tensors, metadata, dataStart);
    }

    private static TensorInfo parseTensor(String name, Object value, long dataSize, Path file) {
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
    private static Map<String, Object> asObject(Object o) {
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

    // ------------------------------------------------------------------------------------------------ writing

    /**
     * Writes 2-D tensors in map order with the given dtype (F32, F16, BF16 or F64) and {@code __metadata__}
     * {@code {"format": "pt"}}, which transformers expects. Values are rounded to float first, then to F16/BF16
     * with round-to-nearest-even (as PyTorch's {@code .half()} does for a float64 tensor). The header is padded with
     * spaces to a multiple of 8 bytes so the data buffer is aligned, as the reference writer does.
     */
    public static void write(Path file, LinkedHashMap<String, double[][]> tensors, String dtype) {
        int itemSize;
        switch (dtype) {
            case "F64":
                itemSize = 8;
                break;
            case "F32":
                itemSize = 4;
                break;
            case "F16":
            case "BF16":
                itemSize = 2;
                break;
            default:
                throw new IllegalArgumentException("cannot write dtype " + dtype + " to " + file
                        + "; supported: F32, F16, BF16, F64");
        }
        StringBuilder json = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        for (Map.Entry<String, double[][]> e : tensors.entrySet()) {
            String name = e.getKey();
            if (name == null || name.isEmpty() || name.equals(METADATA_KEY)) {
                throw new IllegalArgumentException("invalid tensor name '" + name + "' writing " + file);
            }
            double[][] rows = e.getValue();
            int cols = Npy.checkRectangular(rows, file + " tensor '" + name + "'");
            long bytes = (long) rows.length * cols * itemSize;
            json.append(',');
            appendJsonString(json, name);
            json.append(":{\"dtype\":\"").append(dtype).append("\",\"shape\":[").append(rows.length).append(',')
                    .append(cols).append("],\"data_offsets\":[").append(offset).append(',').append(offset + bytes)
                    .append("]}");
            offset += bytes;
        }
        json.append('}');
        byte[] headerText = json.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (headerText.length + 7) / 8 * 8;
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(headerText);
        while (head.hasRemaining()) {
            head.put((byte) ' ');
        }
        head.flip();
        Npy.writeAtomically(file, ch -> {
            Npy.writeFully(ch, head);
            ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
            for (double[][] rows : tensors.values()) {
                for (double[] row : rows) {
                    for (double v : row) {
                        if (buf.remaining() < 8) {
                            Npy.writeFully(ch, buf.flip());
                            buf.clear();
                        }
                        switch (itemSize) {
                            case 8:
                                buf.putDouble(v);
                                break;
                            case 4:
                                buf.putFloat((float) v);
                                break;
                            default:
                                buf.putShort(dtype.equals("F16") ? floatToHalf((float) v) : floatToBf16((float) v));
                        }
                    }
                }
            }
            Npy.writeFully(ch, buf.flip());
        });
    }

    private static void appendJsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        sb.append('"');
    }

    // ------------------------------------------------------------------------------------ half and bfloat16

    /**
     * IEEE 754 binary16 to float, exact: normals rebias the exponent (15 to 127), subnormals are
     * {@code mantissa * 2^-24}, infinities and NaNs keep sign and payload. (Java 20 has
     * {@code Float.float16ToFloat}; we target 17.)
     */
    public static float halfToFloat(short half) {
        int h = half & 0xffff;
        int sign = (h & 0x8000) << 16;
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        if (exp == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        if (exp == 0) {
            float v = mant * 0x1p-24f; // exact: mant < 2^10
            return sign != 0 ? -v : v;
        }
        return Float.intBitsToFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
    }

    /**
     * Float to IEEE 754 binary16, round to nearest, ties to even. Magnitudes from 65520 (halfway between the largest
     * half, 65504, and 2^16) round to infinity; below 2^-14 the result is subnormal; NaN stays NaN (quiet).
     */
    public static short floatToHalf(float f) {
        int bits = Float.floatToRawIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        int abs = bits & 0x7fffffff;
        if (abs >= 0x7f800000) { // infinity or NaN
            return (short) (abs == 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff));
        }
        if (abs >= 0x477ff000) { // >= 65520
            return (short) (sign | 0x7c00);
        }
        if (abs < 0x38800000) { // < 2^-14: subnormal half (or zero)
            // Scaling by 2^24 is exact, so Math.rint sees the true value and rounds ties to even. A result of 1024
            // is the smallest normal, whose encoding is exactly 0x0400: the carry is free.
            int m = (int) Math.rint(Float.intBitsToFloat(abs) * 0x1p24f);
            return (short) (sign | m);
        }
        int h = ((((abs >>> 23) - 127 + 15)) << 10) | ((abs >>> 13) & 0x3ff);
        int rest = abs & 0x1fff; // the 13 mantissa bits that do not fit
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) {
            h++; // a carry out of the mantissa correctly bumps the exponent
        }
        return (short) (sign | h);
    }

    /** bfloat16 to float: bfloat16 is the upper half of a float32, so this is exact. */
    public static float bf16ToFloat(short bf16) {
        return Float.intBitsToFloat((bf16 & 0xffff) << 16);
    }

    /** Float to bfloat16, round to nearest, ties to even; NaN stays NaN (quiet). */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 0x40);
        }
        // Adding 0x7fff rounds up anything above the halfway point; the low bit of the kept half breaks ties to even.
        return (short) ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16);
    }

    // ------------------------------------------------------------------------------------------------ JSON

    /**
     * Strict RFC 8259 subset for safetensors headers: objects (duplicate keys rejected), arrays, strings with all
     * escapes, integers (a fraction or exponent is rejected: no header field is fractional), true, false, null.
     * Objects become LinkedHashMap (header order), arrays List, integers Long.
     */
    private static final class Json {
        private final String s;
        private final Path file;
        private int pos;

        Json(String s, Path file) {
            this.s = s;
            this.file = file;
        }

        Object parseDocument() {
            skipSpace();
            Object v = parseValue(0);
            skipSpace();
            if (pos != s.length()) {
                throw error("unexpected text after the JSON value");
            }
            return v;
        }

        private Object parseValue(int depth) {
            if (depth > MAX_JSON_DEPTH) {
                throw error("nesting deeper than " + MAX_JSON_DEPTH);
            }
            char c = peek();
            switch (c) {
                case '{':
                    return parseObject(depth);
                case '[':
                    return parseArray(depth);
                case '"':
                    return parseString();
                case 't':
                    return literal("true", Boolean.TRUE);
                case 'f':
                    return literal("false", Boolean.FALSE);
                case 'n':
                    return literal("null", null);
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return parseInteger();
                    }
                    throw error("unexpected character '" + c + "'");
            }
        }

        private Map<String, Object> parseObject(int depth) {
            pos++; // '{'
            Map<String, Object> obj = new LinkedHashMap<>();
            skipSpace();
            if (peek() == '}') {
                pos++;
                return obj;
            }
            while (true) {
                skipSpace();
                if (peek() != '"') {
                    throw error("expected a string key");
                }
                int keyPos = pos;
                String key = parseString();
                skipSpace();
                expect(':');
                skipSpace();
                Object value = parseValue(depth + 1);
                if (obj.containsKey(key)) {
                    pos = keyPos;
                    throw error("duplicate key \"" + key + "\"");
                }
                obj.put(key, value);
                skipSpace();
                char c = peek();
                pos++;
                if (c == '}') {
                    return obj;
                }
                if (c != ',') {
                    pos--;
                    throw error("expected ',' or '}'");
                }
            }
        }

        private List<Object> parseArray(int depth) {
            pos++; // '['
            List<Object> list = new ArrayList<>();
            skipSpace();
            if (peek() == ']') {
                pos++;
                return list;
            }
            while (true) {
                skipSpace();
                list.add(parseValue(depth + 1));
                skipSpace();
                char c = peek();
                pos++;
                if (c == ']') {
                    return list;
                }
                if (c != ',') {
                    pos--;
                    throw error("expected ',' or ']'");
                }
            }
        }

        private String parseString() {
            pos++; // opening quote
            StringBuilder sb = null; // only allocated when the string has escapes
            int start = pos;
            while (true) {
                char c = peek();
                if (c == '"') {
                    String out = sb == null ? s.substring(start, pos) : sb.append(s, start, pos).toString();
                    pos++;
                    return out;
                }
                if (c < 0x20) {
                    throw error("unescaped control character in string");
                }
                if (c != '\\') {
                    pos++;
                    continue;
                }
                if (sb == null) {
                    sb = new StringBuilder();
                }
                sb.append(s, start, pos);
                pos++;
                char e = peek();
                pos++;
                switch (e) {
                    case '"':
                    case '\\':
                    case '/':
                        sb.append(e);
                        break;
                    case 'b':
                        sb.append('\b');
                        break;
                    case 'f':
                        sb.append('\f');
                        break;
                    case 'n':
                        sb.append('\n');
                        break;
                    case 'r':
                        sb.append('\r');
                        break;
                    case 't':
                        sb.append('\t');
                        break;
                    case 'u':
                        if (pos + 4 > s.length()) {
                            throw error("truncated \\u escape");
                        }
                        int code = 0;
                        for (int i = 0; i < 4; i++) {
                            int d = Character.digit(s.charAt(pos + i), 16);
                            if (d < 0) {
                                throw error("bad hex digit in \\u escape");
                            }
                            code = code * 16 + d;
                        }
                        sb.append((char) code); // surrogate pairs arrive as two escapes and recombine in the String
                        pos += 4;
                        break;
                    default:
                        pos--;
                        throw error("invalid escape '\\" + e + "'");
                }
                start = pos;
            }
        }

        private Long parseInteger() {
            int start = pos;
            if (s.charAt(pos) == '-') {
                pos++;
            }
            int digitsStart = pos;
            while (pos < s.length() && s.charAt(pos) >= '0' && s.charAt(pos) <= '9') {
                pos++;
            }
            if (pos == digitsStart) {
                throw error("expected digits");
            }
            if (s.charAt(digitsStart) == '0' && pos - digitsStart > 1) {
                pos = digitsStart;
                throw error("leading zero in number");
            }
            if (pos < s.length() && (s.charAt(pos) == '.' || s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
                throw error("only integers are expected in a safetensors header");
            }
            try {
                return Long.parseLong(s.substring(start, pos));
            } catch (NumberFormatException e) {
                pos = start;
                throw error("integer out of the 64-bit range");
            }
        }

        private Object literal(String word, Object value) {
            if (!s.startsWith(word, pos)) {
                throw error("invalid literal");
            }
            pos += word.length();
            return value;
        }

        private void skipSpace() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                pos++;
            }
        }

        private char peek() {
            if (pos >= s.length()) {
                throw error("unexpected end of header");
            }
            return s.charAt(pos);
        }

        private void expect(char c) {
            if (peek() != c) {
                throw error("expected '" + c + "'");
            }
            pos++;
        }

        private BadInputException error(String what) {
            int from = Math.max(0, pos - 30);
            int to = Math.min(s.length(), pos + 30);
            return new BadInputException(file + ": malformed .safetensors header JSON at character " + pos + ": "
                    + what + " (near \"" + s.substring(from, to) + "\")");
        }
    }
}
