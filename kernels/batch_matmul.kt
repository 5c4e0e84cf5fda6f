# Batched matrix multiplication Z[b] = X[b] * Y[b] over a batch of B matrices.
# Default: the attention scores of BERT-base (12 heads, sequence 128, head size 64).
kernel batch_matmul(B=12, M=128, N=128, K=64, dtype=f32)
  input  X[B, M, K]
  input  Y[B, K, N]
  output Z[b, i, j] = sum(k < K) X[b, i, k] * Y[b, k, j]
