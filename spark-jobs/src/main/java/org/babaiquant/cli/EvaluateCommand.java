package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.onnx.BundledMiniLm;
import org.babaiquant.onnx.EmbeddingEvaluation;
import org.babaiquant.onnx.EvaluationReport;
import org.babaiquant.onnx.OnnxApply;
import org.babaiquant.onnx.Paragraphs;
import org.babaiquant.onnx.WordPieceTokenizer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code evaluate}: sentence-embedding fidelity of a quantized encoder against the original. */
@Command(name = "evaluate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Compare the mean-pooled, L2-normalised sentence embeddings of the original and the quantized model on",
                "held-out paragraphs: mean and worst cosine, and retrieval agreement (% of paragraphs whose nearest other",
                "paragraph is unchanged). Prints one line; --out also writes it as a Parquet row (EvaluationReport)."})
public final class EvaluateCommand implements Callable<Integer> {
    @Option(names = "--onnx", paramLabel = "ORIGINAL.onnx", description = "the original model (default: the bundled all-MiniLM-L6-v2)")
    Path onnx;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Quantized quantized;

    static final class Quantized {
        @Option(names = "--quantized", paramLabel = "URI", description = "a quantize output of ORIGINAL (applied in a temporary file)")
        String uri;

        @Option(names = "--quantized-onnx", paramLabel = "NEW.onnx", description = "a quantized model written by apply")
        Path onnx;
    }

    @Option(names = "--tokenizer", paramLabel = "tokenizer.json", description = "HF tokenizer.json, BERT WordPiece (default: the bundled one)")
    Path tokenizer;

    @Option(names = "--text", required = true, arity = "1..*", paramLabel = "FILE", description = "held-out paragraphs, one per line")
    List<Path> text;

    @Option(names = "--samples", defaultValue = "0", paramLabel = "N", description = "paragraphs to use, in file order (default: all)")
    int samples;

    @Option(names = "--max-len", defaultValue = "128", description = "(default: ${DEFAULT-VALUE})")
    int maxLen;

    @Option(names = "--out", paramLabel = "URI", description = "report dataset: one Parquet row is added")
    String out;

    @Override
    public Integer call() {
        Configuration conf = new Configuration();
        Path original = onnx != null ? onnx : BundledMiniLm.onnx();
        WordPieceTokenizer tok = WordPieceTokenizer.read(tokenizer != null ? tokenizer : BundledMiniLm.tokenizer());
        List<String> paragraphs = Paragraphs.read(text, samples);
        Path model = quantized.onnx;
        Path tmp = null;
        EvaluationReport.QuantizeSummary summary = EvaluationReport.QuantizeSummary.UNKNOWN;
        try {
            if (model == null) {
                tmp = Files.createTempFile("babai-evaluate-", ".onnx");
                OnnxApply.Applied a = OnnxApply.apply(conf, original, quantized.uri, tmp);
                model = tmp;
                EvaluationReport.QuantizeSummary s = EvaluationReport.summarize(conf, quantized.uri, a.replaced());
                summary = new EvaluationReport.QuantizeSummary(s.method(), s.bits(), s.bitsPerWeight(), s.meanLossOverBound(),
                        a.replaced().size());
            }
            EmbeddingEvaluation.Result r = EmbeddingEvaluation.run(original, model, tok, paragraphs, maxLen, System.err::println);
            System.out.printf(Locale.ROOT, "%d paragraphs: mean cosine %.6f, min cosine %.6f, retrieval agreement %.1f%% (%d/%d)%s, %.1f s%n",
                    r.paragraphs(), r.meanCosine(), r.minCosine(), 100 * r.retrievalAgreement(), r.retrievalSame(), r.paragraphs(),
                    summary.layers() < 0 ? "" : String.format(Locale.ROOT, "; %s %d-bit, %.3f bits/weight, %d linears, mean loss/bound %.4f",
                            summary.method(), summary.bits(), summary.bitsPerWeight(), summary.layers(), summary.meanLossOverBound()),
                    r.seconds());
            if (out != null) {
                String q = quantized.uri != null ? quantized.uri : quantized.onnx.toString();
                System.out.println("wrote " + EvaluationReport.write(conf, out,
                        new EvaluationReport.Row(original.toString(), q, summary, maxLen, r)));
            }
            return 0;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create a temporary model file: " + e.getMessage(), e);
        } finally {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // a leftover file in the temp folder
                }
            }
        }
    }
}
