package org.babaiquant.method;

import org.babaiquant.core.ColumnOrder;
import org.babaiquant.core.Method;
import org.babaiquant.core.QuantBackend;
import org.babaiquant.core.QuantGrid;
import org.babaiquant.nonclip.Hptq;
import org.babaiquant.nonclip.HptqFormat;
import org.babaiquant.nonclip.HptqLayer;

import java.util.Locale;

/**
 * HPTQ (GPTQ pass) and HRTN (round to nearest): one scale per matrix, unbounded integer codes, canonical Huffman
 * coded ({@link Hptq}, {@link HptqFormat}); the scale is searched so that the file fills {@code targetBits}.
 */
final class HuffmanMethod implements EncodedMethod {
    private final Hptq.Kind kind;

    HuffmanMethod(Hptq.Kind kind) {
        this.kind = kind;
    }

    @Override
    public String name() {
        return kind.cliName;
    }

    @Override
    public boolean clips() {
        return false;
    }

    @Override
    public java.util.Set<String> options() {
        return java.util.Set.of("--target-bits");
    }

    @Override
    public String description() {
        return (kind == Hptq.Kind.HPTQ ? "HPTQ: GPTQ pass" : "HRTN: round to nearest")
                + " on one scale per matrix, Huffman-coded unbounded codes, sized by --target-bits";
    }

    @Override
    public ColumnOrder preferredOrder() {
        return ColumnOrder.ACT_ORDER;
    }

    @Override
    public void check(QuantGrid.Spec grid, double outlierRate, double targetBits) {
        if (targetBits == 0) {
            throw new IllegalArgumentException("--method " + name() + " needs --target-bits B (e.g. 3.125)");
        }
        Hptq.Options.of(kind, targetBits, org.babaiquant.core.GptqSolver.Options.defaults()); // validates the target
    }

    @Override
    public QuantResult quantize(String tensor, double[][] w, double[][] h, MethodSpec spec, QuantBackend backend) {
        Hptq.Result r = Hptq.quantize(w, h, Hptq.Options.of(kind, spec.targetBits(), spec.solverOptions(Method.GPTQ)));
        String line = String.format(Locale.ROOT, "%s %s: scale %.6g, codes %s, target %.4f bpw after %d passes%s", name(),
                spec.order(), (double) r.layer().scale(), codeRange(r.layer()), spec.targetBits(), r.evaluations(),
                r.inBand() ? "" : " (size could not be brought into the band)");
        return new QuantResult.Encoded(name(), spec.grid().bits(), spec.grid().groupSize(), r.bytes(), r.lattice(),
                Methods.matrix(decode(r.bytes()), w[0].length), r::summary, line);
    }

    @Override
    public float[] decode(byte[] bytes) {
        return HptqFormat.dequantize(bytes);
    }

    private static String codeRange(HptqLayer layer) {
        HptqFormat.Histogram hist = HptqFormat.Histogram.of(layer.codes());
        return hist.minCode() + ".." + (hist.minCode() + hist.freq().length - 1);
    }
}
