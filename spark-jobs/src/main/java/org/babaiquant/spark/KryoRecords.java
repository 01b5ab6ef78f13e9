package org.babaiquant.spark;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;
import org.apache.spark.serializer.KryoRegistrator;

import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Makes Java records Kryo-safe: {@code spark.kryo.registrator org.babaiquant.spark.KryoRecords} (conf/spark-defaults.conf).
 *
 * <p>Spark bundles Kryo 4, which predates records: its fallback {@code FieldSerializer} writes fields through
 * {@code Unsafe.objectFieldOffset}, which Java 17 refuses for record classes ("can't get field offset on a record
 * class"), and it would bypass the canonical constructor (and its validation) on read anyway. Every record that
 * crosses the wire under {@code spark.serializer=KryoSerializer} — the elements of a parallelized collection (a Hessian
 * slice, a quantize layer, a capture shard), shuffled values (Hessian partials and blocks) and task results — therefore
 * gets {@link RecordSerializer} as Kryo's <em>default</em> serializer for {@code java.lang.Record}: one rule for every
 * record, present and future, instead of a list to keep in step with the jobs.
 */
public final class KryoRecords implements KryoRegistrator {
    @Override
    public void registerClasses(Kryo kryo) {
        kryo.addDefaultSerializer(Record.class, (k, type) -> new RecordSerializer<>(type.asSubclass(Record.class)));
    }

    /**
     * A record as its components in declaration order, rebuilt through the canonical constructor. Primitive
     * components are written directly; others with {@code writeClassAndObject} (so nested records, arrays and strings
     * use Kryo's own serializers), except collections of classes Kryo cannot rebuild (the immutable {@code List.of},
     * {@code Map.copyOf}, unmodifiable and sub-list views: Kryo 4 instantiates the class and calls {@code add}), which
     * travel as {@code ArrayList}, {@code LinkedHashMap} or {@code LinkedHashSet} with the same elements in the same
     * order (equal by the collection contracts, so the record stays equal).
     */
    public static final class RecordSerializer<T extends Record> extends Serializer<T> {
        private final Class<T> type;
        private final Method[] accessors;
        private final Class<?>[] types;
        private final Constructor<T> canonical;

        RecordSerializer(Class<T> type) {
            this.type = type;
            RecordComponent[] components = type.getRecordComponents();
            accessors = new Method[components.length];
            types = new Class<?>[components.length];
            for (int i = 0; i < components.length; i++) {
                accessors[i] = components[i].getAccessor();
                accessors[i].setAccessible(true);
                types[i] = components[i].getType();
            }
            try {
                canonical = type.getDeclaredConstructor(types);
                canonical.setAccessible(true);
            } catch (NoSuchMethodException e) {
                throw new IllegalStateException("record " + type.getName() + " has no canonical constructor", e);
            }
        }

        @Override
        public void write(Kryo kryo, Output out, T record) {
            for (int i = 0; i < accessors.length; i++) {
                Object v;
                try {
                    v = accessors[i].invoke(record);
                } catch (IllegalAccessException | InvocationTargetException e) {
                    throw new IllegalStateException("cannot read " + type.getName() + "." + accessors[i].getName(), e);
                }
                Class<?> t = types[i];
                if (t == int.class) {
                    out.writeInt((Integer) v);
                } else if (t == long.class) {
                    out.writeLong((Long) v);
                } else if (t == double.class) {
                    out.writeDouble((Double) v);
                } else if (t == boolean.class) {
                    out.writeBoolean((Boolean) v);
                } else if (t == float.class) {
                    out.writeFloat((Float) v);
                } else if (t == short.class) {
                    out.writeShort((Short) v);
                } else if (t == byte.class) {
                    out.writeByte((Byte) v);
                } else if (t == char.class) {
                    out.writeChar((Character) v);
                } else {
                    kryo.writeClassAndObject(out, rebuildable(v));
                }
            }
        }

        @Override
        public T read(Kryo kryo, Input in, Class<T> ignored) {
            Object[] args = new Object[types.length];
            for (int i = 0; i < types.length; i++) {
                Class<?> t = types[i];
                args[i] = t == int.class ? in.readInt()
                        : t == long.class ? in.readLong()
                        : t == double.class ? in.readDouble()
                        : t == boolean.class ? in.readBoolean()
                        : t == float.class ? in.readFloat()
                        : t == short.class ? in.readShort()
                        : t == byte.class ? in.readByte()
                        : t == char.class ? in.readChar()
                        : kryo.readClassAndObject(in);
            }
            try {
                return canonical.newInstance(args);
            } catch (InstantiationException | IllegalAccessException e) {
                throw new IllegalStateException("cannot rebuild " + type.getName(), e);
            } catch (InvocationTargetException e) {
                throw new IllegalStateException("cannot rebuild " + type.getName() + ": " + e.getCause(), e.getCause());
            }
        }

        /** Collections whose class Kryo can instantiate and fill as they are; others as an equal mutable copy. */
        private static Object rebuildable(Object v) {
            if (v instanceof List<?> l && v.getClass() != ArrayList.class) {
                return new ArrayList<>(l);
            }
            if (v instanceof Map<?, ?> m && v.getClass() != HashMap.class && v.getClass() != LinkedHashMap.class
                    && v.getClass() != TreeMap.class) {
                return new LinkedHashMap<>(m);
            }
            if (v instanceof Set<?> s && v.getClass() != java.util.HashSet.class && v.getClass() != LinkedHashSet.class
                    && v.getClass() != java.util.TreeSet.class) {
                return new LinkedHashSet<>(s);
            }
            return v;
        }
    }
}
