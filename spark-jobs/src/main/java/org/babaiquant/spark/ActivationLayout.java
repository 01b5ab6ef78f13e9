package org.babaiquant.spark;

import org.babaiquant.core.Half;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.SimpleGroupFactory;
import org.apache.parquet.example.data.simple.convert.GroupRecordConverter;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.metadata.BlockMetaData;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;
import org.babaiquant.BadInputException;
import org.babaiquant.io.Names;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

/**
 * The Parquet layout of calibration activations: the one place that knows it.
 *
 * <pre>
 * URI/                                   one dataset per model
 *   site=attn_in/                        Hive-style partition per input site (the tensor feeding one or more linears:
 *     part-00000-SOURCE.parquet          q/k/v share one site, gate/up share one); one file per imported source
 *   site=ffn_up_in/ ...
 *
 * one row = one tile of up to 64 consecutive token vectors of one source:
 *   seq        int64    tile number within the site, 0, 1, 2, … across sources in import order: the canonical order
 *   sample_id  int64    sample (sequence) the tokens came from, −1 when the dump does not say
 *   source     string   file (and tensor) the tile came from
 *   rows       int32    tokens in the tile, 1..64
 *   dim        int32    d, the width of one token vector
 *   dtype      string   f32 | f16 | bf16
 *   data       binary   rows × dim values, little-endian, row-major (4 or 2 bytes each)
 *
 * file key-value metadata: babai.format = activations, babai.version = 1, babai.site, babai.dim, babai.dtype
 * </pre>
 * Files are written with parquet-hadoop through the Hadoop FileSystem API, so any Hadoop URI works (file:, s3a:).
 */
public final class ActivationLayout {
    public static final int VERSION = 1;
    public static final int MAX_TILE_ROWS = 64;
    public static final MessageType SCHEMA = MessageTypeParser.parseMessageType(
            "message activation_tile {\n"
                    + "  required int64 seq;\n"
                    + "  required int64 sample_id;\n"
                    + "  required binary source (STRING);\n"
                    + "  required int32 rows;\n"
                    + "  required int32 dim;\n"
                    + "  required binary dtype (STRING);\n"
                    + "  required binary data;\n"
                    + "}");

    private ActivationLayout() {}

    /** Bytes per value of a dtype name; an unknown dtype is bad input. */
    public static int dtypeSize(String dtype) {
        return switch (dtype) {
            case "f32" -> 4;
            case "f16", "bf16" -> 2;
            default -> throw new BadInputException("unknown activation dtype '" + dtype + "' (expected f32, f16 or bf16)");
        };
    }

    /** The folder of a site, {@code site=NAME}; a name that is not a valid site name is bad input ({@link Names}). */
    public static String siteDir(String site) {
        return "site=" + Names.site(site, "activation site");
    }

    /** One tile as read back. */
    public record Tile(long seq, long sampleId, String source, int rows, int dim, String dtype, byte[] data) {
        /** Values as float64 into {@code out} [rows·dim], validating size and finiteness. */
        public void decode(double[] out, String where) {
            int size = dtypeSize(dtype);
            if (rows < 1 || rows > MAX_TILE_ROWS || data.length != (long) rows * dim * size) {
                throw new BadInputException(where + ": tile " + seq + " has rows=" + rows + ", dim=" + dim + ", dtype=" + dtype
                        + " but " + data.length + " data bytes");
            }
            ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
            int n = rows * dim;
            for (int i = 0; i < n; i++) {
                double v = switch (size) {
                    case 4 -> b.getFloat(4 * i);
                    default -> "f16".equals(dtype) ? Half.toFloat(b.getShort(2 * i))
                            : Half.bf16ToFloat(b.getShort(2 * i));
                };
                if (!Double.isFinite(v)) {
                    throw new BadInputException(where + ": tile " + seq + " (source " + source + ") holds " + v
                            + " at token " + (i / dim) + ", column " + (i % dim));
                }
                out[i] = v;
            }
        }
    }

    /** Writes the tiles of one (site, source) to one Parquet file. */
    public static final class Writer implements AutoCloseable {
        private final ParquetWriter<Group> writer;
        private final SimpleGroupFactory groups = new SimpleGroupFactory(SCHEMA);
        private final String source;
        private final int dim;
        private final String dtype;

        public Writer(Configuration conf, Path file, String site, String source, int dim, String dtype) throws IOException {
            dtypeSize(dtype);
            this.source = source;
            this.dim = dim;
            this.dtype = dtype;
            this.writer = ParquetFiles.writer(conf, file, SCHEMA, Map.of("babai.format", "activations",
                    "babai.version", String.valueOf(VERSION), "babai.site", site, "babai.dim", String.valueOf(dim),
                    "babai.dtype", dtype));
        }

        public void write(long seq, long sampleId, int rows, byte[] data) throws IOException {
            writer.write(groups.newGroup().append("seq", seq).append("sample_id", sampleId).append("source", source)
                    .append("rows", rows).append("dim", dim).append("dtype", dtype).append("data", Binary.fromConstantByteArray(data)));
        }

        @Override
        public void close() throws IOException {
            writer.close();
        }
    }

    /** A Parquet file of a site with its row count, in canonical order. */
    public record SiteFile(String path, long rows, int dim, String dtype) implements java.io.Serializable {}

    /** The committed sites under a dataset URI. */
    public static List<String> sites(Configuration conf, String uri) {
        try {
            Path root = new Path(uri);
            FileSystem fs = root.getFileSystem(conf);
            if (!fs.exists(root)) {
                throw new BadInputException("activation dataset " + uri + " does not exist");
            }
            List<String> sites = new ArrayList<>();
            for (FileStatus st : fs.listStatus(root)) {
                String name = st.getPath().getName();
                if (st.isDirectory() && name.startsWith("site=")) {
                    sites.add(name.substring(5));
                }
            }
            sites.sort(Comparator.naturalOrder());
            return sites;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + uri + ": " + e.getMessage(), e);
        }
    }

    /** The Parquet files of one site sorted by name (= import order), with their footers' row counts and dims. */
    public static List<SiteFile> files(Configuration conf, String uri, String site) {
        Path dir = new Path(new Path(uri), siteDir(site));
        try {
            FileSystem fs = dir.getFileSystem(conf);
            FileStatus[] all = fs.listStatus(dir, p -> p.getName().endsWith(".parquet"));
            Arrays.sort(all, Comparator.comparing(s -> s.getPath().getName()));
            List<SiteFile> files = new ArrayList<>();
            for (FileStatus st : all) {
                String where = st.getPath().toString();
                try (ParquetFileReader r = ParquetFiles.open(conf, st)) {
                    Map<String, String> kv = r.getFooter().getFileMetaData().getKeyValueMetaData();
                    if (!"activations".equals(kv.get("babai.format"))) {
                        throw new BadInputException(where + " is not a babai-quant activation file (no babai.format=activations)");
                    }
                    if (!String.valueOf(VERSION).equals(kv.get("babai.version"))) {
                        throw new BadInputException(where + ": activation layout version " + kv.get("babai.version")
                                + " is not supported (this build reads " + VERSION + "); re-import the activations");
                    }
                    long rows = 0;
                    for (BlockMetaData b : r.getFooter().getBlocks()) {
                        rows += b.getRowCount();
                    }
                    String dtype = kv.get("babai.dtype");
                    dtypeSize(dtype);
                    files.add(new SiteFile(where, rows, Integer.parseInt(kv.get("babai.dim")), dtype));
                } catch (BadInputException e) {
                    throw e;
                } catch (IOException | RuntimeException e) {
                    throw new BadInputException("cannot read the Parquet footer of " + where + " (truncated or not Parquet): "
                            + e.getMessage(), e);
                }
            }
            return files;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Visits rows [from, to) of a file in order; errors name the file and row group. */
    public interface TileVisitor {
        void accept(Tile tile, String where);
    }

    public static void read(Configuration conf, String file, long from, long to, TileVisitor visitor) {
        Path path = new Path(file);
        int group = 0;
        long row = 0;
        try (ParquetFileReader r = ParquetFiles.open(conf, path.getFileSystem(conf).getFileStatus(path))) {
            MessageType schema = r.getFooter().getFileMetaData().getSchema();
            List<BlockMetaData> blocks = r.getFooter().getBlocks();
            for (; group < blocks.size() && row < to; group++) {
                long count = blocks.get(group).getRowCount();
                if (row + count <= from) {
                    r.skipNextRowGroup();
                    row += count;
                    continue;
                }
                String where = file + " row group " + group;
                PageReadStore pages = r.readNextRowGroup();
                RecordReader<Group> rr = new ColumnIOFactory().getColumnIO(schema).getRecordReader(pages, new GroupRecordConverter(schema));
                for (long i = 0; i < count && row < to; i++, row++) {
                    Group g = rr.read();
                    if (row < from) {
                        continue;
                    }
                    visitor.accept(new Tile(g.getLong("seq", 0), g.getLong("sample_id", 0), g.getString("source", 0),
                            g.getInteger("rows", 0), g.getInteger("dim", 0), g.getString("dtype", 0),
                            g.getBinary("data", 0).getBytes()), where);
                }
            }
        } catch (BadInputException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new BadInputException("cannot read " + file + " row group " + group + " (truncated or corrupt Parquet?): "
                    + e.getMessage(), e);
        }
    }
}
