package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.mllib.linalg.Matrix;
import org.apache.spark.mllib.linalg.Vector;
import org.apache.spark.mllib.linalg.Vectors;
import org.apache.spark.mllib.linalg.distributed.RowMatrix;
import org.babaiquant.io.Npy;
import org.babaiquant.spark.HessianArtifact;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The pipeline on a real Spark standalone cluster, as the Airflow DAG runs it: a master and two workers started as
 * separate JVMs from the Spark jars on 127.0.0.1 (no Spark distribution: a SPARK_HOME of a RELEASE file and links to
 * the jars), every stage submitted with {@code SparkSubmit --master spark://127.0.0.1:PORT} exactly as the DAG's
 * task renders it (conf/airflow/babai_quant_dag.py, in its order), with the repository's conf/spark-defaults.conf
 * (Kryo and its registrator included) scaled down only in memory and cores. One executor JVM is killed with SIGKILL
 * in the middle of the Hessian stage and again in the quantize stage: Spark loses tasks, re-runs them, and every
 * artifact equals the in-process local run's byte for byte (reports and shards: every column but the measured
 * seconds and the input fingerprint, which hashes the held-out activations' URI). Each Hessian also equals MLlib's
 * own distributed Gramian ({@code RowMatrix.computeGramianMatrix}) of the same activations to float64 round-off.
 *
 * <p>The kill is deterministic, with no test hook in the application: the first executor of the stage that logs
 * {@code Running task} is frozen (SIGSTOP) and killed once the driver has a task on it whose result it never sent
 * ({@link ExecutorKiller}); the driver's log must then show that task lost and finished in another attempt.
 * Part of the default {@code mvn verify}, with no switch to turn it off. Needs the packaged
 * application ({@code mvn verify} builds it first) and python3 (to render the DAG); skips itself without them.
 */
class SparkClusterTest {
    private static final Path TARGET = RealData.repoRoot().resolve("spark-jobs/target");
    /** Heaps: the machine is shared; the MiniLM layers need far less (largest quantize task ~70 MiB). */
    private static final String DAEMON_HEAP = "-Xmx256m";
    private static final Map<String, String> SCALED = Map.of(
            "spark.driver.memory", "768m", "spark.executor.memory", "768m", "spark.executor.cores", "2");
    private static final List<Process> daemons = new ArrayList<>();

    @TempDir
    static Path dir;

    @AfterAll
    static void stopCluster() {
        for (Process p : daemons) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
    }

    @Test
    void dagStagesOnAStandaloneClusterSurviveExecutorKillsAndEqualTheLocalRun() throws Exception {
        Path sparkCp = TARGET.resolve("spark-classpath.txt");
        Path app = TARGET.resolve("babai-quant-spark-jobs-0.1.0-SNAPSHOT-app.jar");
        Assumptions.assumeTrue(Files.exists(sparkCp) && Files.exists(app), "application not packaged: run mvn verify");
        Path local = PipelineTest.LocalRun.work(); // the reference: the same pipeline in-process, local[*]

        // SPARK_HOME as the workers need it to launch executors: RELEASE + jars/
        Path home = Files.createDirectories(dir.resolve("spark-home/jars"));
        Files.writeString(home.getParent().resolve("RELEASE"), "Spark 4.2.0 (jars of the babai-quant build)\n");
        for (String jar : Files.readString(sparkCp).strip().split(":")) {
            Path link = home.resolve(Path.of(jar).getFileName());
            if (jar.endsWith(".jar") && !Files.exists(link)) {
                Files.createSymbolicLink(link, Path.of(jar));
            }
        }
        Path sparkHome = home.getParent();
        String classpath = home + "/*";

        // the deployment's conf folder: the repository's files, spark-defaults.conf scaled in memory and cores only
        Path conf = Files.createDirectories(dir.resolve("conf"));
        Files.writeString(conf.resolve("spark-defaults.conf"), scaledDefaults());
        Files.copy(RealData.repoRoot().resolve("conf/s3a.properties"), conf.resolve("s3a.properties"));
        PipelineTest.repoConfig(conf); // conf/pipeline.yaml with absolute data paths

        int port = freePort();
        String master = "spark://127.0.0.1:" + port;
        daemons.add(daemon(sparkHome, classpath, dir.resolve("master.log"), "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1", "--port", String.valueOf(port), "--webui-port", String.valueOf(freePort())));
        awaitLog(dir.resolve("master.log"), "I have been elected leader", 300);
        List<Process> workers = new ArrayList<>();
        for (int w = 0; w < 2; w++) {
            Path log = dir.resolve("worker" + w + ".log");
            Process p = daemon(sparkHome, classpath, log, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                    "--cores", "2", "--memory", "1g", "--work-dir", Files.createDirectories(dir.resolve("worker" + w)).toString(),
                    "--webui-port", String.valueOf(freePort()), master);
            daemons.add(p);
            workers.add(p);
        }
        for (int w = 0; w < 2; w++) {
            awaitLog(dir.resolve("worker" + w + ".log"), "Successfully registered with master", 300); // minutes under load
        }

        // the DAG's own command lines, rendered by Airflow's rules, with this cluster's deployment settings
        String model = local.resolve("model/model.safetensors").toString();
        Path runs = dir.resolve("runs");
        List<AirflowDagTest.Task> tasks = AirflowDagTest.render(dir, Map.of("BABAI_SPARK_SUBMIT", "spark-submit",
                "BABAI_APP_JAR", app.toString(), "BABAI_CONF_DIR", conf.toString(), "BABAI_SPARK_MASTER", master),
                "{\"model_uri\": \"" + model + "\", \"work_uri\": \"" + runs + "\"}");
        Assumptions.assumeTrue(tasks != null, "python3 is not installed");
        String chosen = tasks.get(0).branchChoice();
        assertEquals("import", chosen);
        List<String> driverJvm = new ArrayList<>(List.of(java(), "-Xmx" + SCALED.get("spark.driver.memory")));
        driverJvm.addAll(List.of(property(Files.readString(conf.resolve("spark-defaults.conf")), "spark.driver.extraJavaOptions").split("\\s+")));
        driverJvm.addAll(List.of("-cp", classpath, "org.apache.spark.deploy.SparkSubmit"));
        for (AirflowDagTest.Task t : tasks) {
            if (t.argv().isEmpty() || t.id().equals("capture") && !chosen.equals("capture")
                    || t.id().equals("import") && !chosen.equals("import")) {
                continue; // the branch task, and the activation stage it skips
            }
            List<String> cmd = new ArrayList<>(driverJvm);
            cmd.addAll(scaledConfs(t.argv().subList(1, t.argv().size())));
            boolean kill = t.id().equals("hessian") || t.id().equals("quantize");
            Path driverLog = dir.resolve("driver-" + t.id() + ".log");
            long t0 = System.nanoTime();
            String out;
            String killedExecutor = null;
            if (kill) {
                try (ExecutorKiller killer = new ExecutorKiller(workers, driverLog)) {
                    out = run(dir, cmd, t.id());
                    assertTrue(killer.killed.get() != null, t.id() + ": no executor was killed while running a task (frozen: "
                            + killer.executorId + ")\n" + out);
                    killedExecutor = killer.executorId;
                    System.out.println("[cluster] " + t.id() + ": killed executor " + killer.killed.get());
                }
            } else {
                out = run(dir, cmd, t.id());
            }
            System.out.printf(java.util.Locale.ROOT, "[cluster] stage %s: %.1f s%s%n", t.id(), (System.nanoTime() - t0) / 1e9,
                    kill ? " (one executor killed)" : "");
            if (List.of("capture", "hessian", "quantize").contains(t.id())) {
                // a Spark stage: on the cluster's executors, not in the driver (conf/pipeline.yaml says local[*])
                assertTrue(out.contains("Connected to Spark cluster with app ID") && !out.contains("Starting executor ID driver"),
                        t.id() + " did not run on the cluster:\n" + out);
            }
            if (killedExecutor != null) {
                assertLostAndRerun(out, killedExecutor, t.id()); // the running task was lost, and Spark ran it again
            }
        }

        Path work = runs.resolve("gptq-4bit/20260105");
        for (String kind : new String[] {"activations", "eval-activations", "hessians", "quantized/rows", "gptq"}) {
            Map<String, byte[]> a = S3PipelineTest.files(new Configuration(), local.resolve(kind).toString());
            Map<String, byte[]> b = S3PipelineTest.files(new Configuration(), work.resolve(kind).toString());
            assertEquals(a.keySet(), b.keySet(), kind);
            for (String k : a.keySet()) {
                if (k.endsWith(".parquet")) {
                    assertSameParquet(a.get(k), b.get(k), kind + "/" + k);
                } else if (k.endsWith(HessianArtifact.SIDECAR)) {
                    // its fingerprint hashes the activation files' Parquet footers, whose list order varies (above)
                    assertEquals(withoutFingerprints(new String(a.get(k), StandardCharsets.UTF_8)),
                            withoutFingerprints(new String(b.get(k), StandardCharsets.UTF_8)), kind + "/" + k);
                } else {
                    assertArrayEquals(a.get(k), b.get(k), kind + "/" + k + " differs between the local and the cluster run");
                }
            }
        }
        for (String kind : new String[] {"shards", "reports"}) {
            assertEquals(S3PipelineTest.decoded(new Configuration(), local.resolve("quantized").toString(), kind).stream()
                            .map(SparkClusterTest::withoutFingerprints).toList(),
                    S3PipelineTest.decoded(new Configuration(), work.resolve("quantized").toString(), kind).stream()
                            .map(SparkClusterTest::withoutFingerprints).toList(), kind);
        }
        assertHessiansEqualMllibGramians(work.resolve("hessians"));
    }

    /**
     * Text with every Hessian fingerprint masked (JSON {@code "fingerprint": "…"} and decoded {@code hessian_fingerprint=…}):
     * it hashes the activation files' Parquet footers, which differ between JVMs in list order only (see below).
     */
    static String withoutFingerprints(String text) {
        return text.replaceAll("\"fingerprint\": \"[0-9a-f]+\"", "\"fingerprint\": \"…\"")
                .replaceAll("(?m)^hessian_fingerprint=.*$", "hessian_fingerprint=…");
    }

    /**
     * Two Parquet files equal byte for byte up to the order of two lists in the footer, which parquet-mr emits in an
     * order that varies from JVM to JVM (the reliability issue): the key-value metadata and each column chunk's
     * encodings (collected in a HashSet of enum constants, whose hash codes are per-JVM identity hashes). The data
     * pages and the footer length must be identical bytes, and the footers equal once those two lists are sorted.
     */
    static void assertSameParquet(byte[] a, byte[] b, String what) throws IOException {
        assertEquals(a.length, b.length, what + ": file sizes differ");
        int footer = java.nio.ByteBuffer.wrap(a, a.length - 8, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt();
        int data = a.length - 8 - footer;
        assertArrayEquals(Arrays.copyOf(a, data), Arrays.copyOf(b, data), what + ": data pages differ");
        assertArrayEquals(Arrays.copyOfRange(a, a.length - 8, a.length), Arrays.copyOfRange(b, b.length - 8, b.length), what);
        org.apache.parquet.format.FileMetaData fa = org.apache.parquet.format.Util.readFileMetaData(new java.io.ByteArrayInputStream(a, data, footer));
        org.apache.parquet.format.FileMetaData fb = org.apache.parquet.format.Util.readFileMetaData(new java.io.ByteArrayInputStream(b, data, footer));
        for (org.apache.parquet.format.FileMetaData f : List.of(fa, fb)) {
            List<org.apache.parquet.format.KeyValue> kv = new ArrayList<>(f.getKey_value_metadata());
            kv.sort(java.util.Comparator.comparing(org.apache.parquet.format.KeyValue::getKey));
            f.setKey_value_metadata(kv);
            for (org.apache.parquet.format.RowGroup g : f.getRow_groups()) {
                for (org.apache.parquet.format.ColumnChunk c : g.getColumns()) {
                    List<org.apache.parquet.format.Encoding> enc = new ArrayList<>(c.getMeta_data().getEncodings());
                    enc.sort(java.util.Comparator.naturalOrder());
                    c.getMeta_data().setEncodings(enc);
                }
            }
        }
        assertEquals(fa, fb, what + ": footers differ beyond the order of their key-value metadata and encoding lists");
    }

    /**
     * H of each site against {@code RowMatrix.computeGramianMatrix} of the site's calibration activations (the same
     * float32 values the import stage tiled): float64 sums of n products in two orders differ by at most
     * 2·n·eps·Σ|x_i x_j| ≤ 2·n·eps·sqrt(G_ii G_jj) (Cauchy–Schwarz), the bound used per entry.
     */
    private static void assertHessiansEqualMllibGramians(Path hessians) throws IOException {
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(SparkTestSession.get().sparkContext());
        Path acts = RealData.miniLm().resolve("activations");
        int sites = 0;
        for (String site : List.of("layer0_attn_in", "layer0_o_proj_in", "layer0_ffn_up_in", "layer0_ffn_down_in")) {
            double[][] x = Npy.readMatrix(acts.resolve(site + ".calib.npy"));
            List<Vector> rows = Arrays.stream(x).map(Vectors::dense).toList();
            JavaRDD<Vector> rdd = jsc.parallelize(rows, 4);
            Matrix g = new RowMatrix(rdd.rdd()).computeGramianMatrix();
            HessianArtifact.Loaded h = HessianArtifact.read(new Configuration(), hessians.toString(), site);
            int d = x[0].length;
            assertEquals(d, g.numRows());
            assertEquals(x.length, h.meta().tokens());
            assertEquals("sum", h.meta().normalisation()); // H = Σ xᵀx, as the Gramian
            double eps = Math.ulp(1.0);
            for (int i = 0; i < d; i++) {
                for (int j = 0; j < d; j++) {
                    double tol = 2 * x.length * eps * Math.sqrt(g.apply(i, i) * g.apply(j, j));
                    assertEquals(g.apply(i, j), h.h()[i][j], tol, site + " H[" + i + "][" + j + "]");
                }
            }
            sites++;
        }
        assertEquals(4, sites);
    }

    /**
     * conf/spark-defaults.conf with only its memory and core settings replaced and the install location added to the
     * executors' JVM options (everything else as committed).
     */
    private static String scaledDefaults() throws IOException {
        StringBuilder sb = new StringBuilder();
        Set<String> seen = new HashSet<>();
        for (String line : Files.readAllLines(RealData.repoRoot().resolve("conf/spark-defaults.conf"))) {
            String key = line.strip().split("\\s+", 2)[0];
            if (SCALED.containsKey(key)) {
                line = key + " " + SCALED.get(key);
                seen.add(key);
            }
            if (key.equals("spark.executor.extraJavaOptions")) {
                // the deployment's install location, as docs/CLUSTER.md asks of every cluster: executors load the same
                // OpenBLAS as the driver (the app jar alone, copied into a worker's folder, has none), so that the
                // CPU Hessian sums round the same way on every JVM
                line = line + " -Dbabai.home=" + RealData.repoRoot().toAbsolutePath();
            }
            sb.append(line).append('\n');
        }
        assertEquals(SCALED.keySet(), seen, "conf/spark-defaults.conf sets memory and cores");
        return sb.toString();
    }

    /** The DAG's per-stage {@code --conf} memory and core settings scaled like the properties file. */
    private static List<String> scaledConfs(List<String> argv) {
        List<String> out = new ArrayList<>(argv);
        for (int i = 0; i + 1 < out.size(); i++) {
            if (out.get(i).equals("--conf")) {
                String key = out.get(i + 1).substring(0, out.get(i + 1).indexOf('='));
                if (SCALED.containsKey(key)) {
                    out.set(i + 1, key + "=" + SCALED.get(key));
                }
            }
        }
        return out;
    }

    private static String property(String file, String key) {
        return file.lines().map(String::strip).filter(l -> l.startsWith(key + " ")).map(l -> l.substring(key.length()).strip())
                .findFirst().orElseThrow(() -> new AssertionError(key + " missing"));
    }

    /**
     * Makes one executor of the stage's application lose a task that is provably running, however loaded the machine
     * and however short the tasks: the first executor that logs {@code Running task} is frozen with SIGSTOP (nothing
     * it runs can finish or report any more), then SIGKILLed as soon as the driver's log shows a task started on it
     * whose result it never sent (its own frozen log has no {@code Finished task … (TID n)} and the driver has none
     * either). {@link #close} stops the watch and kills a frozen executor that never got such a task.
     */
    private static final class ExecutorKiller implements AutoCloseable {
        private static final Pattern STARTED = Pattern.compile("Starting task \\S+ in stage \\S+ \\(TID (\\d+)\\) \\([^,]*,\\s*executor ([^,\\s]+),");
        private static final Pattern FINISHED = Pattern.compile("Finished task \\S+ in stage \\S+ \\(TID (\\d+)\\)");
        private final Thread thread;
        private final AtomicReference<ProcessHandle> frozen = new AtomicReference<>();
        /** "APP/EXECUTOR TID n" once killed. */
        final AtomicReference<String> killed = new AtomicReference<>();
        volatile String executorId;

        ExecutorKiller(List<Process> workers, Path driverLog) throws IOException {
            Set<Path> before = new HashSet<>(executorLogs());
            thread = new Thread(() -> {
                try {
                    Path log = null;
                    while (log == null) {
                        for (Path l : executorLogs()) {
                            if (!before.contains(l) && Files.readString(l, StandardCharsets.ISO_8859_1).contains("Running task")) {
                                log = l;
                                break;
                            }
                        }
                        Thread.sleep(10);
                    }
                    String app = log.getParent().getParent().getFileName().toString();
                    String exec = log.getParent().getFileName().toString();
                    ProcessHandle victim = workers.stream().flatMap(Process::descendants)
                            .filter(ph -> ph.info().commandLine().map(c -> c.contains("CoarseGrainedExecutorBackend")
                                    && c.contains(app) && c.contains("--executor-id " + exec)).orElse(false))
                            .findFirst().orElseThrow(() -> new AssertionError("no process for executor " + app + "/" + exec));
                    assertEquals(0, new ProcessBuilder("kill", "-STOP", String.valueOf(victim.pid())).start().waitFor());
                    frozen.set(victim);
                    executorId = exec;
                    while (true) {
                        Set<String> sent = tids(FINISHED, Files.readString(log, StandardCharsets.ISO_8859_1), null);
                        String driver = Files.readString(driverLog, StandardCharsets.ISO_8859_1);
                        Set<String> running = tids(STARTED, driver, exec);
                        running.removeAll(tids(FINISHED, driver, null));
                        running.removeAll(sent);
                        if (!running.isEmpty()) {
                            victim.destroyForcibly(); // SIGKILL: the task dies with its executor
                            killed.set(app + "/" + exec + " TID " + running.iterator().next());
                            return;
                        }
                        Thread.sleep(10);
                    }
                } catch (InterruptedException ignored) {
                    // the stage is over
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }, "executor-killer");
            thread.setDaemon(true);
            thread.start();
        }

        /** TIDs of a pattern's matches (group 2, when there is one, must equal {@code executor}). */
        private static Set<String> tids(Pattern p, String log, String executor) {
            Set<String> out = new HashSet<>();
            Matcher m = p.matcher(log);
            while (m.find()) {
                if (executor == null || m.group(2).equals(executor)) {
                    out.add(m.group(1));
                }
            }
            return out;
        }

        @Override
        public void close() throws InterruptedException {
            thread.interrupt();
            thread.join();
            ProcessHandle f = frozen.get();
            if (f != null && f.isAlive()) {
                f.destroyForcibly();
            }
        }
    }

    /**
     * The driver's log shows that the killed executor's task was lost and that the same task (same stage, same
     * partition index) then finished in another attempt.
     */
    static void assertLostAndRerun(String driverLog, String executor, String stage) {
        Matcher lost = Pattern.compile("Lost task (\\d+)\\.(\\d+) in stage (\\d+)\\.(\\d+) \\(TID \\d+\\) \\([^)]*executor "
                + Pattern.quote(executor) + "\\): ExecutorLostFailure").matcher(driverLog);
        assertTrue(lost.find(), stage + ": no task of executor " + executor + " lost (ExecutorLostFailure):\n" + driverLog);
        String index = lost.group(1);
        String attempt = lost.group(2) + " " + lost.group(4);
        Matcher done = Pattern.compile("Finished task " + index + "\\.(\\d+) in stage " + lost.group(3) + "\\.(\\d+) ")
                .matcher(driverLog.substring(lost.end()));
        boolean rerun = false;
        while (done.find()) {
            rerun |= !(done.group(1) + " " + done.group(2)).equals(attempt);
        }
        assertTrue(rerun, stage + ": lost task " + index + " of stage " + lost.group(3) + " never finished in another attempt:\n" + driverLog);
    }

    /** Executors' stderr files under the workers' folders (WORKDIR/APP/EXEC/stderr). */
    private static List<Path> executorLogs() throws IOException {
        List<Path> logs = new ArrayList<>();
        for (int w = 0; w < 2; w++) {
            try (Stream<Path> s = Files.walk(dir.resolve("worker" + w), 3)) {
                s.filter(p -> p.getFileName().toString().equals("stderr")).forEach(logs::add);
            }
        }
        return logs;
    }

    private static String java() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    private static Process daemon(Path sparkHome, String classpath, Path log, String mainClass, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(java(), DAEMON_HEAP));
        java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments().stream()
                .filter(a -> a.startsWith("--add-opens")).forEach(cmd::add);
        cmd.addAll(List.of("-cp", classpath, mainClass));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().putAll(Map.of("SPARK_HOME", sparkHome.toString(), "SPARK_SCALA_VERSION", "2.13",
                "SPARK_LOCAL_IP", "127.0.0.1", "JAVA_HOME", System.getProperty("java.home")));
        return pb.start();
    }

    private static void awaitLog(Path log, String text, int seconds) throws Exception {
        long deadline = System.nanoTime() + seconds * 1_000_000_000L;
        while (System.nanoTime() < deadline) {
            if (Files.exists(log) && Files.readString(log, StandardCharsets.ISO_8859_1).contains(text)) {
                return;
            }
            Thread.sleep(100);
        }
        throw new AssertionError("no '" + text + "' in " + log + " after " + seconds + " s:\n"
                + (Files.exists(log) ? Files.readString(log, StandardCharsets.ISO_8859_1) : "(no log)"));
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private static String run(Path cwd, List<String> cmd, String stage) throws Exception {
        Path log = dir.resolve("driver-" + stage + ".log");
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
        Process p = pb.start();
        boolean done = p.waitFor(900, TimeUnit.SECONDS); // a loaded 2-core machine: executors take a minute to start
        if (!done) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
        String out = Files.readString(log, StandardCharsets.UTF_8);
        assertTrue(done, "stage " + stage + " timed out:\n" + out);
        assertEquals(0, p.exitValue(), "stage " + stage + ":\n" + out);
        return out;
    }
}
