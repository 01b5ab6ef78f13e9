package org.babaiquant.onnx;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.babaiquant.BadInputException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * BERT's uncased WordPiece tokenizer, read from a Hugging Face {@code tokenizer.json}, reproducing what the
 * {@code tokenizers} library does for one sequence:
 * <ol>
 *   <li>special added tokens ({@code [CLS]}, {@code [SEP]}, …, {@code normalized: false}) written literally in the text
 *       are matched first, leftmost-longest, and map to their ids;</li>
 *   <li>{@code BertNormalizer}: drop NUL, U+FFFD and control characters (categories Cc, Cf, Cs, Co, Cn except tab, LF,
 *       CR), map whitespace to a space, surround CJK ideographs with spaces, strip accents (NFD, drop Mn) when
 *       {@code strip_accents} is true or null with {@code lowercase}, lowercase each code point;</li>
 *   <li>{@code BertPreTokenizer}: split on whitespace (Unicode White_Space) and isolate every punctuation character
 *       (ASCII punctuation or a Unicode P* category);</li>
 *   <li>{@code WordPiece}: greedy longest-match-first against the vocabulary, continuation pieces prefixed {@code ##};
 *       a word with an unmatched remainder, or longer than {@code max_input_chars_per_word}, becomes the unknown
 *       token;</li>
 *   <li>truncate to {@code maxLength − 2} pieces and wrap as {@code [CLS] … [SEP]} (type ids all 0).</li>
 * </ol>
 * A {@code tokenizer.json} of another kind (BPE, Unigram, another normalizer or pre-tokenizer) is refused: its ids would
 * silently not match the model.
 */
public final class WordPieceTokenizer {
    private final String source;
    private final Map<String, Integer> vocab;
    private final String unk;
    private final String prefix;
    private final int maxCharsPerWord;
    private final boolean lowercase;
    private final boolean stripAccents;
    private final boolean cleanText;
    private final boolean chineseChars;
    /** Special tokens matched in the raw text, longest first (leftmost-longest among equal starts). */
    private final List<Map.Entry<String, Integer>> specials;
    private final int cls;
    private final int sep;

    private WordPieceTokenizer(String source, Map<String, Integer> vocab, String unk, String prefix, int maxCharsPerWord,
                               boolean lowercase, boolean stripAccents, boolean cleanText, boolean chineseChars,
                               List<Map.Entry<String, Integer>> specials) {
        this.source = source;
        this.vocab = vocab;
        this.unk = unk;
        this.prefix = prefix;
        this.maxCharsPerWord = maxCharsPerWord;
        this.lowercase = lowercase;
        this.stripAccents = stripAccents;
        this.cleanText = cleanText;
        this.chineseChars = chineseChars;
        this.specials = specials;
        this.cls = id("[CLS]");
        this.sep = id("[SEP]");
        id(unk);
    }

    /**
     * Reads a HF {@code tokenizer.json}.
     *
     * @throws BadInputException if the file is missing, not JSON, or not a BERT WordPiece tokenizer
     */
    public static WordPieceTokenizer read(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new BadInputException("no such tokenizer file: " + file);
        }
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new BadInputException(file + " is not a readable tokenizer.json (JSON parse failed: " + e.getMessage() + ")", e);
        }
        String where = file.toString();
        JsonNode model = root.path("model");
        String type = model.path("type").asText("");
        if (!"WordPiece".equals(type)) {
            throw new BadInputException(where + ": model type is '" + (type.isEmpty() ? "missing" : type) + "', but this"
                    + " tokenizer implements BERT WordPiece only (a tokenizer.json of another model cannot tokenize for"
                    + " this one)");
        }
        JsonNode norm = root.path("normalizer");
        String normType = norm.path("type").asText("");
        if (!"BertNormalizer".equals(normType)) {
            throw new BadInputException(where + ": normalizer is '" + normType + "', expected BertNormalizer");
        }
        String pre = root.path("pre_tokenizer").path("type").asText("");
        if (!"BertPreTokenizer".equals(pre)) {
            throw new BadInputException(where + ": pre_tokenizer is '" + pre + "', expected BertPreTokenizer");
        }
        JsonNode v = model.path("vocab");
        if (!v.isObject() || v.isEmpty()) {
            throw new BadInputException(where + ": model.vocab is missing or empty");
        }
        Map<String, Integer> vocab = new HashMap<>(v.size() * 2);
        for (Iterator<Map.Entry<String, JsonNode>> it = v.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            vocab.put(e.getKey(), e.getValue().asInt());
        }
        boolean lowercase = norm.path("lowercase").asBoolean(true);
        JsonNode strip = norm.path("strip_accents");
        boolean stripAccents = strip.isNull() || strip.isMissingNode() ? lowercase : strip.asBoolean();
        List<Map.Entry<String, Integer>> specials = new ArrayList<>();
        for (JsonNode t : root.path("added_tokens")) {
            if (t.path("special").asBoolean(false) && !t.path("normalized").asBoolean(false)) {
                specials.add(Map.entry(t.path("content").asText(), t.path("id").asInt()));
            }
        }
        specials.sort((a, b) -> Integer.compare(b.getKey().length(), a.getKey().length()));
        WordPieceTokenizer tok = new WordPieceTokenizer(where, vocab, model.path("unk_token").asText("[UNK]"),
                model.path("continuing_subword_prefix").asText("##"), model.path("max_input_chars_per_word").asInt(100),
                lowercase, stripAccents, norm.path("clean_text").asBoolean(true),
                norm.path("handle_chinese_chars").asBoolean(true), List.copyOf(specials));
        return tok;
    }

    /** The vocabulary size (largest id + 1). */
    public int vocabSize() {
        return vocab.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
    }

    /** {@code [CLS] pieces… [SEP]}, at most {@code maxLength} ids (≥ 2). */
    public int[] encode(String text, int maxLength) {
        if (maxLength < 2) {
            throw new IllegalArgumentException("max length " + maxLength + " leaves no room for [CLS] and [SEP]");
        }
        List<Integer> ids = new ArrayList<>();
        ids.add(cls);
        int budget = maxLength - 2;
        int start = 0;
        while (start <= text.length() && ids.size() - 1 < budget) {
            int at = text.length();
            Map.Entry<String, Integer> hit = null;
            for (Map.Entry<String, Integer> s : specials) {
                int i = text.indexOf(s.getKey(), start);
                if (i >= 0 && i < at) { // longest first, so an equal start keeps the longer token
                    at = i;
                    hit = s;
                }
            }
            for (String word : preTokenize(normalize(text.substring(start, at)))) {
                wordPiece(word, ids);
            }
            if (hit == null) {
                break;
            }
            ids.add(hit.getValue());
            start = at + hit.getKey().length();
        }
        List<Integer> kept = ids.subList(0, Math.min(ids.size(), budget + 1));
        int[] out = new int[kept.size() + 1];
        for (int i = 0; i < kept.size(); i++) {
            out[i] = kept.get(i);
        }
        out[out.length - 1] = sep;
        return out;
    }

    /** The pieces' strings (for messages and tests). */
    public List<String> tokens(int[] ids) {
        Map<Integer, String> inverse = new HashMap<>();
        vocab.forEach((k, v) -> inverse.put(v, k));
        return Arrays.stream(ids).mapToObj(i -> inverse.getOrDefault(i, "?")).toList();
    }

    private int id(String token) {
        Integer i = vocab.get(token);
        if (i == null) {
            throw new BadInputException(source + ": the vocabulary has no " + token + " token (not a BERT tokenizer?)");
        }
        return i;
    }

    // ------------------------------------------------------------------------------------------------ normalizer

    String normalize(String text) {
        StringBuilder sb = new StringBuilder(text.length() + 16);
        text.codePoints().forEach(cp -> {
            if (cleanText) {
                if (cp == 0 || cp == 0xFFFD || isControl(cp)) {
                    return;
                }
                if (cp == '\t' || cp == '\n' || cp == '\r' || isWhitespace(cp)) {
                    sb.append(' ');
                    return;
                }
            }
            if (chineseChars && isChinese(cp)) {
                sb.append(' ').appendCodePoint(cp).append(' ');
            } else {
                sb.appendCodePoint(cp);
            }
        });
        String s = sb.toString();
        if (stripAccents) {
            StringBuilder out = new StringBuilder(s.length());
            Normalizer.normalize(s, Normalizer.Form.NFD).codePoints()
                    .filter(cp -> Character.getType(cp) != Character.NON_SPACING_MARK).forEach(out::appendCodePoint);
            s = out.toString();
        }
        if (lowercase) {
            StringBuilder out = new StringBuilder(s.length());
            // per code point, as Rust's char::to_lowercase (no final-sigma context rule)
            s.codePoints().forEach(cp -> {
                if (cp < 128) {
                    out.append((char) Character.toLowerCase(cp));
                } else {
                    out.append(new String(Character.toChars(cp)).toLowerCase(Locale.ROOT));
                }
            });
            s = out.toString();
        }
        return s;
    }

    /** Unicode "Other" categories (Rust's char::is_other), except tab, LF and CR. */
    private static boolean isControl(int cp) {
        if (cp == '\t' || cp == '\n' || cp == '\r') {
            return false;
        }
        int t = Character.getType(cp);
        return t == Character.CONTROL || t == Character.FORMAT || t == Character.SURROGATE
                || t == Character.PRIVATE_USE || t == Character.UNASSIGNED;
    }

    /** The Unicode White_Space property (Rust's char::is_whitespace). */
    static boolean isWhitespace(int cp) {
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680
                || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F
                || cp == 0x3000;
    }

    private static boolean isChinese(int cp) {
        return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF)
                || (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF)
                || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
    }

    // ------------------------------------------------------------------------------------------------ pre-tokenizer

    private static boolean isPunctuation(int cp) {
        if (cp < 128) {
            return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
        }
        int t = Character.getType(cp);
        return t == Character.CONNECTOR_PUNCTUATION || t == Character.DASH_PUNCTUATION || t == Character.START_PUNCTUATION
                || t == Character.END_PUNCTUATION || t == Character.INITIAL_QUOTE_PUNCTUATION
                || t == Character.FINAL_QUOTE_PUNCTUATION || t == Character.OTHER_PUNCTUATION;
    }

    static List<String> preTokenize(String s) {
        List<String> words = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        s.codePoints().forEach(cp -> {
            if (isWhitespace(cp)) {
                flush(cur, words);
            } else if (isPunctuation(cp)) {
                flush(cur, words);
                words.add(new String(Character.toChars(cp)));
            } else {
                cur.appendCodePoint(cp);
            }
        });
        flush(cur, words);
        return words;
    }

    private static void flush(StringBuilder cur, List<String> words) {
        if (cur.length() > 0) {
            words.add(cur.toString());
            cur.setLength(0);
        }
    }

    // ------------------------------------------------------------------------------------------------ WordPiece

    private void wordPiece(String word, List<Integer> out) {
        int[] cps = word.codePoints().toArray();
        if (cps.length > maxCharsPerWord) {
            out.add(vocab.get(unk));
            return;
        }
        List<Integer> pieces = new ArrayList<>();
        int start = 0;
        while (start < cps.length) {
            Integer found = null;
            int end = cps.length;
            for (; end > start; end--) {
                String sub = new String(cps, start, end - start);
                found = vocab.get(start > 0 ? prefix + sub : sub);
                if (found != null) {
                    break;
                }
            }
            if (found == null) {
                out.add(vocab.get(unk));
                return;
            }
            pieces.add(found);
            start = end;
        }
        out.addAll(pieces);
    }
}
