# Layout change of a feature map from NCHW to NHWC.
# Default: a ResNet-18 conv2_x feature map (64 channels, 56x56).
kernel nchw_to_nhwc(N=1, C=64, H=56, W=56, dtype=f32)
  input  X[N, C, H, W]
  output Y[n, h, w, c] = X[n, c, h, w]
