package org.babaiquant.gpu;

import org.babaiquant.core.DampedFactor;
import org.babaiquant.core.DenseKernels;

import java.util.stream.IntStream;

/**
 * {@link SweepKernels} in Java, operation for operation what solver.cu computes: the column step with separate
 * multiply, add, divide (the kernel's _rn intrinsics, as core's NearestPlaneSweep), {@code 1/Ũ_kk} once per column,
 * the accumulators of the launch's later columns advanced by one {@link Math#fma} per earlier column in column order
 * (the warp's shuffle-and-fma), the loss and bound summed in column order; the update with one {@link Math#fma} per
 * term in k order, then one addition (dgemm_add's accumulator). So the CUDA sweep on its exact update path must
 * reproduce this one's codes and losses exactly, and this one differs from core's GptqSolver only by the summation
 * order of the accumulators (rounding ties).
 */
final class HostSweep implements SweepKernels {
    private double[] ut;
    private int n;
    private int[] groupOf;
    private int bs;
    private boolean clip;
    private int maxq;
    private double[] w;
    private double[] a;
    private int m;
    private double[] scale;
    private double[] zero;
    private int groups;
    private byte[] codes;
    private double[] delta;
    private double[] loss;
    private double[] bound;
    private int[] clipped;

    @Override
    public void setFactor(double[] ut, int n, int[] groupOf, int bs, boolean clip, int maxq) {
        this.ut = ut;
        this.n = n;
        this.groupOf = groupOf;
        this.bs = bs;
        this.clip = clip;
        this.maxq = maxq;
    }

    @Override
    public Factor factor(double[] h, int n, int[] perm, double percdamp, int maxTries, int[] groupOf, int bs,
                         boolean clip, int maxq) {
        DampedFactor.Upper f = DampedFactor.upperInPlace(h.clone(), n, perm, percdamp, maxTries, DenseKernels.get());
        setFactor(f.ut(), n, groupOf, bs, clip, maxq);
        return new Factor(new DampedFactor.Damping(f.percdamp(), f.lambda(), f.attempts()), f.traceD());
    }

    @Override
    public void setRows(double[] wp, int m, double[] scale, double[] zero, int groups) {
        this.w = wp.clone();
        this.a = new double[m * n];
        this.m = m;
        this.scale = scale;
        this.zero = zero;
        this.groups = groups;
        this.codes = new byte[m * n * SweepKernels.codeBytes(clip)];
        this.delta = new double[m * bs];
        this.loss = new double[m];
        this.bound = new double[m];
        this.clipped = new int[m];
    }

    @Override
    public void strip(int i1, int c1, int width) {
        if (width < 1 || width > STRIP) {
            throw new IllegalArgumentException("strip width " + width);
        }
        IntStream.range(0, m).parallel().forEach(r -> {
            int row = r * n;
            double[] p = new double[width];
            System.arraycopy(a, row + c1, p, 0, width);
            for (int i = 0; i < width; i++) {
                int col = c1 + i;
                int g = groupOf[col];
                double s = scale[r * groups + g];
                double z = zero[r * groups + g];
                double d = ut[col * n + col];
                double r1 = 1.0 / d;
                double wk = w[row + col];
                double x = wk + p[i] * r1;
                double c = Math.rint(x / s) + z;
                if (clip && (c < 0 || c > maxq)) {
                    c = Math.min(Math.max(c, 0), maxq);
                    clipped[r]++;
                }
                double q = s * (c - z);
                double e = d * (x - q);
                loss[r] += e * e;
                bound[r] += 0.25 * s * s * (d * d);
                double dl = wk - q;
                putCode(row + col, (int) c);
                delta[r * bs + col - i1] = dl;
                int u0 = col * n + c1;
                for (int j = i + 1; j < width; j++) {
                    p[j] = Math.fma(dl, ut[u0 + j], p[j]);
                }
            }
        });
    }

    private void putCode(int i, int c) {
        if (clip) {
            codes[i] = (byte) c;
        } else {
            for (int b = 0; b < 4; b++) {
                codes[4 * i + b] = (byte) (c >>> 8 * b);
            }
        }
    }

    @Override
    public void update(int i1, int c1, int k, int j0, int j1) {
        int a0 = c1 - i1;
        IntStream.range(0, m).parallel().forEach(r -> {
            for (int j = j0; j < j1; j++) {
                double acc = 0;
                for (int t = 0; t < k; t++) {
                    acc = Math.fma(delta[r * bs + a0 + t], ut[(c1 + t) * n + j], acc);
                }
                a[r * n + j] += acc;
            }
        });
    }

    @Override
    public void download(byte[] codesOut, double[] lossOut, double[] boundOut, int[] clippedOut) {
        System.arraycopy(codes, 0, codesOut, 0, codes.length);
        System.arraycopy(loss, 0, lossOut, 0, m);
        System.arraycopy(bound, 0, boundOut, 0, m);
        System.arraycopy(clipped, 0, clippedOut, 0, m);
    }

    @Override
    public void close() {
        w = null;
        a = null;
    }
}
