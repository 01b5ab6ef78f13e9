package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.BadInputException;
import org.babaiquant.io.Commit;
import org.babaiquant.io.Fingerprint;
import org.babaiquant.io.Names;
import org.babaiquant.spark.HadoopCommit;
import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.io.Npy;
import org.babaiquant.io.SafeTensors;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.ActivationLayout;
import org.babaiquant.spark.HadoopConfs;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.QuantizedLayout;
import org.babaiquant.spark.SparkSupport;
import org.babaiquant.spark.StorageFailures;
import org.babaiquant.spark.Uris;
import org.yaml.snakeyaml.DumperOptions;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code pipeline --config conf/pipeline.yaml}: import → hessian → quantize → report (→ export) from one YAML file.
 * Every stage skips work already done: import by an input fingerprint per site (see {@code import.ifExists}),
 * hessian and quantize by their own fingerprints, export by the fingerprints of the reports it was made from.
 * A failure to reach the storage endpoint (S3 down, network) exits with {@value #EXIT_RETRYABLE} and says to retry:
 * nothing partial is committed by any stage, so rerunning the same command finishes the work.
 */
@Command(name = "pipeline", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run import → hessian → quantize → report (→ export) from one YAML config (see conf/pipeline.yaml).",
                "Each stage skips work already done, so a rerun after a failure finishes the job. Exit status 75 means the",
                "storage endpoint was unreachable: nothing partial was committed, retry the same command."})
public final class PipelineCommand implements Callable<Integer> {
    /** sysexits.h EX_TEMPFAIL: a temporary failure, the caller (Airflow, a shell loop) should retry (every command). */
    public static final int EXIT_RETRYABLE = StorageFailures.EXIT_RETRYABLE;
    /** {@code model: bundled-minilm}: the all-MiniLM-L6-v2 ONNX file from the Maven artifact. */
    static final String BUNDLED_MINILM = "bundled-minilm";
    static final List<String> ALL_STAGES = List.of("capture", "import", "hessian", "quantize", "report", "export");

    @Option(names = "--config", required = true, paramLabel = "FILE", description = "pipeline YAML (see conf/pipeline.yaml)")
    java.nio.file.Path config;

    @Option(names = "--stages", split = ",", paramLabel = "a,b", description = "run only these stages (default: the config's stages)")
    List<String> stages;

    @Option(names = "--set", paramLabel = "KEY=VALUE", description = "override a config value, e.g. quantize.method=babai or model=s3a://b/m (repeatable; VALUE is YAML)")
    List<String> sets = new ArrayList<>();

    @Option(names = "--master", paramLabel = "URL", description = "Spark master when not under spark-submit (overrides spark.master)")
    String master;

    @Option(names = "--dry-run", description = "validate the config, print what each stage would do, run nothing")
    boolean dryRun;

    @Override
    public Integer call() {
        Plan plan = Plan.load(config, sets, stages, master);
        if (dryRun) {
            System.out.print(Uris.redact(plan.describe()));
            return 0;
        }
        String stage = "config";
        // the report stage reads through ReportCommand, which builds its own configuration: point it at the same file
        String previous = System.getProperty(HadoopConfs.FILE_PROPERTY);
        if (plan.hadoopConf != null) {
            System.setProperty(HadoopConfs.FILE_PROPERTY, plan.hadoopConf);
        }
        try {
            Configuration conf = HadoopConfs.fromEnvironmentAndSpark(plan.hadoopConf);
            SparkSession spark = null;
            for (String s : plan.stages) {
                stage = s;
                long t0 = System.nanoTime();
                System.out.println("== " + s + " ==");
                if ((s.equals("capture") || s.equals("hessian") || s.equals("quantize")) && spark == null) {
                    spark = SparkSupport.session(plan.master, "babai-quant pipeline");
                    HadoopConfs.applyTo(spark, plan.hadoopConf);
                    conf = HadoopConfs.fromEnvironmentAndSpark(plan.hadoopConf);
                }
                switch (s) {
                    case "capture" -> runCapture(spark, plan);
                    case "import" -> runImport(conf, plan);
                    case "hessian" -> HessianJob.run(spark, plan.hessianConfig(spark.sparkContext().defaultParallelism()), System.out::println);
                    case "quantize" -> runQuantize(spark, conf, plan);
                    case "report" -> runReport(plan);
                    case "export" -> runExport(conf, plan);
                    default -> throw new IllegalStateException(s);
                }
                System.out.printf(Locale.ROOT, "== %s done in %.1f s ==%n", s, (System.nanoTime() - t0) / 1e9);
            }
            return 0;
        } catch (RuntimeException e) {
            String why = StorageFailures.unreachable(e);
            if (why == null) {
                throw e;
            }
            System.err.println("babai-quant pipeline: error: stage " + stage + ": the storage endpoint is unreachable (" + why
                    + "). Nothing partial was committed; this failure is retryable: rerun the same command when the endpoint is "
                    + "back (finished work is skipped).");
            return EXIT_RETRYABLE;
        } finally {
            if (plan.hadoopConf != null) {
                if (previous == null) {
                    System.clearProperty(HadoopConfs.FILE_PROPERTY);
                } else {
                    System.setProperty(HadoopConfs.FILE_PROPERTY, previous);
                }
            }
        }
    }

    // ---------------------------------------------------------------- stages

    /** One input file of an import site, hashed so that the import can be skipped when nothing changed. */
    static String importFingerprint(String site, List<ActivationImporter.Source> sources, int tileRows) {
        Fingerprint fp = Fingerprint.sha256().text("babai-import v1|" + site + "|" + tileRows + "\n");
        try {
            for (ActivationImporter.Source s : sources) {
                fp.text(s.file().getFileName() + "|" + s.tensor() + "|" + Files.size(s.file()) + "\n");
                try (InputStream in = Files.newInputStream(s.file())) {
                    fp.stream(in);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + e.getMessage(), e);
        }
        return fp.hex();
    }

    static void runCapture(SparkSession spark, Plan plan) {
        int shards = plan.capturePartitions > 0 ? plan.capturePartitions : spark.sparkContext().defaultParallelism();
        try {
            Path out = new Path(plan.captureOut);
            if (plan.captureIfExists.equals("fail") && out.getFileSystem(spark.sparkContext().hadoopConfiguration()).exists(out)) {
                throw new BadInputException(plan.captureOut + " already exists and capture.ifExists is fail");
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + plan.captureOut + ": " + e.getMessage(), e);
        }
        ActivationCapture.runIfChanged(spark, plan.captureConfig(), shards, plan.captureIfExists.equals("overwrite"), System.out::println);
    }

    static void runImport(Configuration conf, Plan plan) {
        importInto(conf, plan.importOut, plan.importSources(plan.importSites, plan.importSafetensors), plan);
        if (plan.evalOut != null) {
            importInto(conf, plan.evalOut, plan.importSources(plan.evalSites, List.of()), plan);
        }
    }

    private static void importInto(Configuration conf, String out, Map<String, List<ActivationImporter.Source>> bySite, Plan plan) {
        try {
            FileSystem fs = new Path(out).getFileSystem(conf);
            List<ActivationImporter.Source> todo = new ArrayList<>();
            Map<String, String> fps = new LinkedHashMap<>();
            for (Map.Entry<String, List<ActivationImporter.Source>> e : bySite.entrySet()) {
                String site = e.getKey();
                Path dir = new Path(out, ActivationLayout.siteDir(site)); // checks the name before any path is made of it
                String fp = importFingerprint(site, e.getValue(), plan.tileRows);
                Path record = importRecord(out, site);
                if (fs.exists(dir)) {
                    String recorded = fs.exists(record) ? readString(fs, record).trim() : null;
                    if (plan.ifExists.equals("fail")) {
                        throw new BadInputException(dir + " already exists and import.ifExists is fail");
                    }
                    if (fp.equals(recorded)) {
                        System.out.printf("site %s: up to date (inputs fingerprint %s), skipped%n", site, fp.substring(0, 16));
                        continue;
                    }
                    if (!plan.ifExists.equals("overwrite")) {
                        throw new BadInputException(dir + " already exists with " + (recorded == null ? "unrecorded" : "different")
                                + " inputs: set import.ifExists: overwrite to replace it (or choose another import.out)");
                    }
                }
                fs.delete(record, false); // a stale record must never vouch for a site being replaced
                todo.addAll(e.getValue());
                fps.put(site, fp);
            }
            if (todo.isEmpty()) {
                return;
            }
            for (ActivationImporter.Imported i : new ActivationImporter(conf, plan.tileRows).run(todo, out, true)) {
                System.out.printf("site %s: %d tokens in %d tiles, d=%d, %s%n", i.site(), i.tokens(), i.tiles(), i.dim(), i.dtype());
                try (FSDataOutputStream o = fs.create(importRecord(out, i.site()), true)) {
                    o.write((fps.get(i.site()) + "\n").getBytes(StandardCharsets.UTF_8));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot import into " + out + ": " + e.getMessage(), e);
        }
    }

    /** Where the pipeline records the inputs fingerprint of an imported site ({@code _} paths are not datasets). */
    static Path importRecord(String out, String site) {
        return new Path(new Path(out, "_imports"), Names.site(site, "import.sites") + ".sha256");
    }

    static void runQuantize(SparkSession spark, Configuration conf, Plan plan) {
        ensureModel(conf, plan);
        List<QuantizeJob.Outcome> outcomes = QuantizeJob.run(spark, plan.quantizeConfig(), System.err::println);
        int skipped = 0;
        for (QuantizeJob.Outcome o : outcomes) {
            skipped += o.skipped() ? 1 : 0;
            System.out.printf(Locale.ROOT, "%-52s %s loss %.6g bound %.6g clipped %d%n", o.layer(),
                    o.skipped() ? "up to date" : String.format(Locale.ROOT, "%6.2fs", o.seconds()), o.loss(), o.bound(), o.clipped());
        }
        System.out.printf("%d layer(s), %d skipped as up to date; wrote %s%n", outcomes.size(), skipped, plan.quantizeOut);
    }

    static void runReport(Plan plan) {
        ReportCommand r = new ReportCommand();
        r.uri = plan.quantizeOut;
        r.call();
    }

    static void runExport(Configuration conf, Plan plan) {
        ensureModel(conf, plan);
        TreeMap<String, String> fps = new TreeMap<>();
        QuantizedLayout.readAll(conf, plan.quantizeOut, "reports", g -> fps.put(g.getString("layer", 0), g.getString("fingerprint", 0)));
        if (fps.isEmpty()) {
            throw new BadInputException("nothing to export: no committed layer under " + plan.quantizeOut + "/reports");
        }
        String fp = sha256("babai-export v1|" + plan.exportFormat + (plan.exportGIdx ? "+g_idx" : "") + "|" + plan.modelUri + "|" + plan.exportOut + "|" + fps);
        Path record = new Path(plan.quantizeOut, "_exported.sha256");
        try {
            FileSystem fs = record.getFileSystem(conf);
            if (fs.exists(record) && readString(fs, record).trim().equals(fp)
                    && fs.exists(new Path(plan.exportOut, org.babaiquant.spark.Exports.completeMarker(plan.exportFormat)))) {
                System.out.println("export " + plan.exportOut + ": up to date (" + fps.size() + " layers), skipped");
                return;
            }
            fs.delete(record, false);
            String s = org.babaiquant.spark.Exports.export(conf, plan.exportFormat, plan.quantizeOut, plan.modelUri, plan.exportOut,
                    plan.exportGIdx);
            System.out.println("exported " + s + "; self-check passed; wrote " + plan.exportOut);
            try (FSDataOutputStream o = fs.create(record, true)) {
                o.write((fp + "\n").getBytes(StandardCharsets.UTF_8));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot export to " + plan.exportOut + ": " + e.getMessage(), e);
        }
    }

    /** Builds the model safetensors from .npy tensors when the config asks for it (model.fromNpy), unless it holds them already. */
    static void ensureModel(Configuration conf, Plan plan) {
        if (plan.modelFromNpy.isEmpty()) {
            return;
        }
        try {
            java.nio.file.Path local = Files.createTempFile("babai-model-", ".safetensors");
            try {
                LinkedHashMap<String, double[][]> tensors = new LinkedHashMap<>();
                for (Map.Entry<String, String> e : plan.modelFromNpy.entrySet()) {
                    java.nio.file.Path f = java.nio.file.Path.of(e.getValue());
                    tensors.put(e.getKey(), Npy.readHeader(f).shape().length == 1 ? new double[][] {Npy.readVector(f)} : Npy.readMatrix(f));
                }
                SafeTensors.write(local, tensors, plan.modelDtype);
                byte[] want = Files.readAllBytes(local);
                Path dst = new Path(plan.modelUri);
                FileSystem fs = dst.getFileSystem(conf);
                if (fs.exists(dst) && fs.getFileStatus(dst).getLen() == want.length) {
                    byte[] have = new byte[want.length];
                    try (FSDataInputStream in = fs.open(dst)) {
                        in.readFully(0, have);
                    }
                    if (java.util.Arrays.equals(have, want)) {
                        System.out.println("model " + plan.modelUri + ": up to date, skipped");
                        return;
                    }
                }
                try (HadoopCommit c = HadoopCommit.file(conf, dst, Commit.IfExists.REPLACE)) {
                    fs.copyFromLocalFile(false, true, new Path(local.toUri()), c.temp());
                    c.commit();
                }
                System.out.printf("model %s: %d tensors from .npy (%s)%n", plan.modelUri, tensors.size(), plan.modelDtype);
            } finally {
                Files.deleteIfExists(local);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the model " + plan.modelUri + ": " + e.getMessage(), e);
        }
    }

    private static String readString(FileSystem fs, Path p) throws IOException {
        try (FSDataInputStream in = fs.open(p)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    static String sha256(String s) {
        return Fingerprint.of(s);
    }

    // ---------------------------------------------------------------- the config

    /** The validated config: every key of conf/pipeline.yaml, with ${name} substituted and defaults applied. */
    static final class Plan {
        List<String> stages;
        String master;
        String hadoopConf;
        String modelUri;
        Map<String, String> modelFromNpy = new LinkedHashMap<>();
        String modelDtype;
        String captureOut;
        String captureOnnx;
        String captureTokenizer;
        List<String> captureText;
        int captureSamples;
        int captureMaxLen;
        long captureSeed;
        int captureRowsPerSeq;
        int capturePartitions;
        String captureIfExists;
        String importOut;
        int tileRows;
        String ifExists;
        Map<String, List<String>> importSites = new LinkedHashMap<>();
        List<Map<String, Object>> importSafetensors = new ArrayList<>();
        String evalOut;
        Map<String, List<String>> evalSites = new LinkedHashMap<>();
        String hessianOut;
        int partitions;
        int sliceTiles;
        int hessianBlockSize;
        List<String> hessianSites;
        boolean hessianForce;
        String quantizeOut;
        Map<String, Object> quantize;
        String exportOut;
        String exportFormat;
        boolean exportGIdx;
        private Map<String, Object> resolved;

        static Plan load(java.nio.file.Path file, List<String> sets, List<String> stagesOverride, String masterOverride) {
            Map<String, Object> root;
            try (InputStream in = Files.newInputStream(file)) {
                Object y = new Yaml(new SafeConstructor(new LoaderOptions())).load(in);
                if (!(y instanceof Map)) {
                    throw new BadInputException(file + ": a pipeline config is a YAML mapping (see conf/pipeline.yaml)");
                }
                root = deepCopy(y);
            } catch (IOException e) {
                throw new BadInputException("cannot read the pipeline config " + file + ": " + e.getMessage(), e);
            } catch (org.yaml.snakeyaml.error.YAMLException e) {
                throw new BadInputException(file + ": not valid YAML: " + e.getMessage(), e);
            }
            for (String s : sets) {
                int eq = s.indexOf('=');
                if (eq <= 0) {
                    throw new BadInputException("--set expects KEY=VALUE, got '" + s + "'");
                }
                put(root, s.substring(0, eq), new Yaml(new SafeConstructor(new LoaderOptions())).load(s.substring(eq + 1)));
            }
            Map<String, Object> vars = new TreeMap<>();
            root.forEach((k, v) -> {
                if (v instanceof String || v instanceof Number || v instanceof Boolean) {
                    vars.put(k, v);
                }
            });
            root = substitute(root, vars, file);
            Plan p = new Plan();
            p.resolved = root;
            p.fill(root, file, stagesOverride, masterOverride);
            return p;
        }

        @SuppressWarnings("unchecked")
        private static Map<String, Object> deepCopy(Object y) {
            Map<String, Object> m = new LinkedHashMap<>();
            ((Map<Object, Object>) y).forEach((k, v) -> m.put(String.valueOf(k), v instanceof Map ? deepCopy(v) : v));
            return m;
        }

        /** --set a.b.c=v: walks existing maps; a key of the last map may contain dots (tensor names) when given whole. */
        @SuppressWarnings("unchecked")
        private static void put(Map<String, Object> root, String key, Object value) {
            Map<String, Object> m = root;
            String rest = key;
            while (!m.containsKey(rest) && rest.contains(".")) {
                String head = rest.substring(0, rest.indexOf('.'));
                Object next = m.get(head);
                if (!(next instanceof Map)) {
                    if (next != null) {
                        break;
                    }
                    next = new LinkedHashMap<String, Object>();
                    m.put(head, next);
                }
                m = (Map<String, Object>) next;
                rest = rest.substring(head.length() + 1);
            }
            m.put(rest, value);
        }

        @SuppressWarnings("unchecked")
        private static <T> T substitute(T node, Map<String, Object> vars, java.nio.file.Path file) {
            if (node instanceof String s) {
                Matcher m = Pattern.compile("\\$\\{([A-Za-z0-9_.-]+)}").matcher(s);
                StringBuilder sb = new StringBuilder();
                while (m.find()) {
                    Object v = vars.get(m.group(1));
                    if (v == null) {
                        throw new BadInputException(file + ": ${" + m.group(1) + "} is not a top-level value of the config");
                    }
                    m.appendReplacement(sb, Matcher.quoteReplacement(String.valueOf(v)));
                }
                m.appendTail(sb);
                return (T) sb.toString();
            }
            if (node instanceof Map<?, ?> map) {
                Map<String, Object> out = new LinkedHashMap<>();
                map.forEach((k, v) -> out.put(String.valueOf(k), substitute(v, vars, file)));
                return (T) out;
            }
            if (node instanceof List<?> list) {
                List<Object> out = new ArrayList<>();
                list.forEach(v -> out.add(substitute(v, vars, file)));
                return (T) out;
            }
            return node;
        }

        private void fill(Map<String, Object> root, java.nio.file.Path file, List<String> stagesOverride, String masterOverride) {
            Section top = new Section(file, "", root, Set.of("work", "stages", "spark", "model", "capture", "import", "hessian", "quantize", "report", "export"));
            String work = top.str("work", null);
            stages = stagesOverride != null ? stagesOverride : top.strList("stages", ALL_STAGES);
            for (String s : stages) {
                if (!ALL_STAGES.contains(s)) {
                    throw new BadInputException(file + ": unknown stage '" + s + "' (stages: " + ALL_STAGES + ")");
                }
            }
            stages = ALL_STAGES.stream().filter(stages::contains).toList(); // always in pipeline order

            Section spark = top.section("spark", Set.of("master", "hadoopConf"));
            master = masterOverride != null ? masterOverride : spark.str("master", null);
            hadoopConf = spark.str("hadoopConf", null);

            Object model = root.get("model");
            if (model instanceof String s) {
                modelUri = s.equals(BUNDLED_MINILM) ? BundledMiniLm.onnx().toString() : s;
                modelDtype = "F32";
            } else {
                Section ms = top.section("model", Set.of("uri", "fromNpy", "dtype"));
                modelUri = ms.str("uri", work == null ? null : work + "/model/model.safetensors");
                ms.strMap("fromNpy").forEach((k, v) -> modelFromNpy.put(k, String.valueOf(v)));
                modelDtype = ms.str("dtype", "F32");
                if (!List.of("F32", "F16", "BF16").contains(modelDtype)) {
                    throw new BadInputException(file + ": model.dtype must be F32, F16 or BF16, got " + modelDtype);
                }
            }

            Section im = top.section("import", Set.of("out", "tileRows", "ifExists", "sites", "safetensors", "eval"));
            importOut = im.str("out", work == null ? null : work + "/activations");
            Section ca = top.section("capture", Set.of("out", "onnx", "tokenizer", "text", "samples", "maxLen", "seed", "rowsPerSeq",
                    "partitions", "ifExists"));
            captureText = ca.strList("text", List.of());
            captureOut = ca.str("out", importOut);
            captureOnnx = ca.str("onnx", modelUri != null && modelUri.endsWith(".onnx") ? modelUri : null);
            captureTokenizer = ca.str("tokenizer", null);
            captureSamples = ca.integer("samples", 0);
            captureMaxLen = ca.integer("maxLen", 128);
            captureSeed = ca.integer("seed", 1234);
            captureRowsPerSeq = ca.integer("rowsPerSeq", 0);
            capturePartitions = ca.integer("partitions", 0);
            captureIfExists = ca.str("ifExists", "skip");
            if (!List.of("skip", "overwrite", "fail").contains(captureIfExists)) {
                throw new BadInputException(file + ": capture.ifExists must be skip, overwrite or fail, got " + captureIfExists);
            }
            tileRows = im.integer("tileRows", 64);
            ifExists = im.str("ifExists", "skip");
            if (!List.of("skip", "overwrite", "fail").contains(ifExists)) {
                throw new BadInputException(file + ": import.ifExists must be skip, overwrite or fail, got " + ifExists);
            }
            im.strMap("sites").forEach((k, v) -> importSites.put(k, asList(v)));
            for (Object o : im.list("safetensors")) {
                if (!(o instanceof Map)) {
                    throw new BadInputException(file + ": import.safetensors entries are {file: F, siteMap: {REGEX: SITE}}");
                }
                importSafetensors.add(deepCopy(o));
            }
            Section ev = im.section("eval", Set.of("out", "sites"));
            ev.strMap("sites").forEach((k, v) -> evalSites.put(k, asList(v)));
            evalOut = evalSites.isEmpty() ? null : ev.str("out", work == null ? null : work + "/eval-activations");

            Section he = top.section("hessian", Set.of("out", "partitions", "sliceTiles", "blockSize", "sites", "force"));
            hessianOut = he.str("out", work == null ? null : work + "/hessians");
            partitions = he.integer("partitions", 0);
            sliceTiles = he.integer("sliceTiles", 256);
            hessianBlockSize = he.integer("blockSize", 512);
            hessianSites = he.strList("sites", List.of());
            hessianForce = he.bool("force", false);

            Section q = top.section("quantize", Set.of("out", "method", "bits", "groupSize", "sym", "mse", "order", "clip", "damp",
                    "blockSize", "layers", "map", "mapFile", "evalActivations", "evalTokens", "backend", "force", "starved"));
            quantizeOut = q.str("out", work == null ? null : work + "/quantized");
            quantize = q.values;
            top.section("report", Set.of());
            Section ex = top.section("export", Set.of("out", "format", "gIdx"));
            exportOut = ex.str("out", work == null ? null : work + "/gptq");
            exportFormat = ex.str("format", "gptq");
            exportGIdx = ex.bool("gIdx", false);
            if (!org.babaiquant.spark.Exports.FORMATS.contains(exportFormat)) {
                throw new BadInputException(file + ": export.format must be one of " + org.babaiquant.spark.Exports.FORMATS + ", got " + exportFormat);
            }

            for (String s : stages) {
                switch (s) {
                    case "capture" -> {
                        need(file, "capture.out", captureOut);
                        if (captureText.isEmpty()) {
                            throw new BadInputException(file + ": the capture stage needs capture.text (paragraph files)");
                        }
                        captureConfig(); // validates files and options
                    }
                    case "import" -> {
                        need(file, "import.out", importOut);
                        if (importSites.isEmpty() && importSafetensors.isEmpty()) {
                            throw new BadInputException(file + ": the import stage needs import.sites or import.safetensors");
                        }
                        importSources(importSites, importSafetensors); // validates files and rules
                        importSources(evalSites, List.of());
                    }
                    case "hessian" -> {
                        need(file, captureText.isEmpty() ? "import.out" : "capture.out", activations());
                        need(file, "hessian.out", hessianOut);
                        hessianConfig(1);
                    }
                    case "quantize" -> {
                        need(file, "model", modelUri);
                        need(file, "hessian.out", hessianOut);
                        need(file, "quantize.out", quantizeOut);
                        quantizeConfig();
                    }
                    case "report" -> need(file, "quantize.out", quantizeOut);
                    case "export" -> {
                        need(file, "model", modelUri);
                        need(file, "export.out", exportOut);
                        need(file, "quantize.out", quantizeOut);
                    }
                    default -> throw new IllegalStateException(s);
                }
            }
        }

        private static void need(java.nio.file.Path file, String key, String v) {
            if (v == null || v.isBlank()) {
                throw new BadInputException(file + ": " + key + " is required (or set work: to derive it)");
            }
        }

        private static List<String> asList(Object v) {
            if (v instanceof List<?> l) {
                return l.stream().map(String::valueOf).toList();
            }
            return List.of(String.valueOf(v));
        }

        Map<String, List<ActivationImporter.Source>> importSources(Map<String, List<String>> sites, List<Map<String, Object>> safetensors) {
            Map<String, List<ActivationImporter.Source>> bySite = new LinkedHashMap<>();
            sites.forEach((site, files) -> {
                for (String f : files) {
                    java.nio.file.Path p = java.nio.file.Path.of(f);
                    if (!Files.isRegularFile(p)) {
                        throw new BadInputException("import: no such file for site " + site + ": " + p.toAbsolutePath()
                                + " (import reads local files; relative paths are against the current directory)");
                    }
                    bySite.computeIfAbsent(site, k -> new ArrayList<>()).add(new ActivationImporter.Source(site, p, null));
                }
            });
            for (Map<String, Object> st : safetensors) {
                Map<String, String> rules = new LinkedHashMap<>();
                if (!(st.get("siteMap") instanceof Map<?, ?> sm) || st.get("file") == null) {
                    throw new BadInputException("import.safetensors entries are {file: F, siteMap: {REGEX: SITE}}, got " + st);
                }
                sm.forEach((k, v) -> rules.put(String.valueOf(k), String.valueOf(v)));
                for (ActivationImporter.Source s : ActivationImporter.safetensorsSources(java.nio.file.Path.of(String.valueOf(st.get("file"))), rules)) {
                    bySite.computeIfAbsent(s.site(), k -> new ArrayList<>()).add(s);
                }
            }
            return bySite;
        }

        /** What the Hessian stage reads: capture.out when the config has a capture section, else import.out. */
        String activations() {
            return captureText.isEmpty() ? importOut : captureOut;
        }

        ActivationCapture.Config captureConfig() {
            List<java.nio.file.Path> text = new ArrayList<>();
            for (String t : captureText) {
                java.nio.file.Path p = java.nio.file.Path.of(t);
                if (!Files.isRegularFile(p)) {
                    throw new BadInputException("capture: no such text file: " + p.toAbsolutePath()
                            + " (relative paths are against the current directory)");
                }
                text.add(p);
            }
            java.nio.file.Path onnx = captureOnnx == null ? BundledMiniLm.onnx() : java.nio.file.Path.of(captureOnnx);
            java.nio.file.Path tok = captureTokenizer == null ? BundledMiniLm.tokenizer() : java.nio.file.Path.of(captureTokenizer);
            for (java.nio.file.Path f : List.of(onnx, tok)) {
                if (!Files.isRegularFile(f)) {
                    throw new BadInputException("capture: no such file: " + f.toAbsolutePath() + " (capture reads a local ONNX model and tokenizer)");
                }
            }
            return new ActivationCapture.Config(onnx, tok, text, captureOut, captureSamples, captureMaxLen, captureSeed,
                    captureRowsPerSeq, false);
        }

        HessianJob.Config hessianConfig(int defaultPartitions) {
            return new HessianJob.Config(activations(), hessianOut, hessianSites, partitions > 0 ? partitions : defaultPartitions, sliceTiles,
                    hessianBlockSize, hessianForce);
        }

        QuantizeJob.Config quantizeConfig() {
            Section q = new Section(null, "quantize.", quantize, quantize.keySet());
            int bits = q.integer("bits", 4);
            int groupSize = q.integer("groupSize", 128);
            new QuantGrid.Spec(bits, groupSize, false, false); // validates early
            String backend = q.str("backend", "auto");
            if (!List.of("auto", "cpu", "cuda").contains(backend)) {
                throw new BadInputException("quantize.backend must be auto, cpu or cuda, got " + backend);
            }
            String evalActivations = q.str("evalActivations", evalOut);
            MethodSpec spec = new MethodSpec(q.str("method", "gptq"), new QuantGrid.Spec(bits, groupSize, q.bool("sym", false),
                    q.bool("mse", false)), ColumnOrder.parse(q.str("order", "act-order")), q.bool("clip", true), q.dbl("damp", 0.01),
                    q.integer("blockSize", 128), 6, 0.01, 0);
            return new QuantizeJob.Config(modelUri, hessianOut, quantizeOut, spec, q.str("layers", null), q.strList("map", List.of()),
                    q.str("mapFile", null), evalActivations, q.integer("evalTokens", 2048), backend, 0, q.bool("force", false),
                    org.babaiquant.core.StarvedExperts.Rule.parse(q.str("starved", "damp")));
        }

        String describe() {
            DumperOptions o = new DumperOptions();
            o.setDefaultFlowStyle(DumperOptions.FlowStyle.BLOCK);
            StringBuilder sb = new StringBuilder("# resolved pipeline config\n").append(new Yaml(o).dump(redacted(resolved)));
            sb.append("# stages: ").append(String.join(" → ", stages)).append('\n');
            for (String s : stages) {
                sb.append("# ").append(switch (s) {
                    case "import" -> "import " + (importSites.size() + importSafetensors.size()) + " site source group(s) into " + importOut
                            + (evalOut == null ? "" : " and " + evalSites.size() + " held-out site(s) into " + evalOut)
                            + " (existing sites: " + ifExists + ")";
                    case "capture" -> "capture " + (captureOnnx == null ? "the bundled all-MiniLM-L6-v2" : captureOnnx) + " on "
                            + captureText + " → " + captureOut + " (existing activations: " + captureIfExists + ")";
                    case "hessian" -> "hessian " + activations() + " → " + hessianOut;
                    case "quantize" -> "quantize " + modelUri + " with " + quantizeConfig().methodName() + " → " + quantizeOut;
                    case "report" -> "report " + quantizeOut;
                    case "export" -> "export " + quantizeOut + " → " + exportOut + " (" + exportFormat + ")";
                    default -> s;
                }).append('\n');
            }
            if (hadoopConf != null && Files.isRegularFile(java.nio.file.Path.of(hadoopConf))) {
                sb.append("# Hadoop settings from ").append(hadoopConf).append(" (sensitive values redacted):\n");
                for (String line : HadoopConfs.describe(HadoopConfs.settings(hadoopConf)).split("\n")) {
                    sb.append("#   ").append(line).append('\n');
                }
            } else if (hadoopConf != null) {
                sb.append("# Hadoop settings file ").append(hadoopConf).append(" is not on this machine (needed where the stages run)\n");
            }
            return sb.toString();
        }
    }

    /** The config as it may be printed: values of sensitive keys ({@link HadoopConfs#sensitive}) replaced, at any depth. */
    static Object redacted(Object v) {
        if (v instanceof Map<?, ?> m) {
            Map<Object, Object> out = new LinkedHashMap<>();
            m.forEach((k, x) -> out.put(k, HadoopConfs.sensitive(String.valueOf(k)) ? "<redacted>" : redacted(x)));
            return out;
        }
        if (v instanceof List<?> l) {
            return l.stream().map(PipelineCommand::redacted).toList();
        }
        return v;
    }

    /** A mapping of the config with typed getters; unknown keys are an error (a typo must not be silently ignored). */
    static final class Section {
        final java.nio.file.Path file;
        final String prefix;
        final Map<String, Object> values;

        @SuppressWarnings("unchecked")
        Section(java.nio.file.Path file, String prefix, Map<String, Object> values, Set<String> allowed) {
            this.file = file;
            this.prefix = prefix;
            this.values = values == null ? Map.of() : values;
            for (String k : this.values.keySet()) {
                if (!allowed.contains(k)) {
                    throw new BadInputException(where() + "unknown key '" + prefix + k + "' (known: " + new java.util.TreeSet<>(allowed) + ")");
                }
            }
        }

        private String where() {
            return file == null ? "pipeline config: " : file + ": ";
        }

        @SuppressWarnings("unchecked")
        Section section(String key, Set<String> allowed) {
            Object v = values.get(key);
            if (v != null && !(v instanceof Map)) {
                throw new BadInputException(where() + prefix + key + " must be a mapping");
            }
            return new Section(file, prefix + key + ".", (Map<String, Object>) v, allowed);
        }

        String str(String key, String def) {
            Object v = values.get(key);
            return v == null ? def : String.valueOf(v);
        }

        int integer(String key, int def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof Integer i) {
                return i;
            }
            throw new BadInputException(where() + prefix + key + " must be an integer, got " + v);
        }

        double dbl(String key, double def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof Number n) {
                return n.doubleValue();
            }
            throw new BadInputException(where() + prefix + key + " must be a number, got " + v);
        }

        boolean bool(String key, boolean def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof Boolean b) {
                return b;
            }
            throw new BadInputException(where() + prefix + key + " must be true or false, got " + v);
        }

        List<Object> list(String key) {
            Object v = values.get(key);
            if (v == null) {
                return List.of();
            }
            if (v instanceof List<?> l) {
                return new ArrayList<>(l);
            }
            throw new BadInputException(where() + prefix + key + " must be a list");
        }

        List<String> strList(String key, List<String> def) {
            Object v = values.get(key);
            if (v == null) {
                return def;
            }
            if (v instanceof List<?> l) {
                return l.stream().map(String::valueOf).toList();
            }
            return List.of(String.valueOf(v).split(","));
        }

        @SuppressWarnings("unchecked")
        Map<String, Object> strMap(String key) {
            Object v = values.get(key);
            if (v == null) {
                return Map.of();
            }
            if (v instanceof Map) {
                return (Map<String, Object>) v;
            }
            throw new BadInputException(where() + prefix + key + " must be a mapping");
        }
    }
}
