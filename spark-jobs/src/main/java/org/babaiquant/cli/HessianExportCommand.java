package org.babaiquant.cli;

import org.babaiquant.io.NpyWriter;
import org.apache.hadoop.conf.Configuration;
import org.babaiquant.io.Npy;
import org.babaiquant.spark.HessianArtifact;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code hessian-export}: one site's Hessian as a float64 .npy for NumPy users and notebooks. */
@Command(name = "hessian-export", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Write one site's Hessian as a float64 [d, d] .npy (the stored sum Σ XᵀX unless --mean).")
public final class HessianExportCommand implements Callable<Integer> {
    @Option(names = "--hessians", required = true, paramLabel = "URI", description = "Hessian artifacts root")
    String hessians;

    @Option(names = "--site", required = true, description = "input site")
    String site;

    @Option(names = "--out", required = true, paramLabel = "H.npy", description = "output file")
    Path out;

    @Option(names = "--mean", description = "divide by the token count (H/N) instead of the sum")
    boolean mean;

    @Override
    public Integer call() {
        HessianArtifact.Loaded h = HessianArtifact.read(org.babaiquant.spark.HadoopConfs.fromEnvironmentAndSpark(), hessians, site);
        double[][] m = h.h();
        if (mean) {
            for (double[] row : m) {
                for (int j = 0; j < row.length; j++) {
                    row[j] /= h.meta().tokens();
                }
            }
        }
        NpyWriter.writeF64(out, m);
        System.out.printf("site %s: d=%d, %d tokens, normalisation %s (%s), fingerprint %s%nwrote %s%n", site, h.meta().dim(),
                h.meta().tokens(), mean ? "mean" : h.meta().normalisation(),
                mean ? "H = Σ XᵀX / N" : "H = Σ XᵀX over the tokens, not divided", h.meta().fingerprint(), out);
        return 0;
    }
}
