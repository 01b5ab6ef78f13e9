package org.babaiquant.spark;

import java.net.ConnectException;
import java.net.NoRouteToHostException;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * "The storage is unavailable, retry": one meaning, one exit status ({@value #EXIT_RETRYABLE}, sysexits.h
 * EX_TEMPFAIL) in every command. Every writer commits through {@link org.babaiquant.io.Commit}, so such a failure
 * never leaves anything partial that looks complete, and rerunning the same command finishes the work.
 */
public final class StorageFailures {
    /** Exit status of any command whose storage endpoint could not be reached. */
    public static final int EXIT_RETRYABLE = 75;

    private static final Pattern TEXT = Pattern.compile("(Connection refused|ConnectException[^\\n]*"
            + "|Unable to execute HTTP request[^\\n]*|UnknownHostException[^\\n]*|connect timed out"
            + "|NoRouteToHostException[^\\n]*|Connection reset)");

    private StorageFailures() {}

    /**
     * Why a failure means the storage endpoint could not be reached (a short cause), or null when it is something
     * else. Looks through the cause chain and through the text of Spark's task-failure messages (which carry the
     * executor's exception as a string).
     */
    public static String unreachable(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof ConnectException || c instanceof NoRouteToHostException || c instanceof UnknownHostException
                    || (c instanceof SocketTimeoutException && String.valueOf(c.getMessage()).contains("connect"))) {
                return c.getClass().getSimpleName() + ": " + Uris.redact(c.getMessage());
            }
            Matcher m = TEXT.matcher(String.valueOf(c.getMessage()));
            if (m.find()) {
                String hit = Uris.redact(m.group(1));
                return hit.length() > 200 ? hit.substring(0, 200) + "…" : hit;
            }
            if (c.getCause() == c) {
                break;
            }
        }
        return null;
    }
}
