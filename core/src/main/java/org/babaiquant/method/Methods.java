package org.babaiquant.method;

import org.babaiquant.core.Method;
import org.babaiquant.nonclip.Hptq;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The registry of quantization methods: one row per method, looked up by the name users type. Every command
 * ({@code quantize-layer}, {@code quantize}, {@code compare}, {@code demo}, {@code pipeline}) and every reader of
 * stored layers goes through it; to add a method, write its {@link QuantMethod} and add one line below (see
 * docs/METHODS.md).
 */
public final class Methods {
    private static final Map<String, QuantMethod> BY_NAME = new LinkedHashMap<>();

    static {
        register(new LatticeMethod(Method.GPTQ, "GPTQ: blocked column sweep with error feedback, on a static group grid"));
        register(new LatticeMethod(Method.BABAI, "Babai's nearest plane on the damped Cholesky basis, on the same grid"));
        register(new LatticeMethod(Method.RTN, "round to nearest on the same grid (no error feedback)"));
        register(new SsqrMethod());
        register(new HuffmanMethod(Hptq.Kind.HPTQ));
        register(new HuffmanMethod(Hptq.Kind.HRTN));
    }

    private Methods() {}

    private static void register(QuantMethod m) {
        if (BY_NAME.putIfAbsent(m.name(), m) != null) {
            throw new IllegalStateException("method " + m.name() + " registered twice");
        }
    }

    /** The method called {@code name} (case-insensitive); unknown names are an IllegalArgumentException listing all. */
    public static QuantMethod get(String name) {
        QuantMethod m = name == null ? null : BY_NAME.get(name.toLowerCase(Locale.ROOT));
        if (m == null) {
            throw new IllegalArgumentException("unknown method '" + name + "': expected " + sentence(names(), "or"));
        }
        return m;
    }

    /** Every registered name, in registry order. */
    public static List<String> names() {
        return List.copyOf(BY_NAME.keySet());
    }

    /** The names of the methods stored as codes + scales + zeros (the ones a GPTQ checkpoint can hold). */
    public static List<String> gridMethods() {
        return BY_NAME.values().stream().filter(QuantMethod::clips).map(QuantMethod::name).toList();
    }

    /** The method that decodes {@code representation}'s payload. */
    public static EncodedMethod encoded(String representation) {
        if (get(representation) instanceof EncodedMethod e) {
            return e;
        }
        throw new IllegalArgumentException(representation + " is not stored in a format of its own");
    }

    /** "a, b or c". */
    public static String sentence(List<String> names, String conjunction) {
        if (names.size() == 1) {
            return names.get(0);
        }
        List<String> head = new ArrayList<>(names.subList(0, names.size() - 1));
        return String.join(", ", head) + " " + conjunction + " " + names.get(names.size() - 1);
    }

    /** A row-major [rows · cols] array as a matrix. */
    static double[][] matrix(float[] flat, int cols) {
        double[][] m = new double[flat.length / cols][cols];
        for (int i = 0; i < flat.length; i++) {
            m[i / cols][i % cols] = flat[i];
        }
        return m;
    }
}
