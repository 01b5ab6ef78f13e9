package org.babaiquant;

import dev.ludovic.netlib.blas.BLAS;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.io.Npy;
import org.babaiquant.spark.ActivationImporter;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Hessian stage accumulates through the backend interface ({@code hessian --backend}): on the CPU backend its
 * bytes are those of the stage before the seam (netlib {@code dsyrk("U", "N")} on column-major float64 buffers, one
 * rank-k update per ≤ 1024 tokens cut at tile boundaries), replayed here independently; {@code auto} on a machine
 * without a usable GPU is the CPU backend to the byte; {@code cuda} there fails with the probe's reason.
 */
class HessianBackendStageTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final Configuration CONF = new Configuration();
    private static final int TILE_ROWS = 48; // 1024 is no multiple of it: updates end at 1008 tokens, then at the rest

    private static HessianJob.Config cfg(Path tmp, String out, int partitions, int sliceTiles, String backend) {
        return new HessianJob.Config(tmp.resolve("act").toString(), tmp.resolve(out).toString(), List.of(), partitions,
                sliceTiles, 160, false, backend);
    }

    /** The pre-seam arithmetic of one slice: dsyrk("U") over updates of ≤ 1024 tokens made of whole tiles. */
    private static double[] replaySlice(double[][] x, int from, int to) {
        int d = x[0].length;
        double[] acc = new double[d * d];
        double[] buf = new double[1024 * d];
        int filled = 0;
        for (int t0 = from; t0 < to; t0 += TILE_ROWS) {
            int rows = Math.min(TILE_ROWS, to - t0);
            if (filled + rows > 1024) {
                BLAS.getInstance().dsyrk("U", "N", d, filled, 1.0, buf, d, 1.0, acc, d);
                filled = 0;
            }
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < d; j++) {
                    buf[(filled + r) * d + j] = (float) x[t0 + r][j];
                }
            }
            filled += rows;
        }
        BLAS.getInstance().dsyrk("U", "N", d, filled, 1.0, buf, d, 1.0, acc, d);
        return acc;
    }

    @Test
    void cpuBackendKeepsThePreSeamBytesAndAutoIsCpuHere(@TempDir Path tmp) {
        Path npy = RealData.miniLm().resolve("activations/layer0_attn_in.calib.npy");
        double[][] x = Npy.readMatrix(npy);
        int d = x[0].length;
        new ActivationImporter(CONF, TILE_ROWS).run(List.of(new ActivationImporter.Source("attn_in", npy, null)),
                tmp.resolve("act").toString(), false);
        int sliceTiles = 25; // 1200 tokens per slice: an update of 1008 tokens, one of 192, and a short last slice
        HessianJob.run(SPARK, cfg(tmp, "cpu", 3, sliceTiles, "cpu"), s -> { });
        HessianJob.run(SPARK, cfg(tmp, "auto", 1, sliceTiles, "auto"), s -> { });
        double[][] cpu = HessianArtifact.read(CONF, tmp.resolve("cpu").toString(), "attn_in").h();
        double[][] auto = HessianArtifact.read(CONF, tmp.resolve("auto").toString(), "attn_in").h();

        double[] want = new double[d * d];
        int perSlice = sliceTiles * TILE_ROWS;
        for (int from = 0; from < x.length; from += perSlice) {
            double[] part = replaySlice(x, from, Math.min(x.length, from + perSlice));
            for (int k = 0; k < want.length; k++) {
                want[k] += part[k]; // slices summed in slice order, as the stage's reducer does
            }
        }
        int differ = 0;
        for (int i = 0; i < d; i++) {
            for (int j = 0; j < d; j++) {
                double w = i <= j ? want[i + j * d] : want[j + i * d];
                if (Double.doubleToRawLongBits(w) != Double.doubleToRawLongBits(cpu[i][j])) {
                    differ++;
                }
                assertEquals(Double.doubleToRawLongBits(cpu[i][j]), Double.doubleToRawLongBits(auto[i][j]),
                        "auto vs cpu at " + i + "," + j);
            }
        }
        assertEquals(0, differ, "entries of the CPU backend's H differing from the pre-seam dsyrk replay");
    }

    @Test
    void cudaWithoutAGpuFailsNamingTheReasonAndBadNamesAreRefused(@TempDir Path tmp) {
        Path npy = RealData.miniLm().resolve("activations/layer0_attn_in.calib.npy");
        new ActivationImporter(CONF, 64).run(List.of(new ActivationImporter.Source("attn_in", npy, null)),
                tmp.resolve("act").toString(), false);
        BadInputException e = assertThrows(BadInputException.class,
                () -> HessianJob.run(SPARK, cfg(tmp, "h", 2, 8, "cuda"), s -> { }));
        assertTrue(e.getMessage().startsWith("--backend cuda: backend cuda is unavailable: "), e.getMessage());
        assertEquals(null, HessianArtifact.committed(CONF, tmp.resolve("h").toString(), "attn_in"), "nothing committed");
        assertThrows(IllegalArgumentException.class, () -> cfg(tmp, "h", 2, 8, "gpu"));
    }
}
