package org.babaiquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@link ByteSource} contract, once, and one small subclass per implementation. */
class ByteSourceTest {

    @TempDir
    Path dir;

    /** Over 4 MiB, so that the file source's chunked reads take several rounds. */
    private static final byte[] CONTENT = new byte[(9 << 20) + 13];

    static {
        new Random(5).nextBytes(CONTENT);
    }

    abstract static class Contract {
        /** A source holding exactly {@code content}. */
        abstract ByteSource open(byte[] content) throws IOException;

        @Test
        void sizeAndReadsAtAnyPosition() throws IOException {
            try (ByteSource src = open(CONTENT)) {
                assertEquals(CONTENT.length, src.size());
                for (int[] range : new int[][]{{0, 8}, {7, 1}, {CONTENT.length - 5, 5}, {100, 0}, {3, 6 << 20}}) {
                    ByteBuffer b = ByteBuffer.allocate(range[1]);
                    src.readFully(range[0], b);
                    assertEquals(b.limit(), b.position(), "position advanced to the limit");
                    assertArrayEquals(Arrays.copyOfRange(CONTENT, range[0], range[0] + range[1]), b.array());
                }
            }
        }

        @Test
        void wholeContentInOneCall() throws IOException {
            try (ByteSource src = open(CONTENT)) {
                byte[] all = new byte[CONTENT.length];
                src.readFully(0, ByteBuffer.wrap(all));
                assertArrayEquals(CONTENT, all);
            }
        }

        @Test
        void fillsFromPositionToLimitOfSlicesAndDirectBuffers() throws IOException {
            try (ByteSource src = open(CONTENT)) {
                ByteBuffer b = ByteBuffer.allocate(20);
                b.position(4).limit(10);
                src.readFully(50, b);
                assertEquals(10, b.position());
                assertArrayEquals(Arrays.copyOfRange(CONTENT, 50, 56), Arrays.copyOfRange(b.array(), 4, 10));
                assertArrayEquals(new byte[4], Arrays.copyOfRange(b.array(), 0, 4));

                ByteBuffer d = ByteBuffer.allocateDirect(1000);
                src.readFully(17, d);
                byte[] got = new byte[1000];
                d.flip().get(got);
                assertArrayEquals(Arrays.copyOfRange(CONTENT, 17, 1017), got);
            }
        }

        @Test
        void readingPastTheEndIsEof() throws IOException {
            try (ByteSource src = open(new byte[10])) {
                assertThrows(EOFException.class, () -> src.readFully(5, ByteBuffer.allocate(6)));
                assertThrows(EOFException.class, () -> src.readFully(11, ByteBuffer.allocate(1)));
                src.readFully(10, ByteBuffer.allocate(0)); // empty read at the end is fine
            }
        }

        @Test
        void emptySource() throws IOException {
            try (ByteSource src = open(new byte[0])) {
                assertEquals(0, src.size());
                assertThrows(EOFException.class, () -> src.readFully(0, ByteBuffer.allocate(1)));
            }
        }
    }

    @Nested
    class FileSource extends Contract {
        @Override
        ByteSource open(byte[] content) throws IOException {
            Path f = Files.createTempFile(dir, "b", ".bin");
            Files.write(f, content);
            return ByteSource.of(f);
        }

        @Test
        void nameIsThePathAndMissingFileIsBadInput() throws IOException {
            Path f = dir.resolve("x.safetensors");
            Files.write(f, new byte[3]);
            try (ByteSource src = ByteSource.of(f)) {
                assertEquals(f.toString(), src.name());
            }
            BadInputException e = assertThrows(BadInputException.class, () -> ByteSource.of(dir.resolve("nope")));
            assertTrue(e.getMessage().contains("nope"), e.getMessage());
        }

        @Test
        void readAfterCloseFails() throws IOException {
            ByteSource src = open(new byte[8]);
            src.close();
            assertThrows(IOException.class, () -> src.readFully(0, ByteBuffer.allocate(1)));
        }
    }

    @Nested
    class MemorySource extends Contract {
        @Override
        ByteSource open(byte[] content) {
            return ByteSource.of("mem", content);
        }

        @Test
        void nameIsGiven() {
            assertEquals("weights.bin", ByteSource.of("weights.bin", new byte[0]).name());
        }
    }
}
