package org.babaiquant.core;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.PrettyPrinter;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.util.MinimalPrettyPrinter;

import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.babaiquant.BadInputException;

/**
 * The project's one JSON reader and writer, on jackson-core's streaming API (the version Spark brings).
 *
 * <p>Writing: {@link #write} (reports: one key per line, arrays inline), {@link #line} (one-line sidecars and
 * parameters: {@code {"a": 1, "b": [1, 2]}}) and {@link #compact} (no spaces: safetensors headers, as serde_json
 * writes them). Values are maps (in their iteration order), iterables, {@code double[]}/{@code int[]}/{@code long[]},
 * strings, numbers, booleans and null; anything else is written as its {@code toString()}. NaN and ±Infinity are not
 * JSON and are written as {@code null}; integral doubles below 1e15 keep a ".0" so that a float stays a float when
 * read back.
 *
 * <p>Reading: {@link #parse} turns untrusted text into {@link LinkedHashMap} (document order; duplicate keys
 * rejected), {@link List}, {@link String}, {@link Long}, {@link Boolean} and null, under a nesting-depth cap, and
 * reports any problem as a {@link BadInputException} naming the source and the character offset.
 */
public final class Json {
    /** JSON nesting deeper than this is rejected before recursion can overflow the stack; real headers use 3. */
    public static final int MAX_DEPTH = 64;

    private static final JsonFactory FACTORY = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_DEPTH).build())
            .build();

    private Json() {}

    // ------------------------------------------------------------------------------------------------ writing

    /** Pretty JSON, one object key per line and two spaces of indent, arrays inline; ends with a newline. */
    public static String write(Object value) {
        return generate(value, new Pretty(true)) + "\n";
    }

    /** One-line JSON with a space after ':' and ','; ends with a newline. */
    public static String line(Object value) {
        return generate(value, new Pretty(false)) + "\n";
    }

    /** Compact JSON, no whitespace at all, no trailing newline. */
    public static String compact(Object value) {
        return generate(value, new MinimalPrettyPrinter());
    }

    private static String generate(Object value, PrettyPrinter pp) {
        StringWriter out = new StringWriter();
        try (JsonGenerator g = FACTORY.createGenerator(out)) {
            g.setPrettyPrinter(pp);
            value(g, value);
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a StringWriter does not fail
        }
        return out.toString();
    }

    private static void value(JsonGenerator g, Object v) throws IOException {
        if (v == null) {
            g.writeNull();
        } else if (v instanceof Map<?, ?> map) {
            g.writeStartObject();
            for (Map.Entry<?, ?> e : map.entrySet()) {
                g.writeFieldName(String.valueOf(e.getKey()));
                value(g, e.getValue());
            }
            g.writeEndObject();
        } else if (v instanceof String s) {
            g.writeString(s);
        } else if (v instanceof Double || v instanceof Float) {
            number(g, ((Number) v).doubleValue());
        } else if (v instanceof Number || v instanceof Boolean) {
            if (v instanceof Boolean b) {
                g.writeBoolean(b);
            } else {
                g.writeNumber(v.toString());
            }
        } else if (v instanceof double[] a) {
            g.writeStartArray();
            for (double d : a) {
                number(g, d);
            }
            g.writeEndArray();
        } else if (v instanceof int[] a) {
            g.writeStartArray();
            for (int i : a) {
                g.writeNumber(i);
            }
            g.writeEndArray();
        } else if (v instanceof long[] a) {
            g.writeStartArray();
            for (long l : a) {
                g.writeNumber(l);
            }
            g.writeEndArray();
        } else if (v instanceof Iterable<?> it) {
            g.writeStartArray();
            for (Object o : it) {
                value(g, o);
            }
            g.writeEndArray();
        } else if (v instanceof RawNumber n) {
            g.writeNumber(n.text());
        } else {
            g.writeString(v.toString());
        }
    }

    /** NaN and ±Infinity are not JSON: written as null. Integral values keep a ".0" (the reports always did). */
    private static void number(JsonGenerator g, double d) throws IOException {
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            g.writeNull();
        } else if (d == Math.rint(d) && Math.abs(d) < 1e15) {
            g.writeNumber(String.format(Locale.ROOT, "%.1f", d));
        } else {
            g.writeNumber(Double.toString(d));
        }
    }

    /**
     * Objects one key per line ({@code multiline}) or inline, arrays always inline, {@code ": "} and {@code ", "}
     * inline: the layout the project's reports have always had.
     */
    private static final class Pretty implements PrettyPrinter {
        private final boolean multiline;
        private int depth;

        Pretty(boolean multiline) {
            this.multiline = multiline;
        }

        @Override
        public void writeRootValueSeparator(JsonGenerator g) throws IOException {
            g.writeRaw('\n');
        }

        @Override
        public void writeStartObject(JsonGenerator g) throws IOException {
            open(g, '{');
        }

        @Override
        public void writeEndObject(JsonGenerator g, int nrOfEntries) throws IOException {
            close(g, '}', multiline);
        }

        @Override
        public void writeObjectEntrySeparator(JsonGenerator g) throws IOException {
            g.writeRaw(',');
            newLineOrSpace(g);
        }

        @Override
        public void writeObjectFieldValueSeparator(JsonGenerator g) throws IOException {
            g.writeRaw(": ");
        }

        @Override
        public void writeStartArray(JsonGenerator g) throws IOException {
            open(g, '[');
        }

        @Override
        public void writeEndArray(JsonGenerator g, int nrOfValues) throws IOException {
            close(g, ']', false); // arrays stay on one line
        }

        private void open(JsonGenerator g, char bracket) throws IOException {
            g.writeRaw(bracket);
            depth++;
        }

        /** Closes an object or array, on a line of its own at the outer indentation when {@code ownLine}. */
        private void close(JsonGenerator g, char bracket, boolean ownLine) throws IOException {
            depth--;
            if (ownLine) {
                g.writeRaw('\n');
                g.writeRaw("  ".repeat(depth));
            }
            g.writeRaw(bracket);
        }

        @Override
        public void writeArrayValueSeparator(JsonGenerator g) throws IOException {
            g.writeRaw(", ");
        }

        @Override
        public void beforeArrayValues(JsonGenerator g) {
        }

        @Override
        public void beforeObjectEntries(JsonGenerator g) throws IOException {
            newLineOrSpace(g);
        }

        private void newLineOrSpace(JsonGenerator g) throws IOException {
            if (multiline) {
                g.writeRaw('\n');
                g.writeRaw("  ".repeat(depth));
            } else if (g.getOutputContext().getEntryCount() > 0) {
                g.writeRaw(' ');
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ reading

    /** A JSON number that is not a 64-bit integer, kept as its text (numbers {@link Numbers#TEXT} only). */
    public record RawNumber(String text) {
        @Override
        public String toString() {
            return text;
        }
    }

    /** What numbers a document may hold. */
    public enum Numbers {
        /** 64-bit integers only: a fraction, an exponent or a larger integer is bad input. */
        INTEGERS,
        /** Any number: 64-bit integers as {@link Long}, everything else as its text ({@link RawNumber}). */
        TEXT
    }

    /**
     * Parses one JSON document (nothing but whitespace may follow it).
     *
     * @param source what to name in messages (a file name)
     * @param what   what the document is ("shard index", ".safetensors header")
     * @throws BadInputException for malformed JSON, duplicate keys, nesting deeper than {@link #MAX_DEPTH} and
     *                           numbers {@code numbers} does not allow
     */
    public static Object parse(String text, String source, String what, Numbers numbers) {
        try (JsonParser p = FACTORY.createParser(text)) {
            JsonToken t = p.nextToken();
            if (t == null) {
                throw new BadInputException(source + ": malformed " + what + " JSON at character 0: empty document");
            }
            Object v = read(p, t, numbers, source, what, text);
            if (p.nextToken() != null) {
                throw error(source, what, text, p.currentTokenLocation().getCharOffset(),
                        "unexpected text after the JSON value");
            }
            return v;
        } catch (JsonProcessingException e) {
            long at = e.getLocation() == null ? -1 : e.getLocation().getCharOffset();
            throw error(source, what, text, at, e.getOriginalMessage());
        } catch (IOException e) {
            throw new UncheckedIOException(e); // reading a String does not fail
        }
    }

    private static Object read(JsonParser p, JsonToken t, Numbers numbers, String source, String what, String text)
            throws IOException {
        switch (t) {
            case START_OBJECT: {
                Map<String, Object> obj = new LinkedHashMap<>();
                for (JsonToken k = p.nextToken(); k != JsonToken.END_OBJECT; k = p.nextToken()) {
                    String key = p.currentName();
                    long at = p.currentTokenLocation().getCharOffset();
                    Object value = read(p, p.nextToken(), numbers, source, what, text);
                    if (obj.containsKey(key)) {
                        throw error(source, what, text, at, "duplicate key \"" + key + "\"");
                    }
                    obj.put(key, value);
                }
                return obj;
            }
            case START_ARRAY: {
                List<Object> list = new ArrayList<>();
                for (JsonToken e = p.nextToken(); e != JsonToken.END_ARRAY; e = p.nextToken()) {
                    list.add(read(p, e, numbers, source, what, text));
                }
                return list;
            }
            case VALUE_STRING:
                return p.getText();
            case VALUE_NUMBER_INT:
                if (p.getNumberType() == JsonParser.NumberType.INT || p.getNumberType() == JsonParser.NumberType.LONG) {
                    return p.getLongValue();
                }
                if (numbers == Numbers.TEXT) {
                    return new RawNumber(p.getText());
                }
                throw error(source, what, text, p.currentTokenLocation().getCharOffset(),
                        "integer out of the 64-bit range");
            case VALUE_NUMBER_FLOAT:
                if (numbers == Numbers.TEXT) {
                    return new RawNumber(p.getText());
                }
                throw error(source, what, text, p.currentTokenLocation().getCharOffset(),
                        "only integers are expected in a " + what);
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return null;
            default:
                throw error(source, what, text, p.currentTokenLocation().getCharOffset(), "unexpected token " + t);
        }
    }

    private static BadInputException error(String source, String what, String text, long at, String problem) {
        int pos = (int) Math.max(0, Math.min(text.length(), at));
        int from = Math.max(0, pos - 30);
        int to = Math.min(text.length(), pos + 30);
        return new BadInputException(source + ": malformed " + what + " JSON at character " + pos + ": " + problem
                + " (near \"" + text.substring(from, to) + "\")");
    }
}
