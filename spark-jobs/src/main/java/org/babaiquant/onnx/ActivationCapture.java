package org.babaiquant.onnx;

import org.babaiquant.io.OnnxModel;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.broadcast.Broadcast;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.BadInputException;
import org.babaiquant.io.Commit;
import org.babaiquant.io.Fingerprint;
import org.babaiquant.spark.HadoopCommit;
import org.babaiquant.spark.Uris;
import org.babaiquant.spark.ActivationLayout;
import org.babaiquant.spark.LayerMap;
import org.babaiquant.spark.SparkSupport;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * The capture stage: runs an ONNX encoder with ONNX Runtime on real text and writes the input of every linear layer as
 * activation tiles in the {@link ActivationLayout} (what {@code import-activations} writes and the Hessian stage reads).
 *
 * <p>Per paragraph (in order): tokenize ({@link WordPieceTokenizer}, truncated to {@code maxLen}), run alone (batch 1,
 * no padding) with the linears' input tensors added as graph outputs and ORT optimizations off, pick
 * {@code rowsPerSeq} token positions (all when ≤ 0) with a seeded {@link Random} (the same draw as the bundled data's
 * extractor: a partial Fisher–Yates shuffle, then sorted), and append those rows to each site. A sequence's rows form
 * its own tiles (at most 64 rows each), {@code sample_id} = the paragraph's index, so tiles never mix sequences.
 *
 * <p>Sites: linears reading the same tensor share one site (q/k/v), named by the default layer map for the first such
 * linear's MatMul node name ({@code layer0_attn_in}, … for BERT exports), else the sanitised tensor name (then pass
 * {@code --map} rules to the quantize stage). Sites are written under {@code OUT/_tmp-capture-*} and renamed into place
 * when all are complete.
 *
 * <p>On Spark ({@link #run(SparkSession, Config, int, Consumer)}) the driver tokenizes and draws the positions, and
 * executor tasks each run the model over a contiguous range of paragraphs, one part file per site and task.
 */
public final class ActivationCapture {

    /** What to capture. {@code samples} ≤ 0: every paragraph; {@code rowsPerSeq} ≤ 0: every token position. */
    public record Config(java.nio.file.Path onnx, java.nio.file.Path tokenizer, List<java.nio.file.Path> text, String out,
                         int samples, int maxLen, long seed, int rowsPerSeq, boolean overwrite) {
        public Config {
            if (maxLen < 2 || maxLen > 512) {
                throw new BadInputException("--max-len must be in 2..512 (the model's positions), got " + maxLen);
            }
        }
    }

    /** One input site: the tensor it is, its width, the linears (MatMul node names) reading it. */
    public record Site(String name, String tensor, int dim, List<String> linears) implements Serializable {}

    /** Per site: tokens and tiles written. {@code rows}: (sequence, position, token id) of every captured row. */
    public record Result(List<Site> sites, Map<String, Long> tokens, int sequences, List<int[]> rows) {}

    private ActivationCapture() {}

    /** The sites of a model, in graph order of their first linear. */
    public static List<Site> sites(OnnxModel model) {
        LayerMap defaults = LayerMap.of(List.of(), null, true);
        Map<String, List<OnnxModel.Linear>> byTensor = new LinkedHashMap<>();
        for (OnnxModel.Linear l : model.requireLinears()) {
            byTensor.computeIfAbsent(l.input(), k -> new ArrayList<>()).add(l);
        }
        List<Site> sites = new ArrayList<>();
        List<String> taken = new ArrayList<>();
        for (Map.Entry<String, List<OnnxModel.Linear>> e : byTensor.entrySet()) {
            List<OnnxModel.Linear> ls = e.getValue();
            String name = defaults.siteOf(ls.get(0).name());
            for (OnnxModel.Linear l : ls) {
                String s = defaults.siteOf(l.name());
                if (name != null && !name.equals(s)) {
                    name = null; // the map disagrees with the graph: fall back to the tensor's own name
                }
            }
            if (name == null || taken.contains(name)) {
                name = e.getKey().replaceAll("[^A-Za-z0-9._-]+", "_").replaceAll("^_+|_+$", "");
            }
            taken.add(name);
            sites.add(new Site(name, e.getKey(), ls.get(0).in(), ls.stream().map(OnnxModel.Linear::name).toList()));
        }
        return sites;
    }

    /** One paragraph as planned on the driver: its index in the text, its token ids and the positions kept. */
    public record Sequence(int index, int[] ids, int[] positions) implements Serializable {}

    /**
     * Tokenizes the paragraphs and draws every paragraph's positions in paragraph order from one seeded
     * {@link Random}: the draw depends only on the text, the tokenizer and the seed, never on how the paragraphs are
     * later split into shards, so every sharding writes the same rows.
     */
    public static List<Sequence> plan(Config cfg) {
        WordPieceTokenizer tok = WordPieceTokenizer.read(cfg.tokenizer());
        List<String> paragraphs = Paragraphs.read(cfg.text(), cfg.samples());
        Random rng = new Random(cfg.seed());
        List<Sequence> seqs = new ArrayList<>(paragraphs.size());
        for (int i = 0; i < paragraphs.size(); i++) {
            int[] ids = tok.encode(paragraphs.get(i), cfg.maxLen());
            int t = ids.length;
            seqs.add(new Sequence(i, ids, pickRows(rng, t, cfg.rowsPerSeq() <= 0 ? t : Math.min(t, cfg.rowsPerSeq()))));
        }
        return seqs;
    }

    /** Runs the capture in this process (one shard); {@code progress} gets a line every 50 paragraphs. */
    public static Result run(Configuration conf, Config cfg, Consumer<String> progress) {
        OnnxModel model = OnnxModel.read(cfg.onnx());
        List<Site> sites = sites(model);
        List<Sequence> seqs = plan(cfg);
        byte[] bytes = withSiteOutputs(cfg.onnx(), sites);
        return commit(conf, cfg, sites, seqs, dirs -> new long[][] {
                captureShard(conf, bytes, label(cfg), sites, seqs, dirs, 0, 0, progress)});
    }

    /**
     * Runs the capture on Spark: the paragraphs are planned on the driver ({@link #plan}), cut into {@code shards}
     * contiguous ranges, and each executor task runs its own ONNX Runtime session (the model's bytes are broadcast)
     * over one range, writing {@code part-NNNNN-capture.parquet} per site. The rows written are those of the
     * in-process {@link #run(Configuration, Config, Consumer)}, whatever {@code shards} (only the files differ).
     */
    public static Result run(SparkSession spark, Config cfg, int shards, Consumer<String> progress) {
        OnnxModel model = OnnxModel.read(cfg.onnx());
        List<Site> sites = sites(model);
        List<Sequence> seqs = plan(cfg);
        int n = Math.max(1, Math.min(shards, seqs.size()));
        List<Shard> parts = new ArrayList<>();
        long firstTile = 0; // tiles are numbered across a site's files: each shard starts where the previous ends
        for (int p = 0; p < n; p++) {
            List<Sequence> range = new ArrayList<>(seqs.subList((int) ((long) seqs.size() * p / n), (int) ((long) seqs.size() * (p + 1) / n)));
            parts.add(new Shard(p, firstTile, range));
            for (Sequence q : range) {
                firstTile += (q.positions().length + ActivationLayout.MAX_TILE_ROWS - 1) / ActivationLayout.MAX_TILE_ROWS;
            }
        }
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        SparkSupport.HadoopConf hconf = SparkSupport.hadoopConf(spark);
        Broadcast<byte[]> bytes = jsc.broadcast(withSiteOutputs(cfg.onnx(), sites));
        String label = label(cfg);
        AtomicInteger done = new AtomicInteger();
        SparkListener listener = new SparkListener() {
            @Override
            public void onTaskEnd(SparkListenerTaskEnd end) {
                progress.accept("[capture] " + done.incrementAndGet() + "/" + n + " shards done");
            }
        };
        jsc.setJobDescription("capture: " + seqs.size() + " paragraphs in " + n + " shard(s), " + sites.size() + " sites");
        spark.sparkContext().addSparkListener(listener);
        try {
            return commit(spark.sparkContext().hadoopConfiguration(), cfg, sites, seqs, dirs ->
                    jsc.parallelize(parts, n).map(p -> captureShard(hconf.get(), bytes.value(), label, sites, p.seqs(),
                            dirs, p.part(), p.firstTile(), s -> { })).collect().toArray(new long[0][]));
        } catch (RuntimeException e) {
            BadInputException bad = SparkSupport.badInput(e);
            throw bad == null ? e : bad == e ? bad : new BadInputException(bad.getMessage(), e);
        } finally {
            spark.sparkContext().removeSparkListener(listener);
            bytes.destroy();
        }
    }

    /** The paragraphs one executor task captures. */
    private record Shard(int part, long firstTile, List<Sequence> seqs) implements Serializable {}

    /** Where a capture records the fingerprint of its inputs ({@code _} paths are not datasets). */
    public static Path record(String out) {
        return new Path(new Path(out), "_capture.sha256");
    }

    /**
     * SHA-256 of everything the captured rows depend on: the model's, tokenizer's and text files' bytes, and samples,
     * max length, seed and rows per paragraph (not the sharding, which does not change the rows).
     */
    public static String fingerprint(Config cfg) {
        try {
            Fingerprint fp = Fingerprint.sha256().text(String.format(Locale.ROOT,
                    "babai-capture v1|samples=%d|max_len=%d|seed=%d|rows_per_seq=%d%n", cfg.samples(), cfg.maxLen(),
                    cfg.seed(), cfg.rowsPerSeq()));
            List<java.nio.file.Path> files = new ArrayList<>(List.of(cfg.onnx(), cfg.tokenizer()));
            files.addAll(cfg.text());
            for (java.nio.file.Path f : files) {
                fp.text(f.getFileName() + "|" + Files.size(f) + "\n");
                try (java.io.InputStream in = Files.newInputStream(f)) {
                    fp.stream(in);
                }
            }
            return fp.hex();
        } catch (IOException e) {
            throw new BadInputException("capture: cannot read " + e.getMessage(), e);
        }
    }

    /**
     * Runs the capture on Spark unless {@code cfg.out()} holds one with the same {@link #fingerprint} (then returns
     * false). An existing capture with other or unrecorded inputs is replaced when {@code overwrite}, else an error.
     * The record is written after the sites are in place and removed before they are replaced.
     */
    public static boolean runIfChanged(SparkSession spark, Config cfg, int shards, boolean overwrite, Consumer<String> progress) {
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        String fp = fingerprint(cfg);
        Path rec = record(cfg.out());
        try {
            FileSystem fs = rec.getFileSystem(conf);
            String recorded = null;
            if (fs.exists(rec)) {
                try (java.io.InputStream in = fs.open(rec)) {
                    recorded = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim();
                }
            }
            if (fp.equals(recorded)) {
                progress.accept("capture: " + cfg.out() + " is up to date (inputs fingerprint " + fp.substring(0, 16) + "), skipped");
                return false;
            }
            boolean any = fs.exists(new Path(cfg.out())) && !ActivationLayout.sites(conf, cfg.out()).isEmpty();
            if (any && !overwrite) {
                throw new BadInputException(cfg.out() + " already holds activations with " + (recorded == null ? "unrecorded" : "different")
                        + " inputs: replace them (capture.ifExists: overwrite) or choose another output");
            }
            fs.delete(rec, false); // a stale record must never vouch for sites being replaced
            run(spark, new Config(cfg.onnx(), cfg.tokenizer(), cfg.text(), cfg.out(), cfg.samples(), cfg.maxLen(), cfg.seed(),
                    cfg.rowsPerSeq(), true), shards, progress);
            try (var o = fs.create(rec, true)) {
                o.write((fp + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            }
            return true;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + cfg.out() + ": " + e.getMessage(), e);
        }
    }

    private static String label(Config cfg) {
        return cfg.onnx().getFileName().toString();
    }

    /** The model's bytes with every site's tensor added as a graph output. */
    private static byte[] withSiteOutputs(java.nio.file.Path onnx, List<Site> sites) {
        try {
            long size = Files.size(onnx);
            if (size > Integer.MAX_VALUE - (1 << 20)) {
                throw new BadInputException(onnx + " is " + size + " bytes: capture hands the model to ONNX Runtime as one"
                        + " byte array (at most 2 GiB); models stored with external data are not supported yet");
            }
            byte[] base = Files.readAllBytes(onnx);
            byte[] extra = OnnxModel.extraOutputs(sites.stream().map(Site::tensor).toList());
            byte[] bytes = Arrays.copyOf(base, base.length + extra.length);
            System.arraycopy(extra, 0, bytes, base.length, extra.length);
            return bytes;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + onnx + ": " + e.getMessage(), e);
        }
    }

    /** What writes the shards into each site's temporary folder and returns each shard's rows per site. */
    private interface ShardWriter {
        long[][] write(HashMap<String, String> siteDirs) throws IOException;
    }

    /**
     * Begins one {@link HadoopCommit} per site (an existing site is refused unless {@code overwrite}, then replaced
     * whole; leftovers of a killed capture are removed), lets {@code writer} fill the temporaries, then commits each
     * site; on any failure no temporary is left.
     */
    private static Result commit(Configuration conf, Config cfg, List<Site> sites, List<Sequence> seqs, ShardWriter writer) {
        Path out = new Path(cfg.out());
        Map<String, Long> tokens = new LinkedHashMap<>();
        List<HadoopCommit> commits = new ArrayList<>();
        try {
            HashMap<String, String> dirs = new HashMap<>();
            for (Site s : sites) {
                HadoopCommit c = HadoopCommit.folder(conf, new Path(out, ActivationLayout.siteDir(s.name())),
                        cfg.overwrite() ? Commit.IfExists.REPLACE : Commit.IfExists.REFUSE, null);
                commits.add(c);
                dirs.put(s.name(), c.temp().toString());
            }
            long[][] perShard = writer.write(dirs);
            for (int k = 0; k < sites.size(); k++) {
                long sum = 0;
                for (long[] shard : perShard) {
                    sum += shard[k];
                }
                tokens.put(sites.get(k).name(), sum);
            }
            commits.forEach(HadoopCommit::commit);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + Uris.redact(cfg.out()) + ": " + e.getMessage(), e);
        } finally {
            commits.forEach(HadoopCommit::close);
        }
        List<int[]> rows = new ArrayList<>();
        for (Sequence s : seqs) {
            for (int p : s.positions()) {
                rows.add(new int[] {s.index(), p, s.ids()[p]});
            }
        }
        return new Result(sites, tokens, seqs.size(), rows);
    }

    /**
     * One shard: runs the model on each sequence (batch 1, no padding) and appends the kept positions' rows of every
     * site to {@code SITE_TEMP/part-NNNNN-capture.parquet}, in tiles of at most 64 rows that never mix sequences
     * ({@code sample_id} = the paragraph's index), numbered from {@code firstTile} (a site's tiles are numbered
     * across its files). Returns the rows written per site, in {@code sites} order.
     */
    static long[] captureShard(Configuration conf, byte[] model, String label, List<Site> sites, List<Sequence> seqs,
                               Map<String, String> siteDirs, int part, long firstTile, Consumer<String> progress) throws IOException {
        long[] rowsPerSite = new long[sites.size()];
        long[] tiles = new long[sites.size()];
        Arrays.fill(tiles, firstTile);
        List<ActivationLayout.Writer> writers = new ArrayList<>();
        String file = String.format(Locale.ROOT, "part-%05d-capture.parquet", part);
        try (OnnxRunner runner = new OnnxRunner(label, model, false)) {
            try {
                for (Site s : sites) {
                    writers.add(new ActivationLayout.Writer(conf, new Path(new Path(siteDirs.get(s.name())), file),
                            s.name(), label + ":" + s.tensor(), s.dim(), "f32"));
                }
                List<String> names = sites.stream().map(Site::tensor).toList();
                int done = 0;
                for (Sequence seq : seqs) {
                    int t = seq.ids().length;
                    int[] pos = seq.positions();
                    Map<String, float[]> acts = runner.run(seq.ids(), names);
                    for (int k = 0; k < sites.size(); k++) {
                        Site s = sites.get(k);
                        float[] v = acts.get(s.tensor());
                        if (v.length != t * s.dim()) {
                            throw new BadInputException(label + ": tensor " + s.tensor() + " has " + v.length
                                    + " values for " + t + " tokens, not " + t + "×" + s.dim());
                        }
                        for (int r0 = 0; r0 < pos.length; r0 += ActivationLayout.MAX_TILE_ROWS) {
                            int n = Math.min(ActivationLayout.MAX_TILE_ROWS, pos.length - r0);
                            ByteBuffer b = ByteBuffer.allocate(4 * n * s.dim()).order(ByteOrder.LITTLE_ENDIAN);
                            for (int i = 0; i < n; i++) {
                                b.asFloatBuffer().put(i * s.dim(), v, pos[r0 + i] * s.dim(), s.dim());
                            }
                            writers.get(k).write(tiles[k]++, seq.index(), n, b.array());
                        }
                        rowsPerSite[k] += pos.length;
                    }
                    if (++done % 50 == 0 || done == seqs.size()) {
                        progress.accept("[capture] " + done + "/" + seqs.size() + " paragraphs, " + rowsPerSite[0] + " rows per site");
                    }
                }
            } finally {
                for (ActivationLayout.Writer w : writers) {
                    w.close();
                }
            }
        }
        return rowsPerSite;
    }

    /**
     * {@code take} distinct positions of 0..t−1, sorted: the first {@code take} steps of a Fisher–Yates shuffle. The
     * bundled data's extractor draws the same way, so the same seed and text give the same positions.
     */
    static int[] pickRows(Random rng, int t, int take) {
        int[] perm = new int[t];
        for (int i = 0; i < t; i++) {
            perm[i] = i;
        }
        for (int i = 0; i < take; i++) {
            int j = i + rng.nextInt(t - i);
            int x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        int[] pos = Arrays.copyOf(perm, take);
        Arrays.sort(pos);
        return pos;
    }
}
