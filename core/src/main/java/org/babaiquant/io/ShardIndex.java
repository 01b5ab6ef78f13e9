package org.babaiquant.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

import org.babaiquant.BadInputException;
import org.babaiquant.core.Json;

/**
 * A sharded checkpoint's {@code model.safetensors.index.json}:
 * {@code {"metadata": {"total_size": 16060522496}, "weight_map": {"lm_head.weight": "model-00004-of-00004.safetensors", ...}}}.
 *
 * @param metadata  the {@code metadata} object, values as text (numbers in decimal, nested values as compact JSON);
 *                  empty if absent (unmodifiable)
 * @param weightMap tensor name to shard file name, in file order (unmodifiable); shard names are plain file names
 *                  in the index's directory
 */
public record ShardIndex(Map<String, String> metadata, Map<String, String> weightMap) {
    public ShardIndex {
        metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
        weightMap = Collections.unmodifiableMap(new LinkedHashMap<>(weightMap));
    }

    /**
     * Reads and validates a shard index ({@code model.safetensors.index.json}): a JSON object with a
     * {@code weight_map} object of strings, each a plain file name (no directory part: shards live next to the
     * index), and an optional {@code metadata} object. Other keys are ignored. Whether the shards exist and hold the
     * tensors is for the caller to check, since only it knows where they are.
     *
     * @throws BadInputException naming the source for anything else
     */
    public static ShardIndex read(ByteSource src) {
        String file = src.name();
        try {
            long size = src.size();
            if (size > SafeTensors.MAX_INDEX_BYTES) {
                throw new BadInputException(file + ": shard index is " + size + " bytes, over the limit of "
                        + SafeTensors.MAX_INDEX_BYTES + "; not a model.safetensors.index.json");
            }
            ByteBuffer b = ByteBuffer.allocate((int) size);
            SafeTensors.readFully(src, 0, b);
            String json = SafeTensors.decodeUtf8(b.flip(), file, "shard index");
            // Lenient numbers: the metadata is free-form (transformers writes integers, others may not).
            Object root = Json.parse(json, file, "shard index", Json.Numbers.TEXT);
            if (!(root instanceof Map)) {
                throw new BadInputException(file + ": shard index must be a JSON object with a \"weight_map\"");
            }
            Map<String, Object> obj = SafeTensors.asObject(root);
            Object wm = obj.get("weight_map");
            if (!(wm instanceof Map)) {
                throw new BadInputException(file + ": shard index has " + (wm == null ? "no" : "a non-object")
                        + " \"weight_map\"; expected {\"weight_map\": {tensor name: shard file name}}");
            }
            Map<String, String> weightMap = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : SafeTensors.asObject(wm).entrySet()) {
                if (!(e.getValue() instanceof String)) {
                    throw new BadInputException(file + ": weight_map entry for tensor '" + e.getKey()
                            + "' must be a shard file name, found " + SafeTensors.toJson(e.getValue()));
                }
                String shard = (String) e.getValue();
                if (shard.isEmpty() || shard.equals(".") || shard.equals("..") || shard.indexOf('/') >= 0
                        || shard.indexOf('\\') >= 0 || shard.indexOf('\0') >= 0) {
                    throw new BadInputException(file + ": weight_map maps tensor '" + e.getKey() + "' to '" + shard
                            + "'; a shard must be a plain file name in the index's directory");
                }
                weightMap.put(e.getKey(), shard);
            }
            if (weightMap.isEmpty()) {
                throw new BadInputException(file + ": shard index has an empty \"weight_map\": it maps no tensors");
            }
            Map<String, String> metadata = new LinkedHashMap<>();
            Object md = obj.get("metadata");
            if (md != null) {
                if (!(md instanceof Map)) {
                    throw new BadInputException(file + ": shard index \"metadata\" must be an object, found "
                            + SafeTensors.toJson(md));
                }
                for (Map.Entry<String, Object> e : SafeTensors.asObject(md).entrySet()) {
                    Object v = e.getValue();
                    metadata.put(e.getKey(), v instanceof String ? (String) v : SafeTensors.toJson(v));
                }
            }
            return new ShardIndex(metadata, weightMap);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }
}
