package org.babaiquant;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Debian's {@code chromium} in headless mode, as a test instrument: the DOM after the page's scripts ran, and
 * screenshots. Offline flags only (no background networking, updates or sync); a fresh profile per call.
 */
final class HeadlessChromium {
    private final Path binary;
    private final Path scratch;

    private HeadlessChromium(Path binary, Path scratch) {
        this.binary = binary;
        this.scratch = scratch;
    }

    /** The browser on PATH (chromium, chromium-browser) or in {@code -Dbabai.chromium}, or null when there is none. */
    static HeadlessChromium find(Path scratch) {
        List<String> candidates = new ArrayList<>();
        if (System.getProperty("babai.chromium") != null) {
            candidates.add(System.getProperty("babai.chromium"));
        }
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            candidates.add(dir + "/chromium");
            candidates.add(dir + "/chromium-browser");
        }
        for (String c : candidates) {
            Path p = Path.of(c);
            if (Files.isExecutable(p)) {
                return new HeadlessChromium(p, scratch);
            }
        }
        return null;
    }

    /** The serialised DOM of {@code page} after load, laid out in a width × height window. */
    String dumpDom(Path page, int width, int height) throws IOException, InterruptedException {
        return run(page, width, height, "--dump-dom", null);
    }

    /** A screenshot of the top width × height pixels of {@code page} (CSS pixels: scale factor 1). */
    BufferedImage screenshot(Path page, int width, int height, Path png) throws IOException, InterruptedException {
        run(page, width, height, "--screenshot=" + png.toAbsolutePath(), png);
        BufferedImage img = ImageIO.read(png.toFile());
        if (img == null) {
            throw new IOException("chromium wrote no readable PNG at " + png);
        }
        return img;
    }

    private String run(Path page, int width, int height, String mode, Path expect) throws IOException, InterruptedException {
        Path profile = Files.createTempDirectory(scratch, "profile");
        Path out = Files.createTempFile(scratch, "chromium", ".out");
        Path err = Files.createTempFile(scratch, "chromium", ".err");
        List<String> cmd = List.of(binary.toString(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                "--force-device-scale-factor=1", "--user-data-dir=" + profile, "--window-size=" + width + "," + height, mode,
                page.toUri().toString());
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (!p.waitFor(180, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("chromium did not finish in 180 s: " + cmd);
        }
        String stdout = Files.readString(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0 || (expect != null && !Files.exists(expect))) {
            throw new IOException("chromium exited " + p.exitValue() + ": " + cmd + "\n" + Files.readString(err, StandardCharsets.UTF_8));
        }
        return stdout;
    }

    private static final Pattern TAG = Pattern.compile("<([a-zA-Z][\\w-]*)((?:\\s+[\\w:-]+(?:=\"[^\"]*\")?)*)\\s*/?>");
    private static final Pattern ATTR = Pattern.compile("([\\w:-]+)(?:=\"([^\"]*)\")?");

    /** A start tag of a serialised DOM: its name, its attributes (unescaped) and where it starts. */
    record Tag(String name, Map<String, String> attrs, int at) {
        String get(String a) {
            return attrs.get(a);
        }
    }

    /** The start tags of {@code html} in document order. */
    static List<Tag> tags(String html) {
        List<Tag> out = new ArrayList<>();
        Matcher m = TAG.matcher(html);
        while (m.find()) {
            Map<String, String> attrs = new LinkedHashMap<>();
            Matcher a = ATTR.matcher(m.group(2));
            while (a.find()) {
                attrs.put(a.group(1), a.group(2) == null ? "" : unescape(a.group(2)));
            }
            out.add(new Tag(m.group(1).toLowerCase(java.util.Locale.ROOT), attrs, m.start()));
        }
        return out;
    }

    static String unescape(String s) {
        return s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&nbsp;", "\u00a0")
                .replace("&amp;", "&");
    }
}
