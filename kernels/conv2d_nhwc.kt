# 2-D convolution, NHWC layout with HWIO weights, direct.
# O[n, p, q, k] = sum over r, s, c of
#   I[n, p*stride + r*dilation - pad, q*stride + s*dilation - pad, c] * Wt[r, s, c, k].
# Default: a ResNet-18 conv2_x layer (64 -> 64 channels, 56x56, 3x3, stride 1, pad 1).
kernel conv2d_nhwc(N=1, H=56, W=56, C=64, K=64, R=3, S=3, stride=1, pad=1, dilation=1, dtype=f32)
  P = (H + 2*pad - dilation*(R - 1) - 1) / stride + 1
  Q = (W + 2*pad - dilation*(S - 1) - 1) / stride + 1
  input  I[N, H, W, C]
  const  Wt[R, S, C, K]
  Ipad[n, h < H + 2*pad, w < W + 2*pad, c] =
      select(h >= pad && h < H + pad && w >= pad && w < W + pad, I[n, h - pad, w - pad, c], 0)
  output O[n, p < P, q < Q, k] =
      sum(r < R, s < S, c < C) Ipad[n, p*stride + r*dilation, q*stride + s*dilation, c] * Wt[r, s, c, k]
