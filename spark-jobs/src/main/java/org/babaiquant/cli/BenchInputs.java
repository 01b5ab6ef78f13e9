package org.babaiquant.cli;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.io.NpyWriter;
import org.babaiquant.spark.ActivationImporter;

import java.nio.file.Path;
import java.util.List;
import java.util.Random;

/** Inputs the Spark benchmarks share: random activations, imported as one site the way {@code import-activations} does. */
final class BenchInputs {
    private BenchInputs() {
    }

    /**
     * {@code tokens × dim} standard Gaussian values rounded to float (seeded), written to {@code dir/x.npy} and imported
     * as site {@code site} under {@code dir/act}; returns the values (as float32 read them back).
     */
    static double[][] randomActivations(Path dir, String site, int tokens, int dim, long seed) {
        Random rnd = new Random(seed);
        double[][] x = new double[tokens][dim];
        for (double[] row : x) {
            for (int j = 0; j < dim; j++) {
                row[j] = (float) rnd.nextGaussian();
            }
        }
        Path npy = dir.resolve("x.npy");
        NpyWriter.writeF32(npy, x);
        new ActivationImporter(new Configuration(), 64).run(List.of(new ActivationImporter.Source(site, npy, null)),
                dir.resolve("act").toString(), false);
        return x;
    }
}
