package org.babaiquant.spark;

import org.babaiquant.BadInputException;

import java.io.IOException;
import java.io.InputStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Which weight tensors to quantize and which Hessian input site feeds each: ordered regex rules, first match wins.
 * Command-line rules ({@code --map}) come first, then a rules file ({@code --map-file}), then the built-in defaults
 * for Llama/Mistral/Qwen-style, mixture-of-experts (Mixtral, Qwen-MoE, DeepSeek: one site per expert) and BERT/MiniLM
 * names ({@code default-layer-map.txt}).
 */
public final class LayerMap implements Serializable {
    /** One rule; {@code site} may use the regex's groups as {@code $1}. */
    public record Rule(String regex, String site, boolean userGiven) implements Serializable {
        Pattern pattern() {
            return Pattern.compile(regex);
        }
    }

    private final List<Rule> rules;

    private LayerMap(List<Rule> rules) {
        this.rules = List.copyOf(rules);
    }

    public List<Rule> rules() {
        return rules;
    }

    /** {@code cli}: REGEX=SITE strings (checked: each must match some weight); {@code file}: optional rules file. */
    public static LayerMap of(List<String> cli, Path file, boolean defaults) {
        List<Rule> rules = new ArrayList<>();
        for (String s : cli) {
            rules.add(parse(s, "--map", true));
        }
        if (file != null) {
            try {
                rules.addAll(parseLines(Files.readAllLines(file, StandardCharsets.UTF_8), file.toString()));
            } catch (IOException e) {
                throw new BadInputException("cannot read layer map " + file + ": " + e.getMessage(), e);
            }
        }
        if (defaults) {
            try (InputStream in = LayerMap.class.getResourceAsStream("default-layer-map.txt")) {
                rules.addAll(parseLines(new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().toList(), "default-layer-map.txt"));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return new LayerMap(rules);
    }

    private static List<Rule> parseLines(List<String> lines, String where) {
        List<Rule> rules = new ArrayList<>();
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i).strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            rules.add(parse(line, where + ":" + (i + 1), false));
        }
        return rules;
    }

    private static Rule parse(String s, String where, boolean user) {
        int eq = s.lastIndexOf('=');
        if (eq <= 0 || eq == s.length() - 1) {
            throw new BadInputException(where + ": expected REGEX=SITE, got '" + s + "'");
        }
        String regex = s.substring(0, eq).strip();
        try {
            Pattern.compile(regex);
        } catch (RuntimeException e) {
            throw new BadInputException(where + ": bad regex '" + regex + "': " + e.getMessage());
        }
        return new Rule(regex, s.substring(eq + 1).strip(), user);
    }

    /** The site feeding {@code tensor}, or null when no rule matches. */
    public String siteOf(String tensor) {
        for (Rule r : rules) {
            Matcher m = r.pattern().matcher(tensor);
            if (m.matches()) {
                return m.replaceFirst(r.site());
            }
        }
        return null;
    }

    /**
     * The layers to quantize among {@code tensors} (in their order), filtered by {@code layersRegex} (null: all
     * mapped). A user rule that matches no tensor is an error, as is a layer filter that selects nothing.
     */
    public Map<String, String> select(List<String> tensors, String layersRegex) {
        for (Rule r : rules) {
            if (r.userGiven() && tensors.stream().noneMatch(t -> r.pattern().matcher(t).matches())) {
                throw new BadInputException("--map " + r.regex() + "=" + r.site() + " matches no weight tensor of the model");
            }
        }
        Pattern filter = layersRegex == null ? null : Pattern.compile(layersRegex);
        Map<String, String> out = new LinkedHashMap<>();
        for (String t : tensors) {
            if (filter != null && !filter.matcher(t).matches()) {
                continue;
            }
            String site = siteOf(t);
            if (site != null) {
                out.put(t, site);
            }
        }
        if (out.isEmpty()) {
            throw new BadInputException("no weight tensor selected: " + (layersRegex == null ? "no layer-map rule matches any"
                    + " tensor name (e.g. " + tensors.stream().limit(3).toList() + "); pass --map REGEX=SITE"
                    : "--layers " + layersRegex + " matches no mapped tensor"));
        }
        return out;
    }
}
