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
        if (this == MIN_PIVOT) {
            int[] pivots = minPivotSequence(h, lambda);
            int n = h.length;
            int[] p = new int[n];
            for (int i = 0; i < n; i++) {
                p[i] = pivots[n - 1 - i];
            }
            return p;
        }
        double[] diag = new double[h.length];
        for (int j = 0; j < diag.length; j++) {
            diag[j] = h[j][j];
        }
        return fromDiagonal(diag);
    }

    /** The order for a Hessian with diagonal {@code diag}; not for min-pivot, which needs the whole matrix. */
    int[] fromDiagonal(double[] diag) {
        int n = diag.length;
        switch (this) {
            case NATURAL:
                return IntStream.range(0, n).toArray();
            case REVERSE:
                return IntStream.range(0, n).map(i -> n - 1 - i).toArray();
            case ACT_ORDER:
                return IntStream.range(0, n).boxed()
                        .sorted(Comparator.comparingDouble((Integer j) -> -diag[j]))
                        .mapToInt(Integer::intValue).toArray();
            default:
                throw new IllegalArgumentException(this + " needs the whole Hessian");
        }
    }

    /**
     * Pivot sequence of the min-pivot Cholesky of {@code H + λI}: {@link DampedFactor#pivotedCholeskyLower}, the same
     * factorisation the solver reuses as its factor. Throws when a pivot is not positive: the caller passes a damped H
     * that already factorised.
     */
    static int[] minPivotSequence(double[][] h, double lambda) {
        int n = h.length;
        double[] a = new double[Dense.checkedSize(n, n)];
        IntStream.range(0, n).parallel().forEach(i -> {
            System.arraycopy(h[i], 0, a, i * n, i + 1);
            a[i * n + i] += lambda;
        });
        int[] seq = new int[n];
        if (!DampedFactor.pivotedCholeskyLower(a, n, seq, DenseKernels.get())) {
            throw new ArithmeticException("min-pivot: a Schur complement pivot of H + " + lambda + "·I is not positive");
        }
        return seq;
    }

    @Override
    public String toString() {
        return cliName;
    }

}
