package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.schema.MessageType;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.BadInputException;
import org.babaiquant.core.Json;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.BackendException;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.StarvedExperts;
import org.babaiquant.io.Commit;
import org.babaiquant.io.Fingerprint;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.method.EncodedMethod;
import org.babaiquant.method.LatticeMethod;
import org.babaiquant.method.LayerQuantizer;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.QuantResult;

import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
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

    /**
     * The run: what to quantize and where ({@code spec}: how, validated once by the caller); serialised to executors,
     * its {@link #paramsJson()} recorded in every shard footer and fingerprint.
     */
    public record Config(String model, String hessians, String out, MethodSpec spec, String layers, List<String> map,
                         String mapFile, String evalActivations, int evalTokens, String backend, int partitions, boolean force,
                         StarvedExperts.Rule starved)
            implements Serializable {
        public Config {
            if (!List.of("auto", "cpu", "cuda").contains(backend)) {
                throw new IllegalArgumentException("--backend must be auto, cpu or cuda, got " + backend);
            }
            if (starved == StarvedExperts.Rule.RTN && spec.quantMethod() instanceof EncodedMethod) {
                throw new IllegalArgumentException("--starved rtn needs a grid method (rtn, gptq, babai), not " + spec.method());
            }
        }

        /** With the default starved-expert rule ({@code damp}, see {@link StarvedExperts}). */
        public Config(String model, String hessians, String out, MethodSpec spec, String layers, List<String> map, String mapFile,
                      String evalActivations, int evalTokens, String backend, int partitions, boolean force) {
            this(model, hessians, out, spec, layers, map, mapFile, evalActivations, evalTokens, backend, partitions, force,
                    StarvedExperts.Rule.DAMP);
        }

        /** Every layer of {@code model} with the default layer map, no held-out evaluation, backend auto. */
        public static Config of(String model, String hessians, String out, MethodSpec spec) {
            return new Config(model, hessians, out, spec, null, List.of(), null, null, 0, "auto", 0, false);
        }

        /** The method's name as users see it (gptq, babai, rtn, ssqr, hptq, hrtn). */
        public String methodName() {
            return spec.method();
        }

        /** The run's parameters as one JSON line (footer {@code babai.params}, part of every layer's fingerprint). */
        String paramsJson() {
            QuantGrid.Spec g = spec.grid();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", spec.method());
            m.put("bits", g.bits());
            m.put("group_size", g.groupSize());
            m.put("sym", g.sym());
            m.put("mse", g.mse());
            m.put("order", spec.order().cliName);
            m.put("clip", spec.clip());
            m.put("damp", spec.damp());
            m.put("block_size", spec.blockSize());
            m.put("scales", "float16");
            m.put("outlier_rate", spec.outlierRate());
            m.put("target_bits", spec.targetBits());
            m.put("eval_tokens", evalTokens);
            m.put("format_version", QuantizedLayout.VERSION);
            if (starved != StarvedExperts.Rule.DAMP) { // the default leaves the parameters (and fingerprints) of earlier runs as they were
                m.put("starved", starved.cliName);
            }
            return Json.line(m).strip();
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
                if (shape[0] == 0 || shape[1] == 0) {
                    throw new BadInputException("weight " + e.getKey() + " has shape " + java.util.Arrays.toString(shape)
                            + ": an empty tensor cannot be quantized (exclude it with --layers or the layer map)");
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
                if (h.tokens() == 0 && !StarvedExperts.isExpert(e.getKey())) {
                    throw new BadInputException("site '" + e.getValue() + "' (feeding " + e.getKey() + ") has no calibration token: only a "
                            + "mixture-of-experts expert may have none (it is then quantized on H = I); import activations for it");
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
            jsc.setJobDescription("quantize: " + layers.size() + " layer(s) with " + cfg.methodName() + " " + cfg.spec().grid().bits() + "-bit");
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
        // an expert that saw fewer tokens than it has inputs: identity H, escalated damping or RTN (StarvedExperts)
        StarvedExperts.Plan starved = StarvedExperts.plan(l.name(), h.meta().tokens(), l.cols(), cfg.starved(), cfg.spec().damp());
        MethodSpec spec = new MethodSpec(starved.rtn() ? "rtn" : cfg.spec().method(), cfg.spec().grid(), cfg.spec().order(),
                cfg.spec().clip(), starved.damp(), cfg.spec().blockSize(), cfg.spec().maxDampTries(), cfg.spec().outlierRate(),
                cfg.spec().targetBits());
        double[][] hm = starved.identityHessian() ? StarvedExperts.identity(l.cols()) : h.h();
        // the encoded methods run their searches on the CPU; the grid methods' one pass runs where --backend says
        QuantBackend backend = cfg.spec().quantMethod() instanceof EncodedMethod ? QuantBackend.cpu() : backend(cfg.backend());
        QuantResult q;
        try {
            q = LayerQuantizer.quantize(l.name(), w, hm, h.meta().tokens(), spec, backend);
        } catch (BackendException e) {
            if (!e.recoverable()) {
                throw e; // sticky device error: fail the task, Spark retries it elsewhere
            }
            LOG.warning("layer " + l.name() + ": " + e.getMessage() + "; quantizing it on the CPU instead");
            backend = QuantBackend.cpu();
            q = LayerQuantizer.quantize(l.name(), w, hm, h.meta().tokens(), spec, backend);
        }
        LayerReport rep = q.report();
        if (cfg.evalActivations() != null) {
            LayerQuantizer.evaluate(l.name(), q, w, evalRows(conf, cfg.evalActivations(), l.site(), l.cols(), cfg.evalTokens()),
                    "the eval activations of site " + l.site() + " under " + cfg.evalActivations());
        }
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        Map<String, String> meta = Map.of("babai.format", "quantized-shard", "babai.version", String.valueOf(QuantizedLayout.VERSION),
                "babai.params", cfg.paramsJson());
        String gpu = backend.name().equals("cpu") ? null : taskGpuAddress();
        commitFiles(conf, cfg, l, meta, QuantizedLayout.shardRows(l.name(), l.dtype(), spec, q, fp),
                QuantizedLayout.rowRows(l.name(), rep),
                QuantizedLayout.reportRow(l.name(), l.site(), q.method(), rep, backend.name(), gpu, l.hessianFingerprint(), fp)
                        .append("starved", starved.applied()));
        return new Outcome(l.name(), false, rep.seconds, rep.loss(), rep.bound(), rep.clipped(), rep.evalRelError);
    }

    /** The stored grid of the scale policy ({@link LatticeMethod#storedGrid}); for tests and benchmarks. */
    public static QuantGrid float16Grid(double[][] w, double[][] h, QuantGrid.Spec spec) {
        return LatticeMethod.storedGrid("W", w, h, spec);
    }

    static String fingerprint(Layer l, Config cfg, byte[] weightBytes) {
        return Fingerprint.sha256().text("babai-quantize v" + QuantizedLayout.VERSION + "|" + l.name() + "|" + l.dtype() + "|" + l.rows()
                + "x" + l.cols() + "|" + l.hessianFingerprint() + "|" + cfg.paramsJson() + "|" + cfg.evalActivations() + "\n")
                .bytes(weightBytes).hex();
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

    /**
     * Commits one layer: its shards, its per-row table, then its report (the report marks the layer committed, so the
     * old one goes first and the new one last), each folder through the commit protocol ({@link HadoopCommit}: written
     * beside its target, renamed into place whole, stale temporaries of the same layer removed).
     */
    private static void commitFiles(Configuration conf, Config cfg, Layer l, Map<String, String> meta, List<Group> shards,
                                    List<Group> rows, Group report) throws IOException {
        Path reports = QuantizedLayout.dir(cfg.out(), "reports", l.name());
        FileSystem fs = reports.getFileSystem(conf);
        if (fs.exists(reports) && !fs.delete(reports, true)) {
            throw new IOException("cannot delete the old report " + reports);
        }
        commitFolder(conf, QuantizedLayout.dir(cfg.out(), "shards", l.name()), QuantizedLayout.SHARD, meta, shards);
        commitFolder(conf, QuantizedLayout.dir(cfg.out(), "rows", l.name()), QuantizedLayout.ROWS, meta, rows);
        commitFolder(conf, reports, QuantizedLayout.REPORT, meta, List.of(report));
    }

    private static void commitFolder(Configuration conf, Path dir, MessageType schema, Map<String, String> meta, List<Group> rows)
            throws IOException {
        try (HadoopCommit c = HadoopCommit.folder(conf, dir, Commit.IfExists.REPLACE, null)) {
            QuantizedLayout.write(conf, new Path(c.temp(), "part-00000.parquet"), schema, meta, rows);
            c.commit();
        }
    }
}
