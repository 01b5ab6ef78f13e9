package org.babaiquant.core;

import org.babaiquant.BadInputException;

/** The Hessian could not be factorised even after escalating the damping: it is not a Gram matrix of real inputs. */
public class NotPositiveDefiniteException extends BadInputException {
    public NotPositiveDefiniteException(String message) {
        super(message);
    }
}
