package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Little-endian reads from a byte array that turn a short stream into a {@link BadInputException} naming the format,
 * the field and the offset, instead of an {@code IndexOutOfBoundsException} from deep inside a decoder.
 */
final class ByteReader {
    private final ByteBuffer buf;
    private final String format;

    ByteReader(byte[] bytes, String format) {
        this.buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        this.format = format;
    }

    int position() {
        return buf.position();
    }

    int remaining() {
        return buf.remaining();
    }

    /** Fails unless {@code n} more bytes are there for {@code field}. */
    void need(long n, String field) {
        if (n > buf.remaining()) {
            throw new BadInputException(format + " stream truncated: " + field + " needs " + n + " bytes at offset "
                    + buf.position() + " but only " + buf.remaining() + " remain (file cut short or not a complete "
                    + format + " layer)");
        }
    }

    byte i8(String field) {
        need(1, field);
        return buf.get();
    }

    int u8(String field) {
        return i8(field) & 0xFF;
    }

    short i16(String field) {
        need(2, field);
        return buf.getShort();
    }

    int u16(String field) {
        return i16(field) & 0xFFFF;
    }

    int i32(String field) {
        need(4, field);
        return buf.getInt();
    }

    long i64(String field) {
        need(8, field);
        return buf.getLong();
    }

    float f32(String field) {
        need(4, field);
        return buf.getFloat();
    }

    /** Skips {@code n} bytes (after checking they are there) and returns the offset where they start. */
    int skip(long n, String field) {
        need(n, field);
        int at = buf.position();
        buf.position(at + (int) n);
        return at;
    }

    /** The stream must end here: trailing bytes mean a different layout or a concatenation error. */
    void end() {
        if (buf.remaining() != 0) {
            throw new BadInputException(format + " stream has " + buf.remaining() + " unexpected trailing bytes at "
                    + "offset " + buf.position() + " (the header describes a shorter layer)");
        }
    }
}
