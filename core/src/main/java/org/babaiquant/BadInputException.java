package org.babaiquant;

/**
 * Input the user gave us is unusable: malformed file, wrong shape, NaN/Inf, a Hessian that is not a Gram matrix.
 * The message says what, where (file, tensor, index) and, where possible, what to do. The CLI prints it without a
 * stack trace and exits with status 2; nothing is written.
 */
public class BadInputException extends RuntimeException {
    public BadInputException(String message) {
        super(message);
    }

    public BadInputException(String message, Throwable cause) {
        super(message, cause);
    }
}
