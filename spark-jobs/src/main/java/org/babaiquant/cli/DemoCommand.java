package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.method.MethodSpec;
import org.babaiquant.method.Methods;
import org.babaiquant.method.QuantMethod;
import org.babaiquant.nonclip.BitBudget;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.onnx.EmbeddingEvaluation;
import org.babaiquant.onnx.EvaluationReport;
import org.babaiquant.onnx.OnnxApply;
import org.babaiquant.onnx.Paragraphs;
import org.babaiquant.onnx.WordPieceTokenizer;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.QuantizeJob;
import org.babaiquant.spark.SparkSupport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Supplier;

/**
 * {@code demo}: README command one, the whole pipeline on the embedded default. all-MiniLM-L6-v2 (resolved through
 * Maven) is run on Brown-corpus paragraphs to capture the inputs of its 36 linears (Spark tasks over text shards),
 * Hessians are accumulated on Spark, every linear is quantized by each method at each budget (one Spark task per
 * layer), each result is written back into an ONNX model and compared with the original on held-out Jane Austen
 * paragraphs: one table, one Parquet row per run.
 *
 * <p>Everything lands under {@code --work}; a rerun reuses what is there (capture, Hessians and quantized layers by
 * fingerprint), so it only redoes the evaluation.
 */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"The main job on the embedded default: capture all-MiniLM-L6-v2's linear inputs on bundled Brown-corpus text,",
                "Hessians, quantize all 36 linears with RTN, GPTQ (act-order), Babai (min-pivot order), SSQR and HPTQ at about",
                "3.1 and 4.1 bits/weight, write each back into the ONNX model and evaluate it on held-out Austen paragraphs.",
                "Columns: bits/w from the bytes stored (GPTQ checkpoint layout for the grid methods, the file for SSQR/HPTQ);",
                "cos = cosine of the sentence embeddings of original and quantized model; retrieval = paragraphs whose nearest",
                "other paragraph is unchanged; loss/bound = mean over layers of Σ loss / Σ Babai bound; seconds = quantize stage."})
public final class DemoCommand implements Callable<Integer> {
    @Option(names = "--work", paramLabel = "DIR", defaultValue = "babai-demo", description = "where activations, Hessians, quantized layers"
            + " and the evaluation table go (default: ${DEFAULT-VALUE} in the current directory)")
    Path work;

    @Option(names = "--calib-paragraphs", defaultValue = "300", description = "Brown-corpus paragraphs to capture (of 300 bundled; default: ${DEFAULT-VALUE})")
    int calibParagraphs;

    @Option(names = "--rows-per-seq", defaultValue = "16", description = "token positions kept per calibration paragraph (default: ${DEFAULT-VALUE})")
    int rowsPerSeq;

    @Option(names = "--eval-paragraphs", defaultValue = "100", description = "held-out Austen paragraphs (of 100 bundled; default: ${DEFAULT-VALUE})")
    int evalParagraphs;

    @Option(names = "--bits", split = ",", defaultValue = "3,4", description = "budgets as grid bit widths: b-bit groups of 128 for RTN/GPTQ/Babai,"
            + " and the same bits per weight for SSQR and HPTQ (default: ${DEFAULT-VALUE})")
    List<Integer> bits;

    @Option(names = "--methods", split = ",", defaultValue = "rtn,gptq,babai,ssqr,hptq", description = "(default: ${DEFAULT-VALUE})")
    List<String> methods;

    @Mixin
    SparkMasterOption sparkMaster = new SparkMasterOption();

    @Option(names = "--keep-onnx", description = "keep the quantized ONNX models under --work/onnx (90 MB each; default: deleted after evaluation)")
    boolean keepOnnx;

    @Option(names = "--csv", paramLabel = "FILE", description = "also write the table as CSV")
    Path csv;

    /** One quantization run of the table. */
    record Run(String method, int bits, QuantizeJob.Config config) {
        String label() {
            return method + "-" + bits + "bit";
        }
    }

    /** One line of the table. */
    record Line(Run run, EvaluationReport.QuantizeSummary summary, EmbeddingEvaluation.Result eval, double quantizeSeconds) {}

    static final int GROUP_SIZE = 128;
    private static final int MAX_LEN = 128;

    @Override
    public Integer call() {
        for (String m : methods) {
            Methods.get(m); // unknown names: exit 2 listing the registry
        }
        for (int b : bits) {
            if (b < 2 || b > 8) {
                throw new IllegalArgumentException("--bits must be in 2..8, got " + b);
            }
        }
        if (calibParagraphs < 1 || evalParagraphs < 2 || rowsPerSeq < 1) {
            throw new IllegalArgumentException("need --calib-paragraphs ≥ 1, --eval-paragraphs ≥ 2 and --rows-per-seq ≥ 1");
        }
        long t0 = System.nanoTime();
        Path onnx = BundledMiniLm.onnx();
        Path tokenizer = BundledMiniLm.tokenizer();
        Path text = MiniLmLayer0.defaultDir().resolveSibling("text");
        Path root = work.toAbsolutePath().normalize();
        System.out.printf("babai-quant demo: all-MiniLM-L6-v2 (%s), %d Brown paragraphs × %d tokens to calibrate, %d Austen"
                        + " paragraphs held out; work folder %s%n", onnx.getFileName(), calibParagraphs, rowsPerSeq, evalParagraphs, root);
        SparkSession spark = SparkSupport.session(sparkMaster.master, "babai-quant demo");
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        int parallelism = spark.sparkContext().defaultParallelism();

        String act = root.resolve("activations").toString();
        ActivationCapture.Config capture = new ActivationCapture.Config(onnx, tokenizer, List.of(text.resolve("brown.calib.txt")), act,
                calibParagraphs, MAX_LEN, 1234, rowsPerSeq, true);
        stage("capture", () -> ActivationCapture.runIfChanged(spark, capture, parallelism, true, ConsoleProgress::accept));
        String hessians = root.resolve("hessians").toString();
        stage("hessian", () -> HessianJob.run(spark, new HessianJob.Config(act, hessians, List.of(), parallelism, 256, 512, false),
                ConsoleProgress::live));

        List<Run> runs = runs(onnx.toString(), hessians, root.resolve("quantized"));
        List<Double> quantSeconds = new ArrayList<>();
        int k = 0;
        for (Run r : runs) {
            String tag = String.format(Locale.ROOT, "quantize %d/%d %s", ++k, runs.size(), r.label());
            long q0 = System.nanoTime();
            stage(tag, () -> QuantizeJob.run(spark, r.config(), s -> ConsoleProgress.live("[" + tag + "] " + s.replaceFirst("^\\[quantize\\] ", ""))));
            quantSeconds.add((System.nanoTime() - q0) / 1e9);
        }

        WordPieceTokenizer tok = WordPieceTokenizer.read(tokenizer);
        List<String> heldOut = Paragraphs.read(List.of(text.resolve("austen-emma.eval.txt")), evalParagraphs);
        double[][] reference = stage("embed original", () -> EmbeddingEvaluation.embed(onnx, tok, heldOut, MAX_LEN));
        String evalUri = root.resolve("evaluation").toString();
        Path models = root.resolve("onnx");
        List<Line> lines = new ArrayList<>();
        k = 0;
        for (Run r : runs) {
            String tag = String.format(Locale.ROOT, "evaluate %d/%d %s", ++k, runs.size(), r.label());
            double qs = quantSeconds.get(k - 1);
            lines.add(stage(tag, () -> {
                Path model = models.resolve(r.label() + ".onnx");
                try {
                    Files.createDirectories(models);
                    long e0 = System.nanoTime();
                    OnnxApply.Applied applied = OnnxApply.apply(conf, onnx, r.config().out(), model);
                    EmbeddingEvaluation.Result res = EmbeddingEvaluation.compare(reference,
                            EmbeddingEvaluation.embed(model, tok, heldOut, MAX_LEN), (System.nanoTime() - e0) / 1e9);
                    EvaluationReport.QuantizeSummary sum = EvaluationReport.summarize(conf, r.config().out(), applied.replaced());
                    EvaluationReport.write(conf, evalUri, new EvaluationReport.Row(onnx.toString(), r.config().out(), sum, MAX_LEN, res));
                    if (!keepOnnx) {
                        Files.deleteIfExists(model);
                    }
                    return new Line(r, sum, res, qs);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }));
        }
        ConsoleProgress.clear();
        System.out.println();
        for (String line : table(lines)) {
            System.out.println(line);
        }
        System.out.printf("%n%d runs in %.0f s; evaluation rows: %s (Parquet), quantized layers: %s (see: bin/babai-quant report DIR)%n",
                runs.size(), (System.nanoTime() - t0) / 1e9, evalUri, root.resolve("quantized"));
        if (csv != null) {
            try {
                Files.write(csv, csv(lines), StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot write " + csv + ": " + e.getMessage(), e);
            }
            System.out.println("wrote " + csv);
        }
        return 0;
    }

    /**
     * The runs of the table, budget by budget: each method in its own order ({@link QuantMethod#preferredOrder}) on
     * b-bit asymmetric groups of 128; the methods with a format of their own get the bits per weight of the b-bit g128
     * checkpoint as their target.
     */
    List<Run> runs(String model, String hessians, Path out) {
        List<Run> runs = new ArrayList<>();
        for (int b : bits) {
            double target = targetBits(b);
            for (String m : methods) {
                QuantMethod method = Methods.get(m);
                MethodSpec spec = new MethodSpec(method.name(), new QuantGrid.Spec(b, GROUP_SIZE, false, false), method.preferredOrder(),
                        true, 0.01, 128, 6, 0.01, method.clips() ? 0 : target);
                runs.add(new Run(method.name(), b, QuantizeJob.Config.of(model, hessians, out.resolve(method.name() + "-" + b + "bit").toString(),
                        spec)));
            }
        }
        return runs;
    }

    /** Bits per weight of a b-bit, groups-of-128 GPTQ checkpoint of MiniLM's layer shapes (natural order). */
    static double targetBits(int b) {
        return BitBudget.checkpointBits(384, 384, b, GROUP_SIZE);
    }

    /** Runs one stage with a live line while it runs and a permanent line with its wall time after. */
    private static <T> T stage(String name, Supplier<T> body) {
        long t0 = System.nanoTime();
        ConsoleProgress.live("[" + name + "] ...");
        T result = body.get();
        ConsoleProgress.line(String.format(Locale.ROOT, "%-34s %6.1f s", name, (System.nanoTime() - t0) / 1e9));
        return result;
    }

    static List<String> table(List<Line> lines) {
        List<String> out = new ArrayList<>();
        out.add(String.format(Locale.ROOT, "%-6s %4s %7s %9s %9s %9s %10s %8s", "method", "bits", "bits/w", "mean cos", "min cos",
                "retrieval", "loss/bound", "seconds"));
        for (Line l : lines) {
            out.add(String.format(Locale.ROOT, "%-6s %4d %7.3f %9.4f %9.4f %8.0f%% %10.3f %8.1f", l.run().method(), l.run().bits(),
                    l.summary().bitsPerWeight(), l.eval().meanCosine(), l.eval().minCosine(), 100 * l.eval().retrievalAgreement(),
                    l.summary().meanLossOverBound(), l.quantizeSeconds()));
        }
        return out;
    }

    private static List<String> csv(List<Line> lines) {
        List<String> out = new ArrayList<>();
        out.add("method,bits,bits_per_weight,mean_cosine,min_cosine,retrieval_agreement,mean_loss_over_bound,quantize_seconds,eval_seconds,quantized");
        for (Line l : lines) {
            out.add(String.join(",", l.run().method(), String.valueOf(l.run().bits()), String.valueOf(l.summary().bitsPerWeight()),
                    String.valueOf(l.eval().meanCosine()), String.valueOf(l.eval().minCosine()),
                    String.valueOf(l.eval().retrievalAgreement()), String.valueOf(l.summary().meanLossOverBound()),
                    String.valueOf(l.quantizeSeconds()), String.valueOf(l.eval().seconds()), l.run().config().out()));
        }
        return out;
    }
}
