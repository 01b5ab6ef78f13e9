package org.babaiquant.io;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import org.babaiquant.core.Half;
import org.babaiquant.core.Json;

/**
 * Writes {@code .safetensors} files (the byte map is in {@link SafeTensors}): the same arguments always give the same
 * bytes; files are committed through {@link Commit} (a temporary renamed into place).
 */
public final class SafeTensorsWriter {
    private static final int CHUNK_BYTES = SafeTensors.CHUNK_BYTES;
    private static final String METADATA_KEY = SafeTensors.METADATA_KEY;
    private static final long MAX_HEADER_BYTES = SafeTensors.MAX_HEADER_BYTES;

    private SafeTensorsWriter() {
    }

    // ------------------------------------------------------------------------------------------------ writing

    /**
     * One tensor to write, as raw bytes: little-endian, C order, exactly {@code product(shape) * dtype size} bytes.
     * Validated on construction. {@code data} is not copied (tensors are large): do not change it until written.
     *
     * @param dtype any dtype the reader knows (F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL,
     *              the F8 and sub-byte float types, C64); BOOL bytes must be 0 or 1
     */
    public record RawTensor(String name, String dtype, long[] shape, byte[] data) {
        public RawTensor {
            if (name == null || name.isEmpty() || name.equals(METADATA_KEY)) {
                throw new IllegalArgumentException("invalid tensor name '" + name + "'");
            }
            if (dtype == null || SafeTensors.dtypeBits(dtype) < 0) {
                throw new IllegalArgumentException("tensor '" + name + "': unknown dtype " + dtype);
            }
            if (shape == null || data == null) {
                throw new IllegalArgumentException("tensor '" + name + "': " + (shape == null ? "shape" : "data")
                        + " is null");
            }
            shape = shape.clone();
            long count = 1;
            for (long d : shape) {
                if (d < 0) {
                    throw new IllegalArgumentException("tensor '" + name + "': negative dimension in shape "
                            + Arrays.toString(shape));
                }
                count = count > 0 && d > Long.MAX_VALUE / 64 / count ? -1 : count * d;
                if (count < 0) {
                    throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape)
                            + " overflows");
                }
            }
            long bits = count * SafeTensors.dtypeBits(dtype); // cannot overflow: count < 2^63 / 64
            if (bits != (long) data.length * 8) {
                String need = bits % 8 == 0 ? (bits / 8) + " bytes" : bits + " bits (not a whole number of bytes)";
                throw new IllegalArgumentException("tensor '" + name + "': " + dtype + " " + Arrays.toString(shape)
                        + " needs " + need + " but data has " + data.length);
            }
            if (dtype.equals("BOOL")) {
                for (int i = 0; i < data.length; i++) {
                    if (data[i] != 0 && data[i] != 1) {
                        throw new IllegalArgumentException("tensor '" + name + "': BOOL byte " + i + " is "
                                + (data[i] & 0xff) + "; must be 0 or 1");
                    }
                }
            }
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof RawTensor r && name.equals(r.name) && dtype.equals(r.dtype)
                    && Arrays.equals(shape, r.shape) && Arrays.equals(data, r.data);
        }

        @Override
        public int hashCode() {
            return 31 * (31 * (31 * name.hashCode() + dtype.hashCode()) + Arrays.hashCode(shape))
                    + Arrays.hashCode(data);
        }

        @Override
        public String toString() {
            return name + " " + dtype + Arrays.toString(shape) + " (" + data.length + " bytes)";
        }
    }

    /**
     * Writes tensors as given: the data buffer holds them in list order, back to back (the reference writer sorts
     * by alignment then name; any order is valid). The header is compact JSON, {@code __metadata__} first with its
     * keys sorted (omitted when {@code metadata} is null or empty), then the tensors in list order, padded with
     * spaces to a multiple of 8 bytes as the reference writer does. The same arguments always give the same bytes.
     * {@code out} is flushed, not closed.
     *
     * @throws IllegalArgumentException for duplicate names or null metadata keys or values; nothing is written
     */
    public static void writeRaw(OutputStream out, List<RawTensor> tensors, Map<String, String> metadata)
            throws IOException {
        byte[] head = rawHeader(tensors, metadata, "the stream");
        out.write(head);
        for (RawTensor t : tensors) {
            for (int off = 0; off < t.data.length; off += CHUNK_BYTES) {
                out.write(t.data, off, Math.min(CHUNK_BYTES, t.data.length - off));
            }
        }
        out.flush();
    }

    /**
     * {@link #writeRaw(OutputStream, List, Map)} to a file, atomically: written to a temporary file in the same
     * directory and renamed into place, so no reader sees half a checkpoint under the final name.
     */
    public static void writeRaw(Path file, List<RawTensor> tensors, Map<String, String> metadata) {
        byte[] head = rawHeader(tensors, metadata, file.toString());
        Npy.writeAtomically(file, ch -> {
            Npy.writeFully(ch, ByteBuffer.wrap(head));
            for (RawTensor t : tensors) {
                // chunks: a channel write from a heap buffer copies it whole into a temporary direct buffer
                for (int off = 0; off < t.data.length; off += CHUNK_BYTES) {
                    Npy.writeFully(ch, ByteBuffer.wrap(t.data, off, Math.min(CHUNK_BYTES, t.data.length - off)));
                }
            }
        });
    }

    private static byte[] rawHeader(List<RawTensor> tensors, Map<String, String> metadata, String where) {
        if (tensors == null) {
            throw new IllegalArgumentException("tensors is null (writing " + where + ")");
        }
        List<HeaderEntry> entries = new ArrayList<>(tensors.size());
        Set<String> seen = new HashSet<>();
        for (RawTensor t : tensors) {
            if (t == null) {
                throw new IllegalArgumentException("null tensor in the list (writing " + where + ")");
            }
            if (!seen.add(t.name)) {
                throw new IllegalArgumentException("duplicate tensor name '" + t.name + "' writing " + where);
            }
            entries.add(new HeaderEntry(t.name, t.dtype, t.shape, t.data.length));
        }
        return headerBytes(entries, metadata == null ? Map.of() : metadata, where);
    }

    /** One tensor's header entry before offsets are assigned. */
    private record HeaderEntry(String name, String dtype, long[] shape, long bytes) {
    }

    /**
     * The 8-byte length and the header, compact JSON as serde_json writes it, offsets assigned in list order, padded
     * with spaces to a multiple of 8 so that the data buffer is 8-byte aligned.
     */
    private static byte[] headerBytes(List<HeaderEntry> entries, Map<String, String> metadata, String where) {
        Map<String, Object> json = new LinkedHashMap<>();
        if (!metadata.isEmpty()) {
            json.put(METADATA_KEY, sortedMetadata(metadata, where));
        }
        long offset = 0;
        for (HeaderEntry e : entries) {
            Map<String, Object> entry = new LinkedHashMap<>();
            entry.put("dtype", e.dtype);
            entry.put("shape", e.shape);
            entry.put("data_offsets", new long[] {offset, offset + e.bytes});
            json.put(e.name, entry);
            offset += e.bytes;
        }
        byte[] text = Json.compact(json).getBytes(StandardCharsets.UTF_8);
        long padded = (text.length + 7L) / 8 * 8;
        if (padded > MAX_HEADER_BYTES) {
            throw new IllegalArgumentException("header of " + padded + " bytes is over the limit of "
                    + MAX_HEADER_BYTES + " that readers accept (writing " + where + ")");
        }
        ByteBuffer head = ByteBuffer.allocate((int) (8 + padded)).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(text);
        while (head.hasRemaining()) {
            head.put((byte) ' ');
        }
        return head.array();
    }

    /** Sorted, so that the bytes do not depend on the map's iteration order. */
    private static TreeMap<String, String> sortedMetadata(Map<String, String> metadata, String where) {
        TreeMap<String, String> sorted = new TreeMap<>();
        for (Map.Entry<String, String> m : metadata.entrySet()) {
            if (m.getKey() == null || m.getValue() == null) {
                throw new IllegalArgumentException("null metadata key or value (" + m.getKey() + " = " + m.getValue()
                        + ") writing " + where);
            }
            sorted.put(m.getKey(), m.getValue());
        }
        return sorted;
    }

    /**
     * Writes 2-D tensors in map order with the given dtype (F32, F16, BF16 or F64) and {@code __metadata__}
     * {@code {"format": "pt"}}, which transformers expects. Values are rounded to float first, then to F16/BF16
     * with round-to-nearest-even (as PyTorch's {@code .half()} does for a float64 tensor). The header is padded with
     * spaces to a multiple of 8 bytes so the data buffer is aligned, as the reference writer does. The bytes are
     * those {@link #writeRaw} writes for the same tensors; this converts while streaming instead of holding them.
     */
    public static void write(Path file, LinkedHashMap<String, double[][]> tensors, String dtype) {
        int itemSize = SafeTensors.floatItemSize(dtype);
        if (itemSize < 0) {
            throw new IllegalArgumentException("cannot write dtype " + dtype + " to " + file + "; supported: " + SafeTensors.FLOAT_DTYPES);
        }
        List<HeaderEntry> entries = new ArrayList<>(tensors.size());
        for (Map.Entry<String, double[][]> e : tensors.entrySet()) {
            String name = e.getKey();
            if (name == null || name.isEmpty() || name.equals(METADATA_KEY)) {
                throw new IllegalArgumentException("invalid tensor name '" + name + "' writing " + file);
            }
            double[][] rows = e.getValue();
            int cols = Npy.checkRectangular(rows, file + " tensor '" + name + "'");
            entries.add(new HeaderEntry(name, dtype, new long[]{rows.length, cols},
                    (long) rows.length * cols * itemSize));
        }
        ByteBuffer head = ByteBuffer.wrap(headerBytes(entries, Map.of("format", "pt"), file.toString()));
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
                                buf.putShort(dtype.equals("F16") ? Half.fromFloat((float) v) : Half.bf16FromFloat((float) v));
                        }
                    }
                }
            }
            Npy.writeFully(ch, buf.flip());
        });
    }
}
