package org.babaiquant.spark;

import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.parquet.format.DataPageHeaderV2;
import org.apache.parquet.format.Encoding;
import org.apache.parquet.format.PageHeader;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.babaiquant.BadInputException;

import java.io.IOException;

/**
 * The counts inside a Parquet page that parquet-mr allocates from before it reads the values, checked first
 * ({@link ParquetFiles#open}): a corrupt count would otherwise make it allocate gigabytes for a file of kilobytes.
 * <ul>
 *   <li>every data page holds at most the row group's rows (our layouts are flat: one value per row), and a
 *       dictionary page at most as many entries as it has bytes;</li>
 *   <li>in a v2 data page (what {@link ParquetFiles#writer} writes), the headers of the delta encodings
 *       (block size, miniblocks, value count: parquet-mr allocates {@code long[values]} and {@code int[miniblocks]}) and
 *       the runs of the RLE/bit-packed booleans (it allocates a run's length) must be those of at most the page's
 *       values. The page's data is decompressed here to read them (Snappy, or none: the codecs we write).</li>
 * </ul>
 * What is left to parquet-mr then allocates at most a page's uncompressed size or a few words per value.
 */
final class ParquetPages {
    private ParquetPages() {}

    /** Checks one page whose header was just read; {@code in} is positioned at its data. */
    static void check(String where, CompressionCodecName codec, long rows, PageHeader h, FSDataInputStream in) throws IOException {
        switch (h.getType()) {
            case DICTIONARY_PAGE -> {
                long n = h.getDictionary_page_header().getNum_values();
                if (n < 0 || n > h.getUncompressed_page_size()) {
                    throw bad(where, "a dictionary page of " + n + " entries in " + h.getUncompressed_page_size() + " bytes");
                }
            }
            case DATA_PAGE -> {
                long n = h.getData_page_header().getNum_values();
                Encoding e = h.getData_page_header().getEncoding();
                if (n < 0 || n > rows || isDeltaOrRle(e)) {
                    throw bad(where, "a v1 data page of " + n + " values encoded " + e + " in a row group of " + rows + " rows");
                }
            }
            case DATA_PAGE_V2 -> checkV2(where, codec, rows, h, in);
            default -> { }
        }
    }

    private static boolean isDeltaOrRle(Encoding e) {
        return e == Encoding.DELTA_BINARY_PACKED || e == Encoding.DELTA_BYTE_ARRAY || e == Encoding.DELTA_LENGTH_BYTE_ARRAY
                || e == Encoding.RLE;
    }

    private static void checkV2(String where, CompressionCodecName codec, long rows, PageHeader h, FSDataInputStream in)
            throws IOException {
        DataPageHeaderV2 v2 = h.getData_page_header_v2();
        long n = v2.getNum_values();
        long levels = (long) v2.getRepetition_levels_byte_length() + v2.getDefinition_levels_byte_length();
        if (n < 0 || n > rows || v2.getNum_rows() < 0 || v2.getNum_rows() > rows || v2.getRepetition_levels_byte_length() < 0
                || v2.getDefinition_levels_byte_length() < 0 || levels > h.getCompressed_page_size()) {
            throw bad(where, "a page of " + n + " values, " + v2.getNum_rows() + " rows and " + levels + " level bytes in a row group of "
                    + rows + " rows and " + h.getCompressed_page_size() + " bytes");
        }
        Encoding e = v2.getEncoding();
        if (!isDeltaOrRle(e)) {
            return;
        }
        byte[] page = new byte[h.getCompressed_page_size()];
        in.readFully(page);
        byte[] data = java.util.Arrays.copyOfRange(page, (int) levels, page.length);
        if (v2.isIs_compressed() && codec == CompressionCodecName.SNAPPY) {
            long size = h.getUncompressed_page_size() - levels;
            if (!org.xerial.snappy.Snappy.isValidCompressedBuffer(data) || org.xerial.snappy.Snappy.uncompressedLength(data) != size) {
                throw bad(where, "a Snappy page that does not decompress to its " + size + " bytes");
            }
            data = org.xerial.snappy.Snappy.uncompress(data);
        } else if (v2.isIs_compressed() && codec != CompressionCodecName.UNCOMPRESSED) {
            throw bad(where, "a " + e + " page compressed with " + codec + " (babai-quant writes Snappy)");
        }
        Cursor c = new Cursor(data, where);
        switch (e) {
            case DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY -> delta(c, n, false);
            case DELTA_BYTE_ARRAY -> {
                delta(c, n, true); // the prefix lengths, walked to find the suffixes' header
                delta(c, n, false);
            }
            default -> booleans(c, n);
        }
    }

    /** A DELTA_BINARY_PACKED header (and, when {@code walk}, its blocks, to leave the cursor after them). */
    private static void delta(Cursor c, long n, boolean walk) {
        long blockSize = c.varint();
        long miniBlocks = c.varint();
        long total = c.varint();
        c.varint(); // the first value (zigzag)
        if (blockSize < 128 || blockSize > (1 << 16) || blockSize % 128 != 0 || miniBlocks < 1 || blockSize % miniBlocks != 0
                || (blockSize / miniBlocks) % 8 != 0 || total > n) {
            throw bad(c.where, "a delta header of block " + blockSize + ", " + miniBlocks + " miniblocks, " + total + " values in a page of "
                    + n + " values");
        }
        if (!walk) {
            return;
        }
        long miniBlockSize = blockSize / miniBlocks;
        for (long buffered = 1; buffered < total; ) {
            c.varint(); // min delta (zigzag)
            int[] widths = new int[(int) miniBlocks];
            for (int i = 0; i < miniBlocks; i++) {
                widths[i] = c.u8();
                if (widths[i] > 64) {
                    throw bad(c.where, "a delta miniblock of " + widths[i] + " bits");
                }
            }
            for (int i = 0; i < miniBlocks && buffered < total; i++) {
                c.skip(widths[i] * miniBlockSize / 8);
                buffered += miniBlockSize;
            }
        }
    }

    /** Booleans in a v2 page: a 4-byte length, then RLE / bit-packed runs of 1-bit values covering at most the page's. */
    private static void booleans(Cursor c, long n) {
        long length = c.u8() | c.u8() << 8 | c.u8() << 16 | (long) c.u8() << 24;
        long end = c.at + length;
        if (end > c.data.length) {
            throw bad(c.where, "RLE booleans of " + length + " bytes in " + (c.data.length - 4));
        }
        long values = 0;
        while (c.at < end) {
            long header = c.varint();
            long count = (header & 1) == 1 ? (header >>> 1) * 8 : header >>> 1;
            values += count;
            if (values > n + 7) {
                throw bad(c.where, "RLE runs of more than the page's " + n + " values");
            }
            c.skip((header & 1) == 1 ? header >>> 1 : 1);
        }
    }

    private static BadInputException bad(String where, String what) {
        return new BadInputException("corrupt Parquet page in " + where + ": " + what);
    }

    /** Reads a decompressed page's bytes; running off its end is bad input. */
    private static final class Cursor {
        final byte[] data;
        final String where;
        int at;

        Cursor(byte[] data, String where) {
            this.data = data;
            this.where = where;
        }

        int u8() {
            if (at >= data.length) {
                throw bad(where, "an encoding header past the end of the page");
            }
            return data[at++] & 0xff;
        }

        long varint() {
            long v = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                int b = u8();
                v |= (long) (b & 0x7f) << shift;
                if ((b & 0x80) == 0) {
                    return v;
                }
            }
            throw bad(where, "a varint of more than 64 bits");
        }

        void skip(long bytes) {
            if (bytes < 0 || at + bytes > data.length) {
                throw bad(where, "an encoded run past the end of the page");
            }
            at += (int) bytes;
        }
    }
}
