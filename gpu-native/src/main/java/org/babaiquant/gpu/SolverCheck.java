package org.babaiquant.gpu;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.DampedFactor;
import org.babaiquant.core.Dense;
import org.babaiquant.core.DenseKernels;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.HessianAccumulator;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;
import org.babaiquant.io.Npy;

import java.nio.file.Path;
import java.util.Locale;

/**
 * The solver's part of {@link GpuCheck}: parity (random layers in every order × clip × grid, the real MiniLM linears,
 * the device Cholesky against core's factor, damping escalation on the device) and the solver benchmarks (4096² g128
 * end to end, 8192×28672 g128 end to end with its 28672² factorisation, the seven Llama-2-7B shapes projected to the
 * model's 224 linears).
 */
final class SolverCheck {
    /** Ũ from the device against core's factor: max |ΔŨ| ≤ this · max |Ũ|. */
    static final double MAX_FACTOR_REL = 1e-12;

    private final GpuCheck check;
    private final CudaBackend cuda;

    SolverCheck(GpuCheck check, CudaBackend cuda) {
        this.check = check;
        this.cuda = cuda;
    }

    // ---- parity ---------------------------------------------------------------------------------------------------

    void parity(Path data) {
        // random layers in every order, clip and no-clip, per-row and g128 grids; odd sizes on purpose: partial row
        // tiles, a partial last launch, block and group
        double[][] wr = check.gaussian(251, 633, 0.02);
        double[][] hr = check.gramOfCorrelated(2048, 633);
        for (ColumnOrder order : ColumnOrder.values()) {
            for (boolean clip : new boolean[] {true, false}) {
                for (int g : new int[] {-1, 128}) {
                    GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order).withClip(clip)
                            .withGrid(new QuantGrid.Spec(4, g, false, false));
                    solverCase("solver random 251x633 " + order + (clip ? "" : " no-clip") + " g" + g, wr, hr, opt);
                }
            }
            if (order != ColumnOrder.MIN_PIVOT) {
                factorCase("cholesky random 633 " + order, hr, GptqSolver.Options.defaults().withOrder(order));
            }
        }
        // damping escalation on the device: rank 300 < 633, shifted down by 2 % of the mean diagonal, so that the
        // first damping (1 %) fails and the second (10 %) factorises
        double[][] hs = check.gramOfCorrelated(300, 633);
        double mean = 0;
        for (int i = 0; i < hs.length; i++) {
            mean += hs[i][i] / hs.length;
        }
        for (int i = 0; i < hs.length; i++) {
            hs[i][i] -= 0.02 * mean;
        }
        for (ColumnOrder order : new ColumnOrder[] {ColumnOrder.ACT_ORDER, ColumnOrder.MIN_PIVOT}) {
            GptqSolver.Options opt = GptqSolver.Options.defaults().withOrder(order)
                    .withGrid(new QuantGrid.Spec(4, 128, false, false));
            solverCase("solver damping escalation 251x633 " + order, wr, hs, opt);
        }
        factorCase("cholesky damping escalation 633 natural", hs, GptqSolver.Options.defaults());
        // the real MiniLM layer-0 linears, 4-bit g128 and 3-bit per row min-pivot
        String[][] layers = {{"q_proj", "attn_in"}, {"k_proj", "attn_in"}, {"v_proj", "attn_in"},
                {"o_proj", "o_proj_in"}, {"ffn_up", "ffn_up_in"}, {"ffn_down", "ffn_down_in"}};
        for (String[] l : layers) {
            double[][] w = Npy.readMatrix(data.resolve("weights/layer0_" + l[0] + ".weight.npy"));
            double[][] h = new HessianAccumulator(w[0].length)
                    .add(Npy.readMatrixF32(data.resolve("activations/layer0_" + l[1] + ".calib.npy"))).hessian();
            solverCase("solver real " + l[0] + " 4-bit g128 natural", w, h, GptqSolver.Options.defaults()
                    .withGrid(new QuantGrid.Spec(4, 128, false, false)));
            solverCase("solver real " + l[0] + " 3-bit min-pivot", w, h, GptqSolver.Options.defaults()
                    .withGrid(new QuantGrid.Spec(3, -1, false, false)).withOrder(ColumnOrder.MIN_PIVOT));
            if (l[0].equals("ffn_down")) {
                factorCase("cholesky real ffn_down act-order", h, GptqSolver.Options.defaults()
                        .withOrder(ColumnOrder.ACT_ORDER));
            }
        }
    }

    /**
     * The tensor-core path against the CPU solver (parity criteria, and the same damping), the exact update path
     * bit for bit against the host twin.
     */
    private void solverCase(String what, double[][] w, double[][] h, GptqSolver.Options opt) {
        check.attempt(what, () -> {
            QuantizedLayer ref = GptqSolver.quantize(w, h, opt);
            QuantizedLayer got = cuda.quantize(w, h, opt, null);
            QuantizedLayer exact = LatticeSweep.quantize(w, h, opt, null, () -> new CudaSweep(cuda.device, false, true),
                    null);
            QuantizedLayer host = LatticeSweep.quantize(w, h, opt, null, HostSweep::new, null);
            Parity.Layers vsCpu = Parity.layers(ref, got);
            Parity.Layers vsHost = Parity.layers(host, exact);
            boolean damping = ref.report().dampAttempts == got.report().dampAttempts
                    && ref.report().lambda == got.report().lambda;
            check.verdict(what, vsCpu.ok() && vsHost.exact() && damping, "vs CPU solver: " + vsCpu
                    + "; damping attempts " + got.report().dampAttempts + (damping ? " (same)" : " vs CPU "
                    + ref.report().dampAttempts) + "; exact path vs host emulation: "
                    + (vsHost.exact() ? "identical" : vsHost.toString()));
        });
    }

    /** Ũ computed on the device against core's DampedFactor.upper of the same H and order. */
    private void factorCase(String what, double[][] h, GptqSolver.Options opt) {
        check.attempt(what, () -> {
            int n = h.length;
            int[] perm = opt.order().permutation(h, 0);
            DampedFactor.Upper ref = DampedFactor.upper(h, perm, opt.percdamp(), opt.maxDampTries(),
                    DenseKernels.get());
            try (CudaSweep k = new CudaSweep(cuda.device, false, false)) {
                SweepKernels.Factor f = k.factor(Dense.flatten(h), n, perm, opt.percdamp(), opt.maxDampTries(),
                        new int[n], Math.min(128, n), true, 15);
                double[] u = k.factorOnHost();
                double worst = 0;
                double top = 0;
                for (int i = 0; i < u.length; i++) {
                    top = Math.max(top, Math.abs(ref.ut()[i]));
                    double d = Math.abs(u[i] - ref.ut()[i]);
                    worst = d > worst || Double.isNaN(d) ? d : worst;
                }
                double rel = worst / top;
                boolean same = f.damping().attempt() == ref.attempts() && f.damping().lambda() == ref.lambda();
                double traceRel = Math.abs(f.traceD() - ref.traceD()) / ref.traceD();
                check.verdict(what, rel <= MAX_FACTOR_REL && same && traceRel <= MAX_FACTOR_REL,
                        String.format(Locale.ROOT, "max |dU|/max|U| %.2e (limit %.0e), damping attempts %d%s, "
                                + "tr(D) rel %.1e", rel, MAX_FACTOR_REL, f.damping().attempt(),
                                same ? " (same)" : " vs CPU " + ref.attempts(), traceRel));
            }
        });
    }

    // ---- benchmark ------------------------------------------------------------------------------------------------

    /** Seconds kept for ServingCheck, which runs after the benchmarks with its own 90 s. */
    private static final int SERVING_RESERVE = 90;

    /** The three figures, the most telling first after the quick one; each only with its allowance left. */
    void bench() {
        check.benchWithin("bench solver 4096x4096", 20 + SERVING_RESERVE, this::bench4096);
        check.benchWithin("bench solver 8192x28672", 60 + SERVING_RESERVE, this::bench8192x28672);
        check.benchWithin("bench solver Llama-2-7B shapes", 40 + SERVING_RESERVE, this::benchLlama);
    }

    private double[][] hessianOnGpu(int n, int tokens) {
        try (QuantBackend.HessianSum s = cuda.hessian(n)) {
            s.add(check.correlatedFloats(tokens, n), tokens);
            return s.toAccumulator().hessian();
        }
    }

    private static final GptqSolver.Options G128 = GptqSolver.Options.defaults()
            .withGrid(new QuantGrid.Spec(4, 128, false, false));

    /** One layer end to end (H and W in host memory → codes, grid and report in host memory), after a warm-up. */
    private LatticeSweep.Stats[] timed(double[][] w, double[][] h, double[] seconds, double[] updates) {
        LatticeSweep.Stats[] st = new LatticeSweep.Stats[1];
        long t0 = System.nanoTime();
        cuda.quantizeTimed(w, h, G128, st, updates);
        seconds[0] = (System.nanoTime() - t0) / 1e9;
        return st;
    }

    private void warmUp() {
        cuda.quantizeTimed(check.gaussian(64, 256, 0.02), check.gramOfCorrelated(512, 256), G128,
                new LatticeSweep.Stats[1], new double[1]);
    }

    private void bench4096() {
        int n = 4096;
        double[][] w = check.gaussian(n, n, 0.02);
        double[][] h = hessianOnGpu(n, 8192);
        warmUp();
        double[] sec = new double[1];
        double[] upd = new double[1];
        LatticeSweep.Stats[] st = timed(w, h, sec, upd);
        long c0 = System.nanoTime();
        QuantizedLayer ref = GptqSolver.quantize(w, h, G128);
        double cpuSeconds = (System.nanoTime() - c0) / 1e9;
        QuantizedLayer got = cuda.quantize(w, h, G128, null);
        Parity.Layers p = Parity.layers(ref, got);
        check.verdict("solver 4096x4096 4-bit g128 (benchmark layer)", p.ok(), p.toString());
        check.row("solver 4-bit g128 4096x4096 end to end", String.format(Locale.ROOT,
                "%.1f ms (host prepare %.1f, factor %.1f, sweep %.1f incl. updates %.1f ms = %.0f GFLOP/s)",
                sec[0] * 1e3, st[0].hostSeconds() * 1e3, st[0].factorSeconds() * 1e3, st[0].sweepSeconds() * 1e3,
                upd[0] * 1e3, st[0].updateFlops() / upd[0] / 1e9), "<= 12 ms", "see torch-gptq.txt");
        check.row("  same layer, CPU solver (this host)", String.format(Locale.ROOT, "%.2f s; loss rel diff %.1e",
                cpuSeconds, p.lossRel()), "", "");
    }

    private void benchLlama() {
        // Llama-2-7B per decoder layer: q, k, v, o 4096x4096; gate, up 11008x4096; down 4096x11008 (out x in)
        int[][] shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
        int[] count = {4, 2, 1};
        warmUp();
        double perLayer = 0;
        StringBuilder sb = new StringBuilder();
        for (int s = 0; s < shapes.length; s++) {
            double[][] w = check.gaussian(shapes[s][0], shapes[s][1], 0.02);
            double[][] h = hessianOnGpu(shapes[s][1], 8192);
            double[] sec = new double[1];
            timed(w, h, sec, new double[1]);
            perLayer += count[s] * sec[0];
            sb.append(String.format(Locale.ROOT, "%s%dx %dx%d %.1f ms", s == 0 ? "" : ", ", count[s], shapes[s][0],
                    shapes[s][1], sec[0] * 1e3));
        }
        check.row("solver Llama-2-7B shapes 4-bit g128 (" + sb + ")", String.format(Locale.ROOT,
                "%.3f s per decoder layer, x32 = %.2f s for the 224 linears", perLayer, 32 * perLayer), "<= 10 s",
                "see torch-gptq.txt");
    }

    private void bench8192x28672() {
        int m = 8192;
        int n = 28672;
        double[][] w = check.gaussian(m, n, 0.02);
        double[][] h = hessianOnGpu(n, 4096);
        warmUp();
        double[] sec = new double[1];
        double[] upd = new double[1];
        LatticeSweep.Stats[] st = timed(w, h, sec, upd);
        check.row("solver 4-bit g128 8192x28672 end to end (28672^2 factor)", String.format(Locale.ROOT,
                "%.3f s (host prepare %.2f, factor %.3f, sweep %.3f incl. updates %.3f s = %.0f GFLOP/s)", sec[0],
                st[0].hostSeconds(), st[0].factorSeconds(), st[0].sweepSeconds(), upd[0],
                st[0].updateFlops() / upd[0] / 1e9), "<= 0.5 s", "11.4 s (H100)");
    }
}
