package org.babaiquant.gpu;

import java.util.stream.IntStream;

/**
 * {@link SweepKernels} in Java, operation for operation what solver.cu computes: the strip with separate multiply and
 * subtract (the kernel's _rn intrinsics), the update with one {@link Math#fma} per term in k order then one subtraction
 * (the kernel's accumulator). So the CUDA sweep must reproduce this one's codes and losses exactly, and this one
 * differs from core's GptqSolver only by the summation order of the products (rounding ties).
 */
final class HostSweep implements SweepKernels {
    private double[] u;
    private int n;
    private int[] groupOf;
    private int bs;
    private boolean clip;
    private int maxq;
    private double[] w;
    private int m;
    private double[] scale;
    private double[] zero;
    private int groups;
    private int[] codes;
    private double[] e;
    private double[] loss;
    private double[] bound;
    private int[] clipped;

    @Override
    public void setFactor(double[] u, int n, int[] groupOf, int bs, boolean clip, int maxq) {
        this.u = u;
        this.n = n;
        this.groupOf = groupOf;
        this.bs = bs;
        this.clip = clip;
        this.maxq = maxq;
    }

    @Override
    public void setRows(double[] wp, int m, double[] scale, double[] zero, int groups) {
        this.w = wp.clone();
        this.m = m;
        this.scale = scale;
        this.zero = zero;
        this.groups = groups;
        this.codes = new int[m * n];
        this.e = new double[m * bs];
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
            long row = (long) r * n;
            double[] x = new double[width];
            for (int j = 0; j < width; j++) {
                x[j] = w[(int) row + c1 + j];
            }
            for (int i = 0; i < width; i++) {
                int g = groupOf[c1 + i];
                double s = scale[r * groups + g];
                double z = zero[r * groups + g];
                double d = u[(c1 + i) * n + c1 + i];
                double c = Math.rint(x[i] / s) + z;
                if (clip && (c < 0 || c > maxq)) {
                    c = Math.min(Math.max(c, 0), maxq);
                    clipped[r]++;
                }
                double q = s * (c - z);
                double err = (x[i] - q) / d;
                loss[r] += err * err;
                bound[r] += 0.25 * s * s / (d * d);
                w[(int) row + c1 + i] = q;
                codes[(int) row + c1 + i] = (int) c;
                e[r * bs + c1 - i1 + i] = err;
                for (int j = i + 1; j < width; j++) {
                    x[j] -= err * u[(c1 + i) * n + c1 + j];
                }
            }
        });
    }

    @Override
    public void update(int i1, int c1, int k, int j0, int j1) {
        int a0 = c1 - i1;
        IntStream.range(0, m).parallel().forEach(r -> {
            for (int j = j0; j < j1; j++) {
                double acc = 0;
                for (int t = 0; t < k; t++) {
                    acc = Math.fma(e[r * bs + a0 + t], u[(c1 + t) * n + j], acc);
                }
                w[r * n + j] -= acc;
            }
        });
    }

    @Override
    public void download(double[] wp, int[] codesOut, double[] lossOut, double[] boundOut, int[] clippedOut) {
        System.arraycopy(w, 0, wp, 0, m * n);
        System.arraycopy(codes, 0, codesOut, 0, m * n);
        System.arraycopy(loss, 0, lossOut, 0, m);
        System.arraycopy(bound, 0, boundOut, 0, m);
        System.arraycopy(clipped, 0, clippedOut, 0, m);
    }

    @Override
    public void close() {
        w = null;
    }
}
