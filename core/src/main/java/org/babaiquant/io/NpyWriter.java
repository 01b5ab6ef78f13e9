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
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.babaiquant.BadInputException;

/**
 * Writes {@code .npy} files (the format is in {@link Npy}) byte-identical to {@code np.save}, committed through
 * {@link Commit}.
 */
public final class NpyWriter {
    private NpyWriter() {
    }

    // ------------------------------------------------------------------------------------------------ writing

    /** Writes rows as a 2-D {@code <f4} array (values rounded to nearest float). Ragged rows are rejected. */
    public static void writeF32(Path file, double[][] rows) {
        int cols = Npy.checkRectangular(rows, file);
        float[] tmp = new float[cols];
        writeArray(file, "<f4", new int[]{rows.length, cols}, out -> {
            for (double[] row : rows) {
                for (int j = 0; j < cols; j++) {
                    tmp[j] = (float) row[j];
                }
                out.put(tmp);
            }
        });
    }

    /** Writes {@code data} (C order) as a {@code <f4} array of the given shape; an empty shape is a 0-d array. */
    public static void writeF32(Path file, int[] shape, float[] data) {
        Npy.checkShape(shape, data.length, file);
        writeArray(file, "<f4", shape, out -> {
            out.put(data);
        });
    }

    /** Writes rows as a 2-D {@code <f8} array. Ragged rows are rejected. */
    public static void writeF64(Path file, double[][] rows) {
        int cols = Npy.checkRectangular(rows, file);
        writeArray(file, "<f8", new int[]{rows.length, cols}, out -> {
            for (double[] row : rows) {
                out.put(row);
            }
        });
    }

    /** Writes rows as a 2-D {@code <i4} array. Ragged rows are rejected. */
    public static void writeI32(Path file, int[][] rows) {
        int cols = Npy.checkRectangular(rows, file);
        writeArray(file, "<i4", new int[]{rows.length, cols}, out -> {
            for (int[] row : rows) {
                out.put(row);
            }
        });
    }

    /**
     * Writes rows as a 2-D {@code |u1} (uint8) array: the codes of a clipped grid of at most 8 bits, a quarter of
     * {@code <i4}'s bytes. Ragged rows are rejected; a value outside {@code 0..255} is a programming error
     * (IllegalArgumentException naming the file and the index), checked before anything is written.
     */
    public static void writeU8(Path file, int[][] rows) {
        int cols = Npy.checkRectangular(rows, file);
        for (int r = 0; r < rows.length; r++) {
            for (int j = 0; j < cols; j++) {
                if ((rows[r][j] & ~0xFF) != 0) {
                    throw new IllegalArgumentException(file + ": value " + rows[r][j] + " at [" + r + ", " + j
                            + "] does not fit uint8");
                }
            }
        }
        byte[] tmp = new byte[cols];
        writeArray(file, "|u1", new int[]{rows.length, cols}, out -> {
            for (int[] row : rows) {
                for (int j = 0; j < cols; j++) {
                    tmp[j] = (byte) row[j];
                }
                out.put(tmp);
            }
        });
    }

    /** Writes {@code data} (C order) as a {@code <i4} array of the given shape; an empty shape is a 0-d array. */
    public static void writeI32(Path file, int[] shape, int[] data) {
        Npy.checkShape(shape, data.length, file);
        writeArray(file, "<i4", shape, out -> {
            out.put(data);
        });
    }

    /**
     * The header bytes {@code np.save} writes for this dtype and shape: version 1.0 unless the dict does not fit a
     * uint16 length (then 2.0, as numpy does), dict keys sorted, numpy's growth padding, total a multiple of 64.
     */
    static byte[] header(String dtype, int[] shape) {
        StringBuilder dict = new StringBuilder("{'descr': '").append(dtype)
                .append("', 'fortran_order': False, 'shape': ").append(Npy.shapeString(shape)).append(", }");
        if (shape.length > 0) {
            dict.append(" ".repeat(Math.max(0, Npy.GROWTH_AXIS_MAX_DIGITS - Integer.toString(shape[0]).length())));
        }
        int version = 1;
        int prefix = 10;
        int total = Npy.roundUp(prefix + dict.length() + 1, Npy.ALIGN);
        if (total - prefix > 0xffff) {
            version = 2;
            prefix = 12;
            total = Npy.roundUp(prefix + dict.length() + 1, Npy.ALIGN);
        }
        int headerLen = total - prefix;
        dict.append(" ".repeat(headerLen - dict.length() - 1)).append('\n');
        ByteBuffer b = ByteBuffer.allocate(total).order(ByteOrder.LITTLE_ENDIAN);
        b.put(Npy.MAGIC).put((byte) version).put((byte) 0);
        if (version == 1) {
            b.putShort((short) headerLen);
        } else {
            b.putInt(headerLen);
        }
        b.put(dict.toString().getBytes(StandardCharsets.ISO_8859_1));
        return b.array();
    }

    private interface Body {
        void write(ChunkedOut out) throws IOException;
    }

    private static void writeArray(Path file, String dtype, int[] shape, Body body) {
        byte[] header = header(dtype, shape);
        Npy.writeAtomically(file, ch -> {
            Npy.writeFully(ch, ByteBuffer.wrap(header));
            ChunkedOut out = new ChunkedOut(ch);
            body.write(out);
            out.flush();
        });
    }

    /**
     * A little-endian buffer in front of a channel; {@code ensure(n)} flushes when fewer than n bytes are free, and
     * the {@code put}s copy whole arrays through views of the free part, flushing as the buffer fills.
     */
    private static final class ChunkedOut {
        private final FileChannel ch;
        private final ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);

        ChunkedOut(FileChannel ch) {
            this.ch = ch;
        }

        ByteBuffer ensure(int n) throws IOException {
            if (buf.remaining() < n) {
                flush();
            }
            return buf;
        }

        void put(float[] a) throws IOException {
            bulk(a.length, 4, (view, off, n) -> view.asFloatBuffer().put(a, off, n));
        }

        void put(double[] a) throws IOException {
            bulk(a.length, 8, (view, off, n) -> view.asDoubleBuffer().put(a, off, n));
        }

        void put(int[] a) throws IOException {
            bulk(a.length, 4, (view, off, n) -> view.asIntBuffer().put(a, off, n));
        }

        void put(byte[] a) throws IOException {
            bulk(a.length, 1, (view, off, n) -> view.slice().put(a, off, n));
        }

        /** Copies elements {@code [off, off + n)} of an array into {@code view}, from its position on. */
        private interface Piece {
            void copy(ByteBuffer view, int off, int n);
        }

        /** {@code length} elements of {@code size} bytes, as many as fit per piece, flushing between pieces. */
        private void bulk(int length, int size, Piece piece) throws IOException {
            for (int off = 0; off < length; ) {
                int n = Math.min(length - off, ensure(size).remaining() / size);
                piece.copy(buf, off, n);
                buf.position(buf.position() + size * n);
                off += n;
            }
        }

        void flush() throws IOException {
            buf.flip();
            Npy.writeFully(ch, buf);
            buf.clear();
        }
    }

}
