# 2-D transposition: B is the N x M transpose of the M x N matrix A.
kernel transpose2d(M=1024, N=768, dtype=f32)
  input  A[M, N]
  output B[j, i] = A[i, j]
