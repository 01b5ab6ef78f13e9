package org.babaiquant.cli;

import org.babaiquant.BadInputException;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The bundled real data: the six linear layers of encoder layer 0 of all-MiniLM-L6-v2 and the inputs that fed them
 * on Brown-corpus calibration text and held-out Jane Austen text ({@code data/minilm-l6-v2/}, see its README).
 */
public final class MiniLmLayer0 {
    private MiniLmLayer0() {}

    /** A linear layer and the input site (activation file) that feeds it. */
    public record Linear(String name, String site) {
        public Path weight(Path dir) {
            return dir.resolve("weights/layer0_" + name + ".weight.npy");
        }

        public Path calib(Path dir) {
            return dir.resolve("activations/layer0_" + site + ".calib.npy");
        }

        public Path eval(Path dir) {
            return dir.resolve("activations/layer0_" + site + ".eval.npy");
        }
    }

    public static final List<Linear> LINEARS = List.of(
            new Linear("q_proj", "attn_in"), new Linear("k_proj", "attn_in"), new Linear("v_proj", "attn_in"),
            new Linear("o_proj", "o_proj_in"), new Linear("ffn_up", "ffn_up_in"), new Linear("ffn_down", "ffn_down_in"));

    /**
     * {@code data/minilm-l6-v2} under the installation ({@code -Dbabai.home}, set by bin/babai-quant), else under
     * the working directory or one of its parents.
     */
    public static Path defaultDir() {
        String home = System.getProperty("babai.home");
        if (home != null) {
            Path p = Path.of(home, "data", "minilm-l6-v2");
            if (Files.isDirectory(p)) {
                return p;
            }
        }
        for (Path d = Path.of("").toAbsolutePath(); d != null; d = d.getParent()) {
            Path p = d.resolve("data").resolve("minilm-l6-v2");
            if (Files.isDirectory(p)) {
                return p;
            }
        }
        throw new BadInputException("cannot find the bundled data/minilm-l6-v2: pass --data DIR");
    }
}
