package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.babaiquant.BadInputException;

import java.io.Serializable;
import java.util.HashMap;
import java.util.Map;

/** Session creation and the few Spark helpers the jobs share. */
public final class SparkSupport {
    private SparkSupport() {}

    /**
     * The active session (a test's), else a new one: under spark-submit on its master (whatever {@code master} says),
     * otherwise in-process on {@code master} (default {@code local[*]}), bound to loopback.
     */
    public static SparkSession session(String master, String appName) {
        SparkSession active = SparkSession.getActiveSession().isDefined() ? SparkSession.getActiveSession().get()
                : SparkSession.getDefaultSession().isDefined() ? SparkSession.getDefaultSession().get() : null;
        if (active != null) {
            return active;
        }
        SparkSession.Builder b = SparkSession.builder().appName(appName);
        // under spark-submit (it sets spark.master) its --master wins over a config's or option's master: a DAG that
        // submits to the cluster must not run the stage in the driver because conf/pipeline.yaml says local[*]
        if (System.getProperty("spark.master") == null) {
            b.master(master == null ? "local[*]" : master);
            b.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1");
        }
        return b.getOrCreate();
    }

    /** Hadoop settings to ship to executors (fs.* keys: S3A endpoint, credentials providers, ...). */
    public static HadoopConf hadoopConf(SparkSession spark) {
        Map<String, String> m = new HashMap<>();
        for (Map.Entry<String, String> e : spark.sparkContext().hadoopConfiguration()) {
            if (e.getKey().startsWith("fs.")) {
                m.put(e.getKey(), e.getValue());
            }
        }
        return new HadoopConf(m);
    }

    /** A serialisable snapshot of Hadoop settings. */
    public record HadoopConf(Map<String, String> entries) implements Serializable {
        public Configuration get() {
            Configuration c = new Configuration();
            entries.forEach(c::set);
            return c;
        }
    }

    /** The first BadInputException in a cause chain (Spark wraps task failures), or null. */
    public static BadInputException badInput(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof BadInputException b) {
                return b;
            }
            if (c.getCause() == null && c.getMessage() != null && c.getMessage().contains("BadInputException: ")) {
                String msg = c.getMessage();
                int i = msg.indexOf("BadInputException: ") + "BadInputException: ".length();
                int end = msg.indexOf('\n', i);
                return new BadInputException(end < 0 ? msg.substring(i) : msg.substring(i, end), t);
            }
        }
        return null;
    }

    /** Bytes a task may use: Spark's unified memory share of the executor heap (the driver's in local mode). */
    public static long usableTaskMemory(SparkSession spark) {
        String exec = spark.conf().getOption("spark.executor.memory").getOrElse(() -> null);
        boolean local = spark.sparkContext().isLocal();
        long heap = local || exec == null ? Runtime.getRuntime().maxMemory() : parseBytes(exec);
        double fraction = Double.parseDouble(spark.conf().get("spark.memory.fraction", "0.6"));
        return (long) ((heap - 300L * 1024 * 1024) * fraction);
    }

    /** Concurrent tasks per executor: local[N] threads, else spark.executor.cores. */
    public static int tasksPerExecutor(SparkSession spark) {
        if (spark.sparkContext().isLocal()) {
            return spark.sparkContext().defaultParallelism();
        }
        return Integer.parseInt(spark.conf().get("spark.executor.cores", "1"))
                / Integer.parseInt(spark.conf().get("spark.task.cpus", "1"));
    }

    static long parseBytes(String s) {
        String t = s.trim().toLowerCase(java.util.Locale.ROOT);
        long mult = 1L << 20; // Spark's default unit for executor memory is MiB
        char last = t.charAt(t.length() - 1);
        if (last == 'b') {
            t = t.substring(0, t.length() - 1);
            last = t.charAt(t.length() - 1);
        }
        switch (last) {
            case 'k' -> mult = 1L << 10;
            case 'm' -> mult = 1L << 20;
            case 'g' -> mult = 1L << 30;
            case 't' -> mult = 1L << 40;
            default -> {
                return Long.parseLong(t) * mult;
            }
        }
        return Long.parseLong(t.substring(0, t.length() - 1)) * mult;
    }
}
