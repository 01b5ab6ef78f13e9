package org.babaiquant;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.Row;
import org.babaiquant.core.DenseKernels;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.SiteSpectrum;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link SiteSpectrum} against references that share nothing with LAPACK's eigensolver: a matrix built from a known
 * spectrum, the trace and the Cholesky log-determinant of the real MiniLM Hessians, NumPy's {@code eigvalsh} (when
 * python3 has NumPy), and the Zeppelin note's spectrum paragraphs run on the pipeline's own output.
 */
class SiteSpectrumTest {
    @TempDir
    Path dir;

    @Test
    void eigenvaluesOfAMatrixBuiltFromAKnownSpectrum() {
        int n = 97;
        Random rnd = new Random(19);
        double[] lambda = new double[n];
        for (int i = 0; i < n; i++) {
            lambda[i] = 1e3 * Math.pow(0.9, i) + (i == 5 ? 40 : 0); // a decaying spectrum with a bump
        }
        double[] v = new double[n];
        double vv = 0;
        for (int i = 0; i < n; i++) {
            v[i] = rnd.nextGaussian();
            vv += v[i] * v[i];
        }
        // H = Q diag(λ) Q with the Householder reflection Q = I − 2vvᵀ/vᵀv (orthogonal, symmetric)
        double[][] q = new double[n][n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                q[i][j] = (i == j ? 1 : 0) - 2 * v[i] * v[j] / vv;
            }
        }
        double[][] h = new double[n][n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < n; k++) {
                    s += q[i][k] * lambda[k] * q[k][j];
                }
                h[i][j] = s;
            }
        }
        double[][] copy = Arrays.stream(h).map(double[]::clone).toArray(double[][]::new);
        double[] got = SiteSpectrum.eigenvalues(h);
        double[] want = lambda.clone();
        Arrays.sort(want);
        for (int i = 0; i < n; i++) {
            assertEquals(want[n - 1 - i], got[i], 1e-11 * want[n - 1], "eigenvalue " + i);
        }
        assertTrue(Arrays.deepEquals(copy, h), "input untouched");
        SiteSpectrum.Spectrum s = new SiteSpectrum.Spectrum("x", 1, got);
        assertEquals(want[n - 1] / want[0], s.condition(), 1e-6 * s.condition());
        assertEquals(n, new SiteSpectrum.Spectrum("flat", 1, filled(n, 2.0)).effectiveRank(), 1e-9);
        double[] one = new double[n];
        one[0] = 5;
        assertEquals(1, new SiteSpectrum.Spectrum("rank1", 1, one).effectiveRank(), 1e-12);
        assertEquals(Double.POSITIVE_INFINITY, new SiteSpectrum.Spectrum("rank1", 1, one).condition());
    }

    /**
     * Each MiniLM site of the pipeline run: Σλ = tr(H), and Σ log(λ + δ) = 2 Σ log L_ii for the (pure-Java) Cholesky
     * factor L of H + δI (δ = 1e-3·tr(H)/d keeps the log-determinant finite when H is rank-deficient); and NumPy's
     * eigvalsh of the same H, when available.
     */
    @Test
    void realHessiansAgreeWithTraceCholeskyAndNumpy() throws Exception {
        Path work = PipelineTest.LocalRun.work();
        String hessians = work.resolve("hessians").toString();
        int checked = 0;
        for (String site : List.of("layer0_attn_in", "layer0_ffn_down_in")) {
            HessianArtifact.Loaded loaded = HessianArtifact.read(new Configuration(), hessians, site);
            double[][] h = loaded.h();
            int d = h.length;
            SiteSpectrum.Spectrum s = SiteSpectrum.read(new Configuration(), hessians, site);
            assertEquals(d, s.eigenvalues().length);
            assertEquals(loaded.meta().tokens(), s.tokens());
            double trace = 0;
            for (int i = 0; i < d; i++) {
                trace += h[i][i];
            }
            double lmax = s.max();
            assertEquals(trace, s.trace(), 1e-12 * d * lmax, site + " Σλ = tr(H)");
            for (int i = 1; i < d; i++) {
                assertTrue(s.eigenvalues()[i - 1] >= s.eigenvalues()[i], "descending");
            }
            assertTrue(s.min() > -1e-12 * d * lmax, site + ": H is positive semidefinite, λ_min = " + s.min());

            double delta = 1e-3 * trace / d;
            double[] a = new double[d * d];
            for (int i = 0; i < d; i++) {
                for (int j = 0; j < d; j++) {
                    a[i * d + j] = h[i][j] + (i == j ? delta : 0);
                }
            }
            assertTrue(DenseKernels.pureJava().choleskyLower(a, d), site + ": H + δI is positive definite");
            double logdetChol = 0;
            double logdetEig = 0;
            for (int i = 0; i < d; i++) {
                logdetChol += 2 * Math.log(a[i * d + i]);
                logdetEig += Math.log(s.eigenvalues()[i] + delta);
            }
            assertEquals(logdetChol, logdetEig, 1e-7 * Math.abs(logdetChol) + 1e-6, site + " log det(H + δI)");

            double[] numpy = numpyEigvalsh(h);
            if (numpy != null) {
                for (int i = 0; i < d; i++) {
                    assertEquals(numpy[d - 1 - i], s.eigenvalues()[i], 1e-10 * lmax, site + " eigenvalue " + i + " vs NumPy");
                }
            }
            checked++;
        }
        assertEquals(2, checked);
    }

    /** The note's two spectrum paragraphs call exactly these methods; run on the pipeline's output they fill their columns. */
    @Test
    void zeppelinSpectrumParagraphsOnThePipelineOutput() throws IOException {
        String note = Files.readString(RealData.repoRoot().resolve("notebooks/babai-quant-analysis.zpln"));
        @SuppressWarnings("unchecked")
        Map<String, Object> json = new ObjectMapper().readValue(note, Map.class);
        List<String> calls = new ArrayList<>();
        Pattern call = Pattern.compile("z\\.show\\(org\\.babaiquant\\.spark\\.SiteSpectrum\\.(summary|eigenvalues)\\(spark, hessians, out\\)\\)");
        for (Object p : (List<?>) json.get("paragraphs")) {
            String text = String.valueOf(((Map<?, ?>) p).get("text"));
            Matcher m = call.matcher(text);
            if (m.find()) {
                assertTrue(text.startsWith("%spark\n") && text.contains("z.noteTextbox(\"hessians\"")
                        && text.contains("z.noteTextbox(\"out\""), text);
                calls.add(m.group(1));
            }
        }
        assertEquals(List.of("summary", "eigenvalues"), calls);
        assertTrue(((Map<?, ?>) json.get("noteForms")).containsKey("hessians"));

        Path work = PipelineTest.LocalRun.work();
        String hessians = work.resolve("hessians").toString();
        String out = work.resolve("quantized").toString();
        var spark = SparkTestSession.get();
        List<Row> summary = SiteSpectrum.summary(spark, hessians, out).collectAsList();
        long layers = spark.read().parquet(out + "/reports/layer=*").count();
        assertEquals(layers, summary.size(), "one row per quantized layer");
        for (Row r : summary) {
            String site = r.getString(r.fieldIndex("site"));
            HessianArtifact.Loaded h = HessianArtifact.read(new Configuration(), hessians, site);
            double trace = 0;
            for (int i = 0; i < h.h().length; i++) {
                trace += h.h()[i][i];
            }
            assertEquals(h.h().length, r.getInt(r.fieldIndex("dim")));
            assertEquals(trace, r.getDouble(r.fieldIndex("trace_h")), 1e-9 * trace, site);
            assertTrue(r.getDouble(r.fieldIndex("lambda_max")) >= r.getDouble(r.fieldIndex("lambda_min")), r.toString());
            assertTrue(r.getDouble(r.fieldIndex("trace_d")) > 0 && r.getDouble(r.fieldIndex("loss_over_bound")) > 0, r.toString());
            double er = r.getDouble(r.fieldIndex("effective_rank"));
            assertTrue(er >= 1 && er <= h.h().length, r.toString());
        }
        List<Row> eig = SiteSpectrum.eigenvalues(spark, hessians, out).collectAsList();
        Map<String, Integer> dimOfSite = new java.util.TreeMap<>();
        for (Row r : summary) {
            dimOfSite.put(r.getString(r.fieldIndex("site")), r.getInt(r.fieldIndex("dim")));
        }
        long dims = dimOfSite.values().stream().mapToLong(Integer::longValue).sum();
        assertEquals(dims, eig.size(), "every eigenvalue of every site");
        double share = eig.stream().filter(r -> r.getString(0).equals(summary.get(0).getString(summary.get(0).fieldIndex("site"))))
                .mapToDouble(r -> r.getDouble(3)).sum();
        assertEquals(1.0, share, 1e-9, "shares of the trace sum to one");
    }

    private static double[] filled(int n, double v) {
        double[] a = new double[n];
        Arrays.fill(a, v);
        return a;
    }

    /** NumPy's eigvalsh (ascending) of h, or null when python3 or NumPy is missing. */
    private double[] numpyEigvalsh(double[][] h) throws Exception {
        Path in = dir.resolve("h.txt");
        Path outFile = dir.resolve("w.txt");
        StringBuilder sb = new StringBuilder();
        for (double[] row : h) {
            for (double x : row) {
                sb.append(Double.toString(x)).append(' ');
            }
            sb.append('\n');
        }
        Files.writeString(in, sb);
        Process p;
        try {
            p = new ProcessBuilder("python3", "-c", "import sys, numpy as np\n"
                    + "h = np.loadtxt(sys.argv[1])\n"
                    + "np.savetxt(sys.argv[2], np.linalg.eigvalsh(h), fmt='%.17g')\n", in.toString(), outFile.toString())
                    .redirectErrorStream(true).start();
        } catch (IOException e) {
            return null; // no python3
        }
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(300, TimeUnit.SECONDS));
        if (p.exitValue() != 0) {
            assertTrue(log.contains("No module named 'numpy'"), log);
            return null;
        }
        return Files.readAllLines(outFile).stream().mapToDouble(Double::parseDouble).toArray();
    }
}
