# Dense (fully connected) layer with bias: Y = X * W^T + bias, as nn.Linear computes it.
# X is M x K (a batch of M rows), W is N x K (as nn.Linear stores it). The bias is a
# separate element-wise stage that a schedule can fuse into the matmul.
# Default: ResNet-18's classifier (512 -> 1000) at batch 1.
kernel dense(M=1, N=1000, K=512, dtype=f32)
  input  X[M, K]
  const  W[N, K]
  const  bias[N]
  D[i, j] = sum(k < K) X[i, k] * W[j, k]
  output Y[i, j] = D[i, j] + bias[j]
