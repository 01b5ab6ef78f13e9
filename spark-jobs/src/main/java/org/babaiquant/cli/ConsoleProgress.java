package org.babaiquant.cli;

import java.io.PrintStream;

/**
 * Progress on the console: a live line rewritten in place ({@code \r}) when stderr is a terminal, nothing when it is
 * not (CI logs, pipes), so that long stages show "3/36 layers, ETA 40 s" to people and stay quiet in logs.
 * Permanent lines go to stdout as usual.
 */
final class ConsoleProgress {
    private static final boolean LIVE = System.console() != null && !"1".equals(System.getenv("BABAI_QUIET"));
    private static int width;

    private ConsoleProgress() {}

    /** Rewrites the live line (terminal only). */
    static synchronized void live(String msg) {
        if (!LIVE) {
            return;
        }
        PrintStream err = System.err;
        err.print("\r" + msg + " ".repeat(Math.max(0, width - msg.length())));
        err.flush();
        width = msg.length();
    }

    /** Clears the live line and prints a permanent one. */
    static synchronized void line(String msg) {
        if (LIVE && width > 0) {
            System.err.print("\r" + " ".repeat(width) + "\r");
            width = 0;
        }
        System.out.println(msg);
    }

    /** Clears the live line (end of a stage). */
    static synchronized void clear() {
        if (LIVE && width > 0) {
            System.err.print("\r" + " ".repeat(width) + "\r");
            width = 0;
        }
    }

    /** For a stage's progress consumer: "[stage] …" lines are live, the rest permanent. */
    static void accept(String msg) {
        if (msg.startsWith("[")) {
            live(msg);
        } else {
            line(msg);
        }
    }
}
