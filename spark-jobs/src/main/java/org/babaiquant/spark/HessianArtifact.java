package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;
import org.babaiquant.BadInputException;
import org.babaiquant.core.Json;
import org.babaiquant.io.Fingerprint;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The Hessian artifact: the one place that knows its layout.
 *
 * <pre>
 * OUT/site=SITE/                       one committed directory per input site (renamed into place when complete)
 *   part-00000.parquet                 one file; one row per block of the upper triangle, sorted by (block_row, block_col);
 *                                      footer metadata babai.format = hessian, babai.version = 1
 *   _SUCCESS                           written after the directory is in place
 *   _hessian.json                      {format_version, site, dim, tokens, normalisation, block_size, slices, fingerprint}
 *
 * row:  site string, dim int32, tokens int64, normalisation string ("sum": H = Σ_t x_t x_tᵀ, never a mean),
 *       block_row int32, block_col int32 (block_row ≤ block_col), rows int32, cols int32,
 *       data binary (rows × cols float64, little-endian, row-major: H[block_row·B + i][block_col·B + j]),
 *       fingerprint string (SHA-256 of inputs + config), format_version int32
 * </pre>
 * Diagonal blocks are stored whole (symmetric). A site whose inputs hold no token (a mixture-of-experts expert no
 * calibration token was routed to) is committed with {@code tokens: 0} and no Parquet file: H = 0 of size dim.
 * The fingerprint hashes the config (format version, slice size, block
 * size, normalisation) and, per input file in canonical order, its name, row count, d, dtype and the bytes of its
 * Parquet footer (which records every column chunk's size, offsets and statistics): a content fingerprint that does
 * not read the data.
 */
public final class HessianArtifact {
    public static final int VERSION = 1;
    public static final String NORMALISATION = "sum";
    public static final String SIDECAR = "_hessian.json";

    /** The Parquet schema of a block row (see the class comment). */
    public static final MessageType PARQUET_SCHEMA = MessageTypeParser.parseMessageType(
            "message hessian_block {\n"
                    + "  required binary site (STRING);\n"
                    + "  required int32 dim;\n"
                    + "  required int64 tokens;\n"
                    + "  required binary normalisation (STRING);\n"
                    + "  required int32 block_row;\n"
                    + "  required int32 block_col;\n"
                    + "  required int32 rows;\n"
                    + "  required int32 cols;\n"
                    + "  required binary data;\n"
                    + "  required binary fingerprint (STRING);\n"
                    + "  required int32 format_version;\n"
                    + "}");

    /** One block row; {@code data} is rows × cols float64, little-endian, row-major. */
    static Group row(String site, int dim, long tokens, int blockRow, int blockCol, int rows, int cols, byte[] data,
                     String fingerprint) {
        return QuantizedLayout.groups(PARQUET_SCHEMA).newGroup().append("site", site).append("dim", dim).append("tokens", tokens)
                .append("normalisation", NORMALISATION).append("block_row", blockRow).append("block_col", blockCol)
                .append("rows", rows).append("cols", cols).append("data", Binary.fromConstantByteArray(data))
                .append("fingerprint", fingerprint).append("format_version", VERSION);
    }

    private HessianArtifact() {}

    /** What the sidecar says. */
    public record Meta(int version, String site, int dim, long tokens, String normalisation, int blockSize, int slices,
                       String fingerprint) {
        String toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("format_version", version);
            m.put("site", site);
            m.put("dim", dim);
            m.put("tokens", tokens);
            m.put("normalisation", normalisation);
            m.put("block_size", blockSize);
            m.put("slices", slices);
            m.put("fingerprint", fingerprint);
            return Json.line(m);
        }

        static Meta parse(String json, String where) {
            try {
                Object root = Json.parse(json, where, "Hessian sidecar", Json.Numbers.INTEGERS);
                if (!(root instanceof Map<?, ?> m)) {
                    throw new IllegalArgumentException("not a JSON object");
                }
                return new Meta(Math.toIntExact(num(m, "format_version")), str(m, "site"), Math.toIntExact(num(m, "dim")),
                        num(m, "tokens"), str(m, "normalisation"), Math.toIntExact(num(m, "block_size")),
                        Math.toIntExact(num(m, "slices")), str(m, "fingerprint"));
            } catch (BadInputException e) {
                throw e;
            } catch (RuntimeException e) {
                throw new BadInputException("corrupt Hessian sidecar " + where + ": " + e.getMessage(), e);
            }
        }

        private static long num(Map<?, ?> m, String key) {
            if (!(m.get(key) instanceof Long v)) {
                throw new IllegalArgumentException("missing or non-integer " + key);
            }
            return v;
        }

        private static String str(Map<?, ?> m, String key) {
            if (!(m.get(key) instanceof String v)) {
                throw new IllegalArgumentException("missing or non-string " + key);
            }
            return v;
        }
    }

    public static Path siteDir(String uri, String site) {
        return new Path(new Path(uri), ActivationLayout.siteDir(site));
    }

    /** The committed artifact's metadata, or null when the site has no complete artifact. */
    public static Meta committed(Configuration conf, String uri, String site) {
        Path dir = siteDir(uri, site);
        try {
            FileSystem fs = dir.getFileSystem(conf);
            Path sidecar = new Path(dir, SIDECAR);
            if (!fs.exists(new Path(dir, "_SUCCESS")) || !fs.exists(sidecar)) {
                return null;
            }
            try (FSDataInputStream in = fs.open(sidecar)) {
                return Meta.parse(new String(in.readAllBytes(), StandardCharsets.UTF_8), sidecar.toString());
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + dir + ": " + e.getMessage(), e);
        }
    }

    /** SHA-256 over the config and the inputs' identities (see the class comment). */
    public static String fingerprint(Configuration conf, String site, List<ActivationLayout.SiteFile> files, int sliceTiles,
                                     int blockSize) {
        Fingerprint fp = Fingerprint.sha256().text("babai-hessian v" + VERSION + "|" + site + "|slice " + sliceTiles + "|block "
                + blockSize + "|" + NORMALISATION + "\n");
        for (ActivationLayout.SiteFile f : files) {
            Path p = new Path(f.path());
            fp.text(p.getName() + "|" + f.rows() + "|" + f.dim() + "|" + f.dtype() + "|").bytes(footerBytes(conf, p));
        }
        return fp.hex();
    }

    private static byte[] footerBytes(Configuration conf, Path p) {
        try {
            FileSystem fs = p.getFileSystem(conf);
            long len = fs.getFileStatus(p).getLen();
            try (FSDataInputStream in = fs.open(p)) {
                byte[] tail = new byte[8];
                in.readFully(len - 8, tail);
                int footerLen = ByteBuffer.wrap(tail).order(ByteOrder.LITTLE_ENDIAN).getInt();
                if (footerLen < 0 || footerLen > len - 12) {
                    throw new BadInputException("corrupt Parquet footer length " + footerLen + " in a " + len + "-byte file");
                }
                byte[] footer = new byte[footerLen];
                in.readFully(len - 8 - footerLen, footer);
                return footer;
            }
        } catch (IOException | RuntimeException e) {
            throw new BadInputException("cannot read the Parquet footer of " + p + ": " + e.getMessage(), e);
        }
    }

    /** A Hessian read back: H = Σ XᵀX (full symmetric) and its token count. */
    public record Loaded(Meta meta, double[][] h) {}

    /** Reads and assembles one site's Hessian on the caller (driver / one executor). */
    public static Loaded read(Configuration conf, String uri, String site) {
        Meta meta = committed(conf, uri, site);
        if (meta == null) {
            throw new BadInputException("no committed Hessian for site '" + site + "' under " + uri);
        }
        if (meta.version() != VERSION) {
            throw new BadInputException("Hessian format version " + meta.version() + " at " + siteDir(uri, site)
                    + " is not supported (this build reads " + VERSION + "): recompute it with this version");
        }
        Path dir = siteDir(uri, site);
        String where = Uris.redact(dir.toString());
        int d = meta.dim();
        int bs = meta.blockSize();
        if (!meta.site().equals(site) || d < 0 || bs < 1 || meta.tokens() < 0) {
            throw new BadInputException("corrupt Hessian sidecar in " + where + ": site '" + meta.site() + "', dim " + d + ", block size "
                    + bs + ", tokens " + meta.tokens());
        }
        int nb = (d + bs - 1) / bs;
        long blocks = (long) nb * (nb + 1) / 2;
        try {
            FileSystem fs = dir.getFileSystem(conf);
            FileStatus[] files = fs.listStatus(dir, p -> p.getName().endsWith(".parquet"));
            long stored = 0;
            for (FileStatus st : files) {
                stored += st.getLen();
            }
            // the upper triangle's float64 blocks must be in the files (Snappy compresses at most ~32x): never allocate H
            // for less
            if (meta.tokens() > 0 && (stored < blocks || 8.0 * d * d > 64.0 * stored + (1 << 20))) {
                throw new BadInputException(where + ": " + stored + " bytes of Parquet cannot hold the " + blocks + " blocks of a "
                        + d + "-wide Hessian");
            }
            double[][] h = new double[d][d];
            boolean[] seen = new boolean[(int) Math.min(blocks, Integer.MAX_VALUE)];
            long[] found = {0};
            for (FileStatus st : files) {
                String file = Uris.redact(st.getPath().toString());
                ParquetFiles.rows(conf, st, g -> {
                    int bi = g.getInteger("block_row", 0);
                    int bj = g.getInteger("block_col", 0);
                    int rows = g.getInteger("rows", 0);
                    int cols = g.getInteger("cols", 0);
                    byte[] bytes = g.getBinary("data", 0).getBytes();
                    if (bi < 0 || bj < bi || bj >= nb || rows != Math.min(bs, d - bi * bs) || cols != Math.min(bs, d - bj * bs)
                            || bytes.length != 8L * rows * cols || g.getInteger("dim", 0) != d || !site.equals(g.getString("site", 0))) {
                        throw new BadInputException(file + ": block (" + bi + ", " + bj + ") of " + rows + " × " + cols + " with "
                                + bytes.length + " bytes does not fit the " + d + "-wide Hessian of site '" + site + "' in blocks of " + bs);
                    }
                    int index = bi * nb - bi * (bi - 1) / 2 + (bj - bi);
                    if (seen[index]) {
                        throw new BadInputException(file + ": block (" + bi + ", " + bj + ") is stored twice");
                    }
                    seen[index] = true;
                    found[0]++;
                    ByteBuffer data = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
                    int r0 = bi * bs;
                    int c0 = bj * bs;
                    for (int a = 0; a < rows; a++) {
                        for (int b = 0; b < cols; b++) {
                            double v = data.getDouble(8 * (a * cols + b));
                            if (!Double.isFinite(v)) {
                                throw new BadInputException(file + ": H[" + (r0 + a) + "][" + (c0 + b) + "] is " + v);
                            }
                            h[r0 + a][c0 + b] = v;
                            h[c0 + b][r0 + a] = v;
                        }
                    }
                });
            }
            if (meta.tokens() > 0 && found[0] != blocks) {
                throw new BadInputException(where + ": " + found[0] + " of the " + blocks + " blocks of the Hessian are stored");
            }
            return new Loaded(meta, h);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + where + ": " + e.getMessage(), e);
        }
    }
}
