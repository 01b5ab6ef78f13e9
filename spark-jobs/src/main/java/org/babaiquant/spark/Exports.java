package org.babaiquant.spark;

import org.apache.hadoop.conf.Configuration;
import org.babaiquant.BadInputException;

import java.util.List;

/** The export formats of a quantize output, in one place for {@code export} and the pipeline's export stage. */
public final class Exports {
    /** {@code gptq}: {@link GptqExport}; {@code compressed-tensors}: {@link CompressedTensorsExport} (vLLM's native format). */
    public static final List<String> FORMATS = List.of("gptq", "compressed-tensors");

    private Exports() {}

    /**
     * Writes the export and returns its one-line description (the self-check has passed when it returns).
     * {@code gIdx}: compressed-tensors only, declare actorder "group" and write weight_g_idx.
     */
    public static String export(Configuration conf, String format, String quantized, String model, String out, boolean gIdx) {
        switch (format) {
            case "gptq" -> {
                if (gIdx) {
                    throw new BadInputException("--g-idx is an option of the compressed-tensors format (the GPTQ checkpoint always has g_idx)");
                }
                return GptqExport.describe(GptqExport.export(conf, quantized, model, out));
            }
            case "compressed-tensors" -> {
                return CompressedTensorsExport.describe(CompressedTensorsExport.export(conf, quantized, model, out, gIdx));
            }
            default -> throw new BadInputException("export format '" + format + "' is not supported: " + String.join(", ", FORMATS));
        }
    }

    /** A file that exists in a complete export of that format (the pipeline skips an export whose inputs are unchanged). */
    public static String completeMarker(String format) {
        return format.equals("gptq") ? "quantize_config.json" : "_SUCCESS";
    }
}
