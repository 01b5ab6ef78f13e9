package org.babaiquant.core;

/**
 * A failure of a {@link QuantBackend}'s device, split the way a caller must react, whatever the backend: recoverable
 * (out of device memory: nothing was corrupted, run the layer on the CPU instead) or not (a poisoned device context:
 * fail the task so that the scheduler retries it elsewhere). Callers catch this, never a backend's own exception
 * class, so that the Spark jobs do not depend on any backend implementation (the CUDA backend's {@code CudaException}
 * is one).
 */
public abstract class BackendException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    protected BackendException(String message) {
        super(message);
    }

    /** Whether the caller may go on (on the CPU, or with less memory) in this process. */
    public abstract boolean recoverable();
}
