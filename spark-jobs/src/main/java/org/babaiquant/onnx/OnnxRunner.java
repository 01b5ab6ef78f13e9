package org.babaiquant.onnx;

import org.babaiquant.io.OnnxModel;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import org.babaiquant.BadInputException;

import java.nio.FloatBuffer;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * One ONNX Runtime (CPU) session over a BERT-style encoder, run on one sequence at a time (batch 1, no padding,
 * attention mask all ones, token types 0), returning float outputs by name. Closing releases the native session.
 *
 * <p>Every ONNX Runtime call runs on one JVM-wide thread with a 64 MiB stack: ORT 1.29's native environment creation
 * overflows smaller stacks (seen as a SIGSEGV without an hs_err file inside {@code OrtEnvironment.createHandle} on a
 * 4 MiB main thread — bin/babai-quant's and the tests' {@code -Xss4m} — with Spark's 200-jar classpath, while 16 MiB
 * worked). ORT computes single-threaded (see {@link #options}): evaluations are reproducible across machines and core
 * counts; they can still differ in the last bits between CPUs whose ORT kernels use other SIMD instructions (AVX2
 * vs AVX-512), which ORT's API does not let us pin.
 */
public final class OnnxRunner implements AutoCloseable {
    private static final long ORT_STACK_BYTES = 64L << 20;
    private static final ExecutorService ORT_THREAD = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(null, r, "onnxruntime", ORT_STACK_BYTES);
        t.setDaemon(true);
        return t;
    });
    private final OrtEnvironment env = onOrtThread(OrtEnvironment::getEnvironment);
    private final OrtSession session;
    private final String name;
    private final Set<String> inputNames;

    /**
     * @param model     the model's bytes (e.g. with {@link OnnxModel#extraOutputs} appended)
     * @param optimize  false: ORT graph optimizations off (NO_OPT), so that every intermediate tensor is computed as the
     *                  graph states it, as activation capture needs; true: ORT's defaults
     */
    public OnnxRunner(String name, byte[] model, boolean optimize) {
        this.name = name;
        this.session = onOrtThread(() -> {
            try (OrtSession.SessionOptions so = options(optimize)) {
                return env.createSession(model, so);
            } catch (OrtException e) {
                throw new BadInputException(name + ": ONNX Runtime cannot load the model: " + e.getMessage(), e);
            }
        });
        this.inputNames = session.getInputNames();
        if (!inputNames.contains("input_ids")) {
            close();
            throw new BadInputException(name + ": the model has no input_ids input (inputs " + inputNames + "); only"
                    + " BERT-style encoders taking input_ids[, attention_mask, token_type_ids] are supported");
        }
    }

    private static OrtSession.SessionOptions options(boolean optimize) throws OrtException {
        OrtSession.SessionOptions so = new OrtSession.SessionOptions();
        so.setOptimizationLevel(optimize ? OrtSession.SessionOptions.OptLevel.ALL_OPT : OrtSession.SessionOptions.OptLevel.NO_OPT);
        // the same numbers on every machine of the same instruction set, whatever its core count: one intra-op thread,
        // operators run one after another, ORT's deterministic kernels (OnnxDeterminismTest; cost: BENCHMARKS.md)
        so.setIntraOpNumThreads(1);
        so.setInterOpNumThreads(1);
        so.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
        so.setDeterministicCompute(true);
        return so;
    }

    /** The named float outputs of one sequence, each flattened row-major (e.g. [1, T, d] → T·d values). */
    public Map<String, float[]> run(int[] ids, Collection<String> outputs) {
        return onOrtThread(() -> runHere(ids, outputs));
    }

    private Map<String, float[]> runHere(int[] ids, Collection<String> outputs) {
        long[][] tokens = new long[1][ids.length];
        long[][] ones = new long[1][ids.length];
        long[][] zeros = new long[1][ids.length];
        for (int i = 0; i < ids.length; i++) {
            tokens[0][i] = ids[i];
            ones[0][i] = 1;
        }
        Map<String, OnnxTensor> in = new LinkedHashMap<>();
        try {
            in.put("input_ids", OnnxTensor.createTensor(env, tokens));
            if (inputNames.contains("attention_mask")) {
                in.put("attention_mask", OnnxTensor.createTensor(env, ones));
            }
            if (inputNames.contains("token_type_ids")) {
                in.put("token_type_ids", OnnxTensor.createTensor(env, zeros));
            }
            Map<String, float[]> out = new LinkedHashMap<>();
            try (OrtSession.Result r = session.run(in, Set.copyOf(outputs))) {
                for (String o : outputs) {
                    Optional<OnnxValue> v = r.get(o);
                    if (v.isEmpty() || !(v.get() instanceof OnnxTensor t)) {
                        throw new BadInputException(name + ": the model produced no tensor named " + o);
                    }
                    FloatBuffer fb = t.getFloatBuffer();
                    float[] f = new float[fb.remaining()];
                    fb.get(f);
                    out.put(o, f);
                }
            }
            return out;
        } catch (OrtException e) {
            throw new IllegalStateException(name + ": ONNX Runtime failed on a sequence of " + ids.length + " tokens: "
                    + e.getMessage(), e);
        } finally {
            in.values().forEach(OnnxTensor::close);
        }
    }

    @Override
    public void close() {
        onOrtThread(() -> {
            try {
                session.close();
            } catch (OrtException e) {
                throw new IllegalStateException("cannot close the ONNX Runtime session of " + name + ": " + e.getMessage(), e);
            }
            return null;
        });
    }

    /** Runs {@code work} on the ORT thread and waits; its exceptions are rethrown as they are. */
    private static <T> T onOrtThread(Callable<T> work) {
        Future<T> f = ORT_THREAD.submit(work);
        try {
            return f.get();
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof RuntimeException r) {
                throw r;
            }
            if (c instanceof Error err) {
                throw err;
            }
            throw new IllegalStateException("ONNX Runtime call failed: " + c, c);
        } catch (InterruptedException e) {
            f.cancel(true);
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for ONNX Runtime", e);
        }
    }
}
