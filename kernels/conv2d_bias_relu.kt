# 2-D convolution (NCHW) with a per-channel bias and ReLU.
# As in a conv + batch-norm (folded into the bias) + ReLU block. The bias and ReLU are a
# separate element-wise stage that a schedule can fuse into the convolution.
# Default: a ResNet-18 conv3_x layer (128 -> 128 channels, 28x28, 3x3, stride 1, pad 1).
kernel conv2d_bias_relu(N=1, C=128, H=28, W=28, K=128, R=3, S=3, stride=1, pad=1, dtype=f32)
  P = (H + 2*pad - R) / stride + 1
  Q = (W + 2*pad - S) / stride + 1
  input  I[N, C, H, W]
  const  Wt[K, C, R, S]
  const  bias[K]
  Ipad[n, c, h < H + 2*pad, w < W + 2*pad] =
      select(h >= pad && h < H + pad && w >= pad && w < W + pad, I[n, c, h - pad, w - pad], 0)
  Conv[n, k, p < P, q < Q] =
      sum(c < C, r < R, s < S) Ipad[n, c, p*stride + r, q*stride + s] * Wt[k, c, r, s]
  output Y[n, k, p, q] = max(Conv[n, k, p, q] + bias[k], 0)
