package org.babaiquant.onnx;

import org.babaiquant.BadInputException;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;

/** Text input of capture and evaluate: one paragraph per line, UTF-8 (gzip if the name ends in .gz); blank lines skipped. */
public final class Paragraphs {
    private Paragraphs() {}

    /**
     * The non-blank lines of the files, in argument then file order, at most {@code limit} of them (≤ 0: all).
     *
     * @throws BadInputException if a file is missing or no file holds a non-blank line
     */
    public static List<String> read(List<Path> files, int limit) {
        if (files.isEmpty()) {
            throw new BadInputException("no text given: pass --text FILE (one paragraph per line)");
        }
        List<String> out = new ArrayList<>();
        for (Path f : files) {
            if (!Files.isRegularFile(f)) {
                throw new BadInputException("no such text file: " + f);
            }
            try (InputStream raw = Files.newInputStream(f);
                 InputStream in = f.getFileName().toString().endsWith(".gz") ? new GZIPInputStream(raw) : raw;
                 BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null && (limit <= 0 || out.size() < limit)) {
                    if (!line.isBlank()) {
                        out.add(line);
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + f + ": " + e.getMessage(), e);
            }
        }
        if (out.isEmpty()) {
            throw new BadInputException("no text: " + files + " hold(s) no non-blank line (one paragraph per line expected)");
        }
        return out;
    }
}
