# Matrix multiplication with B pre-packed into column panels, as oneDNN's matmul with a
# pre-packed B and BLAS's packed GEMM keep it: C = A * B with A row-major M x K and B
# stored as Bp[N / nb, K, nb] (panel jo holds columns jo*nb .. jo*nb+nb-1 of B, row by row),
# so that a panel's rows are contiguous. C is written as C[i, jo, ji], which is the same
# memory as the row-major M x N matrix. Packing B is done once, outside the timed kernel
# (weights are packed when a model is loaded). N must be a multiple of nb.
kernel matmul_packed(M=512, N=512, K=512, nb=64, dtype=f32)
  require N % nb == 0
  NB = N / nb
  input  A[M, K]
  const  Bp[NB, K, nb]
  output C[i < M, jo < NB, ji < nb] = sum(k < K) A[i, k] * Bp[jo, k, ji]
