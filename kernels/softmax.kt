# Row-wise softmax of an M x N matrix.
# Four stages: the row maximum, the shifted exponentials, the row sum, the normalization.
# Default: 128 rows of 1000 class scores (an ImageNet classifier's output over a batch).
kernel softmax(M=128, N=1000, dtype=f32)
  input  X[M, N]
  Mx[i] = max(j < N) X[i, j]
  E[i, j] = exp(X[i, j] - Mx[i])
  S[i] = sum(j < N) E[i, j]
  output Y[i, j] = E[i, j] / S[i]
