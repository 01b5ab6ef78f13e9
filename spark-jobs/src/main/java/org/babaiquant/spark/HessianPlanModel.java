package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.BadInputException;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * The Hessian stage's memory and time model, for {@code hessian --plan} and the check before a run.
 *
 * <p>Memory. Three kinds of task: an XᵀX task holds one slice's d×d accumulator, its blocks and an update buffer
 * ({@link HessianJob.SitePlan#taskBytes}); a reduce task sums one block's partials; a writing task receives, sorted,
 * the stored blocks (upper triangle, {@code blockSize}² doubles each) of <em>every</em> site that {@link
 * HessianJob.SitePartitioner} sends to its partition, and then builds one site's Parquet rows (a second copy of that
 * site's blocks). So a writing task needs Σ blocks of its partition's sites + the largest of them: with few partitions
 * many sites share one (2 partitions for the 88 sites of a 1.1 B model: ≈ 2.2 GB each, which ran out of a 7 GiB heap).
 * Up to {@code concurrent} of them run at once on an executor.
 *
 * <p>Time. The XᵀX work is tokens·d·(d+1) floating-point operations per site (dsyrk on the upper triangle), at the
 * rate of the configured backend's Hessian sum measured here on warmed 1024×1024 updates, spread over the task slots largest slice first. Tokens are
 * estimated as tiles × the rows of each site's first tile (exact when the import cut full tiles). Reading,
 * shuffling and writing are not in the estimate.
 */
public final class HessianPlanModel {
    private HessianPlanModel() {
    }

    /** One writing (reduce) partition: the sites it holds and its peak memory. */
    public record Partition(int index, int sites, long sortBytes, long largestSiteBytes) {
        public long peakBytes() {
            return sortBytes + largestSiteBytes;
        }
    }

    /** Bytes of one site's stored blocks: the upper-triangle blocks (block_row ≤ block_col) of a d×d matrix. */
    public static long blockBytes(int dim, int blockSize) {
        long total = 0;
        int nb = (dim + blockSize - 1) / blockSize;
        for (int bi = 0; bi < nb; bi++) {
            for (int bj = bi; bj < nb; bj++) {
                total += (long) Math.min(blockSize, dim - bi * blockSize) * Math.min(blockSize, dim - bj * blockSize);
            }
        }
        return 8 * total;
    }

    /** The writing partitions of the sites to compute, as the job's {@link HessianJob.SitePartitioner} assigns them. */
    public static List<Partition> partitions(List<HessianJob.SitePlan> plans, int partitions, int blockSize) {
        int n = Math.max(1, partitions);
        HessianJob.SitePartitioner partitioner = new HessianJob.SitePartitioner(n);
        int[] sites = new int[n];
        long[] sort = new long[n];
        long[] largest = new long[n];
        for (HessianJob.SitePlan p : plans) {
            if (p.skip() || p.tiles() == 0) {
                continue;
            }
            int i = partitioner.getPartition(HessianJob.sortKey(p.site(), 0, 0));
            long b = blockBytes(p.dim(), blockSize);
            sites[i]++;
            sort[i] += b;
            largest[i] = Math.max(largest[i], b);
        }
        List<Partition> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new Partition(i, sites[i], sort[i], largest[i]));
        }
        return out;
    }

    /** Memory the writing tasks need on one executor: its {@code concurrent} largest partitions at once. */
    static long writerNeed(List<Partition> parts, int concurrent) {
        return parts.stream().mapToLong(Partition::peakBytes).boxed().sorted((a, b) -> Long.compare(b, a))
                .limit(Math.max(1, concurrent)).mapToLong(Long::longValue).sum();
    }

    /**
     * Refuses, with one line naming the numbers, a plan whose tasks would not fit {@code usable} bytes per executor
     * with {@code concurrent} tasks at once; for the writing tasks it names the smallest partitions value that fits.
     */
    public static void check(List<HessianJob.SitePlan> plans, int partitions, int blockSize, long usable, int concurrent) {
        for (HessianJob.SitePlan p : plans) {
            long need = Math.max(p.taskBytes() * concurrent, p.reducerBytes());
            if (!p.skip() && need > usable) {
                throw new BadInputException(String.format(Locale.ROOT,
                        "site %s (d=%d) needs %.1f MiB per task × %d concurrent tasks = %.1f MiB, more than the %.1f MiB "
                                + "Spark can give tasks on an executor: raise spark.executor.memory (driver memory in local "
                                + "mode, e.g. BABAI_JAVA_OPTS=-Xmx16g) or lower spark.executor.cores",
                        p.site(), p.dim(), p.taskBytes() / 1048576.0, concurrent, need / 1048576.0, usable / 1048576.0));
            }
        }
        List<Partition> parts = partitions(plans, partitions, blockSize);
        long need = writerNeed(parts, concurrent);
        if (need <= usable) {
            return;
        }
        Partition big = parts.stream().max((a, b) -> Long.compare(a.peakBytes(), b.peakBytes())).orElseThrow();
        int computing = (int) plans.stream().filter(p -> !p.skip() && p.tiles() > 0).count();
        int fits = -1;
        for (int n = partitions + 1; n <= Math.max(64, 8 * computing); n++) {
            if (writerNeed(partitions(plans, n, blockSize), concurrent) <= usable) {
                fits = n;
                break;
            }
        }
        String advice = fits > 0
                ? "set partitions to " + fits + " (hessian --partitions, pipeline hessian.partitions) or more"
                : "no partitions value fits (one site's blocks alone are too large): raise spark.executor.memory "
                        + "(driver memory in local mode, e.g. BABAI_JAVA_OPTS=-Xmx16g) or lower spark.executor.cores";
        throw new BadInputException(String.format(Locale.ROOT,
                "with %d partition(s) the writing task of partition %d holds %d site(s)' Hessian blocks: %.1f MiB sorted + "
                        + "%.1f MiB of one site's rows; %d concurrent such task(s) need %.1f MiB, more than the %.1f MiB "
                        + "Spark can give tasks on an executor: %s",
                partitions, big.index(), big.sites(), big.sortBytes() / 1048576.0, big.largestSiteBytes() / 1048576.0,
                Math.min(concurrent, parts.size()), need / 1048576.0, usable / 1048576.0, advice));
    }

    /** Estimated tokens of a site: its tiles × the rows of its first tile (reads that one tile). */
    public static long tokens(Configuration conf, HessianJob.SitePlan p) {
        if (p.tiles() == 0 || p.files().isEmpty()) {
            return 0;
        }
        int[] rows = {0};
        ActivationLayout.SiteFile first = p.files().stream().filter(f -> f.rows() > 0).findFirst().orElseThrow();
        ActivationLayout.read(conf, first.path(), 0, 1, (t, where) -> rows[0] = t.rows());
        return p.tiles() * rows[0];
    }

    /**
     * XᵀX FLOP/s (k·d·(d+1) per update) of {@code backend}'s Hessian sum as the stage runs it ({@link
     * org.babaiquant.core.QuantBackend#hessian}, the CPU one a float64 dsyrk): the median of three timed 1024-token
     * updates of a d = 1024 sum, after two warm-up updates.
     */
    public static double measuredSyrkRate(String backend) {
        int d = 1024;
        int k = 1024;
        float[] x = new float[d * k];
        Random rnd = new Random(1);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        double[] secs = new double[5];
        try (org.babaiquant.core.QuantBackend.HessianSum sum = org.babaiquant.core.QuantBackend.select(backend).hessian(d)) {
            for (int r = 0; r < secs.length; r++) {
                long t0 = System.nanoTime();
                sum.add(x, k);
                secs[r] = (System.nanoTime() - t0) / 1e9;
            }
        }
        double[] timed = Arrays.copyOfRange(secs, 2, 5); // the first two warm up
        Arrays.sort(timed);
        return (double) k * d * (d + 1) / timed[1];
    }

    /** The system load average now (-1 where the OS does not say). */
    public static double loadAverage() {
        return ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage();
    }

    /**
     * Seconds of XᵀX work: each site's slices (tokens split evenly over them) at {@code flopsPerSecond} per slot,
     * spread over {@code slots} slots largest first.
     */
    public static double seconds(List<HessianJob.SitePlan> plans, long[] tokens, double flopsPerSecond, int slots) {
        List<Double> work = new ArrayList<>();
        for (int i = 0; i < plans.size(); i++) {
            HessianJob.SitePlan p = plans.get(i);
            if (p.skip() || p.tiles() == 0 || p.slices() == 0) {
                continue;
            }
            double flops = (double) tokens[i] * p.dim() * (p.dim() + 1.0) / p.slices();
            for (int s = 0; s < p.slices(); s++) {
                work.add(flops / flopsPerSecond);
            }
        }
        work.sort((a, b) -> Double.compare(b, a));
        double[] bins = new double[Math.max(1, slots)];
        for (double w : work) {
            int min = 0;
            for (int i = 1; i < bins.length; i++) {
                if (bins[i] < bins[min]) {
                    min = i;
                }
            }
            bins[min] += w;
        }
        return Arrays.stream(bins).max().orElse(0);
    }
}
