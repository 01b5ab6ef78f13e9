package org.babaiquant.report;

import java.util.Locale;

/** Escaping and number formats of the report: every string from the data goes through {@link #esc}. */
final class Html {
    private Html() {}

    /** Text and attribute values: &amp; &lt; &gt; &quot; &#39; escaped. */
    static String esc(String s) {
        if (s == null) {
            return "";
        }
        StringBuilder sb = new StringBuilder(s.length() + 16);
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '&' -> sb.append("&amp;");
                case '<' -> sb.append("&lt;");
                case '>' -> sb.append("&gt;");
                case '"' -> sb.append("&quot;");
                case '\'' -> sb.append("&#39;");
                default -> sb.append(c);
            }
        }
        return sb.toString();
    }

    /** The exact value, for data-v attributes (sorting, and tests comparing chart, table and Parquet). */
    static String num(double v) {
        return Double.toString(v);
    }

    /** A value as the tables and tooltips print it: 5 significant digits, NaN as "n/a". */
    static String fmt(double v) {
        if (Double.isNaN(v)) {
            return "n/a";
        }
        if (v == 0 || Double.isInfinite(v)) {
            return v == 0 ? "0" : Double.toString(v);
        }
        double a = Math.abs(v);
        if (a >= 1e-3 && a < 1e6) {
            return strip(String.format(Locale.ROOT, "%.5g", v));
        }
        return String.format(Locale.ROOT, "%.4e", v);
    }

    /** A fraction 0..1 as a percentage with one decimal. */
    static String pct(double v) {
        return Double.isNaN(v) ? "n/a" : String.format(Locale.ROOT, "%.1f%%", 100 * v);
    }

    /** An axis tick: plain where short, else 1e-4 style. */
    static String tick(double v) {
        if (v == 0) {
            return "0";
        }
        double a = Math.abs(v);
        if (a >= 1e-3 && a < 1e5) {
            return strip(String.format(Locale.ROOT, "%.6f", v));
        }
        String e = String.format(Locale.ROOT, "%.1e", v).replace(".0e", "e").replace("e+0", "e").replace("e-0", "e-").replace("e+", "e");
        return e;
    }

    private static String strip(String s) {
        if (!s.contains(".") || s.contains("e")) {
            return s;
        }
        s = s.replaceAll("0+$", "");
        return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
    }
}
