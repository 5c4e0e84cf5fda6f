# Dense (fully connected) layer with bias and ReLU: Y = max(X * W^T + bias, 0).
# X is M x K (a batch of M rows), W is N x K (as nn.Linear stores it). The bias and ReLU
# are a separate element-wise stage that a schedule can fuse into the matmul.
# Default: ResNet-18's classifier (512 -> 1000) over a batch of 16.
kernel dense_bias_relu(M=16, N=1000, K=512, dtype=f32)
  input  X[M, K]
  const  W[N, K]
  const  bias[N]
  D[i, j] = sum(k < K) X[i, k] * W[j, k]
  output Y[i, j] = max(D[i, j] + bias[j], 0)
