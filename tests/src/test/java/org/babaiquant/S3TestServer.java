package org.babaiquant;

import org.apache.hadoop.conf.Configuration;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A real S3 server for tests: S3Proxy 4.1.0 (jar-with-dependencies) in a child JVM (java from {@code java.home}) on a
 * free 127.0.0.1 port, with a filesystem store under a directory (survives {@link #stop()}/{@link #start()}) or an
 * in-memory (transient) store. The filesystem store is S3Proxy's {@code filesystem-nio2}. Both stores emulate folders:
 * a renamed prefix that had a directory marker can leave an empty folder behind (see S3TestServerTest). The jar is kept off the test classpath (its Jetty and Jackson would clash with
 * Spark's); the pom passes its path as {@code babai.s3proxy.jar}. The credentials are fixed test values.
 */
final class S3TestServer implements AutoCloseable {
    static final String IDENTITY = "babai-test-identity";
    static final String CREDENTIAL = "babai-test-credential";

    private final Path workDir;
    private final Path store;
    private final int port;
    private Process process;

    private S3TestServer(Path workDir, boolean filesystem) {
        this.workDir = workDir;
        this.store = filesystem ? workDir.resolve("store") : null;
        this.port = freePort();
    }

    /** Starts a server with a filesystem store under {@code workDir} (null: transient, in memory) and creates the buckets. */
    static S3TestServer start(Path workDir, boolean filesystem, String... buckets) {
        S3TestServer s = new S3TestServer(workDir, filesystem);
        s.start();
        for (String b : buckets) {
            s.createBucket(b);
        }
        return s;
    }

    static Path jar() {
        String p = System.getProperty("babai.s3proxy.jar");
        if (p != null && Files.isRegularFile(Path.of(p))) {
            return Path.of(p);
        }
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            if (e.contains("s3proxy") && e.endsWith("jar-with-dependencies.jar")) {
                return Path.of(e);
            }
        }
        throw new IllegalStateException("s3proxy jar not found (system property babai.s3proxy.jar = " + p + ")");
    }

    /** (Re)starts the child JVM on the same port and waits until it accepts connections. */
    synchronized void start() {
        if (process != null && process.isAlive()) {
            return;
        }
        try {
            Files.createDirectories(workDir);
            Path props = workDir.resolve("s3proxy.conf");
            StringBuilder conf = new StringBuilder()
                    .append("s3proxy.endpoint=").append(endpoint()).append('\n')
                    .append("s3proxy.authorization=aws-v2-or-v4\n")
                    .append("s3proxy.identity=").append(IDENTITY).append('\n')
                    .append("s3proxy.credential=").append(CREDENTIAL).append('\n')
                    .append("s3proxy.ignore-unknown-headers=true\n")
                    .append("jclouds.identity=").append(IDENTITY).append('\n')
                    .append("jclouds.credential=").append(CREDENTIAL).append('\n');
            if (store != null) {
                Files.createDirectories(store);
                conf.append("jclouds.provider=filesystem-nio2\njclouds.filesystem.basedir=").append(store).append('\n');
            } else {
                conf.append("jclouds.provider=transient\n");
            }
            Files.writeString(props, conf.toString(), StandardCharsets.UTF_8);
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            process = new ProcessBuilder(java, "-Xmx256m", "-jar", jar().toString(), "--properties", props.toString())
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(workDir.resolve("s3proxy.log").toFile()))
                    .start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                if (!process.isAlive()) {
                    throw new IllegalStateException("s3proxy exited with " + process.exitValue() + ":\n" + log());
                }
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress("127.0.0.1", port), 200);
                    return;
                } catch (IOException notYet) {
                    if (System.nanoTime() > deadline) {
                        throw new IllegalStateException("s3proxy did not listen on " + endpoint() + " within 60 s:\n" + log());
                    }
                    Thread.sleep(100);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** Kills the server (as a crash would: no graceful shutdown) and waits for the port to close. */
    synchronized void stop() {
        if (process == null) {
            return;
        }
        process.destroyForcibly();
        try {
            process.waitFor(30, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        process = null;
    }

    private static int freePort() {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    boolean running() {
        return process != null && process.isAlive();
    }

    @Override
    public void close() {
        stop();
    }

    String endpoint() {
        return "http://127.0.0.1:" + port;
    }

    int port() {
        return port;
    }

    String log() {
        try {
            Path l = workDir.resolve("s3proxy.log");
            return Files.exists(l) ? Files.readString(l) : "";
        } catch (IOException e) {
            return e.toString();
        }
    }

    void createBucket(String bucket) {
        try (S3Client s3 = S3Client.builder().endpointOverride(URI.create(endpoint())).region(Region.US_EAST_1)
                .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(IDENTITY, CREDENTIAL)))
                .forcePathStyle(true).build()) {
            s3.createBucket(b -> b.bucket(bucket));
        }
    }

    /**
     * The S3A settings that reach this server (STACK.md): path-style, no TLS, static test credentials, and few, short
     * retries so that a stopped server fails a test in seconds rather than minutes.
     */
    Map<String, String> s3aSettings() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("fs.s3a.endpoint", endpoint());
        m.put("fs.s3a.endpoint.region", "us-east-1");
        m.put("fs.s3a.path.style.access", "true");
        m.put("fs.s3a.connection.ssl.enabled", "false");
        m.put("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
        m.put("fs.s3a.access.key", IDENTITY);
        m.put("fs.s3a.secret.key", CREDENTIAL);
        m.put("fs.s3a.attempts.maximum", "1");
        m.put("fs.s3a.retry.limit", "2");
        m.put("fs.s3a.retry.interval", "100ms");
        m.put("fs.s3a.retry.throttle.limit", "2");
        m.put("fs.s3a.retry.throttle.interval", "100ms");
        m.put("fs.s3a.connection.establish.timeout", "2s");
        m.put("fs.s3a.connection.timeout", "20s");
        return m;
    }

    /** Applies {@link #s3aSettings()} to a Hadoop configuration (e.g. a Spark session's) and returns it. */
    Configuration configure(Configuration c) {
        s3aSettings().forEach(c::set);
        return c;
    }

    /** The settings as a properties file (what conf/s3a.properties holds for a real deployment). */
    Path writeSettingsFile(Path file) {
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String, String> e : s3aSettings().entrySet()) {
            sb.append(e.getKey()).append('=').append(e.getValue()).append('\n');
        }
        try {
            Files.writeString(file, sb.toString());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return file;
    }
}
