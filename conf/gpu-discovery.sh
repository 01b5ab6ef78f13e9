#!/usr/bin/env bash
# Spark GPU discovery script (spark.{driver,executor}.resource.gpu.discoveryScript): prints the resource JSON Spark
# expects, {"name":"gpu","addresses":["0","1",...]}, one address per GPU nvidia-smi lists (honouring
# CUDA_VISIBLE_DEVICES when it holds indices). Without nvidia-smi or GPUs it prints an empty address list, so executors
# on CPU-only nodes still start (and the quantize stage's `--backend auto` runs on the CPU).
set -u
addresses=""
if command -v nvidia-smi >/dev/null 2>&1; then
  ids="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' | grep -E '^[0-9]+$' || true)"
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" && "${CUDA_VISIBLE_DEVICES}" =~ ^[0-9,]+$ ]]; then
    ids="$(printf '%s\n' ${CUDA_VISIBLE_DEVICES//,/ } | grep -Fx -f <(printf '%s\n' $ids) || true)"
  fi
  for id in $ids; do
    addresses="${addresses:+$addresses,}\"$id\""
  done
fi
printf '{"name":"gpu","addresses":[%s]}\n' "$addresses"
