# Depthwise 2-D convolution, NCHW: each channel is convolved with its own R x S filter.
# Default: MobileNet-v2's first stride-2 depthwise layer (block 2: 96 channels,
# 112x112 -> 56x56, 3x3, stride 2, pad 1).
kernel depthwise_conv2d(N=1, C=96, H=112, W=112, R=3, S=3, stride=2, pad=1, dtype=f32)
  P = (H + 2*pad - R) / stride + 1
  Q = (W + 2*pad - S) / stride + 1
  input  I[N, C, H, W]
  const  Wt[C, R, S]
  Ipad[n, c, h < H + 2*pad, w < W + 2*pad] =
      select(h >= pad && h < H + pad && w >= pad && w < W + pad, I[n, c, h - pad, w - pad], 0)
  output O[n, c, p < P, q < Q] =
      sum(r < R, s < S) Ipad[n, c, p*stride + r, q*stride + s] * Wt[c, r, s]
