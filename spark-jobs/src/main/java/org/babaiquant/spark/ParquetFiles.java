package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.HadoopReadOptions;
import org.apache.parquet.column.ParquetProperties;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.convert.GroupRecordConverter;
import org.apache.parquet.format.PageHeader;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.ParquetFileWriter;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.example.ExampleParquetWriter;
import org.apache.parquet.hadoop.metadata.BlockMetaData;
import org.apache.parquet.hadoop.metadata.ColumnChunkMetaData;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.hadoop.util.HadoopInputFile;
import org.apache.parquet.hadoop.util.HadoopOutputFile;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.schema.MessageType;
import org.babaiquant.BadInputException;
import shaded.parquet.org.apache.thrift.TConfiguration;
import shaded.parquet.org.apache.thrift.TException;
import shaded.parquet.org.apache.thrift.protocol.TCompactProtocol;
import shaded.parquet.org.apache.thrift.transport.TIOStreamTransport;

import java.io.IOException;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

/**
 * The one Parquet writer configuration of every layout we write (activations, Hessians, quantized shards, rows,
 * reports, evaluations): the same rows give the same bytes in every JVM, so reruns are byte-identical.
 *
 * <p>Why these settings: parquet-mr collects a column chunk's encodings in a {@code HashSet} of enums, whose iteration
 * order follows identity hash codes and so changes from one JVM to the next (issue 13, defect 5: 2 of 4 fresh runs
 * differed in the footer). With v2 data pages and no dictionary, each column chunk has exactly one encoding, so the
 * footer cannot vary. The settings are fixed here, not taken from the Hadoop configuration; the key-value metadata is
 * written in key order.
 *
 * <p>Reading: every layout reader opens its files through {@link #open} / {@link #rows}, the boundary where untrusted
 * bytes meet parquet-mr. A corrupt or truncated file (any exception parquet-mr throws, and a footer whose column chunks
 * lie outside the file) is a {@link BadInputException} naming the file (exit 2), and the footer's Thrift strings are
 * limited to the file's size, so that a corrupt length cannot make the reader allocate beyond it
 * (ParquetReadersFuzzTest).
 */
public final class ParquetFiles {
    private ParquetFiles() {}

    /** A writer creating {@code file} (which must not exist) with the fixed settings. */
    public static ParquetWriter<Group> writer(Configuration conf, Path file, MessageType schema, Map<String, String> meta)
            throws IOException {
        return ExampleParquetWriter.builder(HadoopOutputFile.fromPath(file, conf))
                .withType(schema)
                .withConf(conf)
                .withCompressionCodec(CompressionCodecName.SNAPPY)
                .withWriterVersion(ParquetProperties.WriterVersion.PARQUET_2_0)
                .withDictionaryEncoding(false)
                .withPageWriteChecksumEnabled(false)
                .withWriteMode(ParquetFileWriter.Mode.CREATE)
                .withExtraMetaData(new TreeMap<>(meta))
                .build();
    }

    /**
     * Opens a Parquet file for reading: footer strings limited to the file's size, every column chunk checked to lie
     * inside the file; anything unreadable is bad input naming the file.
     */
    public static ParquetFileReader open(Configuration conf, FileStatus f) {
        Configuration c = new Configuration(conf);
        c.setInt("parquet.thrift.string.size.limit", (int) Math.min(Integer.MAX_VALUE, Math.max(1024, f.getLen())));
        ParquetFileReader r = null;
        try {
            r = ParquetFileReader.open(HadoopInputFile.fromStatus(f, c), HadoopReadOptions.builder(c, f.getPath()).build());
            checkChunks(c, f, r);
            return r;
        } catch (BadInputException e) {
            closeQuietly(r);
            throw e;
        } catch (IOException | RuntimeException e) {
            closeQuietly(r);
            throw unreadable(f, e);
        }
    }

    /**
     * Every column chunk lies inside the file, and every page header in it (parsed here with Thrift limited to the
     * chunk's remaining bytes) claims a page inside the chunk whose uncompressed size the codec could produce from it:
     * parquet-mr allocates a page's uncompressed size before decompressing it, so a corrupt size would otherwise
     * allocate up to 2 GiB; and the counts inside each page that parquet-mr allocates from ({@link ParquetPages}). One
     * forward pass over the pages.
     */
    private static void checkChunks(Configuration conf, FileStatus f, ParquetFileReader r) throws IOException {
        String where = Uris.redact(f.getPath().toString());
        try (FSDataInputStream in = f.getPath().getFileSystem(conf).open(f.getPath())) {
            for (BlockMetaData b : r.getFooter().getBlocks()) {
                // every row of our layouts holds bytes of its own: a row group cannot have more rows than that allows
                if (b.getRowCount() < 0 || b.getRowCount() > 64 * f.getLen() + 1024) {
                    throw new BadInputException("corrupt Parquet footer in " + where + ": a row group of "
                            + b.getRowCount() + " rows");
                }
                for (ColumnChunkMetaData col : b.getColumns()) {
                    long start = col.getStartingPos();
                    long size = col.getTotalSize();
                    if (start < 4 || size < 0 || start + size > f.getLen() || col.getTotalUncompressedSize() < 0) {
                        throw new BadInputException("corrupt Parquet footer in " + where + ": column "
                                + col.getPath() + " claims bytes " + start + " + " + size + " of a " + f.getLen() + "-byte file");
                    }
                    // Snappy expands at most ~22x; other codecs are not written by us: allow them 1024x
                    long ratio = col.getCodec() == CompressionCodecName.SNAPPY || col.getCodec() == CompressionCodecName.UNCOMPRESSED ? 32 : 1024;
                    long end = start + size;
                    for (long pos = start; pos < end; ) {
                        in.seek(pos);
                        PageHeader h = new PageHeader();
                        int limit = (int) Math.min(Integer.MAX_VALUE, end - pos);
                        try {
                            h.read(new TCompactProtocol(new TIOStreamTransport(new TConfiguration(limit, limit, 64), in)));
                        } catch (TException e) {
                            throw new BadInputException(where + ": corrupt page header at byte " + pos + " of column " + col.getPath() + ": "
                                    + e.getMessage(), e);
                        }
                        long data = in.getPos();
                        long compressed = h.getCompressed_page_size();
                        long uncompressed = h.getUncompressed_page_size();
                        if (compressed < 0 || data + compressed > end || uncompressed < 0 || uncompressed > ratio * compressed + 65536) {
                            throw new BadInputException(where + ": page at byte " + pos + " of column " + col.getPath() + " claims "
                                    + compressed + " bytes (" + uncompressed + " uncompressed) where the chunk has " + (end - data) + " left");
                        }
                        ParquetPages.check(where + " (column " + col.getPath() + ")", col.getCodec(), b.getRowCount(), h, in);
                        pos = data + compressed;
                    }
                }
            }
        }
    }

    /** Every row of one Parquet file, in order; returns its footer key-value metadata. Unreadable: bad input naming it. */
    public static Map<String, String> rows(Configuration conf, FileStatus f, Consumer<Group> visitor) {
        try (ParquetFileReader r = open(conf, f)) {
            MessageType schema = r.getFooter().getFileMetaData().getSchema();
            PageReadStore pages;
            while ((pages = r.readNextRowGroup()) != null) {
                RecordReader<Group> rr = new ColumnIOFactory().getColumnIO(schema).getRecordReader(pages, new GroupRecordConverter(schema));
                for (long i = 0; i < pages.getRowCount(); i++) {
                    visitor.accept(rr.read());
                }
            }
            return r.getFooter().getFileMetaData().getKeyValueMetaData();
        } catch (BadInputException e) {
            throw e.getMessage().contains(f.getPath().toString()) ? e
                    : new BadInputException(Uris.redact(f.getPath().toString()) + ": " + e.getMessage(), e);
        } catch (IOException | RuntimeException e) {
            throw unreadable(f, e);
        }
    }

    /** The one message for a file parquet-mr cannot read. */
    static BadInputException unreadable(FileStatus f, Exception e) {
        return new BadInputException("cannot read " + Uris.redact(f.getPath().toString()) + " (truncated or not Parquet?): "
                + e.getMessage(), e);
    }

    private static void closeQuietly(ParquetFileReader r) {
        if (r != null) {
            try {
                r.close();
            } catch (IOException | RuntimeException ignored) {
                // the open failure is what the caller reports
            }
        }
    }
}
