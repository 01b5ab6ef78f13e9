package org.babaiquant.onnx;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;
import org.babaiquant.io.Commit;
import org.babaiquant.spark.HadoopCommit;
import org.babaiquant.spark.QuantizedLayout;
import org.babaiquant.spark.Uris;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The Parquet layout of {@code evaluate} results: the one place that knows it.
 *
 * <pre>
 * URI/part-UUID.parquet          one file per evaluation, one row each (evaluations may share a URI: the folder is
 *                                the table); committed as one file (HadoopCommit: a temporary renamed into place), so readers never see half
 *   original            string   the reference ONNX model
 *   quantized           string   the quantize output URI (--quantized) or the quantized ONNX file (--quantized-onnx)
 *   method              string   from the quantize reports (gptq, babai, rtn, …; "" when unknown)
 *   bits                int32    from the quantize reports (−1 when unknown or mixed)
 *   bits_per_weight     double   Σ bits_per_weight·rows·cols / Σ rows·cols over the quantized linears (NaN unknown)
 *   mean_loss_over_bound double  mean of the layers' loss/bound (NaN unknown)
 *   layers              int32    linears replaced by quantized values (−1 unknown)
 *   paragraphs          int32    held-out paragraphs evaluated
 *   max_len             int32    tokens per paragraph at most ([CLS] and [SEP] included)
 *   mean_cosine         double   mean over paragraphs of cos(e_original, e_quantized); e = L2-normalised mean-pooled
 *                                last_hidden_state
 *   min_cosine          double   the worst paragraph's cosine
 *   retrieval_agreement double   fraction (0..1) of paragraphs whose nearest other paragraph is unchanged
 *   retrieval_same      int32    that count
 *   seconds             double   wall time of the evaluation (both models' embeddings)
 *   format_version      int32    1
 * footer metadata: babai.format = evaluation, babai.version = 1
 * </pre>
 */
public final class EvaluationReport {
    public static final int VERSION = 1;
    public static final MessageType SCHEMA = MessageTypeParser.parseMessageType(
            "message evaluation {\n"
                    + "  required binary original (STRING);\n"
                    + "  required binary quantized (STRING);\n"
                    + "  required binary method (STRING);\n"
                    + "  required int32 bits;\n"
                    + "  required double bits_per_weight;\n"
                    + "  required double mean_loss_over_bound;\n"
                    + "  required int32 layers;\n"
                    + "  required int32 paragraphs;\n"
                    + "  required int32 max_len;\n"
                    + "  required double mean_cosine;\n"
                    + "  required double min_cosine;\n"
                    + "  required double retrieval_agreement;\n"
                    + "  required int32 retrieval_same;\n"
                    + "  required double seconds;\n"
                    + "  required int32 format_version;\n"
                    + "}");

    /** What the quantize output says about itself (its reports). */
    public record QuantizeSummary(String method, int bits, double bitsPerWeight, double meanLossOverBound, int layers) {
        public static final QuantizeSummary UNKNOWN = new QuantizeSummary("", -1, Double.NaN, Double.NaN, -1);
    }

    /** One evaluation row. */
    public record Row(String original, String quantized, QuantizeSummary summary, int maxLen, EmbeddingEvaluation.Result result) {}

    private EvaluationReport() {}

    /**
     * Summarises the reports of the named layers of a quantize output (read layer by layer: ONNX layer names hold
     * {@code /}, which makes nested {@code layer=} folders that {@link QuantizedLayout#readAll} does not list).
     */
    public static QuantizeSummary summarize(Configuration conf, String quantized, List<String> layers) {
        List<Group> reports = new ArrayList<>();
        for (String layer : layers) {
            QuantizedLayout.readDir(conf, QuantizedLayout.dir(quantized, "reports", layer), reports::add);
        }
        if (reports.isEmpty()) {
            return QuantizeSummary.UNKNOWN;
        }
        String method = reports.get(0).getString("method", 0);
        int bits = reports.get(0).getInteger("bits", 0);
        double weights = 0;
        double bpw = 0;
        double lob = 0;
        for (Group g : reports) {
            if (!method.equals(g.getString("method", 0))) {
                method = "mixed";
            }
            if (bits != g.getInteger("bits", 0)) {
                bits = -1;
            }
            double n = (double) g.getInteger("rows", 0) * g.getInteger("cols", 0);
            weights += n;
            bpw += g.getDouble("bits_per_weight", 0) * n;
            lob += g.getDouble("loss_over_bound", 0);
        }
        return new QuantizeSummary(method, bits, bpw / weights, lob / reports.size(), reports.size());
    }

    /** Writes one row as {@code URI/part-UUID.parquet}; returns the file. */
    public static Path write(Configuration conf, String uri, Row row) {
        Path dst = new Path(new Path(uri), "part-" + UUID.randomUUID() + ".parquet");
        EmbeddingEvaluation.Result r = row.result();
        QuantizeSummary s = row.summary();
        Group g = QuantizedLayout.groups(SCHEMA).newGroup()
                .append("original", row.original()).append("quantized", row.quantized()).append("method", s.method())
                .append("bits", s.bits()).append("bits_per_weight", s.bitsPerWeight())
                .append("mean_loss_over_bound", s.meanLossOverBound()).append("layers", s.layers())
                .append("paragraphs", r.paragraphs()).append("max_len", row.maxLen()).append("mean_cosine", r.meanCosine())
                .append("min_cosine", r.minCosine()).append("retrieval_agreement", r.retrievalAgreement())
                .append("retrieval_same", r.retrievalSame()).append("seconds", r.seconds()).append("format_version", VERSION);
        try (HadoopCommit c = HadoopCommit.file(conf, dst, Commit.IfExists.REFUSE)) {
            QuantizedLayout.write(conf, c.temp(), SCHEMA, Map.of("babai.format", "evaluation", "babai.version", String.valueOf(VERSION)),
                    List.of(g));
            c.commit();
            return c.target();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + Uris.redact(uri) + ": " + e.getMessage(), e);
        }
    }

    /** Every row under {@code uri} (files in name order). */
    public static List<Group> read(Configuration conf, String uri) {
        List<Group> rows = new ArrayList<>();
        QuantizedLayout.readDir(conf, new Path(uri), rows::add);
        return rows;
    }
}
