# Matrix multiplication C = A * B: A is M x K, B is K x N, all row-major.
kernel matmul(M=512, N=512, K=512, dtype=f32)
  input  A[M, K]
  input  B[K, N]
  output C[i, j] = sum(k < K) A[i, k] * B[k, j]
