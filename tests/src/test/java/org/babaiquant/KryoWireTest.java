package org.babaiquant;

import org.apache.spark.SparkConf;
import org.apache.spark.serializer.Serializer;
import org.apache.spark.serializer.SerializerInstance;
import org.babaiquant.spark.KryoRecords;
import org.junit.jupiter.api.Test;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

import java.io.IOException;
import java.io.InputStream;
import java.io.Serializable;
import java.lang.reflect.Array;
import java.lang.reflect.Constructor;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every serialisable record of the application survives Spark's serializer as the repository's own
 * {@code conf/spark-defaults.conf} configures it (Kryo with {@code spark.kryo.registrator}): the elements of a
 * parallelized collection (Hessian slices, quantize layers, capture shards), shuffled values (Hessian partials and
 * blocks) and task results all go through it, in local mode as on a cluster. Without the registrator Kryo 4 fails on
 * the first record ("can't get field offset on a record class"). The records are found by scanning the application's
 * classes, so a new one is covered without editing this test; the cluster run itself is {@link SparkClusterTest}.
 */
class KryoWireTest {
    /** Records known to cross the wire today: the scan must find them (it must not pass by finding nothing). */
    private static final List<String> WIRE = List.of(
            "org.babaiquant.spark.HessianJob$Slice", "org.babaiquant.spark.HessianJob$Range",
            "org.babaiquant.spark.HessianJob$Partial", "org.babaiquant.spark.HessianJob$Block",
            "org.babaiquant.spark.HessianJob$Written", "org.babaiquant.spark.QuantizeJob$Layer",
            "org.babaiquant.spark.QuantizeJob$Outcome", "org.babaiquant.onnx.ActivationCapture$Shard",
            "org.babaiquant.onnx.ActivationCapture$Sequence");

    static SparkConf repositoryConf() throws IOException {
        Properties p = new Properties(); // Spark reads a --properties-file with java.util.Properties too
        try (InputStream in = Files.newInputStream(RealData.repoRoot().resolve("conf/spark-defaults.conf"))) {
            p.load(in);
        }
        SparkConf conf = new SparkConf(false);
        p.stringPropertyNames().forEach(k -> conf.set(k, p.getProperty(k).trim()));
        return conf;
    }

    @Test
    void everyApplicationRecordRoundTripsThroughTheConfiguredSerializer() throws Exception {
        SparkConf conf = repositoryConf();
        String name = conf.get("spark.serializer", "org.apache.spark.serializer.JavaSerializer");
        Serializer serializer = (Serializer) Class.forName(name).getConstructor(SparkConf.class).newInstance(conf);
        SerializerInstance ser = serializer.newInstance();
        ClassTag<Object> any = ClassTag$.MODULE$.Any();
        List<Class<?>> records = applicationRecords();
        List<String> names = records.stream().map(Class::getName).toList();
        assertTrue(names.containsAll(WIRE), "scan found " + names);
        for (Class<?> type : records) {
            Object sample = sample(type, type);
            Object back;
            try {
                ByteBuffer bytes = ser.serialize(sample, any);
                back = ser.deserialize(bytes, any);
            } catch (RuntimeException e) {
                throw new AssertionError(type.getName() + " does not survive " + name + ": " + e, e);
            }
            assertEquals(type, back.getClass());
            assertTrue(deepEquals(sample, back), type.getName() + ": " + sample + " came back as " + back);
        }
    }

    @Test
    void theRegistratorKeepsImmutableCollectionsAndNestedRecordsEqual() throws Exception {
        SparkConf conf = new SparkConf(false).set("spark.kryo.registrator", KryoRecords.class.getName());
        SerializerInstance ser = new org.apache.spark.serializer.KryoSerializer(conf).newInstance();
        record Inner(int[] ids, String tag) {}
        record Outer(long n, List<Inner> inner, Map<String, String> map, double x) {}
        Outer o = new Outer(-3, List.of(new Inner(new int[]{1, 2}, "a"), new Inner(new int[0], null)),
                Map.of("k", "v", "k2", "v2"), Double.NaN);
        Object back = ser.deserialize(ser.serialize(o, ClassTag$.MODULE$.Any()), ClassTag$.MODULE$.Any());
        assertTrue(deepEquals(o, back), o + " came back as " + back);
        // a record's own validation runs on read (the canonical constructor), as with Java serialization
        record Positive(int n) {
            Positive {
                if (n < 0) {
                    throw new IllegalArgumentException("negative");
                }
            }
        }
        assertEquals(new Positive(4), ser.deserialize(ser.serialize(new Positive(4), ClassTag$.MODULE$.Any()), ClassTag$.MODULE$.Any()));
    }

    /** The serialisable records among the application's classes (the spark-jobs module: classes folder or jar). */
    static List<Class<?>> applicationRecords() throws Exception {
        Path where = Path.of(KryoRecords.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        TreeSet<String> names = new TreeSet<>();
        if (Files.isDirectory(where)) {
            collect(where, names);
        } else {
            try (FileSystem jar = FileSystems.newFileSystem(URI.create("jar:" + where.toUri()), Map.of())) {
                collect(jar.getPath("/"), names);
            }
        }
        List<Class<?>> out = new ArrayList<>();
        for (String n : names) {
            Class<?> c = Class.forName(n, false, KryoRecords.class.getClassLoader());
            if (c.isRecord() && Serializable.class.isAssignableFrom(c)) {
                out.add(c);
            }
        }
        return out;
    }

    private static void collect(Path root, TreeSet<String> names) throws IOException {
        try (Stream<Path> s = Files.walk(root.resolve("org/babaiquant"))) {
            s.map(p -> root.relativize(p).toString()).filter(p -> p.endsWith(".class"))
                    .forEach(p -> names.add(p.substring(0, p.length() - 6).replace('/', '.')));
        }
    }

    /** A value of every component, distinct from defaults; immutable collections on purpose (List.of, Map.of). */
    private static Object sample(Type type, Class<?> owner) throws Exception {
        Class<?> c = type instanceof ParameterizedType pt ? (Class<?>) pt.getRawType() : (Class<?>) type;
        if (c == int.class || c == Integer.class) {
            return 3;
        } else if (c == long.class || c == Long.class) {
            return 1L << 40;
        } else if (c == double.class || c == Double.class) {
            return -0.375;
        } else if (c == float.class) {
            return 1.5f;
        } else if (c == byte.class) {
            return (byte) -7;
        } else if (c == short.class) {
            return (short) 300;
        } else if (c == boolean.class) {
            return true;
        } else if (c == String.class) {
            return owner.getSimpleName() + "-\u00e9";
        } else if (c.isArray() && c.getComponentType().isPrimitive()) {
            Object a = Array.newInstance(c.getComponentType(), 3);
            for (int i = 0; i < 3; i++) {
                Object v = sample(c.getComponentType(), owner);
                Array.set(a, i, v instanceof Number n && i > 0 ? castLike(v, n.doubleValue() * (i + 1)) : v);
            }
            return a;
        } else if (c.isEnum()) {
            return c.getEnumConstants()[c.getEnumConstants().length - 1];
        } else if (c == List.class) {
            Type e = ((ParameterizedType) type).getActualTypeArguments()[0];
            return List.of(sample(e, owner), sample(e, owner));
        } else if (c == Map.class) {
            Type[] kv = ((ParameterizedType) type).getActualTypeArguments();
            return Map.of(sample(kv[0], owner), sample(kv[1], owner));
        } else if (c.isRecord()) {
            return sampleRecord(c);
        }
        throw new AssertionError("no sample value for a component of type " + type + " in " + owner.getName()
                + ": add one to KryoWireTest.sample");
    }

    private static Object castLike(Object v, double d) {
        return v instanceof Integer ? (Object) (int) d : v instanceof Long ? (Object) (long) d : v instanceof Float
                ? (Object) (float) d : v instanceof Byte ? (Object) (byte) d : v instanceof Short ? (Object) (short) d : d;
    }

    /** Components whose records validate them (MethodSpec, QuantizeJob.Config): a sample each accepts. */
    private static final Map<String, Object> VALID = Map.of("scheme", "lattice", "method", "gptq", "damp", 0.01,
            "outlierRate", 0.01, "targetBits", 3.5, "backend", "cpu");

    private static Object sampleRecord(Class<?> c) throws Exception {
        RecordComponent[] rc = c.getRecordComponents();
        Class<?>[] types = new Class<?>[rc.length];
        Object[] args = new Object[rc.length];
        for (int i = 0; i < rc.length; i++) {
            types[i] = rc[i].getType();
            Object valid = VALID.get(rc[i].getName());
            args[i] = valid != null && (types[i] == String.class ? valid instanceof String : types[i] == double.class && valid instanceof Double)
                    ? valid : sample(rc[i].getGenericType(), c);
        }
        Constructor<?> k = c.getDeclaredConstructor(types);
        k.setAccessible(true);
        try {
            return k.newInstance(args);
        } catch (java.lang.reflect.InvocationTargetException e) {
            return fail("sample values rejected by " + c.getName() + ": " + e.getCause());
        }
    }

    /** Record equality with arrays compared by content (a record's own equals compares array references). */
    static boolean deepEquals(Object a, Object b) throws Exception {
        if (a == null || b == null) {
            return a == b;
        }
        if (a.getClass().isRecord()) {
            if (a.getClass() != b.getClass()) {
                return false;
            }
            for (RecordComponent rc : a.getClass().getRecordComponents()) {
                rc.getAccessor().setAccessible(true);
                if (!deepEquals(rc.getAccessor().invoke(a), rc.getAccessor().invoke(b))) {
                    return false;
                }
            }
            return true;
        }
        if (a instanceof List<?> la && b instanceof List<?> lb) {
            if (la.size() != lb.size()) {
                return false;
            }
            Iterator<?> ib = lb.iterator();
            for (Object x : la) {
                if (!deepEquals(x, ib.next())) {
                    return false;
                }
            }
            return true;
        }
        if (a instanceof Double da && b instanceof Double db) {
            return Double.doubleToRawLongBits(da) == Double.doubleToRawLongBits(db);
        }
        return Objects.deepEquals(a, b);
    }
}
