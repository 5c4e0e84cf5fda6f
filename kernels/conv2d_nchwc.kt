# 2-D convolution in a blocked layout (NCHW[x]c, as oneDNN's nChw16c), direct.
# Channels are split into blocks: I[n, c / cb, h, w, c % cb], weights
# Wt[k / kb, c / cb, r, s, c % cb, k % kb] and O[n, k / kb, p, q, k % kb]. With kb = 16 one
# block of output channels is one AVX-512 register of f32. C must be a multiple of cb, K of kb.
# Default: a ResNet-18 conv3_x layer (128 -> 128 channels, 28x28, 3x3, stride 1, pad 1).
kernel conv2d_nchwc(N=1, C=128, H=28, W=28, K=128, R=3, S=3, stride=1, pad=1, dilation=1, cb=16, kb=16, dtype=f32)
  P = (H + 2*pad - dilation*(R - 1) - 1) / stride + 1
  Q = (W + 2*pad - dilation*(S - 1) - 1) / stride + 1
  require C % cb == 0 && K % kb == 0
  CB = C / cb
  KB = K / kb
  input  I[N, CB, H, W, cb]
  const  Wt[KB, CB, R, S, cb, kb]
  Ipad[n, co, h < H + 2*pad, w < W + 2*pad, ci] =
      select(h >= pad && h < H + pad && w >= pad && w < W + pad, I[n, co, h - pad, w - pad, ci], 0)
  output O[n, ko, p < P, q < Q, ki] =
      sum(co < CB, r < R, s < S, ci < cb) Ipad[n, co, p*stride + r*dilation, q*stride + s*dilation, ci] *
                                          Wt[ko, co, r, s, ci, ki]
