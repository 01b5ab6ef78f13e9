package org.babaiquant.report;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.babaiquant.BadInputException;
import org.babaiquant.spark.QuantizedLayout;
import org.babaiquant.core.Json;
import org.babaiquant.spark.Uris;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What a run folder holds, read from its Parquet outputs (the layouts of {@link org.babaiquant.spark.QuantizedLayout}
 * and {@link org.babaiquant.onnx.EvaluationReport}), with everything missing or unreadable said in words instead of
 * thrown: a partial run still gets a report, and the report says what is not in it.
 *
 * <p>A URI may be a quantize output ({@code URI/reports}), a pipeline work folder ({@code URI/quantized/reports}), a
 * demo work folder ({@code URI/quantized/RUN/reports} and {@code URI/evaluation}), or an evaluation table alone.
 */
public record RunData(String uri, List<QuantizeRun> runs, List<Evaluation> evaluations, List<String> problems, List<String> notes) {
    /** URIs and messages as shown: any user-info (credentials) in a URI stripped. */
    public RunData {
        uri = Uris.redact(uri);
        problems = problems.stream().map(Uris::redact).toList();
    }

    public RunData(String uri, List<QuantizeRun> runs, List<Evaluation> evaluations, List<String> problems) {
        this(uri, runs, evaluations, problems, List.of());
    }

    /** One row of {@code OUT/reports}: a committed layer's error-bound report. */
    public record Layer(String layer, String site, String method, String order, int bits, int groupSize, boolean sym,
                        boolean clip, int rows, int cols, long tokens, double loss, double bound, double lossOverBound,
                        long clipped, int boundViolations, double evalRelError, double damping, double dampingLambda,
                        int dampingAttempts, double traceD, double bitsPerWeight, String backend, String device,
                        double seconds, String starved) {
        /** The Cholesky factorisation failed at the requested damping and was retried with 10× more. */
        public boolean dampingEscalated() {
            return dampingAttempts > 1;
        }

        public long weights() {
            return (long) rows * cols;
        }

        static Layer of(Group g) {
            return new Layer(g.getString("layer", 0), g.getString("site", 0), g.getString("method", 0), g.getString("order", 0),
                    g.getInteger("bits", 0), g.getInteger("group_size", 0), g.getBoolean("sym", 0), g.getBoolean("clip", 0),
                    g.getInteger("rows", 0), g.getInteger("cols", 0), g.getLong("tokens", 0), g.getDouble("loss", 0),
                    g.getDouble("bound", 0), g.getDouble("loss_over_bound", 0), g.getLong("clipped", 0),
                    g.getInteger("bound_violations", 0), g.getDouble("eval_rel_error", 0), g.getDouble("damping", 0),
                    g.getDouble("damping_lambda", 0), g.getInteger("damping_attempts", 0), g.getDouble("trace_d", 0),
                    g.getDouble("bits_per_weight", 0), g.getString("backend", 0), g.getString("device", 0), g.getDouble("seconds", 0),
                    // the MoE starved-expert rule (StarvedExperts); reports written before the column read as none
                    g.getType().containsField("starved") ? g.getString("starved", 0) : "none");
        }
    }

    /** One quantize output: its parameters (the shard footers' {@code babai.params}), its layers in model order. */
    public record QuantizeRun(String name, String uri, Map<String, String> params, List<Layer> layers, List<String> problems) {
        public QuantizeRun {
            uri = Uris.redact(uri);
            problems = problems.stream().map(Uris::redact).toList();
        }

        public double loss() {
            return layers.stream().mapToDouble(Layer::loss).sum();
        }

        public double bound() {
            return layers.stream().mapToDouble(Layer::bound).sum();
        }

        public long clipped() {
            return layers.stream().mapToLong(Layer::clipped).sum();
        }

        public long weights() {
            return layers.stream().mapToLong(Layer::weights).sum();
        }

        public long escalations() {
            return layers.stream().filter(Layer::dampingEscalated).count();
        }

        public double seconds() {
            return layers.stream().mapToDouble(Layer::seconds).sum();
        }

        /** Bits per weight of the whole run: Σ bits_per_weight · weights / Σ weights (as the evaluation table computes it). */
        public double bitsPerWeight() {
            return layers.stream().mapToDouble(l -> l.bitsPerWeight() * l.weights()).sum() / weights();
        }

        /** Mean over the layers with a held-out error; NaN when none has one. */
        public double meanEvalRelError() {
            return layers.stream().mapToDouble(Layer::evalRelError).filter(e -> !Double.isNaN(e)).average().orElse(Double.NaN);
        }

        public boolean hasEvalError() {
            return layers.stream().anyMatch(l -> !Double.isNaN(l.evalRelError()));
        }
    }

    /** One row of an evaluation table ({@code evaluate}, {@code demo}). */
    public record Evaluation(String original, String quantized, String method, int bits, double bitsPerWeight,
                             double meanLossOverBound, int layers, int paragraphs, int maxLen, double meanCosine,
                             double minCosine, double retrievalAgreement, int retrievalSame, double seconds) {
        static Evaluation of(Group g) {
            return new Evaluation(Uris.redact(g.getString("original", 0)), Uris.redact(g.getString("quantized", 0)), g.getString("method", 0),
                    g.getInteger("bits", 0), g.getDouble("bits_per_weight", 0), g.getDouble("mean_loss_over_bound", 0),
                    g.getInteger("layers", 0), g.getInteger("paragraphs", 0), g.getInteger("max_len", 0),
                    g.getDouble("mean_cosine", 0), g.getDouble("min_cosine", 0), g.getDouble("retrieval_agreement", 0),
                    g.getInteger("retrieval_same", 0), g.getDouble("seconds", 0));
        }
    }

    public boolean isEmpty() {
        return runs.stream().allMatch(r -> r.layers().isEmpty()) && evaluations.isEmpty();
    }

    /**
     * Reads everything under {@code uri}. {@code modelOrder} (tensor names as the model lists them; may be empty)
     * orders the layers; names it does not hold follow in {@link #NATURAL} order. Throws {@link BadInputException}
     * only when {@code uri} does not exist: anything else missing or unreadable becomes a problem line.
     */
    public static RunData read(Configuration conf, String uri, List<String> modelOrder) {
        Path root = new Path(uri);
        try {
            FileSystem fs = root.getFileSystem(conf);
            if (!fs.exists(root)) {
                throw new BadInputException(uri + " does not exist (expected a quantize output, a pipeline or demo work folder,"
                        + " or an evaluation table)");
            }
            List<String> problems = new ArrayList<>();
            List<QuantizeRun> runs = new ArrayList<>();
            for (Path dir : runDirs(fs, root)) {
                runs.add(readRun(conf, fs, dir, modelOrder));
            }
            List<Evaluation> evals = new ArrayList<>();
            List<String> notes = new ArrayList<>();
            Path evalDir = new Path(root, "evaluation");
            if (fs.exists(evalDir)) {
                readEvaluations(conf, fs, evalDir, evals, problems, notes);
            } else if (runs.isEmpty()) {
                readEvaluations(conf, fs, root, evals, problems, notes);
            }
            if (runs.isEmpty() && evals.isEmpty()) {
                problems.add("nothing to report under " + uri + ": no quantize output (reports/, quantized/reports/ or"
                        + " quantized/RUN/reports/) and no evaluation table (evaluation/part-*.parquet)");
            }
            return new RunData(uri, runs, evals, problems, notes);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + uri + ": " + e.getMessage(), e);
        }
    }

    /** The quantize outputs under root: root itself, root/quantized, or root/quantized/* and root/* (demo runs). */
    private static List<Path> runDirs(FileSystem fs, Path root) throws IOException {
        if (isRun(fs, root)) {
            return List.of(root);
        }
        Path quantized = new Path(root, "quantized");
        if (isRun(fs, quantized)) {
            return List.of(quantized);
        }
        List<Path> out = new ArrayList<>();
        for (Path parent : new Path[] {quantized, root}) {
            if (fs.exists(parent) && fs.getFileStatus(parent).isDirectory()) {
                for (FileStatus s : fs.listStatus(parent)) {
                    if (s.isDirectory() && isRun(fs, s.getPath())) {
                        out.add(s.getPath());
                    }
                }
            }
        }
        out.sort(Comparator.comparing(Path::getName, NATURAL));
        return out;
    }

    private static boolean isRun(FileSystem fs, Path dir) throws IOException {
        for (String kind : new String[] {"reports", "shards", "rows"}) {
            if (fs.exists(new Path(dir, kind))) {
                return true;
            }
        }
        return false;
    }

    private static QuantizeRun readRun(Configuration conf, FileSystem fs, Path dir, List<String> modelOrder)
            throws IOException {
        String name = dir.getName();
        List<String> problems = new ArrayList<>();
        List<Layer> layers = new ArrayList<>();
        Map<String, String> params = new LinkedHashMap<>();
        TreeSet<String> committed = layerDirs(fs, new Path(dir, "reports"));
        for (String d : committed) {
            Path layerDir = new Path(new Path(dir, "reports"), d);
            List<Group> rows = new ArrayList<>();
            boolean unreadable = false;
            for (FileStatus f : parquetFiles(fs, layerDir)) {
                try {
                    Map<String, String> meta = readFile(conf, f, rows::add);
                    if (params.isEmpty() && meta.containsKey("babai.params")) {
                        params.putAll(params(meta.get("babai.params"), f.getPath().toString()));
                    }
                } catch (BadInputException e) {
                    problems.add(e.getMessage());
                    unreadable = true;
                }
            }
            if (rows.isEmpty() && !unreadable) {
                problems.add(layerDir + " holds no report row (no Parquet file): the layer is missing from this report");
            }
            for (Group g : rows) {
                try {
                    layers.add(Layer.of(g));
                } catch (RuntimeException e) {
                    problems.add(layerDir + ": not a layer report (" + e.getMessage() + "): the layer is missing from this report");
                }
            }
        }
        TreeSet<String> uncommitted = new TreeSet<>(NATURAL);
        uncommitted.addAll(layerDirs(fs, new Path(dir, "shards")));
        uncommitted.addAll(layerDirs(fs, new Path(dir, "rows")));
        uncommitted.removeAll(committed);
        for (String d : uncommitted) {
            problems.add(d + " under " + dir + " has shards or rows but no report: the layer is not committed (quantize was"
                    + " interrupted or is still running; rerun quantize to finish it) and is missing from this report");
        }
        if (committed.isEmpty()) {
            problems.add(dir + " has no committed layer (no reports/layer=*)");
        }
        layers.sort(modelOrder(modelOrder));
        return new QuantizeRun(name, dir.toString(), params, layers, problems);
    }

    /**
     * The evaluation rows, newest file first; an older row evaluating the same quantized output the same way (same
     * original, paragraphs and length: a rerun, e.g. of the demo, which adds its rows to the table) is left out, and
     * a note says how many were.
     */
    private static void readEvaluations(Configuration conf, FileSystem fs, Path dir, List<Evaluation> out, List<String> problems,
                                        List<String> notes) throws IOException {
        List<FileStatus> files = new ArrayList<>(parquetFiles(fs, dir).stream().filter(f -> f.getPath().getName().startsWith("part-")).toList());
        if (files.isEmpty() && dir.getName().equals("evaluation")) {
            problems.add(dir + " holds no evaluation row (no part-*.parquet)");
        }
        files.sort(Comparator.comparingLong(FileStatus::getModificationTime).reversed().thenComparing(f -> f.getPath().getName()));
        java.util.Set<List<Object>> seen = new java.util.HashSet<>();
        int older = 0;
        for (FileStatus f : files) {
            List<Group> rows = new ArrayList<>();
            try {
                readFile(conf, f, rows::add);
                for (Group g : rows) {
                    Evaluation e = Evaluation.of(g);
                    if (seen.add(List.of(e.quantized(), e.original(), e.paragraphs(), e.maxLen()))) {
                        out.add(e);
                    } else {
                        older++;
                    }
                }
            } catch (BadInputException e) {
                problems.add(e.getMessage());
            } catch (RuntimeException e) {
                problems.add(f.getPath() + ": not an evaluation row (" + e.getMessage() + "); left out");
            }
        }
        if (older > 0) {
            notes.add(older + " older evaluation row(s) of the same quantized outputs (earlier runs) left out: the newest of each is shown");
        }
    }

    private static TreeSet<String> layerDirs(FileSystem fs, Path kind) throws IOException {
        TreeSet<String> out = new TreeSet<>(NATURAL);
        if (fs.exists(kind)) {
            for (FileStatus s : fs.listStatus(kind, p -> p.getName().startsWith("layer="))) {
                out.add(s.getPath().getName());
            }
        }
        return out;
    }

    private static List<FileStatus> parquetFiles(FileSystem fs, Path dir) throws IOException {
        List<FileStatus> files = new ArrayList<>(Arrays.asList(fs.listStatus(dir, p -> p.getName().endsWith(".parquet"))));
        files.sort(Comparator.comparing(s -> s.getPath().getName()));
        return files;
    }

    /** Every row of one Parquet file; returns its footer key-value metadata. Unreadable: a message naming the file. */
    private static Map<String, String> readFile(Configuration conf, FileStatus f, java.util.function.Consumer<Group> visitor) {
        try {
            return QuantizedLayout.readFile(conf, f, visitor);
        } catch (BadInputException e) {
            throw new BadInputException(e.getMessage() + "; left out of the report", e.getCause());
        }
    }

    /** The top-level pairs of the run's {@code babai.params} JSON object, values as their JSON text (strings unquoted). */
    static Map<String, String> params(String json, String source) {
        Map<String, String> out = new LinkedHashMap<>();
        if (Json.parse(json, source, "babai.params", Json.Numbers.TEXT) instanceof Map<?, ?> m) {
            m.forEach((k, v) -> out.put(String.valueOf(k), v instanceof String || v instanceof Json.RawNumber || v == null
                    ? String.valueOf(v) : Json.compact(v)));
        }
        return out;
    }

    private static final Pattern CHUNK = Pattern.compile("\\d+|\\D+");

    /**
     * Names compared with their digit runs as numbers ({@code layer.2} before {@code layer.10}): the model order of
     * the usual tensor and ONNX node names when the model itself is not at hand.
     */
    public static final Comparator<String> NATURAL = (a, b) -> {
        Matcher ma = CHUNK.matcher(a);
        Matcher mb = CHUNK.matcher(b);
        while (ma.find() && mb.find()) {
            String x = ma.group();
            String y = mb.group();
            int c = Character.isDigit(x.charAt(0)) && Character.isDigit(y.charAt(0))
                    ? new java.math.BigInteger(x).compareTo(new java.math.BigInteger(y)) : x.compareTo(y);
            if (c != 0) {
                return c;
            }
        }
        return Integer.compare(a.length(), b.length()) != 0 ? Integer.compare(a.length(), b.length()) : a.compareTo(b);
    };

    /** The model's order where it lists the layer, then {@link #NATURAL}. */
    static Comparator<Layer> modelOrder(List<String> modelOrder) {
        Map<String, Integer> index = new LinkedHashMap<>();
        for (String n : modelOrder) {
            index.putIfAbsent(n, index.size());
        }
        return Comparator.<Layer>comparingInt(l -> index.getOrDefault(l.layer(), Integer.MAX_VALUE))
                .thenComparing(Layer::layer, NATURAL);
    }
}
