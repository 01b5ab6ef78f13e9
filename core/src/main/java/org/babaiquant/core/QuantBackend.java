package org.babaiquant.core;

import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Logger;

/**
 * Where the pipeline's heavy work on one layer runs: the Hessian {@code H = XᵀX} and the GPTQ/Babai solver.
 * {@link CpuBackend} (this module, the reference) and the CUDA backend (module {@code gpu-native}, found through
 * {@link ServiceLoader} as a {@link Provider}, so that core needs no JCuda) implement it and pass the same contract
 * tests. The serving kernels (quantized matrix-vector products) are a separate interface,
 * {@code org.babaiquant.serving.ServingKernels}, which a backend may also implement.
 *
 * <p>Selection ({@link #select}): {@code cpu} is always the CPU backend; {@code cuda} is the CUDA backend or an
 * {@link UnavailableException} saying why not; {@code auto} is the highest-priority available provider, else the CPU
 * backend, and says why in the log. Each distinct decision is logged once per JVM.
 */
public interface QuantBackend {

    /** Short name: {@code cpu}, {@code cuda}. */
    String name();

    /** One line for logs and reports: what runs the work (device, kernels). */
    String description();

    // ---- (a) Hessian ----------------------------------------------------------------------------------------------

    /** Element type of an activation tile given as raw little-endian bytes. */
    enum ActivationType {
        F32(4), F16(2), BF16(2);

        public final int bytes;

        ActivationType(int bytes) {
            this.bytes = bytes;
        }
    }

    /**
     * A running sum {@code Σ XᵀX} and its token count, filled tile by tile (on the device for the CUDA backend).
     * {@link #toAccumulator()} hands the sum so far to the rest of the pipeline as a {@link HessianAccumulator}
     * (mergeable, serialisable).
     */
    interface HessianSum extends AutoCloseable {
        int dim();

        long tokens();

        /** Adds {@code tokens} rows of X, row-major float32 {@code x[t·n + j]}; non-finite values are refused. */
        void add(float[] x, int tokens);

        /**
         * Adds {@code tokens} rows of X given as little-endian {@code type} values, row-major, starting at
         * {@code offset} (e.g. a safetensors tile, F16/BF16 kept as they are).
         */
        void addRaw(byte[] data, int offset, int tokens, ActivationType type);

        /** The sum so far, upper triangle mirrored, in float64, with its token count. */
        HessianAccumulator toAccumulator();

        /**
         * The sum as a {@link HessianAccumulator}, after which this sum is closed: what a caller that is done with it
         * takes (the CPU backend hands over its storage instead of copying {@code 8·n²} bytes).
         */
        default HessianAccumulator finish() {
            try (HessianSum self = this) {
                return self.toAccumulator();
            }
        }

        @Override
        void close();
    }

    /** A new, empty sum for n-dimensional activations. */
    HessianSum hessian(int n);

    // ---- (b) solver -----------------------------------------------------------------------------------------------

    /**
     * The same contract as {@link GptqSolver#quantize(double[][], double[][], GptqSolver.Options, QuantGrid)}: codes
     * equal to the CPU solver's except where a rounding tie is decided differently, the same report.
     */
    QuantizedLayer quantize(double[][] w, double[][] h, GptqSolver.Options opt, QuantGrid fixedGrid);

    // ---- selection ------------------------------------------------------------------------------------------------

    /** A backend other than the CPU one, found through {@code META-INF/services/org.babaiquant.core.QuantBackend$Provider}. */
    interface Provider {
        /** What {@link #select} names it by, e.g. {@code cuda}. */
        String name();

        /** Higher wins under {@code auto}; the CPU backend counts as 0. */
        int priority();

        /** Whether it can run in this JVM, and why not. Probed once; must not throw. */
        Availability availability();

        /**
         * The backend on the given device: an ordinal or a Spark GPU address such as {@code "0"}; {@code null} for
         * the default device. Only called when available.
         */
        QuantBackend open(String deviceAddress);
    }

    /** The outcome of a provider's probe: {@code reason} says what was found or why it cannot run. */
    record Availability(boolean available, String reason) {}

    /** {@code select("cuda")} when the CUDA backend cannot run: the message says why. */
    final class UnavailableException extends IllegalStateException {
        private static final long serialVersionUID = 1L;

        public UnavailableException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The CPU backend (always available). */
    static QuantBackend cpu() {
        return CpuBackend.INSTANCE;
    }

    /** {@link #select(String, String)} on the default device. */
    static QuantBackend select(String which) {
        return select(which, null);
    }

    /**
     * The backend for {@code which} = {@code auto}, {@code cpu} or a provider's name (e.g. {@code cuda}), on device
     * {@code deviceAddress} (null: default).
     *
     * @throws UnavailableException     when a named backend is missing or cannot run here (the reason is in the
     *                                  message)
     * @throws IllegalArgumentException for a name that is none of these
     */
    static QuantBackend select(String which, String deviceAddress) {
        return Selection.select(which, deviceAddress);
    }

    /** Provider loading and the once-per-JVM log of decisions (nested: core has no room for a helper file). */
    final class Selection {
        private static final Logger LOG = Logger.getLogger(QuantBackend.class.getName());
        private static final Set<String> LOGGED = ConcurrentHashMap.newKeySet();
        private static volatile List<Provider> providers;

        private Selection() {}

        /** The providers that load, highest priority first (loaded once). */
        static List<Provider> providers() {
            List<Provider> p = providers;
            if (p == null) {
                providers = p = ServiceProviders.load(Provider.class, Provider::priority, LOG);
            }
            return p;
        }

        static QuantBackend select(String which, String device) {
            String w = which == null ? "auto" : which.trim();
            if (w.equals("cpu")) {
                logOnce("backend cpu: " + CpuBackend.INSTANCE.description() + " (requested)");
                return CpuBackend.INSTANCE;
            }
            if (w.equals("auto")) {
                StringBuilder why = new StringBuilder();
                for (Provider p : providers()) {
                    Availability a = availability(p);
                    if (a.available()) {
                        try {
                            QuantBackend b = p.open(device);
                            String failed = selfCheck(b, device);
                            if (failed != null) {
                                why.append("; ").append(p.name()).append(" failed its self-check: ").append(failed);
                                continue;
                            }
                            logOnce("backend auto: " + b.description() + " (self-check passed)");
                            return b;
                        } catch (RuntimeException | LinkageError e) {
                            why.append("; ").append(p.name()).append(" failed to open: ").append(e.getMessage());
                            continue;
                        }
                    }
                    why.append("; ").append(p.name()).append(" unavailable: ").append(a.reason());
                }
                logOnce("backend auto: CPU (" + CpuBackend.INSTANCE.description() + ")"
                        + (why.length() == 0 ? "; no other backend on the class path" : why.toString()));
                return CpuBackend.INSTANCE;
            }
            for (Provider p : providers()) {
                if (p.name().equals(w)) {
                    Availability a = availability(p);
                    if (!a.available()) {
                        throw new UnavailableException("backend " + w + " is unavailable: " + a.reason(), null);
                    }
                    QuantBackend b;
                    try {
                        b = p.open(device);
                    } catch (RuntimeException | LinkageError e) {
                        throw new UnavailableException("backend " + w + " failed to open device "
                                + (device == null ? "(default)" : device) + ": " + e.getMessage(), e);
                    }
                    String failed = selfCheck(b, device);
                    if (failed != null) {
                        throw new UnavailableException("backend " + w + " failed its self-check on device "
                                + (device == null ? "(default)" : device) + ": " + failed, null);
                    }
                    logOnce("backend " + w + ": " + b.description() + " (requested, self-check passed)");
                    return b;
                }
            }
            if (w.equals("cuda")) {
                throw new UnavailableException("backend cuda is unavailable: no CUDA backend on the class path (the "
                        + "babai-quant-gpu-native jar and JCuda are needed)", null);
            }
            throw new IllegalArgumentException("backend must be auto, cpu or cuda, got " + which);
        }

        /** Self-check outcomes per backend and device in this JVM: "" passed, else why not. */
        private static final Map<String, String> CHECKED = new ConcurrentHashMap<>();
        /** Share of codes allowed to differ from the CPU solver's (rounding ties decided differently) and loss tolerance. */
        static final double MAX_CODE_MISMATCH = 1e-4;
        static final double MAX_LOSS_REL = 1e-5;

        /**
         * A backend other than the CPU one must reproduce the CPU solver before it quantizes anything: once per backend
         * and device per JVM, a fixed 64×256 layer (4-bit, groups of 128, act-order, seeded random W and X) is solved
         * by both; more than {@link #MAX_CODE_MISMATCH} of the codes differing, a loss off by more than
         * {@link #MAX_LOSS_REL} relative, or an exception fails the check. Returns null when it passes, else why not.
         */
        static String selfCheck(QuantBackend b, String device) {
            if (b == CpuBackend.INSTANCE) {
                return null;
            }
            String r = CHECKED.computeIfAbsent(b.name() + "@" + device, k -> runSelfCheck(b));
            return r.isEmpty() ? null : r;
        }

        static String runSelfCheck(QuantBackend b) {
            java.util.Random rnd = new java.util.Random(2507_18553L);
            int rows = 64;
            int n = 256;
            int tokens = 512;
            double[][] x = new double[tokens][n];
            for (double[] row : x) {
                for (int j = 0; j < n; j++) {
                    row[j] = rnd.nextGaussian();
                }
            }
            double[][] w = new double[rows][n];
            for (double[] row : w) {
                for (int j = 0; j < n; j++) {
                    row[j] = 0.05 * rnd.nextGaussian();
                }
            }
            double[][] h = new HessianAccumulator(n).add(x).hessian();
            GptqSolver.Options opt = GptqSolver.Options.defaults().withGrid(new QuantGrid.Spec(4, 128, false, false))
                    .withOrder(ColumnOrder.ACT_ORDER);
            QuantizedLayer want = CpuBackend.INSTANCE.quantize(w, h, opt, null);
            QuantizedLayer got;
            try {
                got = b.quantize(w, h, opt, null);
            } catch (RuntimeException | LinkageError e) {
                return "quantizing the check layer threw " + e;
            }
            long differ = 0;
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < n; j++) {
                    if (want.codes()[r][j] != got.codes()[r][j]) {
                        differ++;
                    }
                }
            }
            double lossRel = Math.abs(got.report().loss() - want.report().loss()) / want.report().loss();
            if (differ > MAX_CODE_MISMATCH * rows * n || !(lossRel <= MAX_LOSS_REL)) {
                return String.format(java.util.Locale.ROOT, "%d of %d codes differ from the CPU solver's, loss off by %.3g"
                        + " relative (allowed: %.0e of the codes, %.0e)", differ, rows * n, lossRel, MAX_CODE_MISMATCH, MAX_LOSS_REL);
            }
            return "";
        }

        private static Availability availability(Provider p) {
            try {
                return p.availability();
            } catch (RuntimeException | LinkageError e) {
                return new Availability(false, "probe failed: " + e);
            }
        }

        private static void logOnce(String line) {
            if (LOGGED.add(line)) {
                LOG.info(line);
            }
        }
    }
}
