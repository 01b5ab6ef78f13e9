package org.babaiquant.io;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The project's one fingerprint: SHA-256 over what a stage's output depends on, fed in a fixed order, as 64 lowercase
 * hex digits. Every stage that skips work when "nothing changed" (import, capture, hessian, quantize, the pipeline)
 * builds its fingerprint here, so the same bytes in the same order always give the same digest:
 * <pre>
 *   String fp = Fingerprint.sha256().text("babai-hessian v1|" + site + "\n").bytes(footer).hex();
 * </pre>
 * Text is UTF-8. A builder is used once: {@link #hex()} finishes it.
 */
public final class Fingerprint {
    private static final int BUFFER = 1 << 20;

    private final MessageDigest md;
    private boolean done;

    private Fingerprint() {
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java platform has SHA-256", e);
        }
    }

    /** A new, empty SHA-256 fingerprint. */
    public static Fingerprint sha256() {
        return new Fingerprint();
    }

    /** SHA-256 of one UTF-8 string, as hex. */
    public static String of(String text) {
        return sha256().text(text).hex();
    }

    /** Adds the UTF-8 bytes of {@code s}. */
    public Fingerprint text(String s) {
        return bytes(s.getBytes(StandardCharsets.UTF_8));
    }

    /** Adds bytes. */
    public Fingerprint bytes(byte[] b) {
        return bytes(b, 0, b.length);
    }

    /** Adds {@code len} bytes of {@code b} from {@code off}. */
    public Fingerprint bytes(byte[] b, int off, int len) {
        check();
        md.update(b, off, len);
        return this;
    }

    /** Adds everything {@code in} holds, to its end (the caller closes it). */
    public Fingerprint stream(InputStream in) throws IOException {
        check();
        byte[] buf = new byte[BUFFER];
        for (int n; (n = in.read(buf)) > 0; ) {
            md.update(buf, 0, n);
        }
        return this;
    }

    /** Adds a local file's bytes. */
    public Fingerprint file(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            return stream(in);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + " to fingerprint it: " + e.getMessage(), e);
        }
    }

    /** The digest as 64 lowercase hex digits; the builder cannot be used after. */
    public String hex() {
        check();
        done = true;
        return HexFormat.of().formatHex(md.digest());
    }

    /** The first {@code n} bytes of the digest as hex (short names derived from a long string). */
    public String hex(int n) {
        check();
        done = true;
        return HexFormat.of().formatHex(md.digest(), 0, n);
    }

    private void check() {
        if (done) {
            throw new IllegalStateException("fingerprint already finished");
        }
    }
}
