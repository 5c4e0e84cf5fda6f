# Depthwise 2-D convolution in a blocked layout (NCHW[x]c, as oneDNN's nChw16c), direct:
# each channel is convolved with its own R x S filter. Channels are split into blocks of cb:
# I[n, c / cb, h, w, c % cb], weights Wt[c / cb, r, s, c % cb] (oneDNN's Goihw16g, blocked
# the same way) and O[n, c / cb, p, q, c % cb]. With cb = 16 one block is one AVX-512
# register of f32, and every tap of the filter is one vector FMA. C must be a multiple of cb.
# Default: MobileNet-v2's 144-channel depthwise layer (56x56, 3x3, stride 1, pad 1).
kernel depthwise_conv2d_nchwc(N=1, C=144, H=56, W=56, R=3, S=3, stride=1, pad=1, cb=16, dtype=f32)
  P = (H + 2*pad - R) / stride + 1
  Q = (W + 2*pad - S) / stride + 1
  require C % cb == 0
  CB = C / cb
  input  I[N, CB, H, W, cb]
  const  Wt[CB, R, S, cb]
  Ipad[n, co, h < H + 2*pad, w < W + 2*pad, ci] =
      select(h >= pad && h < H + pad && w >= pad && w < W + pad, I[n, co, h - pad, w - pad, ci], 0)
  output O[n, co, p < P, q < Q, ci] =
      sum(r < R, s < S) Ipad[n, co, p*stride + r, q*stride + s, ci] * Wt[co, r, s, ci]
