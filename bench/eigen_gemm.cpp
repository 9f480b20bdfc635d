// Eigen's GEMM alone at the shapes of one full-batch cost + gradient: the
// reference row "eigen-gemm" of bench/run.py, which compiles this file on the
// fly with the flags of bpnet's avx512 and avx2 builds (bench/README.md).
//
// Dimension letters: m examples, L layers of s_l units, B rows of one block,
// t threads.
//
// For a network s_0 .. s_{L-1} the timed pass runs exactly the matrix
// products of bpnet's fused pass and nothing else (no bias, activation, loss,
// derivative, reduction of per-thread gradients or finiteness check):
//   forward   Z^(l+1) = A^(l) W^(l)^T      (B, s_{l+1}) = (B, s_l) (s_l, s_{l+1})
//   gradient  G^(l)  += D^(l+1)^T A^(l)    (s_{l+1}, s_l) = (s_{l+1}, B) (B, s_l)
//   deltas    D^(l)   = D^(l+1) W^(l)      (B, s_l) = (B, s_{l+1}) (s_{l+1}, s_l), l >= 1
// with A^(l+1) = Z^(l+1) (no activation) and D^(L-1) = A^(L-1), X read in place.
//
// Threading (--mode):
//   chunks  like bpnet's core: the m rows are cut into t contiguous ranges, one
//           per OpenMP thread; each thread runs its range in blocks of B rows
//           with single-threaded Eigen products and its own gradient buffers
//           (Eigen does not nest threads inside an OpenMP parallel region).
//   eigen   Eigen's own threading: one thread walks the blocks and every
//           product is parallelized by Eigen over t threads (setNbThreads).
// B = 0 means one block per range (whole-m products in eigen mode).
//
// Usage:
//   eigen_gemm --sizes 784,512,256,10 --m 10000 --dtype f64|f32
//              [--threads 1,2] [--blocks 0,128] [--mode chunks|eigen]
//              [--repeats 5] [--min-time 0.2]
// Prints one JSON object per (threads, block) on stdout.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Index = std::ptrdiff_t;
template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::vector<Index> parse_list(const std::string& text) {
  std::vector<Index> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

struct Options {
  std::vector<Index> sizes;
  Index m = 0;
  std::string dtype = "f64";
  std::vector<Index> threads{1};
  std::vector<Index> blocks{0};
  std::string mode = "chunks";
  int repeats = 5;
  double min_time = 0.2;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + key);
    const std::string value = argv[++i];
    if (key == "--sizes") {
      o.sizes = parse_list(value);
    } else if (key == "--m") {
      o.m = std::stoll(value);
    } else if (key == "--dtype") {
      o.dtype = value;
    } else if (key == "--threads") {
      o.threads = parse_list(value);
    } else if (key == "--blocks") {
      o.blocks = parse_list(value);
    } else if (key == "--mode") {
      o.mode = value;
    } else if (key == "--repeats") {
      o.repeats = std::stoi(value);
    } else if (key == "--min-time") {
      o.min_time = std::stod(value);
    } else {
      throw std::invalid_argument("unknown option " + key);
    }
  }
  if (o.sizes.size() < 2) throw std::invalid_argument("--sizes needs at least 2 layers");
  if (o.m < 1) throw std::invalid_argument("--m must be >= 1");
  if (o.dtype != "f64" && o.dtype != "f32") throw std::invalid_argument("--dtype f64 or f32");
  if (o.mode != "chunks" && o.mode != "eigen") throw std::invalid_argument("--mode chunks|eigen");
  return o;
}

// Per-thread buffers for blocks of up to B rows.
template <typename T>
struct Buffers {
  std::vector<RowMat<T>> A, D, G;  // A[l] (B, s_l), D[l] (B, s_l), G[l] (s_{l+1}, s_l)
  Buffers(const std::vector<Index>& s, Index B) {
    const std::size_t L = s.size();
    for (std::size_t l = 0; l < L; ++l) {
      const Index rows = (l == 0 || l + 1 == L) ? 0 : B;  // X is read in place
      A.emplace_back(RowMat<T>::Zero(l == 0 ? 0 : B, s[l]));
      D.emplace_back(RowMat<T>::Zero(rows, s[l]));
    }
    for (std::size_t l = 0; l + 1 < L; ++l) G.emplace_back(RowMat<T>::Zero(s[l + 1], s[l]));
  }
};

// The products of one block of b rows starting at row r0 of X (m, s_0). X is
// read in place and the output "delta" is the last activation, as no copy is
// part of the fused pass's matrix products either.
template <typename T>
void block_products(const RowMat<T>& X, const std::vector<RowMat<T>>& W, Index r0, Index b,
                    Buffers<T>& buf) {
  const std::size_t L = W.size() + 1;
  const auto X_blk = X.middleRows(r0, b);
  buf.A[1].topRows(b).noalias() = X_blk * W[0].transpose();  // forward: Z = A W^T
  for (std::size_t l = 1; l + 1 < L; ++l)
    buf.A[l + 1].topRows(b).noalias() = buf.A[l].topRows(b) * W[l].transpose();
  for (std::size_t l = L - 1; l-- > 0;) {  // backward: G += D^T A; D(l) = D(l+1) W
    const auto D_next = (l + 2 == L ? buf.A[L - 1] : buf.D[l + 1]).topRows(b);
    if (l == 0) {
      buf.G[0].noalias() += D_next.transpose() * X_blk;
    } else {
      buf.G[l].noalias() += D_next.transpose() * buf.A[l].topRows(b);
      buf.D[l].topRows(b).noalias() = D_next * W[l];
    }
  }
}

template <typename T>
int run(const Options& o) {
  const std::vector<Index>& s = o.sizes;
  const std::size_t L = s.size();
  std::mt19937_64 rng(0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  RowMat<T> X(o.m, s[0]);  // (m, s_0)
  for (Index i = 0; i < X.size(); ++i) X.data()[i] = static_cast<T>(u(rng));
  std::vector<RowMat<T>> W;  // W[l] (s_{l+1}, s_l), contiguous (the core's are strided views)
  for (std::size_t l = 0; l + 1 < L; ++l) {
    W.emplace_back(s[l + 1], s[l]);
    for (Index i = 0; i < W.back().size(); ++i)
      W.back().data()[i] = static_cast<T>((u(rng) - 0.5) * 0.2);
  }
  double flops = 0;
  for (std::size_t l = 0; l + 1 < L; ++l)
    flops += 2.0 * double(o.m) * double(s[l]) * double(s[l + 1]) * (l > 0 ? 3.0 : 2.0);

  for (Index t : o.threads) {
    for (Index B0 : o.blocks) {
      const Index per = (o.m + t - 1) / t;
      const Index B = std::max<Index>(1, B0 > 0 ? std::min(B0, o.mode == "chunks" ? per : o.m)
                                                : (o.mode == "chunks" ? per : o.m));
      std::vector<Buffers<T>> bufs;
      const Index nbuf = o.mode == "chunks" ? t : 1;
      for (Index i = 0; i < nbuf; ++i) bufs.emplace_back(s, B);
      auto pass = [&]() {
        if (o.mode == "chunks") {
          Eigen::setNbThreads(1);
#pragma omp parallel for num_threads(static_cast<int>(t)) schedule(static, 1)
          for (Index c = 0; c < t; ++c) {
            const Index r_begin = o.m / t * c + std::min<Index>(c, o.m % t);
            const Index r_end = o.m / t * (c + 1) + std::min<Index>(c + 1, o.m % t);
            for (Index r0 = r_begin; r0 < r_end; r0 += B)
              block_products<T>(X, W, r0, std::min(B, r_end - r0), bufs[c]);
          }
        } else {
          Eigen::setNbThreads(static_cast<int>(t));
          for (Index r0 = 0; r0 < o.m; r0 += B)
            block_products<T>(X, W, r0, std::min(B, o.m - r0), bufs[0]);
        }
      };
      using clock = std::chrono::steady_clock;
      pass();  // warm up: pages, caches, thread team
      const auto t0 = clock::now();
      pass();
      const double one = std::max(1e-7, std::chrono::duration<double>(clock::now() - t0).count());
      const int inner = std::max(1, static_cast<int>(o.min_time / one));
      std::vector<double> samples;
      for (int r = 0; r < o.repeats; ++r) {
        const auto a = clock::now();
        for (int i = 0; i < inner; ++i) pass();
        samples.push_back(std::chrono::duration<double>(clock::now() - a).count() / inner);
      }
      std::vector<double> sorted = samples;
      std::sort(sorted.begin(), sorted.end());
      const std::size_t n = sorted.size();
      const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
      double checksum = 0;  // keeps the products observable
      for (const auto& b : bufs)
        for (const auto& g : b.G) checksum += static_cast<double>(g(0, 0));
      std::printf(
          "{\"mode\": \"%s\", \"dtype\": \"%s\", \"threads\": %td, \"block\": %td, "
          "\"median_s\": %.9g, \"gflops\": %.6g, \"inner\": %d, \"checksum_finite\": %s, "
          "\"samples_s\": [",
          o.mode.c_str(), o.dtype.c_str(), t, B, median, flops / median / 1e9, inner,
          std::isfinite(checksum) ? "true" : "false");
      for (std::size_t i = 0; i < samples.size(); ++i)
        std::printf("%s%.9g", i ? ", " : "", samples[i]);
      std::printf("]}\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    return o.dtype == "f64" ? run<double>(o) : run<float>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eigen_gemm: %s\n", e.what());
    return 2;
  }
}
