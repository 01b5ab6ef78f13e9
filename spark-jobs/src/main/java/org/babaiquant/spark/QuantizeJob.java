package org.babaiquant.spark;

import org.babaiquant.core.Half;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.io.api.Binary;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.BadInputException;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.GptqPacking;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.gpu.CudaException;
import org.babaiquant.io.SafeTensors;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * The quantize stage: one Spark task per linear layer, largest first, each reading its weight lazily from the
 * model's safetensors and its site's Hessian artifact, running the lattice solver, and committing its shards,
 * per-row table and report atomically (the report last). Layers whose committed report has the same fingerprint
 * are skipped, so a rerun after a kill finishes the job with byte-identical outputs.
 */
public final class QuantizeJob {
    private static final java.util.logging.Logger LOG = java.util.logging.Logger.getLogger(QuantizeJob.class.getName());

    private QuantizeJob() {}

    /** The run's parameters (serialised to executors, recorded in every shard footer). */
    public record Config(String model, String hessians, String out, Method method, int bits, int groupSize, boolean sym,
                         boolean mse, ColumnOrder order, boolean clip, double damp, int blockSize, String layers,
                         List<String> map, String mapFile, String evalActivations, int evalTokens, String backend,
                         int partitions, boolean force, String scheme, double outlierRate, double targetBits)
            implements Serializable {
        /** The lattice methods (gptq | babai | rtn): {@code scheme} "lattice". */
        public Config(String model, String hessians, String out, Method method, int bits, int groupSize, boolean sym,
                      boolean mse, ColumnOrder order, boolean clip, double damp, int blockSize, String layers,
                      List<String> map, String mapFile, String evalActivations, int evalTokens, String backend,
                      int partitions, boolean force) {
            this(model, hessians, out, method, bits, groupSize, sym, mse, order, clip, damp, blockSize, layers, map, mapFile,
                    evalActivations, evalTokens, backend, partitions, force, "lattice", 0.01, 0);
        }

        public Config {
            if (!List.of("lattice", "ssqr", "hptq", "hrtn").contains(scheme)) {
                throw new IllegalArgumentException("scheme must be lattice, ssqr, hptq or hrtn, got " + scheme);
            }
            if ((scheme.equals("hptq") || scheme.equals("hrtn")) && !(targetBits > 1)) {
                throw new IllegalArgumentException(scheme + " needs --target-bits > 1, got " + targetBits);
            }
        }

        /** The method's name as users see it (gptq, babai, rtn, ssqr, hptq, hrtn). */
        public String methodName() {
            return scheme.equals("lattice") ? method.cliName : scheme;
        }

        String paramsJson() {
            return String.format(Locale.ROOT, "{\"method\": \"%s\", \"bits\": %d, \"group_size\": %d, \"sym\": %b, \"mse\": %b, "
                            + "\"order\": \"%s\", \"clip\": %b, \"damp\": %s, \"block_size\": %d, \"scales\": \"float16\", "
                            + "\"outlier_rate\": %s, \"target_bits\": %s, \"eval_tokens\": %d, \"format_version\": %d}",
                    methodName(), bits, groupSize, sym, mse, order.cliName, clip, damp, blockSize, outlierRate, targetBits,
                    evalTokens, QuantizedLayout.VERSION);
        }
    }

    /** One layer to quantize, as planned on the driver. */
    public record Layer(String name, String site, int rows, int cols, String dtype, String hessianFingerprint, long tokens)
            implements Serializable {
        /** Solver cost ~ rows·cols² (the trailing updates) + cols³ (the factorisation). */
        public double cost() {
            return (double) rows * cols * cols + (double) cols * cols * cols;
        }

        /** Peak task memory: W, its working copy and dequant (float64) + H, its copy and the factor. */
        public long peakBytes() {
            return 3L * 8 * rows * cols + 3L * 8 * cols * cols;
        }
    }

    /** What a task reports back (small). */
    public record Outcome(String layer, boolean skipped, double seconds, double loss, double bound, long clipped,
                          double evalRelError) implements Serializable {}

    /** Reads the model's headers and the Hessian sidecars; checks every selected layer against its Hessian. */
    public static List<Layer> plan(SparkSession spark, Config cfg) {
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        LayerMap map = LayerMap.of(cfg.map(), cfg.mapFile() == null ? null : java.nio.file.Path.of(cfg.mapFile()), true);
        List<Layer> layers = new ArrayList<>();
        try (ModelWeights model = ModelWeights.open(conf, cfg.model())) {
            Map<String, String> selected = map.select(model.names(), cfg.layers());
            for (Map.Entry<String, String> e : selected.entrySet()) {
                SafeTensors.TensorInfo info = model.info(e.getKey());
                long[] shape = info.shape();
                if (shape.length != 2) {
                    throw new BadInputException("weight " + e.getKey() + " has shape " + java.util.Arrays.toString(shape)
                            + "; a linear layer's weight is 2-D [out, in]");
                }
                HessianArtifact.Meta h = HessianArtifact.committed(conf, cfg.hessians(), e.getValue());
                if (h == null) {
                    throw new BadInputException("no Hessian for site '" + e.getValue() + "' (feeding " + e.getKey() + ") under "
                            + cfg.hessians() + ": run the hessian stage for it, or fix the layer map (--map)");
                }
                if (h.dim() != shape[1]) {
                    throw new BadInputException("weight " + e.getKey() + " is [" + shape[0] + ", " + shape[1] + "] but the Hessian of site "
                            + e.getValue() + " is " + h.dim() + "x" + h.dim() + ": the input dimension must match");
                }
                layers.add(new Layer(e.getKey(), e.getValue(), Math.toIntExact(shape[0]), Math.toIntExact(shape[1]), info.dtype(),
                        h.fingerprint(), h.tokens()));
            }
        }
        layers.sort(Comparator.comparingDouble(Layer::cost).reversed().thenComparing(Layer::name));
        return layers;
    }

    /** The plan as a table, with a wall-time estimate from a measured solver rate. */
    public static String planTable(List<Layer> layers, double flopsPerSecond, int executors) {
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%-52s %-22s %7s %7s %12s %10s %10s%n",
                "layer", "site", "rows", "cols", "rows·cols²", "H_MiB", "peak_MiB"));
        double[] bins = new double[Math.max(1, executors)];
        int shown = 0;
        long peak = 0;
        for (Layer l : layers) {
            peak = Math.max(peak, l.peakBytes());
            if (shown++ == 40) {
                sb.append(String.format(Locale.ROOT, "… %d more layers%n", layers.size() - 40));
            }
            if (shown <= 40) sb.append(String.format(Locale.ROOT, "%-52s %-22s %7d %7d %12.3g %10.1f %10.1f%n", l.name(), l.site(), l.rows(),
                    l.cols(), (double) l.rows() * l.cols() * l.cols(), 8.0 * l.cols() * l.cols() / 1048576,
                    l.peakBytes() / 1048576.0));
            int min = 0;
            for (int i = 1; i < bins.length; i++) {
                if (bins[i] < bins[min]) {
                    min = i;
                }
            }
            bins[min] += l.cost() / flopsPerSecond;
        }
        double makespan = java.util.Arrays.stream(bins).max().orElse(0);
        sb.append(String.format(Locale.ROOT, "%d layers, largest peak task memory %.1f MiB; estimated solver time %.1f s (%.2f h) on %d "
                        + "task slot(s), largest first, at the solver rate measured here (%.2f GFLOP/s per slot)%n", layers.size(),
                peak / 1048576.0, makespan, makespan / 3600, bins.length, flopsPerSecond / 1e9));
        return sb.toString();
    }

    /** Runs the stage. {@code progress} gets a line per finished layer. */
    public static List<Outcome> run(SparkSession spark, Config cfg, Consumer<String> progress) {
        try {
            List<Layer> layers = plan(spark, cfg);
            JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
            SparkSupport.HadoopConf hconf = SparkSupport.hadoopConf(spark);
            jsc.setJobDescription("quantize: " + layers.size() + " layer(s) with " + cfg.method().cliName + " " + cfg.bits() + "-bit");
            AtomicInteger done = new AtomicInteger();
            long t0 = System.nanoTime();
            SparkListener listener = new SparkListener() {
                @Override
                public void onTaskEnd(SparkListenerTaskEnd end) {
                    int n = done.incrementAndGet();
                    double el = (System.nanoTime() - t0) / 1e9;
                    progress.accept(String.format(Locale.ROOT, "[quantize] %d/%d layers, %.1f s elapsed, ETA %.0f s", n, layers.size(),
                            el, n == 0 ? 0 : el / n * (layers.size() - n)));
                }
            };
            spark.sparkContext().addSparkListener(listener);
            try {
                return jsc.parallelize(layers, Math.max(1, layers.size())).map(l -> quantizeLayer(l, cfg, hconf.get())).collect();
            } finally {
                spark.sparkContext().removeSparkListener(listener);
            }
        } catch (Exception e) {
            BadInputException bad = SparkSupport.badInput(e);
            if (bad != null) {
                throw bad == e ? bad : new BadInputException(bad.getMessage(), e);
            }
            throw e instanceof RuntimeException r ? r : new IllegalStateException("quantize job failed: " + e.getMessage(), e);
        }
    }

    /** Executor side: one layer, end to end. */
    static Outcome quantizeLayer(Layer l, Config cfg, Configuration conf) throws IOException {
        long t0 = System.nanoTime();
        double[][] w;
        String fp;
        try (ModelWeights model = ModelWeights.open(conf, cfg.model())) {
            fp = fingerprint(l, cfg, model.readRaw(l.name()));
            Group done = committedReport(conf, cfg.out(), l.name());
            if (!cfg.force() && done != null && fp.equals(done.getString("fingerprint", 0))) {
                return new Outcome(l.name(), true, 0, done.getDouble("loss", 0), done.getDouble("bound", 0),
                        done.getLong("clipped", 0), done.getDouble("eval_rel_error", 0));
            }
            w = model.readMatrix(l.name());
        }
        HessianArtifact.Loaded h = HessianArtifact.read(conf, cfg.hessians(), l.site());
        if (!cfg.scheme().equals("lattice")) {
            return quantizeNonClip(l, cfg, conf, w, h, fp, t0);
        }
        GptqSolver.Options opt = new GptqSolver.Options(cfg.method(), new QuantGrid.Spec(cfg.bits(), cfg.groupSize(), cfg.sym(), cfg.mse()),
                cfg.order(), cfg.clip(), cfg.damp(), cfg.blockSize(), 6);
        QuantBackend backend = backend(cfg.backend());
        QuantGrid grid = float16Grid(w, opt.grid());
        QuantizedLayer q;
        try {
            q = backend.quantize(w, h.h(), opt, grid);
        } catch (CudaException e) {
            if (!e.recoverable()) {
                throw e; // sticky device error: fail the task, Spark retries it elsewhere
            }
            LOG.warning("layer " + l.name() + ": " + e.getMessage() + "; quantizing it on the CPU instead");
            backend = QuantBackend.cpu();
            q = backend.quantize(w, h.h(), opt, grid);
        }
        LayerReport rep = q.report();
        rep.tokens = h.meta().tokens();
        if (cfg.evalActivations() != null) {
            rep.evalRelError = GptqSolver.relativeOutputError(evalRows(conf, cfg.evalActivations(), l.site(), l.cols(), cfg.evalTokens()),
                    w, q.dequant());
        }
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        commit(conf, cfg, l, q, fp, backend);
        return new Outcome(l.name(), false, rep.seconds, rep.loss(), rep.bound(), rep.clipped(), rep.evalRelError);
    }

    /**
     * SSQR / HPTQ / HRTN: the no-clipping representations of the paper, stored as their own binary format in one
     * shard row ({@code representation}, {@code payload}); bits per weight from the bytes.
     */
    private static Outcome quantizeNonClip(Layer l, Config cfg, Configuration conf, double[][] w, HessianArtifact.Loaded h,
                                           String fp, long t0) throws IOException {
        GptqSolver.Options gopt = new GptqSolver.Options(Method.GPTQ, new QuantGrid.Spec(cfg.bits(), cfg.groupSize(), cfg.sym(), true),
                cfg.order(), false, cfg.damp(), cfg.blockSize(), 6);
        byte[] payload;
        QuantizedLayer lattice;
        double bpw;
        float[] dq;
        int bits = cfg.bits();
        int groupSize = cfg.groupSize();
        if (cfg.scheme().equals("ssqr")) {
            // with a target size: inlier bits, group size and outlier rate per layer shape by the matched-bits rules
            org.babaiquant.nonclip.Ssqr.Options so = cfg.targetBits() > 0
                    ? org.babaiquant.nonclip.BitBudget.ssqr(l.rows(), l.cols(), cfg.targetBits(), gopt)
                    : org.babaiquant.nonclip.Ssqr.Options.of(cfg.bits(), cfg.groupSize(), cfg.outlierRate(), gopt);
            org.babaiquant.nonclip.Ssqr.Result r = org.babaiquant.nonclip.Ssqr.quantize(w, h.h(), so);
            bits = so.bits();
            groupSize = so.groupSize();
            payload = r.bytes();
            lattice = r.lattice();
            bpw = r.bitsPerWeight();
            dq = r.layer().dequantize();
        } else {
            org.babaiquant.nonclip.Hptq.Kind kind = cfg.scheme().equals("hptq") ? org.babaiquant.nonclip.Hptq.Kind.HPTQ
                    : org.babaiquant.nonclip.Hptq.Kind.HRTN;
            org.babaiquant.nonclip.Hptq.Result r = org.babaiquant.nonclip.Hptq.quantize(w, h.h(),
                    org.babaiquant.nonclip.Hptq.Options.of(kind, cfg.targetBits(), gopt));
            payload = r.bytes();
            lattice = r.lattice();
            bpw = r.bitsPerWeight();
            dq = r.layer().dequantize();
        }
        LayerReport rep = lattice.report();
        rep.tokens = h.meta().tokens();
        rep.bitsPerWeight = bpw;
        if (cfg.evalActivations() != null) {
            double[][] q = new double[l.rows()][l.cols()];
            for (int r = 0; r < l.rows(); r++) {
                for (int j = 0; j < l.cols(); j++) {
                    q[r][j] = dq[r * l.cols() + j];
                }
            }
            rep.evalRelError = GptqSolver.relativeOutputError(evalRows(conf, cfg.evalActivations(), l.site(), l.cols(), cfg.evalTokens()), w, q);
        }
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        Map<String, String> meta = Map.of("babai.format", "quantized-shard", "babai.version", String.valueOf(QuantizedLayout.VERSION),
                "babai.params", cfg.paramsJson());
        Group shard = QuantizedLayout.groups(QuantizedLayout.SHARD).newGroup().append("layer", l.name()).append("method", cfg.methodName())
                .append("order", cfg.order().cliName).append("bits", bits).append("group_size", groupSize)
                .append("sym", cfg.sym()).append("clip", false).append("rows", l.rows()).append("cols", l.cols())
                .append("row_start", 0).append("row_count", l.rows()).append("dtype", l.dtype()).append("codes_packing", "none")
                .append("codes", Binary.EMPTY).append("scales", Binary.EMPTY).append("zeros", Binary.EMPTY)
                .append("perm", Binary.fromConstantByteArray(intBytes(lattice.perm()))).append("fingerprint", fp)
                .append("format_version", QuantizedLayout.VERSION).append("representation", cfg.methodName())
                .append("payload", Binary.fromConstantByteArray(payload));
        commitFiles(conf, cfg, l, meta, List.of(shard), rowRows(l, rep), reportRow(l, rep, fp, cfg.methodName(), "cpu", null));
        return new Outcome(l.name(), false, rep.seconds, rep.loss(), rep.bound(), rep.clipped(), rep.evalRelError);
    }

    private static byte[] intBytes(int[] v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (int x : v) {
            b.putInt(x);
        }
        return b.array();
    }

    /** The grid with its scales rounded to float16 before the pass: what is stored is exactly what was solved for. */
    public static QuantGrid float16Grid(double[][] w, QuantGrid.Spec spec) {
        QuantGrid g = QuantGrid.fit(w, spec);
        double[][] s = new double[g.rows][g.groups()];
        for (int r = 0; r < g.rows; r++) {
            for (int k = 0; k < g.groups(); k++) {
                double v = Half.toFloat(Half.fromFloat((float) g.scale[r][k]));
                s[r][k] = v > 0 ? v : 5.960464477539063E-8; // smallest float16 subnormal, for all-but-zero groups
            }
        }
        return QuantGrid.of(g.bits, spec.groupSize(), g.cols, s, g.zero);
    }

    static String fingerprint(Layer l, Config cfg, byte[] weightBytes) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(("babai-quantize v" + QuantizedLayout.VERSION + "|" + l.name() + "|" + l.dtype() + "|" + l.rows() + "x" + l.cols()
                    + "|" + l.hessianFingerprint() + "|" + cfg.paramsJson() + "|" + cfg.evalActivations() + "\n").getBytes(StandardCharsets.UTF_8));
            md.update(weightBytes);
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static Group committedReport(Configuration conf, String out, String layer) {
        Group[] g = new Group[1];
        QuantizedLayout.readDir(conf, QuantizedLayout.dir(out, "reports", layer), r -> g[0] = r);
        return g[0];
    }

    private static double[][] evalRows(Configuration conf, String uri, String site, int cols, int maxTokens) {
        List<double[]> rows = new ArrayList<>();
        for (ActivationLayout.SiteFile f : ActivationLayout.files(conf, uri, site)) {
            if (f.dim() != cols) {
                throw new BadInputException(f.path() + ": eval activations have d=" + f.dim() + " but the layer has " + cols + " inputs");
            }
            double[] buf = new double[ActivationLayout.MAX_TILE_ROWS * cols];
            ActivationLayout.read(conf, f.path(), 0, f.rows(), (t, where) -> {
                if (rows.size() >= maxTokens) {
                    return;
                }
                t.decode(buf, where);
                for (int i = 0; i < t.rows() && rows.size() < maxTokens; i++) {
                    rows.add(java.util.Arrays.copyOfRange(buf, i * cols, (i + 1) * cols));
                }
            });
        }
        if (rows.isEmpty()) {
            throw new BadInputException("no eval activations for site " + site + " under " + uri);
        }
        return rows.toArray(double[][]::new);
    }

    private static void commit(Configuration conf, Config cfg, Layer l, QuantizedLayer q, String fp, QuantBackend backend)
            throws IOException {
        Map<String, String> meta = Map.of("babai.format", "quantized-shard", "babai.version", String.valueOf(QuantizedLayout.VERSION),
                "babai.params", cfg.paramsJson());
        commitFiles(conf, cfg, l, meta, shardRows(l, cfg, q, fp), rowRows(l, q.report()),
                reportRow(l, q.report(), fp, cfg.methodName(), backend.name(), taskGpuAddress()));
    }

    /**
     * Executor side: the backend for {@code --backend} on this task's GPU. "auto" falls back to the CPU (logged once
     * per executor JVM); "cuda" where it cannot run is a bad-input error carrying the reason.
     */
    static QuantBackend backend(String which) {
        try {
            return QuantBackend.select(which, taskGpuAddress());
        } catch (QuantBackend.UnavailableException e) {
            throw new BadInputException("--backend " + which + ": " + e.getMessage(), e);
        }
    }

    /** The GPU Spark assigned to the running task (spark.task.resource.gpu.amount), or null (driver, CPU-only task). */
    static String taskGpuAddress() {
        org.apache.spark.TaskContext tc = org.apache.spark.TaskContext.get();
        if (tc == null) {
            return null;
        }
        org.apache.spark.resource.ResourceInformation gpu = tc.resourcesJMap().get("gpu");
        return gpu == null || gpu.addresses().length == 0 ? null : gpu.addresses()[0];
    }

    private static void commitFiles(Configuration conf, Config cfg, Layer l, Map<String, String> meta, List<Group> shards,
                                    List<Group> rows, Group report) throws IOException {
        Path tmp = new Path(new Path(cfg.out(), "_tmp"), UUID.randomUUID().toString());
        FileSystem fs = tmp.getFileSystem(conf);
        try {
            QuantizedLayout.write(conf, new Path(tmp, "shards/part-00000.parquet"), QuantizedLayout.SHARD, meta, shards);
            QuantizedLayout.write(conf, new Path(tmp, "rows/part-00000.parquet"), QuantizedLayout.ROWS, meta, rows);
            QuantizedLayout.write(conf, new Path(tmp, "reports/part-00000.parquet"), QuantizedLayout.REPORT, meta, List.of(report));
            for (String kind : new String[] {"shards", "rows", "reports"}) { // the report last: it marks the layer committed
                Path dst = QuantizedLayout.dir(cfg.out(), kind, l.name());
                if (fs.exists(dst)) {
                    fs.delete(dst, true);
                }
                fs.mkdirs(dst.getParent());
                if (!fs.rename(new Path(tmp, kind), dst)) {
                    throw new IOException("rename to " + dst + " failed");
                }
            }
        } finally {
            fs.delete(tmp, true);
        }
    }

    private static List<Group> shardRows(Layer l, Config cfg, QuantizedLayer q, String fp) {
        QuantGrid g = q.grid();
        int groups = g.groups();
        List<Group> out = new ArrayList<>();
        for (int r0 = 0; r0 < l.rows(); r0 += QuantizedLayout.ROW_BLOCK) {
            int n = Math.min(QuantizedLayout.ROW_BLOCK, l.rows() - r0);
            int[][] codes = java.util.Arrays.copyOfRange(q.codes(), r0, r0 + n);
            boolean packable = (g.bits == 2 || g.bits == 3 || g.bits == 4 || g.bits == 8)
                    && l.cols() % (g.bits == 3 ? 32 : 32 / g.bits) == 0 && inRange(codes, g.maxq);
            ByteBuffer cb;
            if (packable) {
                int[][] qweight = GptqPacking.packQweight(codes, g.bits);
                cb = ByteBuffer.allocate(4 * qweight.length * n).order(ByteOrder.LITTLE_ENDIAN);
                for (int[] word : qweight) {
                    for (int v : word) {
                        cb.putInt(v);
                    }
                }
            } else {
                cb = ByteBuffer.allocate(4 * n * l.cols()).order(ByteOrder.LITTLE_ENDIAN);
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
                    sb.putShort(Half.fromFloat((float) g.scale[r][k]));
                    zb.putInt((int) g.zero[r][k]);
                }
            }
            ByteBuffer pb = ByteBuffer.allocate(r0 == 0 ? 4 * l.cols() : 0).order(ByteOrder.LITTLE_ENDIAN);
            if (r0 == 0) {
                for (int p : q.perm()) {
                    pb.putInt(p);
                }
            }
            out.add(QuantizedLayout.groups(QuantizedLayout.SHARD).newGroup().append("layer", l.name()).append("method", cfg.method().cliName)
                    .append("order", cfg.order().cliName).append("bits", g.bits).append("group_size", cfg.groupSize())
                    .append("sym", cfg.sym()).append("clip", cfg.clip()).append("rows", l.rows()).append("cols", l.cols())
                    .append("row_start", r0).append("row_count", n).append("dtype", l.dtype())
                    .append("codes_packing", packable ? "gptq-qweight" : "int32")
                    .append("codes", Binary.fromConstantByteArray(cb.array())).append("scales", Binary.fromConstantByteArray(sb.array()))
                    .append("zeros", Binary.fromConstantByteArray(zb.array())).append("perm", Binary.fromConstantByteArray(pb.array()))
                    .append("fingerprint", fp).append("format_version", QuantizedLayout.VERSION)
                    .append("representation", "gptq").append("payload", Binary.EMPTY));
        }
        return out;
    }

    private static boolean inRange(int[][] codes, int maxq) {
        for (int[] row : codes) {
            for (int v : row) {
                if (v < 0 || v > maxq) {
                    return false;
                }
            }
        }
        return true;
    }

    private static List<Group> rowRows(Layer l, LayerReport rep) {
        List<Group> out = new ArrayList<>(rep.rows);
        for (int r = 0; r < rep.rows; r++) {
            out.add(QuantizedLayout.groups(QuantizedLayout.ROWS).newGroup().append("layer", l.name()).append("row", r)
                    .append("loss", rep.rowLoss[r]).append("bound", rep.rowBound[r]).append("clipped", rep.rowClipped[r]));
        }
        return out;
    }

    private static Group reportRow(Layer l, LayerReport r, String fp, String method, String backend, String gpu) {
        return QuantizedLayout.groups(QuantizedLayout.REPORT).newGroup().append("layer", l.name()).append("site", l.site())
                .append("method", method).append("order", r.order.cliName).append("bits", r.bits)
                .append("group_size", r.groupSize).append("sym", r.sym).append("clip", r.clip).append("rows", r.rows)
                .append("cols", r.cols).append("tokens", r.tokens).append("loss", r.loss()).append("bound", r.bound())
                .append("loss_over_bound", r.lossOverBound()).append("clipped", r.clipped())
                .append("bound_violations", r.boundViolations()).append("eval_rel_error", r.evalRelError)
                .append("damping", r.percdampUsed).append("damping_lambda", r.lambda).append("damping_attempts", r.dampAttempts)
                .append("trace_d", r.traceD).append("bits_per_weight", r.bitsPerWeight).append("backend", backend)
                .append("device", backend.equals("cpu") ? "cpu" : "gpu:" + (gpu == null ? "default" : gpu)).append("seconds", r.seconds)
                .append("hessian_fingerprint", l.hessianFingerprint())
                .append("fingerprint", fp).append("format_version", QuantizedLayout.VERSION);
    }
}
