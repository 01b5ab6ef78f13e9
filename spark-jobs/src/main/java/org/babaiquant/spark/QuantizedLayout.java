package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.SimpleGroupFactory;
import org.apache.parquet.hadoop.ParquetFileWriter;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.example.ExampleParquetWriter;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.hadoop.util.HadoopOutputFile;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;
import org.apache.parquet.io.api.Binary;
import org.babaiquant.BadInputException;
import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.Half;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Fingerprint;
import org.babaiquant.method.Methods;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantResult;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The quantize stage's outputs: the one place that knows their layout.
 *
 * <pre>
 * (NAME: the tensor name, or a path-safe form of it with a hash suffix when it holds other characters than
 *  [A-Za-z0-9._-], e.g. ONNX node names; the exact name is the layer column)
 * OUT/shards/layer=NAME/part-00000.parquet    quantized shards: one row per (layer, block of 256 output rows)
 *   layer, method, order (string); bits, group_size (−1 = per row), rows, cols, row_start, row_count (int32);
 *   sym, clip (boolean); dtype (string, of the original weight: F32/F16/BF16);
 *   codes_packing (string): "gptq-qweight" = int32 words [cols·bits/32][row_count], codes packed along the input
 *       dimension, LSB first (GPTQ qweight layout of this row block), or "int32" = int32 [row_count][cols] (codes
 *       outside [0, maxq] in no-clip mode, or widths GPTQ cannot pack);
 *   codes (binary, little-endian as above); scales (binary: float16 [row_count][groups]); zeros (binary: int32
 *   [row_count][groups], the true zero point); perm (binary: int32 [cols], the processing order, in the row with
 *   row_start = 0 only, empty elsewhere); fingerprint (string); format_version (int32)
 *   dequantized weight: W[r][j] = scale[r][j / group] · (code[r][j] − zero[r][j / group]); the scales were rounded
 *   to float16 BEFORE the pass, so this is exactly the lattice point the solver chose.
 *   representation (string): "gptq" (the columns above) or "ssqr" | "hptq" | "hrtn": then the layer is ONE row whose
 *   payload (binary) is the representation's own versioned format (org.babaiquant.nonclip.SsqrFormat / HptqFormat,
 *   byte maps in their Javadoc) and codes/scales/zeros are empty; payload is empty for "gptq"
 *   footer key-value metadata: babai.format = quantized-shard, babai.version, babai.params (the run's JSON)
 * OUT/reports/layer=NAME/part-00000.parquet   error-bound report: one row per layer (see REPORT)
 * OUT/rows/layer=NAME/part-00000.parquet      per-row table: layer, row, loss, bound, clipped
 * </pre>
 * A layer is committed when its reports directory exists: shards and rows are renamed into place first, the report
 * last, each through the commit protocol (written to a {@code _tmp-layer=NAME-UUID} sibling, renamed into place).
 */
public final class QuantizedLayout {
    public static final int VERSION = 1;
    public static final int ROW_BLOCK = 256;
    /** The {@code representation} of a grid layer (codes + scales + zeros + perm; an encoded one names its method). */
    public static final String GRID = "gptq";

    public static final MessageType SHARD = MessageTypeParser.parseMessageType(
            "message quantized_shard {\n"
                    + "  required binary layer (STRING);\n"
                    + "  required binary method (STRING);\n"
                    + "  required binary order (STRING);\n"
                    + "  required int32 bits;\n"
                    + "  required int32 group_size;\n"
                    + "  required boolean sym;\n"
                    + "  required boolean clip;\n"
                    + "  required int32 rows;\n"
                    + "  required int32 cols;\n"
                    + "  required int32 row_start;\n"
                    + "  required int32 row_count;\n"
                    + "  required binary dtype (STRING);\n"
                    + "  required binary codes_packing (STRING);\n"
                    + "  required binary codes;\n"
                    + "  required binary scales;\n"
                    + "  required binary zeros;\n"
                    + "  required binary perm;\n"
                    + "  required binary fingerprint (STRING);\n"
                    + "  required int32 format_version;\n"
                    + "  required binary representation (STRING);\n"
                    + "  required binary payload;\n"
                    + "}");

    public static final MessageType REPORT = MessageTypeParser.parseMessageType(
            "message layer_report {\n"
                    + "  required binary layer (STRING);\n"
                    + "  required binary site (STRING);\n"
                    + "  required binary method (STRING);\n"
                    + "  required binary order (STRING);\n"
                    + "  required int32 bits;\n"
                    + "  required int32 group_size;\n"
                    + "  required boolean sym;\n"
                    + "  required boolean clip;\n"
                    + "  required int32 rows;\n"
                    + "  required int32 cols;\n"
                    + "  required int64 tokens;\n"
                    + "  required double loss;\n"
                    + "  required double bound;\n"
                    + "  required double loss_over_bound;\n"
                    + "  required int64 clipped;\n"
                    + "  required int32 bound_violations;\n"
                    + "  required double eval_rel_error;\n"
                    + "  required double damping;\n"
                    + "  required double damping_lambda;\n"
                    + "  required int32 damping_attempts;\n"
                    + "  required double trace_d;\n"
                    + "  required double bits_per_weight;\n"
                    + "  required binary backend (STRING);\n"
                    + "  required binary device (STRING);\n"
                    + "  required double seconds;\n"
                    + "  required binary hessian_fingerprint (STRING);\n"
                    + "  required binary fingerprint (STRING);\n"
                    + "  required int32 format_version;\n"
                    + "  required binary starved (STRING);\n"
                    + "}");

    public static final MessageType ROWS = MessageTypeParser.parseMessageType(
            "message row_report {\n"
                    + "  required binary layer (STRING);\n"
                    + "  required int32 row;\n"
                    + "  required double loss;\n"
                    + "  required double bound;\n"
                    + "  required int32 clipped;\n"
                    + "}");

    private QuantizedLayout() {}

    /** One layer's shards read back and unpacked. */
    public record LayerShards(String layer, String method, int bits, int groupSize, int rows, int cols, String dtype,
                              int[][] codes, double[][] scales, int[][] zeros, int[] perm, String fingerprint,
                              String representation, byte[] payload) {
        public int groups() {
            return scales[0].length;
        }

        /**
         * W[r][j] = scale · (code − zero), in float64 from the stored float16 scales; for SSQR/HPTQ/HRTN the decoded
         * payload (float32 values, widened).
         */
        public double[][] dequant() {
            if (!GRID.equals(representation)) {
                float[] v = Methods.encoded(representation).decode(payload);
                if (v.length != (long) rows * cols) {
                    throw new BadInputException("layer " + layer + ": its " + representation + " payload decodes to " + v.length
                            + " values, not [" + rows + ", " + cols + "]");
                }
                double[][] w = new double[rows][cols];
                for (int r = 0; r < rows; r++) {
                    for (int j = 0; j < cols; j++) {
                        w[r][j] = v[r * cols + j];
                    }
                }
                return w;
            }
            int gs = groupSize == -1 ? cols : groupSize;
            double[][] w = new double[rows][cols];
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < cols; j++) {
                    w[r][j] = scales[r][j / gs] * (codes[r][j] - zeros[r][j / gs]);
                }
            }
            return w;
        }
    }

    /**
     * Reads and unpacks one committed layer's shards. The rows are untrusted bytes: every size is checked against the
     * layout (and so against the bytes actually stored) before anything is allocated from it; a shard that does not
     * match is bad input naming the layer's folder.
     */
    public static LayerShards readLayer(Configuration conf, String out, String layer) {
        Path dir = dir(out, "shards", layer);
        List<Group> rows = new ArrayList<>();
        if (!readDir(conf, dir, rows::add) || rows.isEmpty()) {
            throw new BadInputException("no shards for layer " + layer + " under " + out);
        }
        String where = Uris.redact(dir.toString());
        try {
            return decodeLayer(layer, rows, where);
        } catch (BadInputException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new BadInputException("corrupt shard of layer " + layer + " in " + where + ": " + e, e);
        }
    }

    private static LayerShards decodeLayer(String layer, List<Group> rows, String where) {
        Group first = rows.get(0);
        int nRows = first.getInteger("rows", 0);
        int cols = first.getInteger("cols", 0);
        int bits = first.getInteger("bits", 0);
        int gs = first.getInteger("group_size", 0);
        String representation = first.getString("representation", 0);
        if (nRows < 1 || cols < 1 || bits < 1 || bits > 16 || (gs != -1 && gs < 1)) {
            throw new BadInputException(where + ": corrupt shard header rows=" + nRows + ", cols=" + cols + ", bits=" + bits
                    + ", group_size=" + gs);
        }
        if (!GRID.equals(representation)) {
            byte[] pb = first.getBinary("perm", 0).getBytes();
            if (rows.size() != 1 || pb.length != 4L * cols) {
                throw new BadInputException(where + ": a " + representation + " layer is one row with a perm of " + cols
                        + " int32 (found " + rows.size() + " rows, " + pb.length + " perm bytes)");
            }
            if (!(Methods.get(representation) instanceof org.babaiquant.method.EncodedMethod)) {
                throw new BadInputException(where + ": representation '" + representation + "' is not an encoded format");
            }
            return new LayerShards(layer, first.getString("method", 0), bits, gs, nRows, cols, first.getString("dtype", 0), null, null,
                    null, readPerm(pb, cols, where), first.getString("fingerprint", 0), representation, first.getBinary("payload", 0).getBytes());
        }
        int groups = (cols + (gs == -1 ? cols : gs) - 1) / (gs == -1 ? cols : gs);
        // the row blocks must tile [0, rows) exactly, each with the byte counts its shape implies
        List<Group> blocks = new ArrayList<>(rows);
        blocks.sort(Comparator.comparingInt(g -> g.getInteger("row_start", 0)));
        long next = 0;
        for (Group g : blocks) {
            int r0 = g.getInteger("row_start", 0);
            int n = g.getInteger("row_count", 0);
            if (r0 != next || n < 1 || (long) r0 + n > nRows || g.getInteger("rows", 0) != nRows || g.getInteger("cols", 0) != cols
                    || g.getInteger("bits", 0) != bits || g.getInteger("group_size", 0) != gs || !GRID.equals(g.getString("representation", 0))) {
                throw new BadInputException(where + ": row block at " + r0 + " (+" + n + ") does not continue the layer's [" + nRows + ", "
                        + cols + "] " + bits + "-bit blocks at row " + next);
            }
            long codeBytes = "gptq-qweight".equals(g.getString("codes_packing", 0)) ? 4L * n * ((long) cols * bits / 32) : 4L * n * cols;
            if (g.getBinary("codes", 0).length() != codeBytes || g.getBinary("scales", 0).length() != 2L * n * groups
                    || g.getBinary("zeros", 0).length() != 4L * n * groups) {
                throw new BadInputException(where + ": row block at " + r0 + " holds " + g.getBinary("codes", 0).length() + " code, "
                        + g.getBinary("scales", 0).length() + " scale and " + g.getBinary("zeros", 0).length() + " zero bytes for "
                        + n + " rows of " + cols + " columns (" + codeBytes + ", " + 2L * n * groups + ", " + 4L * n * groups + " expected)");
            }
            next = (long) r0 + n;
        }
        if (next != nRows) {
            throw new BadInputException(where + ": the row blocks cover rows [0, " + next + ") of " + nRows);
        }
        int[][] codes = new int[nRows][];
        double[][] scales = new double[nRows][groups];
        int[][] zeros = new int[nRows][groups];
        int[] perm = null;
        for (Group g : blocks) {
            int r0 = g.getInteger("row_start", 0);
            int n = g.getInteger("row_count", 0);
            ByteBuffer cb = ByteBuffer.wrap(g.getBinary("codes", 0).getBytes()).order(ByteOrder.LITTLE_ENDIAN);
            if ("gptq-qweight".equals(g.getString("codes_packing", 0))) {
                int words = cb.capacity() / 4 / n;
                int[][] qweight = new int[words][n];
                for (int[] w : qweight) {
                    for (int i = 0; i < n; i++) {
                        w[i] = cb.getInt();
                    }
                }
                int[][] block = GptqPacking.unpackQweight(qweight, bits, cols);
                System.arraycopy(block, 0, codes, r0, n);
            } else {
                for (int r = r0; r < r0 + n; r++) {
                    codes[r] = new int[cols];
                    for (int j = 0; j < cols; j++) {
                        codes[r][j] = cb.getInt();
                    }
                }
            }
            ByteBuffer sb = ByteBuffer.wrap(g.getBinary("scales", 0).getBytes()).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer zb = ByteBuffer.wrap(g.getBinary("zeros", 0).getBytes()).order(ByteOrder.LITTLE_ENDIAN);
            for (int r = r0; r < r0 + n; r++) {
                for (int k = 0; k < groups; k++) {
                    scales[r][k] = Half.toFloat(sb.getShort());
                    zeros[r][k] = zb.getInt();
                }
            }
            byte[] pb = g.getBinary("perm", 0).getBytes();
            if (pb.length > 0) {
                perm = readPerm(pb, cols, where);
            }
        }
        return new LayerShards(layer, first.getString("method", 0), bits, gs, nRows, cols, first.getString("dtype", 0), codes, scales,
                zeros, perm, first.getString("fingerprint", 0), representation, new byte[0]);
    }

    /** A processing order: {@code cols} int32, a permutation of 0..cols−1. */
    private static int[] readPerm(byte[] pb, int cols, String where) {
        if (pb.length != 4L * cols) {
            throw new BadInputException(where + ": perm holds " + pb.length + " bytes, not " + cols + " int32");
        }
        ByteBuffer b = ByteBuffer.wrap(pb).order(ByteOrder.LITTLE_ENDIAN);
        int[] perm = new int[cols];
        boolean[] seen = new boolean[cols];
        for (int j = 0; j < cols; j++) {
            perm[j] = b.getInt();
            if (perm[j] < 0 || perm[j] >= cols || seen[perm[j]]) {
                throw new BadInputException(where + ": perm is not a permutation of 0.." + (cols - 1) + " (entry " + j + " = " + perm[j] + ")");
            }
            seen[perm[j]] = true;
        }
        return perm;
    }

    /**
     * Encodes one quantized layer as its shard rows (the layout above): a grid result as blocks of {@link #ROW_BLOCK}
     * output rows (codes GPTQ-packed where {@link GptqPacking#packable} allows, else int32; fp16 scales; int32 zeros;
     * perm in the first block), an encoded result as one row holding its payload.
     */
    public static List<Group> shardRows(String layer, String dtype, MethodSpec spec, QuantResult q, String fingerprint) {
        QuantizedLayer lat = q.lattice();
        int rows = lat.grid().rows;
        int cols = lat.grid().cols;
        List<Group> out = new ArrayList<>();
        if (q instanceof QuantResult.Encoded e) {
            out.add(shardRow(layer, dtype, spec, q, fingerprint, 0, rows).append("codes_packing", "none")
                    .append("codes", Binary.EMPTY).append("scales", Binary.EMPTY).append("zeros", Binary.EMPTY)
                    .append("perm", Binary.fromConstantByteArray(ints(lat.perm()))).append("fingerprint", fingerprint)
                    .append("format_version", VERSION).append("representation", e.method())
                    .append("payload", Binary.fromConstantByteArray(e.bytes())));
            return out;
        }
        QuantResult.Grid g = (QuantResult.Grid) q;
        QuantGrid grid = lat.grid();
        int groups = grid.groups();
        for (int r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
            int n = Math.min(ROW_BLOCK, rows - r0);
            int[][] codes = Arrays.copyOfRange(lat.codes(), r0, r0 + n);
            boolean packable = g.packable(codes);
            ByteBuffer cb;
            if (packable) {
                int[][] qweight = GptqPacking.packQweight(codes, grid.bits);
                cb = ByteBuffer.allocate(4 * qweight.length * n).order(ByteOrder.LITTLE_ENDIAN);
                for (int[] word : qweight) {
                    for (int v : word) {
                        cb.putInt(v);
                    }
                }
            } else {
                cb = ByteBuffer.allocate(4 * n * cols).order(ByteOrder.LITTLE_ENDIAN);
                for (int[] row : codes) {
                    for (int v : row) {
                        cb.putInt(v);
                    }
                }
            }
            ByteBuffer sb = ByteBuffer.allocate(2 * n * groups).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer zb = ByteBuffer.allocate(4 * n * groups).order(ByteOrder.LITTLE_ENDIAN);
            for (int r = r0; r < r0 + n; r++) {
                for (int k = 0; k < groups; k++) {
                    sb.putShort(Half.fromFloat((float) grid.scale[r][k]));
                    zb.putInt((int) grid.zero[r][k]);
                }
            }
            out.add(shardRow(layer, dtype, spec, q, fingerprint, r0, n).append("codes_packing", packable ? "gptq-qweight" : "int32")
                    .append("codes", Binary.fromConstantByteArray(cb.array())).append("scales", Binary.fromConstantByteArray(sb.array()))
                    .append("zeros", Binary.fromConstantByteArray(zb.array()))
                    .append("perm", Binary.fromConstantByteArray(r0 == 0 ? ints(lat.perm()) : new byte[0]))
                    .append("fingerprint", fingerprint).append("format_version", VERSION)
                    .append("representation", GRID).append("payload", Binary.EMPTY));
        }
        return out;
    }

    /** The leading columns of a shard row, the same for both forms. */
    private static Group shardRow(String layer, String dtype, MethodSpec spec, QuantResult q, String fingerprint, int r0, int n) {
        QuantGrid grid = q.lattice().grid();
        return groups(SHARD).newGroup().append("layer", layer).append("method", q.method()).append("order", spec.order().cliName)
                .append("bits", q.bits()).append("group_size", q.groupSize()).append("sym", spec.grid().sym())
                .append("clip", spec.clip()).append("rows", grid.rows).append("cols", grid.cols).append("row_start", r0)
                .append("row_count", n).append("dtype", dtype);
    }

    private static byte[] ints(int[] v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (int x : v) {
            b.putInt(x);
        }
        return b.array();
    }

    /** The per-row table of one layer (see ROWS). */
    public static List<Group> rowRows(String layer, LayerReport rep) {
        List<Group> out = new ArrayList<>(rep.rows);
        for (int r = 0; r < rep.rows; r++) {
            out.add(groups(ROWS).newGroup().append("layer", layer).append("row", r)
                    .append("loss", rep.rowLoss[r]).append("bound", rep.rowBound[r]).append("clipped", rep.rowClipped[r]));
        }
        return out;
    }

    /** The report row of one layer (see REPORT); {@code gpu} is the task's GPU address, or null. */
    public static Group reportRow(String layer, String site, String method, LayerReport r, String backend, String gpu,
                                  String hessianFingerprint, String fingerprint) {
        return groups(REPORT).newGroup().append("layer", layer).append("site", site)
                .append("method", method).append("order", r.order.cliName).append("bits", r.bits)
                .append("group_size", r.groupSize).append("sym", r.sym).append("clip", r.clip).append("rows", r.rows)
                .append("cols", r.cols).append("tokens", r.tokens).append("loss", r.loss()).append("bound", r.bound())
                .append("loss_over_bound", r.lossOverBound()).append("clipped", r.clipped())
                .append("bound_violations", r.boundViolations()).append("eval_rel_error", r.evalRelError)
                .append("damping", r.percdampUsed).append("damping_lambda", r.lambda).append("damping_attempts", r.dampAttempts)
                .append("trace_d", r.traceD).append("bits_per_weight", r.bitsPerWeight).append("backend", backend)
                .append("device", backend.equals("cpu") ? "cpu" : "gpu:" + (gpu == null ? "default" : gpu)).append("seconds", r.seconds)
                .append("hessian_fingerprint", hessianFingerprint)
                .append("fingerprint", fingerprint).append("format_version", VERSION);
    }

    public static Path dir(String out, String kind, String layer) {
        return new Path(new Path(new Path(out), kind), dirName(layer));
    }

    /**
     * The directory of a layer: {@code layer=NAME} when the name is path-safe (Hugging Face names are), else the name
     * with every other character replaced by '_' plus 8 hex digits of its SHA-256 (ONNX node names hold '/'); the
     * exact name is in every row's {@code layer} column.
     */
    static String dirName(String layer) {
        String safe = layer.replaceAll("[^A-Za-z0-9._-]", "_");
        if (safe.equals(layer) && !layer.isEmpty()) {
            return "layer=" + layer;
        }
        return "layer=" + safe.replaceAll("^_+", "") + "-" + Fingerprint.sha256().text(layer).hex(4);
    }

    /** Writes groups to one Parquet file, the same bytes for the same rows in every JVM ({@link ParquetFiles}). */
    public static void write(Configuration conf, Path file, MessageType schema, Map<String, String> meta, List<Group> rows)
            throws IOException {
        try (ParquetWriter<Group> w = ParquetFiles.writer(conf, file, schema, meta)) {
            for (Group g : rows) {
                w.write(g);
            }
        }
    }

    public static SimpleGroupFactory groups(MessageType schema) {
        return new SimpleGroupFactory(schema);
    }

    /** Reads every row of every Parquet file under {@code OUT/kind/layer=*} (layers sorted by name). */
    public static void readAll(Configuration conf, String out, String kind, Consumer<Group> visitor) {
        Path root = new Path(new Path(out), kind);
        try {
            FileSystem fs = root.getFileSystem(conf);
            if (!fs.exists(root)) {
                throw new BadInputException("no " + kind + " under " + out + " (is it a quantize output?)");
            }
            FileStatus[] layers = fs.listStatus(root, p -> p.getName().startsWith("layer="));
            Arrays.sort(layers, Comparator.comparing(s -> s.getPath().getName()));
            for (FileStatus l : layers) {
                readDir(conf, l.getPath(), visitor);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + root + ": " + e.getMessage(), e);
        }
    }

    /** Reads every row of the Parquet files of one directory; returns false when it does not exist. */
    public static boolean readDir(Configuration conf, Path dir, Consumer<Group> visitor) {
        try {
            FileSystem fs = dir.getFileSystem(conf);
            if (!fs.exists(dir)) {
                return false;
            }
            List<FileStatus> files = new ArrayList<>(Arrays.asList(fs.listStatus(dir, p -> p.getName().endsWith(".parquet"))));
            files.sort(Comparator.comparing(s -> s.getPath().getName()));
            for (FileStatus f : files) {
                readFile(conf, f, visitor);
            }
            return true;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Every row of one Parquet file; returns its footer key-value metadata. Unreadable: a message naming the file. */
    public static Map<String, String> readFile(Configuration conf, FileStatus f, Consumer<Group> visitor) {
        return ParquetFiles.rows(conf, f, visitor);
    }
}
