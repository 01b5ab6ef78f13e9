package org.babaiquant.io;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

import org.babaiquant.BadInputException;

/**
 * Turns a command-line matrix spec into a matrix, so that every job accepts weights the same two ways:
 * <ul>
 *   <li>{@code path/to/w.npy}: a 2-D {@code .npy} array ({@link Npy#readMatrix});</li>
 *   <li>{@code path/to/model.safetensors:model.layers.0.self_attn.q_proj.weight}: one 2-D tensor of a safetensors
 *       file ({@link SafeTensors#readMatrix}).</li>
 * </ul>
 * The file part ends at the last {@code ".safetensors:"} in the spec and the tensor name is everything after that
 * colon, so colons elsewhere in the path (a Windows drive letter) or in the tensor name are kept.
 */
public final class TensorSource {

    private static final String SAFETENSORS_SEP = ".safetensors:";

    private TensorSource() {
    }

    /**
     * A parsed spec.
     *
     * @param tensor the tensor name for a safetensors file, {@code null} for {@code .npy}
     */
    record Spec(Path file, String tensor) {
    }

    /** Reads the matrix a spec names. */
    public static double[][] readMatrix(String spec) {
        Spec s = parse(spec);
        if (!Files.exists(s.file)) {
            throw new BadInputException("no such file: " + s.file + " (from matrix spec '" + spec + "')");
        }
        return s.tensor == null ? Npy.readMatrix(s.file) : SafeTensors.readMatrix(s.file, s.tensor);
    }

    /** Splits a spec into file and tensor name without touching the file system. */
    static Spec parse(String spec) {
        if (spec == null || spec.isBlank()) {
            throw new BadInputException("empty matrix spec; expected PATH.npy or PATH.safetensors:TENSOR_NAME");
        }
        String lower = spec.toLowerCase(Locale.ROOT);
        int sep = lower.lastIndexOf(SAFETENSORS_SEP);
        if (sep >= 0) {
            String tensor = spec.substring(sep + SAFETENSORS_SEP.length());
            if (tensor.isEmpty()) {
                throw new BadInputException("matrix spec '" + spec + "' names no tensor after the ':'"
                        + "; expected PATH.safetensors:TENSOR_NAME");
            }
            return new Spec(Path.of(spec.substring(0, sep + SAFETENSORS_SEP.length() - 1)), tensor);
        }
        if (lower.endsWith(".safetensors")) {
            throw new BadInputException("matrix spec '" + spec + "' names a safetensors file but no tensor"
                    + "; write it as " + spec + ":TENSOR_NAME");
        }
        if (lower.endsWith(".npy")) {
            return new Spec(Path.of(spec), null);
        }
        throw new BadInputException("unsupported matrix spec '" + spec
                + "'; supported: PATH.npy (2-D array) or PATH.safetensors:TENSOR_NAME");
    }
}
