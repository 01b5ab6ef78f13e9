package org.babaiquant.gpu;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.Dense;
import org.babaiquant.core.DenseKernels;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;

import java.util.function.Supplier;

/**
 * GPTQ (blocked, lazy updates) as core's {@link GptqSolver} runs it — Babai's nearest plane on the one-Cholesky factor
 * Ũ, no inverse — with the factorisation and the column sweep on {@link SweepKernels}. The host does what is O(m·n)
 * or less: validation, dead columns, the grid, the column order (core's {@link GptqSolver#prepare}). The kernels
 * factor ({@link SweepKernels#factor}: damping escalated exactly as core's DampedFactor, on the device for CUDA) —
 * except for min-pivot order, whose pivoted Cholesky picks every pivot as the argmin of the current Schur complement's
 * diagonal (n data-dependent global reductions between rank-1 updates, no blocked form with a fixed order), so it
 * stays core's host step ({@link GptqSolver#prepareAndFactor}) and its factor is uploaded. The kernels then do the
 * O(m·n²) sweep:
 * <pre>
 *   for each lazy block [i1, i2) of bs columns:
 *     for each launch [c1, c2) of ≤ 128 columns:    strip(i1, c1, c2 − c1)     columns, rows in parallel
 *       if c2 &lt; i2:                                 update A[:, c2:i2] += Δ[:, c1:c2]·Ũ[c1:c2, c2:i2]
 *     if i2 &lt; n:                                   update A[:, i2:n]  += Δ[:, i1:i2]·Ũ[i1:i2, i2:n]   (lazy)
 * </pre>
 * which is core's NearestPlaneSweep with the accumulators summed in another order. Codes therefore equal the CPU
 * solver's except where rounding decides a tie; the dequantized values are computed here from the codes and the grid
 * ({@code s·(c − z)}, the CPU solver's own expression), so only codes and row statistics cross back.
 */
final class LatticeSweep {
    private LatticeSweep() {}

    /** Elements of one slab of W (1 GiB of float64), as the CPU solver. */
    static final long MAX_SLAB = 1L << 27;

    /** Rows per slab: one slab fits a Java array and one lazy update covers it. */
    static int slabRows(int rows, int n) {
        return (int) Math.max(1, Math.min(rows, MAX_SLAB / n));
    }

    /** Timings and work of the last sweep, for the benchmark. */
    record Stats(double hostSeconds, double factorSeconds, double sweepSeconds, double updateFlops) {}

    /** GPTQ on the given kernels; {@code stats}, if not null, receives [0] the timings. */
    static QuantizedLayer quantize(double[][] w0, double[][] h0, GptqSolver.Options opt, QuantGrid fixedGrid,
                                   Supplier<SweepKernels> kernels, Stats[] stats) {
        return quantize(w0, h0, opt, fixedGrid, kernels, stats, -1);
    }

    /** As above with {@code slab} rows per slab ({@code -1}: {@link #slabRows}); tests use small slabs. */
    static QuantizedLayer quantize(double[][] w0, double[][] h0, GptqSolver.Options opt, QuantGrid fixedGrid,
                                   Supplier<SweepKernels> kernels, Stats[] stats, int slabSize) {
        if (opt.method() != Method.GPTQ) {
            throw new IllegalArgumentException("the lattice sweep runs GPTQ; " + opt.method() + " runs on the CPU");
        }
        long t0 = System.nanoTime();
        // min-pivot's pivoted Cholesky stays a host step (see the class comment); every other order factors on the
        // kernels' side
        boolean hostFactor = opt.order() == ColumnOrder.MIN_PIVOT;
        GptqSolver.Factored fp = hostFactor ? GptqSolver.prepareAndFactor(w0, h0, opt, fixedGrid, DenseKernels.get())
                : null;
        GptqSolver.Prepared p = hostFactor ? fp.prepared() : GptqSolver.prepare(w0, h0, opt, fixedGrid);
        double[][] w = p.w();
        QuantGrid grid = p.grid();
        int[] perm = p.perm();
        LayerReport rep = p.report();
        int rows = w.length;
        int n = w[0].length;

        int groups = grid.groups();
        int[] groupOf = new int[n];
        for (int i = 0; i < n; i++) {
            groupOf[i] = grid.groupOf(perm[i]);
        }
        int bs = Math.min(opt.blockSize(), n);
        int[][] codes = new int[rows][n];
        double[][] dq = new double[rows][n];
        double hostSeconds = (System.nanoTime() - t0) / 1e9;
        long s0 = System.nanoTime();
        double flops = 0;
        int slab = slabSize > 0 ? slabSize : slabRows(rows, n);
        double factorSeconds;
        try (SweepKernels k = kernels.get()) {
            if (hostFactor) {
                k.setFactor(fp.factor().ut(), n, groupOf, bs, opt.clip(), grid.maxq);
            } else {
                double[] hf = Dense.flatten(p.h());
                SweepKernels.Factor f = k.factor(hf, n, perm, opt.percdamp(), opt.maxDampTries(), groupOf, bs,
                        opt.clip(), grid.maxq);
                rep.percdampUsed = f.damping().percdamp();
                rep.lambda = f.damping().lambda();
                rep.dampAttempts = f.damping().attempt();
                rep.traceD = f.traceD();
            }
            factorSeconds = (System.nanoTime() - s0) / 1e9;
            s0 = System.nanoTime();
            for (int r0 = 0; r0 < rows; r0 += slab) {
                int m = Math.min(slab, rows - r0);
                double[] wp = new double[m * n];
                double[] scale = new double[m * groups];
                double[] zero = new double[m * groups];
                for (int r = 0; r < m; r++) {
                    double[] src = w[r0 + r];
                    for (int i = 0; i < n; i++) {
                        wp[r * n + i] = src[perm[i]];
                    }
                    System.arraycopy(grid.scale[r0 + r], 0, scale, r * groups, groups);
                    System.arraycopy(grid.zero[r0 + r], 0, zero, r * groups, groups);
                }
                k.setRows(wp, m, scale, zero, groups);
                flops += run(k, m, n, bs);
                byte[] cp = new byte[m * n * SweepKernels.codeBytes(opt.clip())];
                double[] loss = new double[m];
                double[] bound = new double[m];
                int[] clipped = new int[m];
                k.download(cp, loss, bound, clipped);
                for (int r = 0; r < m; r++) {
                    int row = r0 + r;
                    double[] s = grid.scale[row];
                    double[] z = grid.zero[row];
                    for (int i = 0; i < n; i++) {
                        int c = SweepKernels.code(cp, r * n + i, opt.clip());
                        int g = groupOf[i];
                        codes[row][perm[i]] = c;
                        dq[row][perm[i]] = s[g] * (c - z[g]);
                    }
                    rep.rowLoss[row] = loss[r];
                    rep.rowBound[row] = bound[r];
                    rep.rowClipped[row] = clipped[r];
                }
            }
        }
        double sweepSeconds = (System.nanoTime() - s0) / 1e9;
        rep.bitsPerWeight = GptqSolver.checkpointBitsPerWeight(rows, n, grid, opt.order() != ColumnOrder.NATURAL);
        rep.seconds = (System.nanoTime() - t0) / 1e9;
        if (stats != null) {
            stats[0] = new Stats(hostSeconds, factorSeconds, sweepSeconds, flops);
        }
        return new QuantizedLayer(codes, grid, perm, dq, rep);
    }

    /** The block/strip loop of the class comment over one slab of m rows; returns the flops of the updates. */
    static double run(SweepKernels k, int m, int n, int bs) {
        double flops = 0;
        for (int i1 = 0; i1 < n; i1 += bs) {
            int i2 = Math.min(n, i1 + bs);
            for (int c1 = i1; c1 < i2; c1 += SweepKernels.STRIP) {
                int c2 = Math.min(i2, c1 + SweepKernels.STRIP);
                k.strip(i1, c1, c2 - c1);
                if (c2 < i2) {
                    k.update(i1, c1, c2 - c1, c2, i2);
                    flops += 2.0 * m * (c2 - c1) * (i2 - c2);
                }
            }
            if (i2 < n) {
                k.update(i1, i1, i2 - i1, i2, n);
                flops += 2.0 * m * (i2 - i1) * (n - i2);
            }
        }
        return flops;
    }
}
