package org.babaiquant.io;

import java.io.EOFException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A fixed-size sequence of bytes read by absolute position: a local file, an object in a Hadoop file system
 * ({@code s3a://}, {@code hdfs://}), an array in memory. {@link SafeTensors} reads headers and tensors through this,
 * so one parser serves every store.
 *
 * <p>Reads are positional: there is no shared file pointer, so a tensor's bytes can be read without reading the ones
 * before it. Closing releases the underlying handle; reading after that is an error of the implementation's choosing.
 */
public interface ByteSource extends AutoCloseable {

    /** What error messages call this source: the file's path or URI. */
    String name();

    /** Total length in bytes. */
    long size() throws IOException;

    /**
     * Fills {@code dst} from its position to its limit with the bytes starting at {@code position}, and advances
     * {@code dst}'s position to its limit.
     *
     * @throws EOFException if the source ends first (a truncated file)
     */
    void readFully(long position, ByteBuffer dst) throws IOException;

    @Override
    void close() throws IOException;

    /**
     * A local file, read through a {@link FileChannel}.
     *
     * @throws org.babaiquant.BadInputException if the file does not exist
     * @throws UncheckedIOException             if it cannot be opened
     */
    static ByteSource of(Path file) {
        try {
            return new FileSource(file, Npy.openForRead(file));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + file + ": " + e.getMessage(), e);
        }
    }

    /** Bytes in memory (not copied), named {@code name} in error messages; for tests and small in-memory files. */
    static ByteSource of(String name, byte[] bytes) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(bytes, "bytes");
        return new ByteSource() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public long size() {
                return bytes.length;
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                int n = dst.remaining();
                if (position < 0 || position > bytes.length || n > bytes.length - position) {
                    throw new EOFException(name + ": cannot read " + n + " bytes at " + position + " of "
                            + bytes.length);
                }
                dst.put(bytes, (int) position, n);
            }

            @Override
            public void close() {
            }

            @Override
            public String toString() {
                return name;
            }
        };
    }

    /** {@link #of(Path)}. */
    final class FileSource implements ByteSource {

        /**
         * Largest single channel read. A positional read into a heap buffer goes through a temporary direct buffer of
         * the same size, so reading a 1 GB tensor in one call would allocate 1 GB off-heap.
         */
        private static final int MAX_READ = 1 << 22;

        private final Path file;
        private final FileChannel ch;

        private FileSource(Path file, FileChannel ch) {
            this.file = file;
            this.ch = ch;
        }

        @Override
        public String name() {
            return file.toString();
        }

        @Override
        public long size() throws IOException {
            return ch.size();
        }

        @Override
        public void readFully(long position, ByteBuffer dst) throws IOException {
            long p = position;
            while (dst.hasRemaining()) {
                int n = Math.min(dst.remaining(), MAX_READ);
                ByteBuffer window = dst.slice(dst.position(), n);
                while (window.hasRemaining()) {
                    int got = ch.read(window, p + window.position());
                    if (got < 0) {
                        throw new EOFException(file + ": unexpected end of file at byte " + (p + window.position()));
                    }
                }
                dst.position(dst.position() + n);
                p += n;
            }
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }

        @Override
        public String toString() {
            return file.toString();
        }
    }
}
