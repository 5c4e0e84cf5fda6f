// Baseline for scripts/bench_naive.sh: the textbook i-j-k triple loop, compiled with
// gcc -O3 -march=native, timed like ktune times kernels (median of 5 groups >= 10 ms each).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void matmul(int M, int N, int K, const float* restrict A, const float* restrict B, float* restrict C) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = 0;
      for (int k = 0; k < K; ++k) acc += A[i * K + k] * B[k * N + j];
      C[i * N + j] = acc;
    }
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]);
  float* A = malloc(sizeof(float) * M * K);
  float* B = malloc(sizeof(float) * K * N);
  float* C = malloc(sizeof(float) * M * N);
  for (int i = 0; i < M * K; ++i) A[i] = (float)rand() / RAND_MAX - 0.5f;
  for (int i = 0; i < K * N; ++i) B[i] = (float)rand() / RAND_MAX - 0.5f;
  matmul(M, N, K, A, B, C);  // warm-up
  double t0 = now_ms();
  matmul(M, N, K, A, B, C);
  double one = now_ms() - t0;
  int number = one >= 10 ? 1 : (int)(10 / (one > 1e-3 ? one : 1e-3)) + 1;
  double groups[5];
  for (int g = 0; g < 5; ++g) {
    t0 = now_ms();
    for (int r = 0; r < number; ++r) matmul(M, N, K, A, B, C);
    groups[g] = (now_ms() - t0) / number;
  }
  qsort(groups, 5, sizeof(double), cmp);
  printf("%.6f %.6f\n", groups[2], 2.0 * M * N * K / (groups[2] * 1e6));
  int keep = C[0] == 12345.0f;  // keep the result observable
  free(A), free(B), free(C);
  return keep;
}
