package org.babaiquant.core;

import org.babaiquant.BadInputException;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JsonTest {

    /** The report layout the hand-written writer produced, byte for byte (reports must not change). */
    @Test
    void prettyLayoutIsTheReportsLayout() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("method", "gptq");
        m.put("bits", 4);
        m.put("loss", 0.125);
        m.put("whole", 3.0);
        m.put("big", 1e20);
        m.put("nan", Double.NaN);
        m.put("rows", new double[] {1, 0.5});
        m.put("perm", new int[] {2, 0, 1});
        m.put("ok", true);
        m.put("none", null);
        m.put("quote", "a\"b\\c\nd");
        m.put("empty", Map.of());
        m.put("list", List.of(Map.of("k", 1), "x"));
        assertEquals("{\n"
                + "  \"method\": \"gptq\",\n"
                + "  \"bits\": 4,\n"
                + "  \"loss\": 0.125,\n"
                + "  \"whole\": 3.0,\n"
                + "  \"big\": 1.0E20,\n"
                + "  \"nan\": null,\n"
                + "  \"rows\": [1.0, 0.5],\n"
                + "  \"perm\": [2, 0, 1],\n"
                + "  \"ok\": true,\n"
                + "  \"none\": null,\n"
                + "  \"quote\": \"a\\\"b\\\\c\\nd\",\n"
                + "  \"empty\": {\n"
                + "  },\n"
                + "  \"list\": [{\n"
                + "      \"k\": 1\n"
                + "    }, \"x\"]\n"
                + "}\n", Json.write(m));
    }

    @Test
    void lineAndCompact() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("a", 1);
        m.put("b", new long[] {0, 24});
        m.put("c", Map.of("d", "e"));
        assertEquals("{\"a\": 1, \"b\": [0, 24], \"c\": {\"d\": \"e\"}}\n", Json.line(m));
        assertEquals("{\"a\":1,\"b\":[0,24],\"c\":{\"d\":\"e\"}}", Json.compact(m));
    }

    @Test
    void parseRoundTripsAndKeepsOrder() {
        Object v = Json.parse("{\"z\": [1, -2, \"s\", true, null], \"a\": {\"x\": 9223372036854775807}}", "f", "doc",
                Json.Numbers.INTEGERS);
        assertEquals("{\"z\":[1,-2,\"s\",true,null],\"a\":{\"x\":9223372036854775807}}", Json.compact(v));
        Object lenient = Json.parse("{\"x\": 1.5e3, \"y\": 99999999999999999999}", "f", "doc", Json.Numbers.TEXT);
        assertEquals("{\"x\":1.5e3,\"y\":99999999999999999999}", Json.compact(lenient));
    }

    @Test
    void badDocumentsAreBadInputNamingTheSource() {
        String[][] cases = {
            {"", "empty"},
            {"{\"a\": 1, \"a\": 2}", "duplicate key \"a\""},
            {"{\"a\": 1.5}", "only integers"},
            {"{\"a\": 99999999999999999999}", "64-bit"},
            {"{\"a\": 1} x", "malformed"},
            {"[" .repeat(200) + "]".repeat(200), "malformed"},
            {"{\"a\": 01}", "malformed"},
            {"{'a': 1}", "malformed"},
        };
        for (String[] c : cases) {
            BadInputException e = assertThrows(BadInputException.class,
                    () -> Json.parse(c[0], "dir/x.json", "test document", Json.Numbers.INTEGERS), c[0]);
            assertTrue(e.getMessage().startsWith("dir/x.json: ") && e.getMessage().contains(c[1]),
                    c[0] + " -> " + e.getMessage());
        }
    }
}
