package org.babaiquant.core;

import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * The order in which GPTQ visits the input columns. By the paper's Theorem (GPTQ ≡ Babai), visiting columns in order
 * P is Babai's nearest-plane algorithm on the lattice basis ordered {@code reverse(P)} (Babai fixes the last basis
 * vector first), so the order only changes the basis, never the correctness; it changes the Gram–Schmidt lengths
 * {@code D_k = 1/U_kk²} and with them the error bound {@code ¼ Σ s_k² D_k}.
 */
public enum ColumnOrder {
    /** 0, 1, …, n−1: the reference GPTQ. */
    NATURAL("natural"),
    /** n−1, …, 0: back-to-front, i.e. Babai's own order on the natural basis. */
    REVERSE("reverse"),
    /** Descending diag(H) (GPTQ's {@code act_order}); ties keep the natural order. */
    ACT_ORDER("act-order"),
    /**
     * The paper's Algorithm 3: pivoted Cholesky of H that always pivots on the smallest Schur-complement diagonal;
     * GPTQ processes the reverse of the pivot sequence. Greedily minimises each D_k, hence tr(D).
     */
    MIN_PIVOT("min-pivot");

    public final String cliName;

    ColumnOrder(String cliName) {
        this.cliName = cliName;
    }

    public static ColumnOrder parse(String s) {
        for (ColumnOrder o : values()) {
            if (o.cliName.equals(s) || o.name().equalsIgnoreCase(s)) {
                return o;
            }
        }
        throw new IllegalArgumentException("unknown order '" + s + "': expected one of natural, reverse, act-order, min-pivot");
    }

    /**
     * The processing order P (P[i] = original column visited i-th) for the dead-column-fixed Hessian {@code h}
     * damped by {@code lambda} (only min-pivot depends on the damping).
     */
    public int[] permutation(double[][] h, double lambda) {
        int n = h.length;
        switch (this) {
            case NATURAL:
                return IntStream.range(0, n).toArray();
            case REVERSE:
                return IntStream.range(0, n).map(i -> n - 1 - i).toArray();
            case ACT_ORDER:
                return IntStream.range(0, n).boxed()
                        .sorted(Comparator.comparingDouble((Integer j) -> -h[j][j]))
                        .mapToInt(Integer::intValue).toArray();
            case MIN_PIVOT: {
                int[] pivots = minPivotSequence(h, lambda);
                int[] p = new int[n];
                for (int i = 0; i < n; i++) {
                    p[i] = pivots[n - 1 - i];
                }
                return p;
            }
            default:
                throw new AssertionError(this);
        }
    }

    /**
     * Pivot sequence of the min-pivot Cholesky (left-looking: only the Schur diagonal is kept up to date and one
     * column of L is formed per step, O(n²) memory for L). Throws when a pivot is not positive: the caller passes a
     * damped H that already factorised.
     */
    static int[] minPivotSequence(double[][] h, double lambda) {
        int n = h.length;
        double[] d = new double[n];
        for (int j = 0; j < n; j++) {
            d[j] = h[j][j] + lambda;
        }
        boolean[] done = new boolean[n];
        int[] seq = new int[n];
        double[][] lcols = new double[n][]; // lcols[t][j] = L[j][t] in original indexing
        for (int t = 0; t < n; t++) {
            int p = -1;
            for (int j = 0; j < n; j++) {
                if (!done[j] && (p < 0 || d[j] < d[p])) {
                    p = j;
                }
            }
            double piv = d[p];
            if (!(piv > 0)) {
                throw new ArithmeticException("min-pivot: Schur complement pivot " + piv + " at step " + t
                        + " (column " + p + ") is not positive");
            }
            double[] col = new double[n];
            double[] hp = h[p];
            for (int j = 0; j < n; j++) {
                col[j] = done[j] ? 0 : hp[j];
            }
            col[p] += lambda;
            for (int s = 0; s < t; s++) {
                double f = lcols[s][p];
                if (f != 0) {
                    double[] ls = lcols[s];
                    for (int j = 0; j < n; j++) {
                        col[j] -= f * ls[j];
                    }
                }
            }
            double root = Math.sqrt(piv);
            done[p] = true;
            for (int j = 0; j < n; j++) {
                if (done[j]) {
                    col[j] = 0;
                } else {
                    col[j] /= root;
                    d[j] -= col[j] * col[j];
                }
            }
            col[p] = root;
            lcols[t] = col;
            seq[t] = p;
        }
        return seq;
    }

    @Override
    public String toString() {
        return cliName;
    }

}
