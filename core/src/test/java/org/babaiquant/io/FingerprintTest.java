package org.babaiquant.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class FingerprintTest {

    /** FIPS 180-2 test vector: SHA-256("abc"). */
    @Test
    void knownDigest() {
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Fingerprint.of("abc"));
        assertEquals("ba7816bf", Fingerprint.sha256().text("abc").hex(4));
    }

    /** Text, bytes, streams and files of the same bytes fed in the same order give the same digest. */
    @Test
    void piecesConcatenate(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("c.bin");
        Files.writeString(f, "c");
        String whole = Fingerprint.of("abc");
        assertEquals(whole, Fingerprint.sha256().text("a").bytes("b".getBytes(StandardCharsets.UTF_8)).file(f).hex());
        assertEquals(whole, Fingerprint.sha256().stream(new ByteArrayInputStream("ab".getBytes(StandardCharsets.UTF_8)))
                .text("c").hex());
        assertNotEquals(whole, Fingerprint.of("acb"));
    }

    @Test
    void usedOnce() {
        Fingerprint fp = Fingerprint.sha256().text("x");
        fp.hex();
        assertThrows(IllegalStateException.class, () -> fp.text("y"));
    }
}
