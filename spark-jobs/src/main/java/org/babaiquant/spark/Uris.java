package org.babaiquant.spark;

import java.util.regex.Pattern;

/** What may be printed of a URI: never its user-info ({@code s3a://AKIA:SECRET@bucket/q} prints as {@code s3a://bucket/q}). */
public final class Uris {
    /** scheme://user-info@ : the user-info is everything up to the first '@' before the authority ends. */
    private static final Pattern USER_INFO = Pattern.compile("(?i)\\b([a-z][a-z0-9+.-]*://)[^/@\\s?#]*@");

    private Uris() {}

    /** {@code text} with the user-info of every URI in it removed (text without URIs is returned as is). */
    public static String redact(String text) {
        return text == null ? null : USER_INFO.matcher(text).replaceAll("$1");
    }
}
