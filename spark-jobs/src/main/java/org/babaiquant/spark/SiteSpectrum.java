package org.babaiquant.spark;

import dev.ludovic.netlib.lapack.LAPACK;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.netlib.util.intW;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The activation spectrum of a site: the eigenvalues of its Hessian H = Σ xᵀx (LAPACK {@code dsyevd} through netlib,
 * the binding Spark MLlib uses; its Java LAPACK when no native one is installed), beside the quantize report's
 * loss, bound and tr(D) of the layers that read the site. H's spread (λ_max/λ_min, and how few directions hold its
 * trace) is what conditions the GPTQ/Babai lattice: tr(D) sums the squared Gram–Schmidt lengths the bound scales.
 *
 * <p>Used by the Zeppelin note's spectrum paragraphs, which only call {@link #summary} and {@link #eigenvalues}. Each
 * site's Hessian is assembled and decomposed on the driver, one at a time (d² doubles; d = 5632 is 254 MiB).
 */
public final class SiteSpectrum {
    private SiteSpectrum() {
    }

    /** Eigenvalues in descending order, of a site's Hessian with {@code tokens} rows of activations. */
    public record Spectrum(String site, long tokens, double[] eigenvalues) {
        public double trace() {
            double s = 0;
            for (double v : eigenvalues) {
                s += v;
            }
            return s;
        }

        public double max() {
            return eigenvalues.length == 0 ? 0 : eigenvalues[0];
        }

        public double min() {
            return eigenvalues.length == 0 ? 0 : eigenvalues[eigenvalues.length - 1];
        }

        /** λ_max/λ_min; +∞ when H is singular (λ_min ≤ 0 in floating point). */
        public double condition() {
            return min() > 0 ? max() / min() : Double.POSITIVE_INFINITY;
        }

        /**
         * exp of the Shannon entropy of λ/tr(H) (Roy &amp; Vetterli's effective rank): d for a flat spectrum, 1 when one
         * direction holds all the energy. Negative round-off eigenvalues count as zero.
         */
        public double effectiveRank() {
            double t = 0;
            for (double v : eigenvalues) {
                t += Math.max(v, 0);
            }
            if (!(t > 0)) {
                return 0;
            }
            double h = 0;
            for (double v : eigenvalues) {
                double p = Math.max(v, 0) / t;
                if (p > 0) {
                    h -= p * Math.log(p);
                }
            }
            return Math.exp(h);
        }
    }

    /** Eigenvalues of a symmetric matrix (its lower triangle is read), descending. {@code h} is not modified. */
    public static double[] eigenvalues(double[][] h) {
        int n = h.length;
        if (n == 0) {
            return new double[0];
        }
        double[] a = new double[n * n];
        for (int i = 0; i < n; i++) {
            if (h[i].length != n) {
                throw new IllegalArgumentException("not square: row " + i + " has " + h[i].length + " entries, not " + n);
            }
            System.arraycopy(h[i], 0, a, i * n, n); // row-major = column-major of Hᵀ = H
        }
        double[] w = new double[n];
        LAPACK lapack = LAPACK.getInstance();
        intW info = new intW(0);
        double[] work = new double[1];
        int[] iwork = new int[1];
        lapack.dsyevd("N", "U", n, a, n, w, work, -1, iwork, -1, info); // workspace query
        work = new double[(int) work[0]];
        iwork = new int[Math.max(1, iwork[0])];
        lapack.dsyevd("N", "U", n, a, n, w, work, work.length, iwork, iwork.length, info);
        if (info.val != 0) {
            throw new ArithmeticException("dsyevd failed (info " + info.val + ", n=" + n + ")");
        }
        double[] desc = new double[n];
        for (int i = 0; i < n; i++) {
            desc[i] = w[n - 1 - i]; // dsyevd: ascending
        }
        return desc;
    }

    /** The spectrum of a committed Hessian artifact. */
    public static Spectrum read(org.apache.hadoop.conf.Configuration conf, String hessians, String site) {
        HessianArtifact.Loaded h = HessianArtifact.read(conf, hessians, site);
        return new Spectrum(site, h.meta().tokens(), eigenvalues(h.h()));
    }

    private static final StructType SUMMARY = new StructType()
            .add("site", DataTypes.StringType, false).add("dim", DataTypes.IntegerType, false)
            .add("tokens", DataTypes.LongType, false).add("trace_h", DataTypes.DoubleType, false)
            .add("lambda_max", DataTypes.DoubleType, false).add("lambda_min", DataTypes.DoubleType, false)
            .add("condition", DataTypes.DoubleType, false).add("effective_rank", DataTypes.DoubleType, false);

    private static final StructType EIGEN = new StructType()
            .add("site", DataTypes.StringType, false).add("k", DataTypes.IntegerType, false)
            .add("eigenvalue", DataTypes.DoubleType, false).add("share_of_trace", DataTypes.DoubleType, false);

    /**
     * One row per quantized layer: layer, site, loss, bound, loss_over_bound, trace_d (from the report under
     * {@code quantized}) beside its site's dim, tokens, trace_h, lambda_max, lambda_min, condition and
     * effective_rank (from the Hessians under {@code hessians}), ordered by layer.
     */
    public static Dataset<Row> summary(SparkSession spark, String hessians, String quantized) {
        Dataset<Row> reports = reports(spark, quantized);
        List<Row> rows = new ArrayList<>();
        for (String site : sites(reports)) {
            Spectrum s = read(spark.sparkContext().hadoopConfiguration(), hessians, site);
            rows.add(RowFactory.create(site, s.eigenvalues().length, s.tokens(), s.trace(), s.max(), s.min(),
                    s.condition(), s.effectiveRank()));
        }
        return reports.join(spark.createDataFrame(rows, SUMMARY), "site")
                .select("layer", "site", "loss", "bound", "loss_over_bound", "trace_d", "dim", "tokens", "trace_h",
                        "lambda_max", "lambda_min", "condition", "effective_rank")
                .orderBy("layer");
    }

    /** Every eigenvalue of every site the report under {@code quantized} names: site, k (0 = largest), eigenvalue, share_of_trace. */
    public static Dataset<Row> eigenvalues(SparkSession spark, String hessians, String quantized) {
        List<Row> rows = new ArrayList<>();
        for (String site : sites(reports(spark, quantized))) {
            Spectrum s = read(spark.sparkContext().hadoopConfiguration(), hessians, site);
            double t = s.trace();
            double[] ev = s.eigenvalues();
            for (int k = 0; k < ev.length; k++) {
                rows.add(RowFactory.create(site, k, ev[k], t > 0 ? ev[k] / t : 0.0));
            }
        }
        return spark.createDataFrame(rows, EIGEN).orderBy("site", "k");
    }

    private static Dataset<Row> reports(SparkSession spark, String quantized) {
        return spark.read().parquet(quantized + "/reports/layer=*")
                .select("layer", "site", "loss", "bound", "loss_over_bound", "trace_d");
    }

    private static List<String> sites(Dataset<Row> reports) {
        return Arrays.stream((String[]) reports.select("site").distinct().orderBy("site").as(
                org.apache.spark.sql.Encoders.STRING()).collect()).toList();
    }
}
