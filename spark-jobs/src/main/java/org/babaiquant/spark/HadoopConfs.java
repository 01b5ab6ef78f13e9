package org.babaiquant.spark;

import org.apache.hadoop.conf.ConfigRedactor;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;

import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * The Hadoop configuration of commands that touch storage without (or before) a Spark job, built from the same
 * settings Spark would use, so that {@code s3a://} URIs work the same in every command.
 *
 * <p>Layers, later ones win:
 * <ol>
 *   <li>{@code new Configuration()}: Hadoop's defaults and any {@code core-site.xml} on the classpath;</li>
 *   <li>{@code spark.hadoop.*} keys of {@code $SPARK_CONF_DIR/spark-defaults.conf} (else {@code $SPARK_HOME/conf/});</li>
 *   <li>a properties file named by the system property {@code babai.hadoop.conf} or the environment variable
 *       {@code BABAI_HADOOP_CONF} (e.g. {@code conf/s3a.properties}), or given to {@link #fromEnvironmentAndSpark(String)}
 *       (the pipeline's {@code spark.hadoopConf}); keys may be written {@code fs.s3a.x} or {@code spark.hadoop.fs.s3a.x};</li>
 *   <li>{@code spark.hadoop.*} JVM system properties (what {@code spark-submit --conf} sets on the driver,
 *       or {@code BABAI_JAVA_OPTS=-Dspark.hadoop.fs.s3a.endpoint=...}).</li>
 * </ol>
 * When a Spark session is active its {@code hadoopConfiguration} already holds layers 2 and 4 (Spark copies
 * {@code spark.hadoop.*}); a copy of it is the base instead of layer 1.
 *
 * <p>Credentials should come from the standard providers (environment, instance profile, web identity); where a file
 * holds keys, they are never printed: {@link #describe} redacts every sensitive key.
 */
public final class HadoopConfs {
    /** System property naming a Hadoop settings file. */
    public static final String FILE_PROPERTY = "babai.hadoop.conf";
    /** Environment variable naming a Hadoop settings file. */
    public static final String FILE_ENV = "BABAI_HADOOP_CONF";
    private static final String SPARK_PREFIX = "spark.hadoop.";
    /**
     * Keys whose values are never printed: any key with a segment {@code key} ({@code fs.s3a.secret.key},
     * {@code fs.azure.account.key.ACCOUNT.blob.core.windows.net}), or containing secret, password, passwd, token,
     * credential, session, signature or encryption; and whatever Hadoop's own {@code hadoop.security.sensitive-config-keys}
     * list names ({@link ConfigRedactor}).
     */
    private static final Pattern SENSITIVE = Pattern.compile(
            "(?i)(.*(secret|password|passwd|token|credential|session|signature|encryption).*|(.*\\.)?key(\\..*)?)");
    private static final ConfigRedactor HADOOP_REDACTOR = new ConfigRedactor(new Configuration(false));

    private HadoopConfs() {}

    /** The configuration for a command: the active Spark session's, else Hadoop's defaults, plus the layers above. */
    public static Configuration fromEnvironmentAndSpark() {
        return fromEnvironmentAndSpark(null);
    }

    /** As {@link #fromEnvironmentAndSpark()}, with {@code extraFile} (may be null) applied after the environment's file. */
    public static Configuration fromEnvironmentAndSpark(String extraFile) {
        SparkSession active = SparkSession.getActiveSession().isDefined() ? SparkSession.getActiveSession().get()
                : SparkSession.getDefaultSession().isDefined() ? SparkSession.getDefaultSession().get() : null;
        Configuration conf = active != null ? new Configuration(active.sparkContext().hadoopConfiguration()) : new Configuration();
        settings(extraFile).forEach(conf::set);
        return conf;
    }

    /** The Hadoop keys of layers 2–4 (prefix {@code spark.hadoop.} removed), in application order. */
    public static Map<String, String> settings(String extraFile) {
        Map<String, String> m = new LinkedHashMap<>();
        String confDir = System.getenv("SPARK_CONF_DIR");
        if (confDir == null && System.getenv("SPARK_HOME") != null) {
            confDir = System.getenv("SPARK_HOME") + "/conf";
        }
        if (confDir != null) {
            Path defaults = Path.of(confDir, "spark-defaults.conf");
            if (Files.isRegularFile(defaults)) {
                // spark-defaults.conf: "key value" or "key=value" lines; Properties reads both
                load(defaults).forEach((k, v) -> {
                    if (k.startsWith(SPARK_PREFIX)) {
                        m.put(k.substring(SPARK_PREFIX.length()), v);
                    }
                });
            }
        }
        String file = System.getProperty(FILE_PROPERTY, System.getenv(FILE_ENV));
        for (String f : new String[] {file, extraFile}) {
            if (f != null && !f.isBlank()) {
                load(Path.of(f)).forEach((k, v) -> m.put(k.startsWith(SPARK_PREFIX) ? k.substring(SPARK_PREFIX.length()) : k, v));
            }
        }
        for (String k : System.getProperties().stringPropertyNames()) {
            if (k.startsWith(SPARK_PREFIX)) {
                m.put(k.substring(SPARK_PREFIX.length()), System.getProperty(k));
            }
        }
        return m;
    }

    /** Puts the settings of layers 2–4 (and {@code extraFile}) into a running session's Hadoop configuration. */
    public static Map<String, String> applyTo(SparkSession spark, String extraFile) {
        Map<String, String> s = settings(extraFile);
        Configuration c = spark.sparkContext().hadoopConfiguration();
        s.forEach(c::set);
        return s;
    }

    /** {@code key=value} lines for logs, sorted, with credentials and other sensitive values shown as {@code <redacted>}. */
    public static String describe(Map<String, String> settings) {
        StringBuilder sb = new StringBuilder();
        new TreeMap<>(settings).forEach((k, v) -> sb.append(k).append('=').append(redact(k, v)).append('\n'));
        return sb.toString();
    }

    /** The value to show for a key: sensitive keys never show their value. */
    public static String redact(String key, String value) {
        if (SENSITIVE.matcher(key).matches() || !java.util.Objects.equals(HADOOP_REDACTOR.redact(key, value), value)) {
            return "<redacted>";
        }
        return Uris.redact(value);
    }

    /** Whether a key's value must never be printed. */
    public static boolean sensitive(String key) {
        return "<redacted>".equals(redact(key, "x"));
    }

    private static Map<String, String> load(Path file) {
        Properties p = new Properties();
        try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            p.load(r);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read Hadoop settings file " + file + ": " + e.getMessage(), e);
        }
        Map<String, String> m = new TreeMap<>();
        p.stringPropertyNames().forEach(k -> m.put(k.trim(), p.getProperty(k).trim()));
        return m;
    }
}
