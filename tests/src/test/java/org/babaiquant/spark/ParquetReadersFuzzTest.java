package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.io.Fuzz;
import org.babaiquant.method.LayerQuantizer;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantResult;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The Parquet layouts we read back — activation tiles, Hessian artifacts (blocks and sidecar), quantized shards and
 * reports — written by their own writers, then fed seeded mutations and truncations ({@link Fuzz}): every case reads
 * or ends in BadInputException (exit 2, naming the file), never another exception, a hang or an allocation far beyond
 * the file's size. The files are small (a few KB) so that the 5 × {@value #CASES} cases stay within seconds.
 */
class ParquetReadersFuzzTest {
    private static final int CASES = 800;
    private static final Configuration CONF = new Configuration();

    @TempDir
    java.nio.file.Path dir;

    /** Fuzzes {@code file} (written by a layout writer) in place: each case overwrites it, then {@code read} runs. */
    private static void fuzzFile(String format, java.nio.file.Path file, long seed, Fuzz.Reader read) throws IOException {
        Fuzz.run(format, Files.readAllBytes(file), seed, CASES, b -> {
            Files.write(file, b);
            read.read(b);
        });
    }

    private static double[][] gaussian(Random r, int rows, int cols, double sd) {
        double[][] m = new double[rows][cols];
        for (double[] row : m) {
            for (int j = 0; j < cols; j++) {
                row[j] = r.nextGaussian() * sd;
            }
        }
        return m;
    }

    @Test
    void activationTiles() throws IOException {
        java.nio.file.Path site = dir.resolve("act").resolve(ActivationLayout.siteDir("s"));
        Files.createDirectories(site);
        java.nio.file.Path file = site.resolve("part-00000.parquet");
        int dim = 8;
        try (ActivationLayout.Writer w = new ActivationLayout.Writer(CONF, new Path(file.toUri()), "s", "calib.npy", dim, "f32")) {
            Random r = new Random(11);
            for (int t = 0; t < 3; t++) {
                ByteBuffer b = ByteBuffer.allocate(4 * 4 * dim).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < 4 * dim; i++) {
                    b.putFloat((float) r.nextGaussian());
                }
                w.write(t, t, 4, b.array());
            }
        }
        String uri = dir.resolve("act").toString();
        fuzzFile("activation tiles", file, 201, b -> {
            for (ActivationLayout.SiteFile f : ActivationLayout.files(CONF, uri, "s")) {
                // as the Hessian and quantize stages do: the file's d must be the site's, one tile buffer of that d
                if (f.dim() != dim) {
                    throw new org.babaiquant.BadInputException(f.path() + " has d=" + f.dim());
                }
                double[] buf = new double[ActivationLayout.MAX_TILE_ROWS * dim];
                ActivationLayout.read(CONF, f.path(), 0, f.rows(), (t, where) -> {
                    if (t.dim() != dim) {
                        throw new org.babaiquant.BadInputException(where + ": tile d=" + t.dim());
                    }
                    t.decode(buf, where);
                });
            }
        });
    }

    /** A committed Hessian site: d = 10, blocks of 4 (6 blocks of the upper triangle), its marker and sidecar. */
    private java.nio.file.Path hessianSite() throws IOException {
        int d = 10;
        int bs = 4;
        java.nio.file.Path site = dir.resolve("h").resolve(ActivationLayout.siteDir("s"));
        Files.createDirectories(site);
        Random r = new Random(12);
        List<Group> rows = new ArrayList<>();
        int nb = (d + bs - 1) / bs;
        for (int bi = 0; bi < nb; bi++) {
            for (int bj = bi; bj < nb; bj++) {
                int rs = Math.min(bs, d - bi * bs);
                int cs = Math.min(bs, d - bj * bs);
                ByteBuffer data = ByteBuffer.allocate(8 * rs * cs).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < rs * cs; i++) {
                    data.putDouble(r.nextGaussian());
                }
                rows.add(HessianArtifact.row("s", d, 100, bi, bj, rs, cs, data.array(), "fp"));
            }
        }
        QuantizedLayout.write(CONF, new Path(site.resolve("part-00000.parquet").toUri()), HessianArtifact.PARQUET_SCHEMA,
                Map.of("babai.format", "hessian", "babai.version", String.valueOf(HessianArtifact.VERSION)), rows);
        Files.writeString(site.resolve(HessianArtifact.SIDECAR),
                new HessianArtifact.Meta(HessianArtifact.VERSION, "s", d, 100, HessianArtifact.NORMALISATION, bs, 1, "fp").toJson());
        Files.createFile(site.resolve("_SUCCESS"));
        Files.deleteIfExists(site.resolve(".part-00000.parquet.crc"));
        return site;
    }

    @Test
    void hessianBlocks() throws IOException {
        java.nio.file.Path file = hessianSite().resolve("part-00000.parquet");
        String uri = dir.resolve("h").toString();
        assertEquals(10, HessianArtifact.read(CONF, uri, "s").h().length);
        fuzzFile("hessian blocks", file, 202, b -> HessianArtifact.read(CONF, uri, "s"));
    }

    @Test
    void hessianSidecar() throws IOException {
        java.nio.file.Path file = hessianSite().resolve(HessianArtifact.SIDECAR);
        String uri = dir.resolve("h").toString();
        fuzzFile("hessian sidecar", file, 203, b -> HessianArtifact.read(CONF, uri, "s"));
    }

    /** A committed quantized layer (grid, 4-bit, groups of 16, act-order: perm and packed codes) with its report. */
    private String quantizedLayer() throws IOException {
        Random r = new Random(13);
        int rows = 8;
        int cols = 32;
        double[][] w = gaussian(r, rows, cols, 0.05);
        double[][] x = gaussian(r, 64, cols, 1);
        double[][] h = new double[cols][cols];
        for (double[] row : x) {
            for (int i = 0; i < cols; i++) {
                for (int j = 0; j < cols; j++) {
                    h[i][j] += row[i] * row[j];
                }
            }
        }
        MethodSpec spec = MethodSpec.grid("gptq", new QuantGrid.Spec(4, 16, false, false), ColumnOrder.ACT_ORDER, true, 0.01);
        QuantResult q = LayerQuantizer.quantize("l.weight", w, h, x.length, spec, QuantBackend.cpu());
        String out = dir.resolve("q").toString();
        Map<String, String> meta = Map.of("babai.format", "quantized-shard", "babai.version", "1");
        write(QuantizedLayout.dir(out, "shards", "l.weight"), QuantizedLayout.SHARD, meta, QuantizedLayout.shardRows("l.weight", "F32", spec, q, "fp"));
        write(QuantizedLayout.dir(out, "reports", "l.weight"), QuantizedLayout.REPORT, meta,
                List.of(QuantizedLayout.reportRow("l.weight", "s", q.method(), q.report(), "cpu", null, "hfp", "fp").append("starved", "none")));
        return out;
    }

    private static void write(Path folder, org.apache.parquet.schema.MessageType schema, Map<String, String> meta, List<Group> rows)
            throws IOException {
        Path file = new Path(folder, "part-00000.parquet");
        QuantizedLayout.write(CONF, file, schema, meta, rows);
        Files.deleteIfExists(java.nio.file.Path.of(folder.toString()).resolve(".part-00000.parquet.crc"));
    }

    @Test
    void quantizedShards() throws IOException {
        String out = quantizedLayer();
        java.nio.file.Path file = java.nio.file.Path.of(QuantizedLayout.dir(out, "shards", "l.weight").toString()).resolve("part-00000.parquet");
        fuzzFile("quantized shards", file, 204, b -> QuantizedLayout.readLayer(CONF, out, "l.weight").dequant());
    }

    @Test
    void quantizeReports() throws IOException {
        String out = quantizedLayer();
        java.nio.file.Path file = java.nio.file.Path.of(QuantizedLayout.dir(out, "reports", "l.weight").toString()).resolve("part-00000.parquet");
        fuzzFile("quantize reports", file, 205, b -> Exports.layers(CONF, out, "a GPTQ checkpoint"));
    }
}
