package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.parquet.example.data.Group;
import org.apache.spark.Partitioner;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.BadInputException;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.io.Commit;
import scala.Tuple2;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The distributed Hessian stage: activation tiles → partial XᵀX on executors → reduced per (site, block) → one
 * committed Parquet artifact per site.
 *
 * <p>Determinism: each site's tiles are cut into fixed slices of {@code sliceTiles} consecutive tiles (by seq, not
 * by Spark partition). A slice's partial is accumulated in tile order by the backend's Hessian
 * ({@link QuantBackend#hessian}, chosen by {@code --backend} on the task's GPU like {@code quantize}; the CPU one is a
 * float64 rank-k update, dsyrk through core's {@code DenseKernels}) in updates of at most {@link #UPDATE_TOKENS}
 * tokens cut at tile boundaries, then split into blocks keyed by (site, block_row, block_col); a block's partials are
 * summed in slice order. For a given backend the result depends only on the inputs and (slice, block) sizes, not on
 * {@code --partitions}, the number of executors or cores, or the order in which tasks finish. With {@code auto} on a
 * cluster where some executors have a usable GPU and some do not, slices mix backends (CPU and CUDA sums agree to
 * ~1e-12 relative, not bit for bit): the progress line names the backends used; pass {@code cpu} or {@code cuda} for
 * artifacts reproducible to the byte.
 */
public final class HessianJob {
    /** Tokens per rank-k update. */
    static final int UPDATE_TOKENS = 1024;

    /** {@code backend}: where each slice's XᵀX runs, {@code auto}, {@code cpu} or {@code cuda} (as {@code quantize}'s). */
    public record Config(String activations, String out, List<String> sites, int partitions, int sliceTiles, int blockSize,
                         boolean force, String backend) implements Serializable {
        public Config {
            if (partitions < 1 || sliceTiles < 1 || blockSize < 1) {
                throw new IllegalArgumentException("partitions, slice tiles and block size must be ≥ 1");
            }
            if (!List.of("auto", "cpu", "cuda").contains(backend)) {
                throw new IllegalArgumentException("--backend must be auto, cpu or cuda, got " + backend);
            }
        }

        /** Backend {@code auto}. */
        public Config(String activations, String out, List<String> sites, int partitions, int sliceTiles, int blockSize,
                      boolean force) {
            this(activations, out, sites, partitions, sliceTiles, blockSize, force, "auto");
        }
    }

    /** What the planner decided for one site. */
    public record SitePlan(String site, int dim, long tiles, long tokens, int slices, List<ActivationLayout.SiteFile> files,
                           String fingerprint, boolean skip, long taskBytes, long reducerBytes, long writerBytes) implements Serializable {}

    /** A row range of one file. */
    record Range(String file, long from, long to) implements Serializable {}

    /** Work unit: one slice of one site. */
    record Slice(String site, int dim, int index, long firstSeq, List<Range> ranges) implements Serializable {}

    /** A block's partial from one slice, and the backend that computed it. */
    record Partial(int slice, long tokens, double[] block, String backend) implements Serializable {}

    private HessianJob() {}

    /** Reads the inputs' footers, fingerprints and sizes every site; checks memory. Runs no Spark job. */
    public static List<SitePlan> plan(SparkSession spark, Config cfg) {
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        List<String> all = ActivationLayout.sites(conf, cfg.activations());
        List<String> sites = cfg.sites() == null || cfg.sites().isEmpty() ? all : cfg.sites();
        for (String s : sites) {
            if (!all.contains(s)) {
                throw new BadInputException("site '" + s + "' not found under " + cfg.activations() + " (sites: " + all + ")");
            }
        }
        List<SitePlan> plans = new ArrayList<>();
        for (String site : sites) {
            List<ActivationLayout.SiteFile> files = ActivationLayout.files(conf, cfg.activations(), site);
            long tiles = files.stream().mapToLong(ActivationLayout.SiteFile::rows).sum();
            int dim = files.isEmpty() ? 0 : files.get(0).dim();
            for (ActivationLayout.SiteFile f : files) {
                if (f.dim() != dim) {
                    throw new BadInputException(f.path() + " has d=" + f.dim() + " but other files of site " + site + " have d=" + dim);
                }
            }
            String fp = HessianArtifact.fingerprint(conf, site, files, cfg.sliceTiles(), cfg.blockSize());
            HessianArtifact.Meta done = HessianArtifact.committed(conf, cfg.out(), site);
            boolean skip = !cfg.force() && done != null && fp.equals(done.fingerprint());
            int slices = (int) ((tiles + cfg.sliceTiles() - 1) / cfg.sliceTiles());
            long d2 = 8L * dim * dim;
            long task = d2 + d2 / 2 + 8L * UPDATE_TOKENS * dim;          // accumulator + its blocks + update buffer
            long reducer = 2L * Math.max(1, slices) * 8L * cfg.blockSize() * cfg.blockSize(); // one block's partials
            long writer = 2 * d2 / 2;                                     // one site's rows in the writing task
            plans.add(new SitePlan(site, dim, tiles, -1, slices, files, fp, skip, task, reducer, writer));
        }
        return plans;
    }

    /** Refuses, with the numbers, when a task would not fit the executor memory. */
    public static void checkMemory(SparkSession spark, List<SitePlan> plans) {
        long usable = SparkSupport.usableTaskMemory(spark);
        int concurrent = SparkSupport.tasksPerExecutor(spark);
        for (SitePlan p : plans) {
            long need = Math.max(p.taskBytes() * concurrent, Math.max(p.reducerBytes(), p.writerBytes()));
            if (!p.skip() && need > usable) {
                throw new BadInputException(String.format(Locale.ROOT,
                        "site %s (d=%d) needs %.1f MiB per task × %d concurrent tasks = %.1f MiB, more than the %.1f MiB "
                                + "Spark can give tasks on an executor: raise spark.executor.memory (driver memory in local "
                                + "mode, e.g. BABAI_JAVA_OPTS=-Xmx16g) or lower spark.executor.cores",
                        p.site(), p.dim(), p.taskBytes() / 1048576.0, concurrent, need / 1048576.0, usable / 1048576.0));
            }
        }
    }

    public static String planTable(List<SitePlan> plans) {
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-16s %6s %8s %7s %10s %11s %10s  %-8s %s%n",
                "site", "d", "tiles", "slices", "task_MiB", "reducer_MiB", "writer_MiB", "action", "fingerprint"));
        for (SitePlan p : plans) {
            sb.append(String.format(Locale.ROOT, "%-16s %6d %8d %7d %10.1f %11.1f %10.1f  %-8s %s%n", p.site(), p.dim(),
                    p.tiles(), p.slices(), p.taskBytes() / 1048576.0, p.reducerBytes() / 1048576.0,
                    p.writerBytes() / 1048576.0, p.skip() ? "skip" : p.tiles() == 0 ? "empty" : "compute",
                    p.fingerprint().substring(0, 16)));
        }
        return sb.toString();
    }

    /** Per-site outcome. */
    public record Result(String site, int dim, long tokens, double seconds, boolean skipped, String fingerprint) {}

    /**
     * Runs the stage; {@code progress} receives one line per finished site. Bad input found by a task surfaces as a
     * {@link BadInputException} naming the file and row group (not as Spark's wrapper).
     */
    public static List<Result> run(SparkSession spark, Config cfg, Consumer<String> progress) {
        try {
            return runUnwrapped(spark, cfg, progress);
        } catch (Exception e) {
            BadInputException bad = SparkSupport.badInput(e);
            if (bad != null) {
                throw bad == e ? bad : new BadInputException(bad.getMessage(), e);
            }
            throw e instanceof RuntimeException r ? r : new IllegalStateException("hessian job failed: " + e.getMessage(), e);
        }
    }

    private static List<Result> runUnwrapped(SparkSession spark, Config cfg, Consumer<String> progress) {
        List<SitePlan> plans = plan(spark, cfg);
        checkMemory(spark, plans);
        List<Result> results = new ArrayList<>();
        List<Slice> slices = new ArrayList<>();
        int empty = 0;
        for (SitePlan p : plans) {
            if (p.skip()) {
                HessianArtifact.Meta m = HessianArtifact.committed(spark.sparkContext().hadoopConfiguration(), cfg.out(), p.site());
                results.add(new Result(p.site(), p.dim(), m.tokens(), 0, true, p.fingerprint()));
                progress.accept(String.format(Locale.ROOT, "site %s: up to date (fingerprint %s), skipped", p.site(),
                        p.fingerprint().substring(0, 16)));
            } else if (p.tiles() == 0 && p.dim() > 0) {
                // files that hold no token (an expert no calibration token was routed to): committed as H = 0, tokens 0,
                // so that quantize applies its starved-expert rule instead of finding no Hessian
                try (HadoopCommit c = HadoopCommit.folder(spark.sparkContext().hadoopConfiguration(),
                        HessianArtifact.siteDir(cfg.out(), p.site()), Commit.IfExists.REPLACE, Commit.SUCCESS)) {
                    commit(c, new Written(p.site(), 0, c.temp().toString(), "none"), cfg, p);
                }
                results.add(new Result(p.site(), p.dim(), 0, 0, false, p.fingerprint()));
                progress.accept("site " + p.site() + ": d=" + p.dim() + ", 0 tokens: committed as an empty Hessian (H = 0)");
            } else if (p.tiles() == 0) {
                empty++;
                progress.accept("WARNING: site " + p.site() + " has no tiles; no Hessian written");
            } else {
                slices.addAll(slicesOf(p, cfg.sliceTiles()));
            }
        }
        if (empty > 0) {
            progress.accept("WARNING: " + empty + " empty site(s) skipped");
        }
        if (slices.isEmpty()) {
            return results;
        }
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        SparkSupport.HadoopConf hconf = SparkSupport.hadoopConf(spark);
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        int blockSize = cfg.blockSize();
        long t0 = System.nanoTime();
        // one commit per site: cleans what an earlier, killed run of that site left, and removes its own temporary
        // on any failure
        Map<String, HadoopCommit> commits = new LinkedHashMap<>();
        try {
            HashMap<String, String> temps = new HashMap<>();
            for (SitePlan p : plans) {
                if (!p.skip() && p.tiles() > 0) {
                    HadoopCommit c = HadoopCommit.folder(conf, HessianArtifact.siteDir(cfg.out(), p.site()),
                            Commit.IfExists.REPLACE, Commit.SUCCESS);
                    commits.put(p.site(), c);
                    temps.put(p.site(), c.temp().toString());
                }
            }
            jsc.setJobDescription("hessian: XᵀX of " + slices.size() + " slice(s) over sites " + commits.keySet());
            JavaRDD<Slice> work = jsc.parallelize(slices, Math.min(cfg.partitions(), slices.size()));
            String backend = cfg.backend();
            JavaPairRDD<String, Partial> partials = work.flatMapToPair(sl -> accumulate(sl, hconf.get(), blockSize, backend).iterator());
            int parts = Math.max(1, cfg.partitions());
            // blocks summed in slice order, then all blocks of a site in one task, sorted by (block_row, block_col),
            // written there as the site's one Parquet file in the site's temporary folder: one Spark job for every site
            List<Written> written = partials.groupByKey(parts)
                    .mapToPair(kv -> {
                        Block bl = reduce(kv._1(), kv._2(), blockSize, plans);
                        return new Tuple2<>(sortKey(bl.site(), bl.blockRow(), bl.blockCol()), bl);
                    })
                    .repartitionAndSortWithinPartitions(new SitePartitioner(parts))
                    .mapPartitions(it -> writeSites(it, hconf.get(), temps).iterator())
                    .collect();
            Map<String, Written> bySite = new HashMap<>();
            written.forEach(w -> bySite.put(w.site(), w));
            for (SitePlan p : plans) {
                if (p.skip() || p.tiles() == 0) {
                    continue;
                }
                long tokens = commit(commits.get(p.site()), bySite.get(p.site()), cfg, p);
                double secs = (System.nanoTime() - t0) / 1e9;
                double gflop = 1e-9 * tokens * p.dim() * (p.dim() + 1.0);
                results.add(new Result(p.site(), p.dim(), tokens, secs, false, p.fingerprint()));
                progress.accept(String.format(Locale.ROOT, "site %s: d=%d, %d tokens, %.2f GFLOP on %s, done at %.1f s",
                        p.site(), p.dim(), tokens, gflop, bySite.get(p.site()).backends(), secs));
            }
        } finally {
            commits.values().forEach(HadoopCommit::close);
        }
        return results;
    }

    /** One summed block of one site's H, as stored. */
    record Block(String site, int dim, long tokens, int blockRow, int blockCol, int rows, int cols, byte[] data,
                 String fingerprint, String backends) implements Serializable {}

    /** A site's file written by a task, not yet committed; {@code backends}: those its slices ran on, e.g. "cpu". */
    record Written(String site, long tokens, String tmpDir, String backends) implements Serializable {}

    /** Sorts a site's blocks together, by (block_row, block_col) within it. */
    static String sortKey(String site, int blockRow, int blockCol) {
        return String.format(Locale.ROOT, "%s\u0000%010d\u0000%010d", site, blockRow, blockCol);
    }

    /** All keys of a site go to the same partition. */
    static final class SitePartitioner extends Partitioner {
        private final int n;

        SitePartitioner(int n) {
            this.n = n;
        }

        @Override
        public int numPartitions() {
            return n;
        }

        @Override
        public int getPartition(Object key) {
            String k = (String) key;
            return Math.floorMod(k.substring(0, k.indexOf('\u0000')).hashCode(), n);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof SitePartitioner p && p.n == n;
        }

        @Override
        public int hashCode() {
            return n;
        }
    }

    /** Executor side: the sorted blocks of this partition's sites, one Parquet file per site. */
    static List<Written> writeSites(Iterator<Tuple2<String, Block>> blocks, Configuration conf, Map<String, String> temps)
            throws IOException {
        List<Written> written = new ArrayList<>();
        List<Group> rows = new ArrayList<>();
        Block first = null;
        while (true) {
            Block b = blocks.hasNext() ? blocks.next()._2() : null;
            if (first != null && (b == null || !b.site().equals(first.site()))) {
                Path dir = new Path(temps.get(first.site()));
                QuantizedLayout.write(conf, new Path(dir, "part-00000.parquet"), HessianArtifact.PARQUET_SCHEMA,
                        Map.of("babai.format", "hessian", "babai.version", String.valueOf(HessianArtifact.VERSION)), rows);
                written.add(new Written(first.site(), first.tokens(), dir.toString(), first.backends()));
                rows = new ArrayList<>();
                first = null;
            }
            if (b == null) {
                return written;
            }
            if (first == null) {
                first = b;
            }
            rows.add(HessianArtifact.row(b.site(), b.dim(), b.tokens(), b.blockRow(), b.blockCol(), b.rows(), b.cols(), b.data(),
                    b.fingerprint()));
        }
    }

    static List<Slice> slicesOf(SitePlan p, int sliceTiles) {
        List<Slice> out = new ArrayList<>();
        for (int s = 0; s < p.slices(); s++) {
            long from = (long) s * sliceTiles;
            long to = Math.min(p.tiles(), from + sliceTiles);
            List<Range> ranges = new ArrayList<>();
            long fileStart = 0;
            for (ActivationLayout.SiteFile f : p.files()) {
                long a = Math.max(from, fileStart);
                long b = Math.min(to, fileStart + f.rows());
                if (a < b) {
                    ranges.add(new Range(f.path(), a - fileStart, b - fileStart));
                }
                fileStart += f.rows();
            }
            out.add(new Slice(p.site(), p.dim(), s, from, ranges));
        }
        return out;
    }

    /**
     * Executor side: XᵀX of one slice on the backend {@code --backend} selects for this task's GPU, cut into keyed
     * blocks. Tiles are gathered into updates of at most {@link #UPDATE_TOKENS} tokens, cut only at tile boundaries,
     * so that the sequence of updates (hence every rounding) depends on the slice alone.
     */
    static List<Tuple2<String, Partial>> accumulate(Slice s, Configuration conf, int blockSize, String backendName) {
        QuantBackend backend = QuantizeJob.backend(backendName);
        int d = s.dim();
        HessianAccumulator acc;
        long[] tokens = {0};
        try (QuantBackend.HessianSum sum = backend.hessian(d)) {
            float[] buf = new float[UPDATE_TOKENS * d];
            double[] tile = new double[ActivationLayout.MAX_TILE_ROWS * d];
            int[] filled = {0};
            long[] expect = {s.firstSeq()};
            for (Range r : s.ranges()) {
                ActivationLayout.read(conf, r.file(), r.from(), r.to(), (t, where) -> {
                    if (t.dim() != d) {
                        throw new BadInputException(where + ": tile " + t.seq() + " has d=" + t.dim() + " but site " + s.site() + " has d=" + d);
                    }
                    if (t.seq() != expect[0]) {
                        throw new BadInputException(where + ": tile seq " + t.seq() + " where " + expect[0]
                                + " was expected (tiles missing, duplicated or out of order)");
                    }
                    expect[0]++;
                    t.decode(tile, where); // validates size and finiteness, naming the file and tile
                    if (filled[0] + t.rows() > UPDATE_TOKENS) {
                        addUpdate(sum, buf, filled[0], d);
                        filled[0] = 0;
                    }
                    int off = filled[0] * d;
                    for (int i = 0, len = t.rows() * d; i < len; i++) {
                        buf[off + i] = (float) tile[i]; // exact: the values are float32, float16 or bfloat16
                    }
                    filled[0] += t.rows();
                    tokens[0] += t.rows();
                });
            }
            if (filled[0] > 0) {
                addUpdate(sum, buf, filled[0], d);
            }
            acc = sum.finish();
        }
        List<Tuple2<String, Partial>> out = new ArrayList<>();
        int nb = (d + blockSize - 1) / blockSize;
        for (int bi = 0; bi < nb; bi++) {
            for (int bj = bi; bj < nb; bj++) {
                int r0 = bi * blockSize;
                int c0 = bj * blockSize;
                int rows = Math.min(blockSize, d - r0);
                int cols = Math.min(blockSize, d - c0);
                double[] block = new double[rows * cols];
                for (int a = 0; a < rows; a++) {
                    for (int b = 0; b < cols; b++) {
                        block[a * cols + b] = acc.get(r0 + a, c0 + b);
                    }
                }
                out.add(new Tuple2<>(s.site() + "\u0000" + bi + "\u0000" + bj,
                        new Partial(s.index(), tokens[0], block, backend.name())));
            }
        }
        return out;
    }

    /** One rank-k update of the first {@code tokens} rows of {@code buf} (the sum takes a tile of exactly that size). */
    private static void addUpdate(QuantBackend.HessianSum sum, float[] buf, int tokens, int d) {
        sum.add(tokens * d == buf.length ? buf : java.util.Arrays.copyOf(buf, tokens * d), tokens);
    }

    /** Sums one block's partials in slice order (the fixed reduction order). */
    static Block reduce(String key, Iterable<Partial> partials, int blockSize, List<SitePlan> plans) {
        String[] k = key.split("\u0000");
        List<Partial> sorted = new ArrayList<>();
        partials.forEach(sorted::add);
        sorted.sort(Comparator.comparingInt(Partial::slice));
        double[] sum = new double[sorted.get(0).block().length];
        long tokens = 0;
        java.util.TreeSet<String> backends = new java.util.TreeSet<>();
        for (Partial p : sorted) {
            backends.add(p.backend());
            double[] b = p.block();
            for (int i = 0; i < sum.length; i++) {
                sum[i] += b[i];
            }
            tokens += p.tokens();
        }
        SitePlan plan = plans.stream().filter(p -> p.site().equals(k[0])).findFirst().orElseThrow();
        int bi = Integer.parseInt(k[1]);
        int bj = Integer.parseInt(k[2]);
        int rows = Math.min(blockSize, plan.dim() - bi * blockSize);
        int cols = Math.min(blockSize, plan.dim() - bj * blockSize);
        ByteBuffer bytes = ByteBuffer.allocate(8 * sum.length).order(ByteOrder.LITTLE_ENDIAN);
        for (double v : sum) {
            bytes.putDouble(v);
        }
        return new Block(k[0], plan.dim(), tokens, bi, bj, rows, cols, bytes.array(), plan.fingerprint(), String.join("+", backends));
    }

    /** Adds the sidecar to a site's written file and commits its folder: complete (marker last) or absent. */
    private static long commit(HadoopCommit c, Written w, Config cfg, SitePlan p) {
        if (w == null) {
            throw new IllegalStateException("hessian job: no blocks were written for site " + p.site());
        }
        try {
            HessianArtifact.Meta meta = new HessianArtifact.Meta(HessianArtifact.VERSION, p.site(), p.dim(), w.tokens(),
                    HessianArtifact.NORMALISATION, cfg.blockSize(), p.slices(), p.fingerprint());
            try (FSDataOutputStream o = c.fileSystem().create(new Path(c.temp(), HessianArtifact.SIDECAR), false)) {
                o.write(meta.toJson().getBytes(StandardCharsets.UTF_8));
            }
            c.commit();
            return w.tokens();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the Hessian of site " + p.site() + " to " + Uris.redact(cfg.out()) + ": " + e.getMessage(), e);
        }
    }
}
