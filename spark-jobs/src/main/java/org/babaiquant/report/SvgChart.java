package org.babaiquant.report;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * One inline SVG scatter chart: labelled axes with units, one mark element (class {@code mark}) per table row and
 * series, each with its value on hover ({@code <title>}) and a link back to the table cell it shows
 * ({@code data-row}, {@code data-col}, {@code data-v}: the same number as the cell's). Series differ by shape as well
 * as colour, and a legend names them. A value the axis cannot show (NaN, or ≤ 0 on a log axis) is still a mark: a
 * cross on the bottom edge whose title says why, so that every row is drawn.
 */
final class SvgChart {
    static final int WIDTH = 540;
    static final int HEIGHT = 300;
    private static final int LEFT = 72;
    private static final int RIGHT = 20;
    private static final int TOP = 34;
    private static final int BOTTOM = 52;

    /** Okabe–Ito colours (distinguishable with colour-vision deficiencies); shapes carry the same information. */
    static final String[] COLOURS = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"};

    enum Shape { CIRCLE, SQUARE, TRIANGLE, DIAMOND, RING, BAR, STAR }

    record Series(String key, String label, Shape shape, String colour) {}

    /** A mapping from data to pixels along one axis, with its ticks and its label (which names the unit). */
    record Axis(String label, double lo, double hi, boolean log, List<Double> ticks) {
        double fraction(double v) {
            return log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo);
        }

        boolean shows(double v) {
            return !Double.isNaN(v) && !Double.isInfinite(v) && (!log || v > 0);
        }

        /** A linear axis over [lo, hi] widened to round ticks (at most about 8). */
        static Axis linear(String label, double lo, double hi) {
            if (!(hi > lo)) {
                double pad = lo == 0 ? 1 : Math.abs(lo) * 0.1;
                lo -= pad;
                hi += pad;
            }
            double step = niceStep((hi - lo) / 6);
            double a = Math.floor(lo / step) * step;
            double b = Math.ceil(hi / step) * step;
            List<Double> ticks = new ArrayList<>();
            for (int i = 0; a + i * step <= b + step * 1e-9; i++) {
                ticks.add(clean(a + i * step, step));
            }
            return new Axis(label, a, b, false, ticks);
        }

        /** Integer positions 0..n−1 (layers in model order), ticks on round numbers. */
        static Axis index(String label, int n) {
            double step = Math.max(1, niceStep(n / 10.0));
            List<Double> ticks = new ArrayList<>();
            for (double t = 0; t <= n - 1; t += step) {
                ticks.add(t);
            }
            return new Axis(label, -0.5, Math.max(n, 1) - 0.5, false, ticks);
        }

        /** A log axis over whole decades around the positive values in [lo, hi]. */
        static Axis log(String label, double lo, double hi) {
            if (!(lo > 0) || !(hi > 0)) {
                lo = hi = 1;
            }
            int a = (int) Math.floor(Math.log10(lo));
            int b = (int) Math.ceil(Math.log10(hi));
            if (b == a) {
                b++;
            }
            int every = Math.max(1, (int) Math.ceil((b - a) / 8.0));
            List<Double> ticks = new ArrayList<>();
            for (int e = a; e <= b; e += every) {
                ticks.add(Math.pow(10, e));
            }
            return new Axis(label, Math.pow(10, a), Math.pow(10, b), true, ticks);
        }

        private static double niceStep(double raw) {
            if (!(raw > 0)) {
                return 1;
            }
            double p = Math.pow(10, Math.floor(Math.log10(raw)));
            double m = raw / p;
            return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
        }

        private static double clean(double v, double step) {
            return Math.abs(v) < step * 1e-9 ? 0 : Double.parseDouble(String.format(Locale.ROOT, "%.12g", v));
        }
    }

    private final String id;
    private final String title;
    private final String table;
    private final Axis x;
    private final Axis y;
    private final Map<String, Series> series = new LinkedHashMap<>();
    /** Reference lines, stems, links and labels: drawn first, so that no mark is hidden under them. */
    private final StringBuilder under = new StringBuilder();
    private final StringBuilder body = new StringBuilder();
    private final List<String> notes = new ArrayList<>();

    /** {@code table}: the id of the table whose rows the marks show. */
    SvgChart(String id, String title, String table, Axis x, Axis y) {
        this.id = id;
        this.title = title;
        this.table = table;
        this.x = x;
        this.y = y;
    }

    SvgChart series(String key, String label, Shape shape, String colour) {
        series.put(key, new Series(key, label, shape, colour));
        return this;
    }

    double px(double v) {
        return LEFT + x.fraction(v) * (WIDTH - LEFT - RIGHT);
    }

    double py(double v) {
        return HEIGHT - BOTTOM - y.fraction(v) * (HEIGHT - TOP - BOTTOM);
    }

    /** A reference line across the plot at {@code v}, labelled in words (not by its dash or colour alone). */
    SvgChart hline(double v, String label, String css) {
        if (!y.shows(v) || v < y.lo() || v > y.hi()) {
            return this;
        }
        double yy = py(v);
        under.append(String.format(Locale.ROOT, "<line class=\"ref %s\" x1=\"%d\" x2=\"%d\" y1=\"%.2f\" y2=\"%.2f\"><title>%s</title></line>",
                css, LEFT, WIDTH - RIGHT, yy, yy, Html.esc(label)));
        under.append(String.format(Locale.ROOT, "<text class=\"ref-label\" x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>",
                WIDTH - RIGHT - 4, yy - 4, Html.esc(label)));
        return this;
    }

    /** A line through the series' points in the given order (e.g. one method across budgets), with an end label. */
    SvgChart line(String key, List<double[]> points, String endLabel) {
        List<double[]> shown = points.stream().filter(p -> x.shows(p[0]) && y.shows(p[1])).toList();
        if (shown.size() >= 2) {
            StringBuilder d = new StringBuilder();
            for (double[] p : shown) {
                d.append(String.format(Locale.ROOT, "%s%.2f,%.2f", d.length() == 0 ? "M" : " L", px(p[0]), py(p[1])));
            }
            under.append(String.format("<path class=\"link\" d=\"%s\" stroke=\"%s\"/>", d, series.get(key).colour()));
        }
        if (!shown.isEmpty() && endLabel != null) {
            double[] last = shown.get(shown.size() - 1);
            under.append(String.format(Locale.ROOT, "<text class=\"end-label\" x=\"%.2f\" y=\"%.2f\">%s</text>", px(last[0]) + 8,
                    py(last[1]) + 4, Html.esc(endLabel)));
        }
        return this;
    }

    /**
     * The mark of one table cell (every shape is centred on its point: its bounding box's centre is the value): row {@code row}, column {@code col}, value {@code v} at (xv, v). {@code hover} is
     * the tooltip (it should hold the value as the table prints it).
     */
    SvgChart mark(String key, int row, String col, double xv, double v, String hover) {
        Series s = series.get(key);
        String data = String.format(Locale.ROOT, " data-series=\"%s\" data-row=\"%d\" data-col=\"%s\" data-v=\"%s\"", Html.esc(key), row,
                Html.esc(col), Html.num(v));
        if (!y.shows(v) || !x.shows(xv)) {
            String why = Double.isNaN(v) ? "not measured" : "not on this axis (≤ 0 on a log scale), drawn on the bottom edge";
            double cx = x.shows(xv) ? px(xv) : LEFT;
            double cy = HEIGHT - BOTTOM;
            body.append(String.format(Locale.ROOT, "<path class=\"mark na\"%s d=\"M%.2f,%.2f l8,8 m-8,0 l8,-8\" stroke=\"%s\">"
                    + "<title>%s (%s)</title></path>", data, cx - 4, cy - 10, s.colour(), Html.esc(hover), why));
            return this;
        }
        double cx = px(xv);
        double cy = py(v);
        String t = "<title>" + Html.esc(hover) + "</title>";
        String c = s.colour();
        body.append(switch (s.shape()) {
            case CIRCLE -> String.format(Locale.ROOT, "<circle class=\"mark\"%s cx=\"%.2f\" cy=\"%.2f\" r=\"4.5\" fill=\"%s\">%s</circle>", data, cx, cy, c, t);
            case RING -> String.format(Locale.ROOT, "<circle class=\"mark\"%s cx=\"%.2f\" cy=\"%.2f\" r=\"5\" fill=\"#fff\" stroke=\"%s\" stroke-width=\"2\">%s</circle>",
                    data, cx, cy, c, t);
            case SQUARE -> String.format(Locale.ROOT, "<rect class=\"mark\"%s x=\"%.2f\" y=\"%.2f\" width=\"9\" height=\"9\" fill=\"%s\">%s</rect>",
                    data, cx - 4.5, cy - 4.5, c, t);
            case BAR -> String.format(Locale.ROOT, "<rect class=\"mark\"%s x=\"%.2f\" y=\"%.2f\" width=\"12\" height=\"4\" fill=\"%s\">%s</rect>",
                    data, cx - 6, cy - 2, c, t);
            case TRIANGLE -> String.format(Locale.ROOT, "<path class=\"mark\"%s d=\"M%.2f,%.2f l5.5,11 h-11 z\" fill=\"%s\">%s</path>",
                    data, cx, cy - 5.5, c, t);
            case DIAMOND -> String.format(Locale.ROOT, "<path class=\"mark\"%s d=\"M%.2f,%.2f l6,6 l-6,6 l-6,-6 z\" fill=\"%s\">%s</path>",
                    data, cx, cy - 6, c, t);
            case STAR -> String.format(Locale.ROOT, "<path class=\"mark\"%s d=\"M%.2f,%.2f l1.8,4.1 4.4,0.4 -3.3,2.9 1,4.4 -3.9,-2.3 -3.9,2.3 1,-4.4"
                    + " -3.3,-2.9 4.4,-0.4 z\" fill=\"%s\">%s</path>", data, cx, cy - 5.9, c, t);
        });
        return this;
    }

    /** A line of text under the chart (e.g. what a flag means). */
    SvgChart note(String text) {
        notes.add(text);
        return this;
    }

    /** A vertical stem from the axis floor to the value (clipped counts: a zero is visible as a dot on the floor). */
    SvgChart stem(String key, double xv, double v) {
        if (x.shows(xv) && y.shows(v)) {
            under.append(String.format(Locale.ROOT, "<line class=\"stem\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>",
                    px(xv), px(xv), py(Math.max(y.lo(), y.log() ? y.lo() : 0)), py(v), series.get(key).colour()));
        }
        return this;
    }

    /** A small letter above a mark (a flag such as a damping escalation), with its meaning on hover. */
    SvgChart flag(double xv, double v, String letter, String meaning) {
        if (x.shows(xv) && y.shows(v)) {
            under.append(String.format(Locale.ROOT, "<text class=\"flag\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s<title>%s</title></text>",
                    px(xv), py(v) - 9, Html.esc(letter), Html.esc(meaning)));
        }
        return this;
    }

    String svg() {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "<figure class=\"chart\"><svg class=\"plot\" id=\"%s\" data-table=\"%s\" viewBox=\"0 0 %d %d\" role=\"img\""
                + " aria-labelledby=\"%s-t\"><title id=\"%s-t\">%s</title>", Html.esc(id), Html.esc(table), WIDTH, HEIGHT, Html.esc(id),
                Html.esc(id), Html.esc(title)));
        sb.append(String.format(Locale.ROOT, "<text class=\"chart-title\" x=\"%d\" y=\"18\">%s</text>", LEFT, Html.esc(title)));
        int x0 = LEFT;
        int x1 = WIDTH - RIGHT;
        int y0 = HEIGHT - BOTTOM;
        int y1 = TOP;
        for (double t : y.ticks()) {
            double yy = py(t);
            sb.append(String.format(Locale.ROOT, "<line class=\"grid\" x1=\"%d\" x2=\"%d\" y1=\"%.2f\" y2=\"%.2f\"/>", x0, x1, yy, yy));
            sb.append(String.format(Locale.ROOT, "<text class=\"tick\" x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>", x0 - 6, yy + 4,
                    Html.esc(Html.tick(t))));
        }
        for (double t : x.ticks()) {
            double xx = px(t);
            sb.append(String.format(Locale.ROOT, "<line class=\"tickmark\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%d\"/>", xx, xx, y0, y0 + 5));
            sb.append(String.format(Locale.ROOT, "<text class=\"tick\" x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>", xx, y0 + 18,
                    Html.esc(Html.tick(t))));
        }
        sb.append(String.format(Locale.ROOT, "<line class=\"axis\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>", x0, x1, y0, y0));
        sb.append(String.format(Locale.ROOT, "<line class=\"axis\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>", x0, x0, y0, y1));
        sb.append(String.format(Locale.ROOT, "<text class=\"axis-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>", (x0 + x1) / 2,
                HEIGHT - 10, Html.esc(x.label())));
        sb.append(String.format(Locale.ROOT, "<text class=\"axis-label\" transform=\"translate(16,%d) rotate(-90)\" text-anchor=\"middle\">%s</text>",
                (y0 + y1) / 2, Html.esc(y.label() + (y.log() ? " (log scale)" : ""))));
        sb.append(under).append(body);
        sb.append("</svg>");
        sb.append("<figcaption><ul class=\"legend\">");
        for (Series s : series.values()) {
            sb.append("<li>").append(legendSwatch(s)).append(Html.esc(s.label())).append("</li>");
        }
        for (String n : notes) {
            sb.append("<li class=\"note\">").append(Html.esc(n)).append("</li>");
        }
        sb.append("</ul></figcaption></figure>\n");
        return sb.toString();
    }

    private static String legendSwatch(Series s) {
        String shape = switch (s.shape()) {
            case CIRCLE -> "<circle cx=\"7\" cy=\"7\" r=\"4.5\" fill=\"" + s.colour() + "\"/>";
            case RING -> "<circle cx=\"7\" cy=\"7\" r=\"5\" fill=\"#fff\" stroke=\"" + s.colour() + "\" stroke-width=\"2\"/>";
            case SQUARE -> "<rect x=\"2.5\" y=\"2.5\" width=\"9\" height=\"9\" fill=\"" + s.colour() + "\"/>";
            case BAR -> "<rect x=\"1\" y=\"5\" width=\"12\" height=\"4\" fill=\"" + s.colour() + "\"/>";
            case TRIANGLE -> "<path d=\"M7,1.5 l5.5,11 h-11 z\" fill=\"" + s.colour() + "\"/>";
            case DIAMOND -> "<path d=\"M7,1 l6,6 l-6,6 l-6,-6 z\" fill=\"" + s.colour() + "\"/>";
            case STAR -> "<path d=\"M7,0.5 l1.8,4.1 4.4,0.4 -3.3,2.9 1,4.4 -3.9,-2.3 -3.9,2.3 1,-4.4 -3.3,-2.9 4.4,-0.4 z\" fill=\""
                    + s.colour() + "\"/>";
        };
        return "<svg class=\"swatch\" width=\"14\" height=\"14\" viewBox=\"0 0 14 14\" aria-hidden=\"true\">" + shape + "</svg> ";
    }
}
