package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.spark.HessianArtifact;
import org.babaiquant.spark.HessianJob;
import org.babaiquant.spark.HessianPlanModel;
import org.babaiquant.spark.QuantizedLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Hessian plan's memory and time model on real MiniLM activations (the four layer-0 sites, d = 384 and 1536):
 * its block bytes against the bytes the stage actually stores, its token estimate against the committed token
 * counts, and its refusal naming a partitions value that fits.
 */
class HessianPlanModelTest {
    private static final SparkSession SPARK = SparkTestSession.get();
    private static final List<String> SITES = List.of("layer0_attn_in", "layer0_o_proj_in", "layer0_ffn_up_in", "layer0_ffn_down_in");
    private static final int BLOCK = 160;

    @TempDir
    Path tmp;

    private Path importSites(int tileRows) {
        List<String> args = new ArrayList<>(List.of("import-activations", "--tile-rows", String.valueOf(tileRows)));
        for (String s : SITES) {
            args.addAll(List.of("--npy", s + "=" + RealData.miniLm().resolve("activations/" + s + ".calib.npy")));
        }
        args.addAll(List.of("--out", tmp.resolve("act").toString()));
        QuantizeLayerCliTest.Run imp = QuantizeLayerCliTest.run(args.toArray(String[]::new));
        assertEquals(0, imp.status(), imp.err());
        return tmp.resolve("act");
    }

    private HessianJob.Config cfg(Path act, int partitions) {
        return new HessianJob.Config(act.toString(), tmp.resolve("h").toString(), List.of(), partitions, 3, BLOCK, false);
    }

    @Test
    void blockBytesAndTokensMatchWhatTheStageStores() throws IOException {
        Path act = importSites(48); // 48 does not divide every site's token count: the estimate is then an upper bound
        HessianJob.Config cfg = cfg(act, 2);
        List<HessianJob.SitePlan> plans = HessianJob.plan(SPARK, cfg);
        long[] tokens = plans.stream().mapToLong(p -> HessianPlanModel.tokens(new Configuration(), p)).toArray();
        HessianJob.run(SPARK, cfg, s -> { });
        for (int i = 0; i < plans.size(); i++) {
            HessianJob.SitePlan p = plans.get(i);
            // the bytes of the blocks the writing task sorts and writes: rows·cols·8 summed over the stored rows
            long stored = 0;
            try (Stream<Path> files = Files.list(tmp.resolve("h").resolve("site=" + p.site()))) {
                for (Path f : files.filter(x -> x.toString().endsWith(".parquet")).toList()) {
                    org.apache.hadoop.fs.Path hp = new org.apache.hadoop.fs.Path(f.toUri());
                    long[] sum = {0};
                    QuantizedLayout.readFile(new Configuration(), hp.getFileSystem(new Configuration()).getFileStatus(hp), g -> {
                        long bytes = 8L * g.getInteger("rows", 0) * g.getInteger("cols", 0);
                        assertEquals(bytes, g.getBinary("data", 0).length());
                        sum[0] += bytes;
                    });
                    stored += sum[0];
                }
            }
            assertEquals(stored, HessianPlanModel.blockBytes(p.dim(), BLOCK), p.site());
            long actual = HessianArtifact.committed(new Configuration(), cfg.out(), p.site()).tokens();
            assertTrue(tokens[i] >= actual && tokens[i] < actual + 48L * p.files().size(),
                    p.site() + ": estimated " + tokens[i] + " tokens, actual " + actual);
        }
        // the time estimate: the total work at the rate, spread over slots (one slot: the plain sum)
        double rate = 1e9;
        double sum = 0;
        for (int i = 0; i < plans.size(); i++) {
            sum += (double) tokens[i] * plans.get(i).dim() * (plans.get(i).dim() + 1.0) / rate;
        }
        assertEquals(sum, HessianPlanModel.seconds(plans, tokens, rate, 1), 1e-9 * sum);
        double two = HessianPlanModel.seconds(plans, tokens, rate, 2);
        assertTrue(two >= sum / 2 && two < sum, two + " on 2 slots, " + sum + " on one");
        assertTrue(HessianPlanModel.measuredSyrkRate("cpu") > 1e7, "the CPU Hessian sum runs at more than 10 MFLOP/s");
    }

    @Test
    void refusesWhenTheSitesOfOnePartitionDoNotFitAndNamesAPartitionsValueThatDoes() {
        Path act = importSites(64);
        // the four real sites, as thirty layers' worth (renamed copies): many sites per writing partition, as in a
        // 22-layer model, so that the writing tasks, not one site's XᵀX task, are what does not fit
        List<HessianJob.SitePlan> plans = new ArrayList<>();
        for (int layer = 0; layer < 30; layer++) {
            for (HessianJob.SitePlan p : HessianJob.plan(SPARK, cfg(act, 1))) {
                plans.add(new HessianJob.SitePlan(p.site().replace("layer0_", "layer" + layer + "_"), p.dim(), p.tiles(),
                        p.tokens(), p.slices(), p.files(), p.fingerprint(), p.skip(), p.taskBytes(), p.reducerBytes(),
                        p.writerBytes()));
            }
        }
        long all = 0;
        long largest = 0;
        for (HessianJob.SitePlan p : plans) {
            all += HessianPlanModel.blockBytes(p.dim(), BLOCK);
            largest = Math.max(largest, HessianPlanModel.blockBytes(p.dim(), BLOCK));
        }
        List<HessianPlanModel.Partition> one = HessianPlanModel.partitions(plans, 1, BLOCK);
        assertEquals(1, one.size());
        assertEquals(120, one.get(0).sites());
        assertEquals(all + largest, one.get(0).peakBytes(), "every site's blocks sorted in one task, plus one site's rows");

        long usable = one.get(0).peakBytes() - 1; // one byte short of the single partition's peak
        BadInputException e = assertThrows(BadInputException.class, () -> HessianPlanModel.check(plans, 1, BLOCK, usable, 1));
        String m = e.getMessage();
        assertTrue(m.startsWith("with 1 partition(s) the writing task of partition 0 holds 120 site(s)") && !m.contains("\n"), m);
        java.util.regex.Matcher fit = java.util.regex.Pattern.compile("set partitions to (\\d+) ").matcher(m);
        assertTrue(fit.find(), m);
        int n = Integer.parseInt(fit.group(1));
        HessianPlanModel.check(plans, n, BLOCK, usable, 1); // fits
        for (int k = 1; k < n; k++) {
            int parts = k;
            assertThrows(BadInputException.class, () -> HessianPlanModel.check(plans, parts, BLOCK, usable, 1), "smallest: " + k);
        }
        // the named value really spreads the sites: no partition holds more than fits
        for (HessianPlanModel.Partition p : HessianPlanModel.partitions(plans, n, BLOCK)) {
            assertTrue(p.peakBytes() <= usable, p.toString());
        }
        // eight concurrent writing tasks: the eight largest partitions at once
        BadInputException twice = assertThrows(BadInputException.class, () -> HessianPlanModel.check(plans, n, BLOCK, usable, 2 * 4));
        assertTrue(twice.getMessage().contains("partitions") || twice.getMessage().contains("spark.executor.memory"), twice.getMessage());
        // a site whose XᵀX task alone does not fit is refused first, whatever the partitions
        long task = plans.stream().mapToLong(HessianJob.SitePlan::taskBytes).max().orElseThrow();
        BadInputException first = assertThrows(BadInputException.class, () -> HessianPlanModel.check(plans, n, BLOCK, task - 1, 1));
        assertTrue(first.getMessage().contains("(d=1536) needs") && first.getMessage().contains("per task"), first.getMessage());
    }

    @Test
    void planCommandPrintsTheWritingTasksAndTheTimeEstimate() {
        Path act = importSites(64);
        QuantizeLayerCliTest.Run plan = QuantizeLayerCliTest.run("hessian", "--activations", act.toString(),
                "--out", tmp.resolve("h").toString(), "--partitions", "2", "--block-size", String.valueOf(BLOCK), "--plan");
        assertEquals(0, plan.status(), plan.err());
        assertTrue(plan.out().contains("writing tasks: 2 partition(s)") && plan.out().contains("estimated XᵀX time")
                && plan.out().contains("GFLOP/s per slot at load average"), plan.out());
        assertTrue(!Files.exists(tmp.resolve("h")), "--plan writes nothing");
    }
}
