package org.babaiquant.blas;

import dev.ludovic.netlib.blas.BLAS;
import dev.ludovic.netlib.blas.NativeBLAS;
import dev.ludovic.netlib.lapack.LAPACK;
import dev.ludovic.netlib.lapack.NativeLAPACK;
import org.babaiquant.core.DenseKernels;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * The native {@link DenseKernels} provider (registered in {@code META-INF/services}), priority 10 over pure Java's 0.
 * Available only when netlib's BLAS instance is native ({@link NativeBLAS}, not its Java fallback) and passes a
 * 2×2 smoke product; otherwise it says why and the algorithms run on pure Java. Never throws.
 *
 * <p>Which library: netlib reads {@code -Ddev.ludovic.netlib.blas.nativeLibPath} (and
 * {@code dev.ludovic.netlib.lapack.nativeLibPath}) when its classes initialise, else it dlopens the system's
 * {@code libblas.so.3}/{@code liblapack.so.3}. When neither property is set and the OpenBLAS that the build unpacks
 * ({@code spark-jobs/target/native/org/bytedeco/openblas/linux-x86_64/libopenblas.so.0}, what {@code bin/babai-quant}
 * passes) sits next to this class's jar or classes folder, or under {@code -Dbabai.home}, the probe points netlib at
 * it, so tests and plain {@code java -cp} runs get the same library as the launcher. OpenBLAS exports LAPACK too, so
 * an unset LAPACK path follows the BLAS one when that is an OpenBLAS. Both only work before anything else touched
 * netlib in this JVM (netlib decides once).
 */
public final class NetlibKernelsProvider implements DenseKernels.Provider {
    static final String NAME = "netlib";
    private static final String BLAS_PATH = "dev.ludovic.netlib.blas.nativeLibPath";
    private static final String BLAS_LIB = "dev.ludovic.netlib.blas.nativeLib";
    private static final String LAPACK_PATH = "dev.ludovic.netlib.lapack.nativeLibPath";
    private static final String LAPACK_LIB = "dev.ludovic.netlib.lapack.nativeLib";
    private static final String BUNDLED = "native/org/bytedeco/openblas/linux-x86_64/libopenblas.so.0";

    /** The outcome of loading netlib, decided once per JVM. */
    private record Probe(NetlibKernels kernels, String describe) {}

    private static Probe probe;

    public NetlibKernelsProvider() {}

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int priority() {
        return 10;
    }

    @Override
    public boolean available() {
        return probe().kernels() != null;
    }

    @Override
    public String describe() {
        return probe().describe();
    }

    @Override
    public DenseKernels kernels() {
        NetlibKernels k = probe().kernels();
        if (k == null) {
            throw new IllegalStateException("netlib kernels are not available: " + probe().describe());
        }
        return k;
    }

    private static synchronized Probe probe() {
        if (probe == null) {
            probe = load();
        }
        return probe;
    }

    private static Probe load() {
        try {
            pointNetlibAtBundledOpenBlas();
            BLAS blas = BLAS.getInstance();
            if (!(blas instanceof NativeBLAS)) {
                return new Probe(null, "netlib found no native BLAS (it would use " + blas.getClass().getSimpleName()
                        + "); set -D" + BLAS_PATH + "=/path/libopenblas.so.0 or run bin/babai-quant");
            }
            // smoke test: [1 2; 3 4]·[5 6; 7 8] = [19 22; 43 50]
            double[] c = new double[4];
            new NetlibKernels(blas, null, "").gemm(false, false, 2, 2, 2, 1.0, new double[] {1, 2, 3, 4}, 0, 2,
                    new double[] {5, 6, 7, 8}, 0, 2, c, 0, 2);
            if (c[0] != 19 || c[1] != 22 || c[2] != 43 || c[3] != 50) {
                return new Probe(null, "native BLAS " + blas.getClass().getSimpleName() + " failed a 2x2 dgemm");
            }
            LAPACK lapack = null;
            String lapackNote;
            try {
                LAPACK l = LAPACK.getInstance();
                if (l instanceof NativeLAPACK) {
                    lapack = l;
                    lapackNote = l.getClass().getSimpleName();
                } else {
                    lapackNote = "no native LAPACK (factorisations on pure Java)";
                }
            } catch (RuntimeException | LinkageError e) {
                lapackNote = "LAPACK failed to load: " + e + " (factorisations on pure Java)";
            }
            String lib = System.getProperty(BLAS_PATH, System.getProperty(BLAS_LIB, "system libblas.so.3"));
            String text = "netlib " + blas.getClass().getSimpleName() + " + " + lapackNote + ", float64, " + lib;
            return new Probe(new NetlibKernels(blas, lapack, text), text);
        } catch (RuntimeException | LinkageError e) {
            return new Probe(null, "netlib failed to load: " + e);
        }
    }

    /** Sets netlib's library properties to the bundled OpenBLAS where the user set none (see the class comment). */
    private static void pointNetlibAtBundledOpenBlas() {
        if (System.getProperty(BLAS_PATH) == null && System.getProperty(BLAS_LIB) == null) {
            Path bundled = findBundledOpenBlas();
            if (bundled != null) {
                System.setProperty(BLAS_PATH, bundled.toString());
            }
        }
        String blasPath = System.getProperty(BLAS_PATH);
        if (blasPath != null && System.getProperty(LAPACK_PATH) == null && System.getProperty(LAPACK_LIB) == null
                && blasPath.toLowerCase(Locale.ROOT).contains("openblas")) {
            System.setProperty(LAPACK_PATH, blasPath);
        }
    }

    private static Path findBundledOpenBlas() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (!os.startsWith("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            return null;
        }
        String home = System.getProperty("babai.home");
        if (home != null) {
            Path p = Path.of(home, "spark-jobs", "target").resolve(BUNDLED);
            if (Files.isRegularFile(p)) {
                return p.toAbsolutePath();
            }
        }
        try {
            var source = NetlibKernelsProvider.class.getProtectionDomain().getCodeSource();
            if (source == null) {
                return null;
            }
            // target/classes or target/babai-quant-spark-jobs-*.jar: both have target/ as parent
            Path target = Path.of(source.getLocation().toURI()).getParent();
            Path p = target == null ? null : target.resolve(BUNDLED);
            return p != null && Files.isRegularFile(p) ? p.toAbsolutePath() : null;
        } catch (URISyntaxException | RuntimeException e) {
            return null;
        }
    }
}
