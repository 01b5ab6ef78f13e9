package org.babaiquant.onnx;

import org.babaiquant.BadInputException;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;

/**
 * Embedding fidelity of a quantized encoder: sentence embeddings (last_hidden_state mean-pooled over the attention
 * mask, here all tokens of an unpadded sequence, then L2-normalised: the sentence-transformers recipe of
 * all-MiniLM-L6-v2) of the original and the quantized model on the same paragraphs, compared by
 * <ul>
 *   <li>cosine similarity per paragraph: mean and worst;</li>
 *   <li>retrieval agreement: the fraction of paragraphs whose nearest neighbour (largest cosine) among the other
 *       paragraphs is the same paragraph under both models.</li>
 * </ul>
 * Both models run with ONNX Runtime's default optimizations (as deployed).
 */
public final class EmbeddingEvaluation {
    public static final String HIDDEN = "last_hidden_state";

    /** The figures; {@code cosines[i]} is paragraph i's. */
    public record Result(int paragraphs, double meanCosine, double minCosine, double retrievalAgreement, int retrievalSame,
                         double[] cosines, double seconds) {}

    private EmbeddingEvaluation() {}

    public static Result run(Path original, Path quantized, WordPieceTokenizer tok, List<String> paragraphs, int maxLen,
                             Consumer<String> progress) {
        if (paragraphs.size() < 2) {
            throw new BadInputException("evaluation needs at least 2 paragraphs (retrieval compares each with the others), got "
                    + paragraphs.size());
        }
        long t0 = System.nanoTime();
        double[][] a = embed(original, tok, paragraphs, maxLen);
        progress.accept("[evaluate] embedded " + paragraphs.size() + " paragraphs with " + original.getFileName());
        double[][] b = embed(quantized, tok, paragraphs, maxLen);
        progress.accept("[evaluate] embedded " + paragraphs.size() + " paragraphs with " + quantized.getFileName());
        return compare(a, b, (System.nanoTime() - t0) / 1e9);
    }

    /**
     * The figures from embeddings already computed ({@link #embed}), e.g. the original's once for several quantized
     * models.
     */
    public static Result compare(double[][] a, double[][] b, double seconds) {
        if (a.length != b.length || a.length < 2) {
            throw new IllegalArgumentException("need the same ≥ 2 paragraphs embedded by both models, got " + a.length + " and " + b.length);
        }
        int n = a.length;
        double[] cos = new double[n];
        double sum = 0;
        double min = Double.POSITIVE_INFINITY;
        int same = 0;
        for (int i = 0; i < n; i++) {
            cos[i] = dot(a[i], b[i]);
            sum += cos[i];
            min = Math.min(min, cos[i]);
            if (nearest(a, i) == nearest(b, i)) {
                same++;
            }
        }
        return new Result(n, sum / n, min, (double) same / n, same, cos, seconds);
    }

    /** Unit-length mean-pooled embeddings [paragraphs][hidden]. */
    public static double[][] embed(Path model, WordPieceTokenizer tok, List<String> paragraphs, int maxLen) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(model);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + model + ": " + e.getMessage(), e);
        }
        double[][] out = new double[paragraphs.size()][];
        try (OnnxRunner r = new OnnxRunner(model.toString(), bytes, true)) {
            for (int p = 0; p < paragraphs.size(); p++) {
                int[] ids = tok.encode(paragraphs.get(p), maxLen);
                float[] h = r.run(ids, Set.of(HIDDEN)).get(HIDDEN);
                int t = ids.length;
                int d = h.length / t;
                double[] e = new double[d];
                for (int i = 0; i < t; i++) {
                    for (int k = 0; k < d; k++) {
                        e[k] += h[i * d + k];
                    }
                }
                double norm = 0;
                for (int k = 0; k < d; k++) {
                    e[k] /= t;
                    norm += e[k] * e[k];
                }
                norm = Math.sqrt(norm);
                for (int k = 0; k < d; k++) {
                    e[k] /= norm;
                }
                out[p] = e;
            }
        }
        return out;
    }

    private static double dot(double[] x, double[] y) {
        double s = 0;
        for (int k = 0; k < x.length; k++) {
            s += x[k] * y[k];
        }
        return s;
    }

    /** Index of the other embedding closest to e[i] (ties: the smaller index). */
    private static int nearest(double[][] e, int i) {
        int best = -1;
        double bestCos = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < e.length; j++) {
            if (j != i) {
                double c = dot(e[i], e[j]);
                if (c > bestCos) {
                    bestCos = c;
                    best = j;
                }
            }
        }
        return best;
    }
}
