package org.babaiquant.nonclip;

import org.babaiquant.BadInputException;
import org.babaiquant.core.GptqSolver;
import org.babaiquant.core.LayerReport;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.core.QuantizedLayer;

import java.util.Arrays;
import java.util.Map;

/**
 * HPTQ and HRTN (Chen et al. 2025, §5): one scalar scale for the whole matrix, integer codes that are never clipped
 * (so the Babai bound {@code ¼ s² Σ_k D_k} holds for every row), entropy-coded with a canonical Huffman code built for
 * the matrix. HPTQ finds the codes with GPTQ (error feedback), HRTN by rounding to nearest.
 *
 * <p>The only free parameter is the scale, and the storage cost falls as it grows: for a fine lattice the entropy of
 * the codes is {@code h(w) − log2 s}, one bit per halving of s. So the scale is searched ({@link ScaleSearch}, on
 * {@code log2 s}, starting from the Gaussian estimate {@code s₀ = σ·√(2πe)·2^−T}) for the smallest scale whose
 * encoded size, measured as the bytes {@link HptqFormat} writes (table and scale included), is at most the target
 * bits per weight T. The search ends inside {@code [T − band, T]} (default band {@value #DEFAULT_BAND} bit: by the
 * one-bit-per-halving slope, a 0.35% change of scale, far below any measurable change in error) unless the cost
 * jumps over the band, which {@link Result#inBand()} reports.
 */
public final class Hptq {
    private Hptq() {}

    public static final double DEFAULT_BAND = 0.005;
    /** Every Huffman codeword has at least one bit: no target at or below 1 bit per weight can be met. */
    public static final double MIN_TARGET_BITS = 1;

    /** How the integer codes are found. The code is what the file's kind byte holds. */
    public enum Kind {
        HRTN(0, "hrtn", Method.RTN),
        HPTQ(1, "hptq", Method.GPTQ);

        public final int code;
        public final String cliName;
        final Method method;

        Kind(int code, String cliName, Method method) {
            this.code = code;
            this.cliName = cliName;
            this.method = method;
        }

        static Kind ofCode(int code) {
            for (Kind k : values()) {
                if (k.code == code) {
                    return k;
                }
            }
            throw new BadInputException("HPTQ header: unknown kind " + code + " (0 = HRTN, 1 = HPTQ)");
        }
    }

    /**
     * @param gptq     order, damping, block size and tries of the GPTQ (or RTN) pass; its method, grid and clip are
     *                 set here (no clipping, one scale, zero point 0)
     * @param band     acceptance band below the target, in bits per weight
     * @param maxEvals cap on quantization passes in the search
     */
    public record Options(Kind kind, double targetBits, GptqSolver.Options gptq, double band, int maxEvals) {
        public Options {
            if (!(targetBits > MIN_TARGET_BITS) || Double.isInfinite(targetBits)) {
                throw new IllegalArgumentException("target bits per weight must be a finite number > "
                        + MIN_TARGET_BITS + " (every Huffman codeword has at least one bit), got " + targetBits);
            }
            if (!(band > 0) || band >= targetBits) {
                throw new IllegalArgumentException("band must be in (0, target), got " + band);
            }
            if (maxEvals < 2) {
                throw new IllegalArgumentException("max evaluations must be ≥ 2, got " + maxEvals);
            }
        }

        public static Options of(Kind kind, double targetBits, GptqSolver.Options gptq) {
            return new Options(kind, targetBits, gptq, DEFAULT_BAND, 40);
        }
    }

    /**
     * @param bytes         the layer as {@link HptqFormat} writes it
     * @param lattice       the GPTQ/RTN pass at the chosen scale: codes, dequantized weights, loss and Babai bound;
     *                      its report's {@code bitsPerWeight} is the measured one
     * @param bitsPerWeight {@code 8·bytes.length/(rows·cols)}
     * @param scaleBelow    the largest scale tried below the chosen one that missed the target (NaN if none)
     * @param bitsBelow     its bits per weight
     * @param seconds       wall time of the whole search and writing
     */
    public record Result(HptqLayer layer, byte[] bytes, QuantizedLayer lattice, double bitsPerWeight, double targetBits,
                         int evaluations, boolean inBand, double scaleBelow, double bitsBelow, double seconds) {
        /** The lattice report's summary, relabelled, with the measured size and the search. */
        public Map<String, Object> summary() {
            Map<String, Object> m = lattice.report().summary();
            m.put("method", layer.kind().cliName);
            m.remove("bits");
            m.put("group_size", -1);
            m.put("sym", true);
            m.put("mse", false);
            m.put("bits_per_weight", bitsPerWeight);
            m.put("bytes", bytes.length);
            m.put("target_bits", targetBits);
            m.put("scale", (double) layer.scale());
            HptqFormat.Histogram hist = HptqFormat.Histogram.of(layer.codes());
            m.put("min_code", hist.minCode());
            m.put("max_code", hist.minCode() + hist.freq().length - 1);
            m.put("search_evaluations", evaluations);
            m.put("search_in_band", inBand);
            m.put("scale_below", scaleBelow);
            m.put("bits_per_weight_below", bitsBelow);
            m.put("last_pass_seconds", lattice.report().seconds);
            m.put("seconds", seconds);
            return m;
        }
    }

    /** One point of the search. {@code lattice} is null for HRTN, which rounds without the solver. */
    private record Trial(float scale, int[][] codes, QuantizedLayer lattice, long bytes, double bitsPerWeight) {}

    public static Result quantize(double[][] w, double[][] h, Options opt) {
        long t0 = System.nanoTime();
        int rows = w.length;
        int cols = w[0].length;
        double n = (double) rows * cols;
        GptqSolver.Options solver = opt.gptq().withMethod(opt.kind().method).withClip(false)
                .withGrid(new QuantGrid.Spec(8, -1, false, false)); // bits only size maxq, unused without clipping
        // as the solver does: an input that never fired (H_jj = 0) has its weights set to 0
        double[][] live = new double[rows][];
        boolean[] dead = new boolean[cols];
        double sumSq = 0;
        for (int j = 0; j < cols; j++) {
            dead[j] = h[j][j] == 0;
        }
        for (int r = 0; r < rows; r++) {
            live[r] = w[r].clone();
            for (int j = 0; j < cols; j++) {
                if (dead[j]) {
                    live[r][j] = 0;
                }
                sumSq += live[r][j] * live[r][j];
            }
        }
        double sigma = sumSq > 0 ? Math.sqrt(sumSq / n) : 1;
        double x0 = Math.log(sigma * Math.sqrt(2 * Math.PI * Math.E)) / Math.log(2) - opt.targetBits();

        ScaleSearch.Outcome<Trial> found = ScaleSearch.smallestMeeting(x -> {
            float s = (float) Math.pow(2, x);
            if (!(s > 0) || Float.isInfinite(s)) {
                throw new BadInputException("HPTQ scale 2^" + x + " is outside float32");
            }
            int[][] codes;
            QuantizedLayer lattice = null;
            if (opt.kind() == Kind.HPTQ) {
                lattice = GptqSolver.quantize(w, h, solver, grid(rows, cols, s));
                codes = lattice.codes();
            } else {
                codes = new int[rows][cols];
                for (int r = 0; r < rows; r++) {
                    for (int j = 0; j < cols; j++) {
                        codes[r][j] = (int) QuantGrid.quantizeUnclipped(live[r][j], s, 0);
                    }
                }
            }
            long bytes = HptqFormat.encodedBytes(HptqFormat.Histogram.of(codes));
            return new Trial(s, codes, lattice, bytes, 8.0 * bytes / n);
        }, Trial::bitsPerWeight, x0, -1, opt.targetBits(), opt.band(), 1e-6, opt.maxEvals(),
                opt.kind().cliName + " scale search");

        Trial t = found.result();
        QuantizedLayer lattice = t.lattice();
        if (lattice == null) {
            // RTN through the solver for its report (loss (q−w)ᵀ(H+λI)(q−w), Babai bound); the codes must agree
            lattice = GptqSolver.quantize(w, h, solver, grid(rows, cols, t.scale()));
            if (!Arrays.deepEquals(lattice.codes(), t.codes())) {
                throw new IllegalStateException("HRTN: solver RTN codes differ from the search's rounding");
            }
        }
        HptqLayer layer = HptqLayer.of(opt.kind(), t.scale(), lattice.codes());
        byte[] bytes = HptqFormat.write(layer);
        if (bytes.length != t.bytes()) {
            throw new IllegalStateException("HPTQ size predicted " + t.bytes() + " bytes, wrote " + bytes.length);
        }
        double bpw = 8.0 * bytes.length / n;
        LayerReport rep = lattice.report();
        rep.bitsPerWeight = bpw;
        double scaleBelow = Double.isNaN(found.xBelow()) ? Double.NaN : (float) Math.pow(2, found.xBelow());
        return new Result(layer, bytes, lattice, bpw, opt.targetBits(), found.evaluations(), found.inBand(),
                scaleBelow, found.valueBelow(), (System.nanoTime() - t0) / 1e9);
    }

    /** One scale s and zero point 0 for every row: the whole-matrix lattice s·ℤ^n. */
    static QuantGrid grid(int rows, int cols, float s) {
        double[][] scale = new double[rows][1];
        double[][] zero = new double[rows][1];
        for (double[] row : scale) {
            row[0] = s;
        }
        return QuantGrid.of(8, -1, cols, scale, zero);
    }
}
