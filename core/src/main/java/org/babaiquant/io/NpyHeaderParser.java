package org.babaiquant.io;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.babaiquant.BadInputException;

/**
 * The {@code .npy} header's dict ({@link Npy}): parses the Python literal numpy writes, a dict with string keys whose
 * values are strings, True/False, or a tuple of integers. Deliberately small; anything else is a BadInputException
 * that shows where it stopped.
 */
final class NpyHeaderParser {
    private final String s;
    private final Path file;
    private int pos;

    NpyHeaderParser(String s, Path file) {
        this.s = s;
        this.file = file;
    }

    Map<String, Object> parseDict() {
        Map<String, Object> dict = new HashMap<>();
        skipSpace();
        expect('{');
        while (true) {
            skipSpace();
            if (peek() == '}') {
                pos++;
                break;
            }
            String key = parseString();
            skipSpace();
            expect(':');
            skipSpace();
            Object value = parseValue();
            if (dict.put(key, value) != null) {
                throw error("duplicate key '" + key + "'");
            }
            skipSpace();
            if (peek() == ',') {
                pos++;
            } else if (peek() != '}') {
                throw error("expected ',' or '}'");
            }
        }
        skipSpace();
        if (pos != s.length()) {
            throw error("unexpected text after the header dict");
        }
        return dict;
    }

    private Object parseValue() {
        char c = peek();
        if (c == '\'' || c == '"') {
            return parseString();
        }
        if (c == '(') {
            return parseTuple();
        }
        if (s.startsWith("True", pos)) {
            pos += 4;
            return Boolean.TRUE;
        }
        if (s.startsWith("False", pos)) {
            pos += 5;
            return Boolean.FALSE;
        }
        if (c == '[') {
            throw error("structured dtypes (a list descr) are not supported");
        }
        throw error("unsupported value");
    }

    private long[] parseTuple() {
        expect('(');
        List<Long> dims = new ArrayList<>();
        while (true) {
            skipSpace();
            if (peek() == ')') {
                pos++;
                break;
            }
            dims.add(parseInt());
            skipSpace();
            if (peek() == ',') {
                pos++;
            } else if (peek() != ')') {
                throw error("expected ',' or ')' in shape");
            }
        }
        long[] out = new long[dims.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = dims.get(i);
        }
        return out;
    }

    private long parseInt() {
        int start = pos;
        if (peek() == '-') {
            pos++;
        }
        while (pos < s.length() && Character.isDigit(s.charAt(pos)) && s.charAt(pos) < 128) {
            pos++;
        }
        String digits = s.substring(start, pos);
        if (pos < s.length() && s.charAt(pos) == 'L') {
            pos++; // Python 2 long literal, written by very old numpy
        }
        try {
            return Long.parseLong(digits);
        } catch (NumberFormatException e) {
            throw error("bad integer '" + digits + "' in shape");
        }
    }

    private String parseString() {
        char quote = peek();
        if (quote != '\'' && quote != '"') {
            throw error("expected a quoted string");
        }
        int end = s.indexOf(quote, pos + 1);
        if (end < 0) {
            throw error("unterminated string");
        }
        String out = s.substring(pos + 1, end);
        if (out.indexOf('\\') >= 0) {
            throw error("escapes in header strings are not supported");
        }
        pos = end + 1;
        return out;
    }

    private void skipSpace() {
        while (pos < s.length() && Character.isWhitespace(s.charAt(pos))) {
            pos++;
        }
    }

    private char peek() {
        if (pos >= s.length()) {
            throw error("unexpected end of header");
        }
        return s.charAt(pos);
    }

    private void expect(char c) {
        if (peek() != c) {
            throw error("expected '" + c + "'");
        }
        pos++;
    }

    private BadInputException error(String what) {
        String shown = s.length() > 200 ? s.substring(0, 200) + "..." : s.strip();
        return new BadInputException(file + ": malformed .npy header at character " + pos + ": " + what
                + "; header: " + shown);
    }
}
