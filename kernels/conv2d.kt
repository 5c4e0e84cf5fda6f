# 2-D convolution, NCHW layout, direct.
# O[n, k, p, q] = sum over c, r, s of
#   I[n, c, p*stride + r*dilation - pad, q*stride + s*dilation - pad] * Wt[k, c, r, s].
# Default: a ResNet-18 conv2_x layer (64 -> 64 channels, 56x56, 3x3, stride 1, pad 1).
kernel conv2d(N=1, C=64, H=56, W=56, K=64, R=3, S=3, stride=1, pad=1, dilation=1, dtype=f32)
  P = (H + 2*pad - dilation*(R - 1) - 1) / stride + 1
  Q = (W + 2*pad - dilation*(S - 1) - 1) / stride + 1
  input  I[N, C, H, W]
  const  Wt[K, C, R, S]
  Ipad[n, c, h < H + 2*pad, w < W + 2*pad] =
      select(h >= pad && h < H + pad && w >= pad && w < W + pad, I[n, c, h - pad, w - pad], 0)
  output O[n, k, p < P, q < Q] =
      sum(c < C, r < R, s < S) Ipad[n, c, p*stride + r*dilation, q*stride + s*dilation] * Wt[k, c, r, s]
