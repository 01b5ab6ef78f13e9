package org.babaiquant.gpu;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * The kernels as the build left them in the jar: {@code org/babaiquant/gpu/kernels/kernels.properties} (written by
 * {@code scripts/build-kernels.sh}) and one fatbin per {@code src/main/cuda/*.cu} module. Without nvcc at build time
 * the manifest says {@code status=unavailable} and why; the backend then reports exactly that.
 */
public final class KernelImage {
    static final String DIR = "/org/babaiquant/gpu/kernels/";

    /** Every entry point the Java side launches, by module: what the build must have produced. */
    public static final Map<String, List<String>> EXPECTED = Map.of(
            "hessian", List.of("hessian_syrk_bf16", "hessian_syrk_f16", "hessian_syrk_f32"),
            "solver", List.of("dgemm_add", "dgemm_tc", "gptq_block"),
            "cholesky", List.of("chol_diag", "chol_gather", "chol_panel", "chol_reverse", "chol_update"),
            "gemv", List.of("gemv_dense_b2", "gemv_dense_b4", "gemv_dense_b8", "gemv_finish"),
            "hessian_dmma", List.of("hessian_dmma", "hessian_widen_bf16", "hessian_widen_f16", "hessian_widen_f32"),
            "gemv_tc", gemvTcEntries());

    /** The tensor-core GEMV's entry points: one per (bits, compiled batch), plus its prologue and epilogue. */
    private static List<String> gemvTcEntries() {
        List<String> e = new java.util.ArrayList<>(List.of("gemv_tc_finish", "gemv_tc_prep_x"));
        for (int bits : new int[] {2, 3, 4, 8}) {
            for (int batch : new int[] {1, 2, 4, 8, 16}) {
                e.add("gemv_tc_b" + bits + "_n" + batch);
            }
        }
        return List.copyOf(e);
    }

    private final boolean built;
    private final String reason;
    private final Map<String, List<String>> entries;
    private final String nvcc;

    private KernelImage(boolean built, String reason, Map<String, List<String>> entries, String nvcc) {
        this.built = built;
        this.reason = reason;
        this.entries = entries;
        this.nvcc = nvcc;
    }

    /** Reads the manifest from the class path; never throws (a missing or odd manifest is a reason). */
    public static KernelImage load() {
        Properties p = new Properties();
        try (InputStream in = KernelImage.class.getResourceAsStream(DIR + "kernels.properties")) {
            if (in == null) {
                return new KernelImage(false, "kernels not built (no " + DIR + "kernels.properties on the class path)",
                        Map.of(), null);
            }
            p.load(in);
        } catch (IOException e) {
            return new KernelImage(false, "kernel manifest unreadable: " + e, Map.of(), null);
        }
        return fromManifest(p);
    }

    /** The image a manifest (kernels.properties as scripts/build-kernels.sh writes it) describes. */
    static KernelImage fromManifest(Properties p) {
        if (!"built".equals(p.getProperty("status"))) {
            return new KernelImage(false, p.getProperty("reason", "kernels not built (manifest gives no reason)"),
                    Map.of(), null);
        }
        Map<String, List<String>> entries = new LinkedHashMap<>();
        for (String m : p.getProperty("modules", "").split(",")) {
            if (!m.isBlank()) {
                entries.put(m, List.of(p.getProperty("entries." + m, "").split(",")));
            }
        }
        List<String> missing = new ArrayList<>();
        EXPECTED.forEach((m, names) -> names.forEach(e -> {
            if (!entries.getOrDefault(m, List.of()).contains(e)) {
                missing.add(m + "." + e);
            }
        }));
        if (!missing.isEmpty()) {
            return new KernelImage(false, "kernel image incomplete: missing " + missing, entries, p.getProperty("nvcc"));
        }
        return new KernelImage(true, "kernels built by " + p.getProperty("nvcc") + " for " + p.getProperty("arch"),
                entries, p.getProperty("nvcc"));
    }

    public boolean built() {
        return built;
    }

    /** Why not built, or what was built. */
    public String reason() {
        return reason;
    }

    public Map<String, List<String>> entries() {
        return entries;
    }

    public String nvcc() {
        return nvcc;
    }

    /** The fatbin of one module ({@code hessian}, {@code solver}, {@code gemv}). */
    public static byte[] fatbin(String module) {
        try (InputStream in = KernelImage.class.getResourceAsStream(DIR + module + ".fatbin")) {
            if (in == null) {
                throw new IllegalStateException("kernel module " + module + ".fatbin is not in the jar");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public String toString() {
        return (built ? "built: " : "unavailable: ") + reason + (entries.isEmpty() ? "" : " " + Arrays.toString(
                entries.entrySet().toArray()));
    }
}
