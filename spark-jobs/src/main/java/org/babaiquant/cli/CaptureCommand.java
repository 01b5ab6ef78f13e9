package org.babaiquant.cli;

import org.apache.spark.sql.SparkSession;
import org.babaiquant.onnx.ActivationCapture;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.spark.HadoopConfs;
import org.babaiquant.spark.SparkSupport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code capture}: an ONNX encoder run on real text → the inputs of its linears in the Parquet activation layout. */
@Command(name = "capture", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run an ONNX encoder (default: the bundled all-MiniLM-L6-v2) with ONNX Runtime on text, one paragraph",
                "per line, and write the input of every linear layer (MatMul with a float weight initializer) as activation",
                "tiles in the Parquet activation layout, one site per input tensor (q/k/v share one), ready for `hessian`."})
public final class CaptureCommand implements Callable<Integer> {
    @Option(names = "--onnx", paramLabel = "MODEL.onnx", description = "the model (default: the bundled all-MiniLM-L6-v2)")
    Path onnx;

    @Option(names = "--tokenizer", paramLabel = "tokenizer.json", description = "HF tokenizer.json, BERT WordPiece (default: the bundled one)")
    Path tokenizer;

    @Option(names = "--text", required = true, arity = "1..*", paramLabel = "FILE", description = "paragraphs, one per line (.gz ok; blank lines skipped)")
    List<Path> text;

    @Option(names = "--out", required = true, paramLabel = "URI", description = "activation dataset root (any Hadoop URI)")
    String out;

    @Option(names = "--samples", defaultValue = "0", paramLabel = "N", description = "paragraphs to use, in file order (default: all)")
    int samples;

    @Option(names = "--max-len", defaultValue = "128", description = "tokens per paragraph at most, [CLS]/[SEP] included (default: ${DEFAULT-VALUE})")
    int maxLen;

    @Option(names = "--seed", defaultValue = "1234", description = "seed of the token positions drawn per paragraph (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--rows-per-seq", defaultValue = "0", paramLabel = "K", description = "token positions kept per paragraph, drawn without replacement (default: all)")
    int rowsPerSeq;

    @Option(names = "--overwrite", description = "replace sites that already exist under --out")
    boolean overwrite;

    @Option(names = "--partitions", paramLabel = "N", description = "Spark tasks (text shards) the paragraphs are split into, each running"
            + " its own ONNX Runtime session (default: Spark's default parallelism)")
    Integer partitions;

    @Mixin
    SparkMasterOption sparkMaster = new SparkMasterOption();

    @Option(names = "--no-spark", description = "run in this process without Spark (same rows, one part file per site)")
    boolean noSpark;

    @Override
    public Integer call() {
        Path model = onnx != null ? onnx : BundledMiniLm.onnx();
        Path tok = tokenizer != null ? tokenizer : BundledMiniLm.tokenizer();
        long t0 = System.nanoTime();
        ActivationCapture.Config cfg = new ActivationCapture.Config(model, tok, text, out, samples, maxLen, seed, rowsPerSeq, overwrite);
        ActivationCapture.Result r;
        if (noSpark) {
            r = ActivationCapture.run(HadoopConfs.fromEnvironmentAndSpark(), cfg, ConsoleProgress::accept);
        } else {
            SparkSession spark = SparkSupport.session(sparkMaster.master, "babai-quant capture");
            int n = partitions != null ? partitions : spark.sparkContext().defaultParallelism();
            if (n < 1) {
                throw new IllegalArgumentException("--partitions must be ≥ 1, got " + n);
            }
            r = ActivationCapture.run(spark, cfg, n, ConsoleProgress::accept);
        }
        for (ActivationCapture.Site s : r.sites()) {
            System.out.printf("site %-20s d=%-5d %7d tokens  tensor %s  feeds %s%n", s.name(), s.dim(), r.tokens().get(s.name()),
                    s.tensor(), String.join(", ", s.linears()));
        }
        System.out.printf("captured %d sites from %d paragraphs in %.1f s; wrote %s%n", r.sites().size(), r.sequences(),
                (System.nanoTime() - t0) / 1e9, out);
        return 0;
    }
}
