package org.babaiquant.core;

/**
 * One quantized weight matrix: integer codes in the original column order ({@code codes[r][j]}, in [0, maxq] when
 * clipping, any integer in no-clip mode), the grid they live on, the processing order used and the dequantized
 * weights {@code scale·(code − zero)}, with the error report of the same pass.
 */
public record QuantizedLayer(int[][] codes, QuantGrid grid, int[] perm, double[][] dequant, LayerReport report) {}
