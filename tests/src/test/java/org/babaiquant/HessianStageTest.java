package org.babaiquant;

import org.babaiquant.io.SafeTensorsWriter;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.simple.SimpleGroupFactory;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.example.ExampleParquetWriter;
import org.apache.parquet.hadoop.util.HadoopOutputFile;
import org.apache.parquet.io.api.Binary;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.cli.MiniLmLayer0;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.ActivationLayout;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The distributed Hessian stage on a real local Spark session with real Parquet files. */
class HessianStageTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final Configuration CONF = new Configuration();

    private static HessianJob.Config cfg(java.nio.file.Path act, java.nio.file.Path out, int partitions, int sliceTiles) {
        return new HessianJob.Config(act.toString(), out.toString(), List.of(), partitions, sliceTiles, 160, false);
    }

    /** Single-threaded float64 XᵀX, the plain triple loop. */
    private static double[][] direct(double[][] x) {
        int d = x[0].length;
        double[][] h = new double[d][d];
        for (double[] row : x) {
            for (int i = 0; i < d; i++) {
                double xi = row[i];
                for (int j = 0; j < d; j++) {
                    h[i][j] += xi * row[j];
                }
            }
        }
        return h;
    }

    private static void assertClose(double[][] expect, double[][] actual, String what) {
        double scale = 0;
        for (int i = 0; i < expect.length; i++) {
            scale = Math.max(scale, Math.abs(expect[i][i]));
        }
        for (int i = 0; i < expect.length; i++) {
            for (int j = 0; j < expect.length; j++) {
                assertEquals(expect[i][j], actual[i][j], 1e-12 * scale, what + " at " + i + "," + j);
            }
        }
    }

    @Test
    void realMiniLmActivationsGiveTheExactGramMatrixAndTokenCounts(@TempDir java.nio.file.Path tmp) {
        java.nio.file.Path dir = RealData.miniLm();
        List<ActivationImporter.Source> sources = new ArrayList<>();
        for (String site : new String[] {"attn_in", "ffn_down_in"}) {
            sources.add(new ActivationImporter.Source(site, dir.resolve("activations/layer0_" + site + ".calib.npy"), null));
        }
        List<ActivationImporter.Imported> imported = new ActivationImporter(CONF, 64).run(sources, tmp.resolve("act").toString(), false);
        assertEquals(1024, imported.get(0).tokens());
        List<HessianJob.Result> res = HessianJob.run(SPARK, cfg(tmp.resolve("act"), tmp.resolve("h"), 3, 5), s -> { });
        assertEquals(2, res.size());
        for (String site : new String[] {"attn_in", "ffn_down_in"}) {
            HessianArtifact.Loaded h = HessianArtifact.read(CONF, tmp.resolve("h").toString(), site);
            assertEquals(1024, h.meta().tokens());
            assertEquals("sum", h.meta().normalisation());
            assertClose(direct(Npy.readMatrix(dir.resolve("activations/layer0_" + site + ".calib.npy"))), h.h(), site);
        }
    }

    @Test
    void randomHalfPrecisionSafetensorsAcrossSourcesAndOddTileCounts(@TempDir java.nio.file.Path tmp) {
        Random rnd = new Random(17);
        double[][] a = new double[333][70];
        double[][] b = new double[101][70];
        for (double[][] m : new double[][][] {a, b}) {
            for (double[] row : m) {
                for (int j = 0; j < 70; j++) {
                    row[j] = rnd.nextGaussian() * (1 + j % 5);
                }
            }
        }
        LinkedHashMap<String, double[][]> t1 = new LinkedHashMap<>();
        t1.put("model.layers.0.mlp.input", a);
        LinkedHashMap<String, double[][]> t2 = new LinkedHashMap<>();
        t2.put("model.layers.0.mlp.input", b);
        java.nio.file.Path f1 = tmp.resolve("a.safetensors");
        java.nio.file.Path f2 = tmp.resolve("b.safetensors");
        SafeTensorsWriter.write(f1, t1, "BF16");
        SafeTensorsWriter.write(f2, t2, "BF16");
        List<ActivationImporter.Source> src = new ArrayList<>(ActivationImporter.safetensorsSources(f1, Map.of(".*mlp.input", "mlp_in")));
        src.addAll(ActivationImporter.safetensorsSources(f2, Map.of(".*mlp.input", "mlp_in")));
        new ActivationImporter(CONF, 50).run(src, tmp.resolve("act").toString(), false);
        HessianJob.run(SPARK, cfg(tmp.resolve("act"), tmp.resolve("h"), 4, 3), s -> { });
        HessianArtifact.Loaded h = HessianArtifact.read(CONF, tmp.resolve("h").toString(), "mlp_in");
        assertEquals(434, h.meta().tokens());
        // the stored values are bf16: compare with XᵀX of exactly what was stored
        double[][] all = Stream.concat(Arrays.stream(SafeTensors.readMatrix(f1, "model.layers.0.mlp.input")),
                Arrays.stream(SafeTensors.readMatrix(f2, "model.layers.0.mlp.input"))).toArray(double[][]::new);
        assertClose(direct(all), h.h(), "bf16");
    }

    private static byte[] partFileBytes(java.nio.file.Path out, String site) throws IOException {
        try (Stream<java.nio.file.Path> files = Files.list(out.resolve("site=" + site))) {
            List<java.nio.file.Path> parts = files.filter(p -> p.getFileName().toString().startsWith("part-")
                    && p.getFileName().toString().endsWith(".parquet")).toList();
            assertEquals(1, parts.size());
            return Files.readAllBytes(parts.get(0));
        }
    }

    @Test
    void artifactsAreByteIdenticalWhateverThePartitioningAndTaskOrder(@TempDir java.nio.file.Path tmp) throws IOException {
        java.nio.file.Path dir = RealData.miniLm();
        new ActivationImporter(CONF, 64).run(List.of(new ActivationImporter.Source("o_proj_in",
                dir.resolve("activations/layer0_o_proj_in.calib.npy"), null)), tmp.resolve("act").toString(), false);
        HessianJob.run(SPARK, cfg(tmp.resolve("act"), tmp.resolve("p1"), 1, 3), s -> { });
        byte[] reference = partFileBytes(tmp.resolve("p1"), "o_proj_in");
        // task order: the reduction sorts a block's partials by slice (HessianReductionOrderTest shuffles them)
        for (int partitions : new int[] {3, 6}) {
            java.nio.file.Path out = tmp.resolve("p" + partitions);
            HessianJob.run(SPARK, cfg(tmp.resolve("act"), out, partitions, 3), s -> { });
            assertArrayEquals(reference, partFileBytes(out, "o_proj_in"), partitions + " partitions");
        }
        assertEquals(HessianArtifact.committed(CONF, tmp.resolve("p1").toString(), "o_proj_in"),
                HessianArtifact.committed(CONF, tmp.resolve("p6").toString(), "o_proj_in"));
    }

    @Test
    void upToDateSitesAreSkippedAndChangedInputsRecomputed(@TempDir java.nio.file.Path tmp) throws IOException {
        java.nio.file.Path dir = RealData.miniLm();
        java.nio.file.Path x = dir.resolve("activations/layer0_attn_in.eval.npy");
        new ActivationImporter(CONF, 64).run(List.of(new ActivationImporter.Source("s", x, null)), tmp.resolve("act").toString(), false);
        HessianJob.Config c = cfg(tmp.resolve("act"), tmp.resolve("h"), 2, 2);
        assertFalse(HessianJob.run(SPARK, c, s -> { }).get(0).skipped());
        List<String> lines = new ArrayList<>();
        assertTrue(HessianJob.run(SPARK, c, lines::add).get(0).skipped());
        assertTrue(lines.get(0).contains("up to date"), lines.toString());
        // re-import different rows: the fingerprint changes and the site is recomputed
        new ActivationImporter(CONF, 32).run(List.of(new ActivationImporter.Source("s", x, null)), tmp.resolve("act").toString(), true);
        HessianJob.Result again = HessianJob.run(SPARK, c, s -> { }).get(0);
        assertFalse(again.skipped());
        assertEquals(256, again.tokens());
    }

    /** Writes an activation file whose single tile is whatever the test wants. */
    private static void rawTile(java.nio.file.Path dir, String site, int rows, int dim, String dtype, byte[] data, String metaDtype)
            throws IOException {
        rawTile(dir, site, rows, dim, dtype, data, metaDtype, dim);
    }

    private static void rawTile(java.nio.file.Path dir, String site, int rows, int dim, String dtype, byte[] data, String metaDtype,
                                int metaDim) throws IOException {
        java.nio.file.Path siteDir = dir.resolve("site=" + site);
        Files.createDirectories(siteDir);
        try (ParquetWriter<org.apache.parquet.example.data.Group> w = ExampleParquetWriter
                .builder(HadoopOutputFile.fromPath(new Path(siteDir.resolve("part-00000-bad.parquet").toString()), CONF))
                .withType(ActivationLayout.SCHEMA).withConf(CONF)
                .withExtraMetaData(Map.of("babai.format", "activations", "babai.version", "1", "babai.site", site,
                        "babai.dim", String.valueOf(metaDim), "babai.dtype", metaDtype)).build()) {
            w.write(new SimpleGroupFactory(ActivationLayout.SCHEMA).newGroup().append("seq", 0L).append("sample_id", -1L)
                    .append("source", "test").append("rows", rows).append("dim", dim).append("dtype", dtype)
                    .append("data", Binary.fromConstantByteArray(data)));
        }
    }

    private static byte[] floats(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        return b.array();
    }

    private static String failure(java.nio.file.Path act, java.nio.file.Path out) {
        return assertThrows(BadInputException.class, () -> HessianJob.run(SPARK, cfg(act, out, 2, 2), s -> { })).getMessage();
    }

    @Test
    void badInputFailsWithFileAndRowGroupAndLeavesNothing(@TempDir java.nio.file.Path tmp) throws IOException {
        // data length does not match rows × dim
        rawTile(tmp.resolve("a1"), "s", 2, 4, "f32", floats(1, 2, 3), "f32");
        String m1 = failure(tmp.resolve("a1"), tmp.resolve("o1"));
        assertTrue(m1.contains("part-00000-bad.parquet row group 0") && m1.contains("data bytes"), m1);
        // NaN
        rawTile(tmp.resolve("a2"), "s", 1, 2, "f32", floats(1, Float.NaN), "f32");
        String m2 = failure(tmp.resolve("a2"), tmp.resolve("o2"));
        assertTrue(m2.contains("NaN") && m2.contains("row group 0"), m2);
        // unknown dtype (in the footer: refused before launching)
        rawTile(tmp.resolve("a3"), "s", 1, 2, "f64", new byte[16], "f64");
        BadInputException m3 = assertThrows(BadInputException.class, () -> HessianJob.run(SPARK, cfg(tmp.resolve("a3"), tmp.resolve("o3"), 2, 2), s -> { }));
        assertTrue(m3.getMessage().contains("unknown activation dtype 'f64'"), m3.getMessage());
        // a tile whose dim differs from its site's
        rawTile(tmp.resolve("a4"), "s", 1, 3, "f32", floats(1, 2, 3), "f32", 2);
        String m4 = failure(tmp.resolve("a4"), tmp.resolve("o4"));
        assertTrue(m4.contains("has d=3 but site s has d=2") && m4.contains("row group 0"), m4);
        // truncated Parquet file
        java.nio.file.Path trunc = tmp.resolve("a5/site=s");
        new ActivationImporter(CONF, 64).run(List.of(new ActivationImporter.Source("s",
                RealData.miniLm().resolve("activations/layer0_attn_in.eval.npy"), null)), tmp.resolve("a5").toString(), false);
        try (Stream<java.nio.file.Path> files = Files.list(trunc)) {
            java.nio.file.Path f = files.filter(p -> p.toString().endsWith(".parquet")).findFirst().orElseThrow();
            byte[] bytes = Files.readAllBytes(f);
            Files.write(f, Arrays.copyOf(bytes, bytes.length / 2));
            Files.deleteIfExists(f.resolveSibling("." + f.getFileName() + ".crc"));
        }
        BadInputException m5 = assertThrows(BadInputException.class, () -> HessianJob.run(SPARK, cfg(tmp.resolve("a5"), tmp.resolve("o5"), 2, 2), s -> { }));
        assertTrue(m5.getMessage().contains(".parquet") && m5.getMessage().contains("truncated"), m5.getMessage());
        // nothing committed, nothing half-written
        for (String o : new String[] {"o1", "o2", "o3", "o4", "o5"}) {
            java.nio.file.Path out = tmp.resolve(o);
            if (Files.exists(out)) {
                try (Stream<java.nio.file.Path> s = Files.list(out)) {
                    List<java.nio.file.Path> left = s.filter(p -> !p.getFileName().toString().startsWith(".")).toList();
                    assertTrue(left.isEmpty(), "left behind in " + o + ": " + left);
                }
            }
        }
    }

    @Test
    void emptySiteIsSkippedWithAWarning(@TempDir java.nio.file.Path tmp) throws IOException {
        Files.createDirectories(tmp.resolve("act/site=empty"));
        List<String> lines = new ArrayList<>();
        assertTrue(HessianJob.run(SPARK, cfg(tmp.resolve("act"), tmp.resolve("h"), 2, 2), lines::add).isEmpty());
        assertTrue(lines.stream().anyMatch(l -> l.contains("WARNING") && l.contains("empty")), lines.toString());
        assertFalse(Files.exists(tmp.resolve("h/site=empty")));
    }

    @Test
    void plannerRefusesWhatDoesNotFitWithTheNumbers() {
        HessianJob.SitePlan huge = new HessianJob.SitePlan("wide", 200_000, 10, -1, 1, List.of(), "0".repeat(64), false,
                8L * 200_000 * 200_000, 1, 1);
        BadInputException e = assertThrows(BadInputException.class, () -> HessianJob.checkMemory(SPARK, List.of(huge), cfg(java.nio.file.Path.of("a"), java.nio.file.Path.of("o"), 1, 1)));
        assertTrue(e.getMessage().contains("site wide (d=200000)") && e.getMessage().contains("MiB"), e.getMessage());
    }

    @Test
    void commandsRunEndToEnd(@TempDir java.nio.file.Path tmp) throws IOException {
        java.nio.file.Path dir = RealData.miniLm();
        MiniLmLayer0.Linear up = MiniLmLayer0.LINEARS.get(4);
        QuantizeLayerCliTest.Run imp = QuantizeLayerCliTest.run("import-activations", "--npy",
                up.site() + "=" + up.calib(dir), "--out", tmp.resolve("act").toString());
        assertEquals(0, imp.status(), imp.err());
        QuantizeLayerCliTest.Run plan = QuantizeLayerCliTest.run("hessian", "--activations", tmp.resolve("act").toString(),
                "--out", tmp.resolve("h").toString(), "--plan");
        assertEquals(0, plan.status(), plan.err());
        assertTrue(plan.out().contains("ffn_up_in") && plan.out().contains("compute"), plan.out());
        QuantizeLayerCliTest.Run run = QuantizeLayerCliTest.run("hessian", "--activations", tmp.resolve("act").toString(),
                "--out", tmp.resolve("h").toString(), "--partitions", "2");
        assertEquals(0, run.status(), run.err());
        assertTrue(run.out().contains("site ffn_up_in: d=384, 1024 tokens"), run.out());
        QuantizeLayerCliTest.Run exp = QuantizeLayerCliTest.run("hessian-export", "--hessians", tmp.resolve("h").toString(),
                "--site", "ffn_up_in", "--out", tmp.resolve("H.npy").toString());
        assertEquals(0, exp.status(), exp.err());
        assertTrue(exp.out().contains("normalisation sum"), exp.out());
        // the exported Hessian drives quantize-layer to the same codes as --calib
        assertEquals(0, QuantizeLayerCliTest.run("quantize-layer", "--weight", up.weight(dir).toString(), "--hessian",
                tmp.resolve("H.npy").toString(), "--out", tmp.resolve("q1").toString()).status());
        assertEquals(0, QuantizeLayerCliTest.run("quantize-layer", "--weight", up.weight(dir).toString(), "--calib",
                up.calib(dir).toString(), "--out", tmp.resolve("q2").toString()).status());
        assertTrue(Arrays.deepEquals(Npy.readMatrix(tmp.resolve("q1/codes.npy")), Npy.readMatrix(tmp.resolve("q2/codes.npy"))));
        QuantizeLayerCliTest.Run missing = QuantizeLayerCliTest.run("hessian", "--activations", tmp.resolve("nope").toString(),
                "--out", tmp.resolve("h2").toString());
        assertEquals(2, missing.status());
        assertTrue(missing.err().contains("does not exist"), missing.err());
    }
}
