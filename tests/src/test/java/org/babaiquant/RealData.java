package org.babaiquant;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where the bundled real MiniLM data lives (system property {@code babai.data.dir}, set by the pom). */
final class RealData {
    private RealData() {}

    static Path miniLm() {
        String dir = System.getProperty("babai.data.dir");
        Path p = dir != null ? Path.of(dir, "minilm-l6-v2") : Path.of("../data/minilm-l6-v2");
        if (!Files.isDirectory(p)) {
            throw new IllegalStateException("bundled data not found at " + p.toAbsolutePath());
        }
        return p;
    }

    static Path repoRoot() {
        return miniLm().getParent().getParent();
    }
}
