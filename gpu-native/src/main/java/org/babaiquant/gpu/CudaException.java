package org.babaiquant.gpu;

import jcuda.driver.CUresult;
import org.babaiquant.core.BackendException;

/**
 * A CUDA driver error, split the way a caller must react: {@link Recoverable} (out of memory: retry smaller or run the
 * layer on the CPU; the context is still usable) or {@link Fatal} (everything else, notably the sticky errors after
 * an illegal address or a failed launch, which poison the context: fail the task so that the scheduler retries it
 * elsewhere).
 */
public abstract class CudaException extends BackendException {
    private static final long serialVersionUID = 1L;
    /** The {@code CUresult} code. */
    public final int code;

    CudaException(int code, String message) {
        super(message);
        this.code = code;
    }


    /** Out of memory: nothing was corrupted. */
    public static final class Recoverable extends CudaException {
        private static final long serialVersionUID = 1L;

        Recoverable(int code, String message) {
            super(code, message);
        }

        @Override
        public boolean recoverable() {
            return true;
        }
    }

    /** Any other driver error. */
    public static final class Fatal extends CudaException {
        private static final long serialVersionUID = 1L;

        Fatal(int code, String message) {
            super(code, message);
        }

        @Override
        public boolean recoverable() {
            return false;
        }
    }

    /** Throws for a non-zero result of {@code what}. */
    static void check(int result, String what) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw of(result, what);
        }
    }

    static CudaException of(int result, String what) {
        String msg = what + " failed: " + CUresult.stringFor(result) + " (" + result + ")";
        return result == CUresult.CUDA_ERROR_OUT_OF_MEMORY ? new Recoverable(result, msg) : new Fatal(result, msg);
    }
}
