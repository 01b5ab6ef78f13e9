package org.babaiquant.cli;

import org.babaiquant.io.SafeTensorsWriter;
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
import org.babaiquant.io.Npy;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.ActivationLayout;
import org.babaiquant.spark.HadoopConfs;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.QuantizedLayout;
import org.babaiquant.spark.SparkSupport;
import org.babaiquant.spark.StorageFailures;
import org.babaiquant.spark.Uris;
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
import java.util.TreeMap;
import java.util.concurrent.Callable;

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
        PipelinePlan plan = PipelinePlan.load(config, sets, stages, master);
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

    static void runCapture(SparkSession spark, PipelinePlan plan) {
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

    static void runImport(Configuration conf, PipelinePlan plan) {
        importInto(conf, plan.importOut, plan.importSources(plan.importSites, plan.importSafetensors), plan);
        if (plan.evalOut != null) {
            importInto(conf, plan.evalOut, plan.importSources(plan.evalSites, List.of()), plan);
        }
    }

    private static void importInto(Configuration conf, String out, Map<String, List<ActivationImporter.Source>> bySite, PipelinePlan plan) {
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

    static void runQuantize(SparkSession spark, Configuration conf, PipelinePlan plan) {
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

    static void runReport(PipelinePlan plan) {
        ReportCommand r = new ReportCommand();
        r.uri = plan.quantizeOut;
        r.html = plan.quantizeOut + "/report.html"; // the page (docs/REPORT.md) beside the quantize output's folders
        r.call();
    }

    static void runExport(Configuration conf, PipelinePlan plan) {
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
                    plan.exportGIdx, org.babaiquant.io.Commit.IfExists.REPLACE);
            System.out.println("exported " + s + "; self-check passed; wrote " + plan.exportOut);
            try (FSDataOutputStream o = fs.create(record, true)) {
                o.write((fp + "\n").getBytes(StandardCharsets.UTF_8));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot export to " + plan.exportOut + ": " + e.getMessage(), e);
        }
    }

    /** Builds the model safetensors from .npy tensors when the config asks for it (model.fromNpy), unless it holds them already. */
    static void ensureModel(Configuration conf, PipelinePlan plan) {
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
                SafeTensorsWriter.write(local, tensors, plan.modelDtype);
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
}
