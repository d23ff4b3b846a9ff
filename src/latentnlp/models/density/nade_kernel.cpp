// Fused CPU kernels for NADE (Larochelle & Murray 2011), blocks of examples per OpenMP work item.
//
// Shapes (float32, contiguous): x (B, D) in {0,1}; WT (D, H) = W^T (column d of W is row d here);
// V (D, H); c (H); b (D). Positions are in the model's ordering (the caller permutes).
//
//   a_1 = c;  a_{d+1} = a_d + x_d * W[:, d]            (running pre-activation, O(H) per step)
//   h_d = sigmoid(a_d);  logit_d = b_d + V_d . h_d
//   log p(x) = sum_d x_d logit_d - softplus(logit_d)  (nats)
//
// nade_forward: (B,) log-likelihoods (and, to train, the logits and final pre-activations).
// nade_backward: gradients of sum_n g_n log p(x_n) with respect to WT, V, c, b, walking back from the
// final pre-activation by subtracting x_d W[:, d], so no (D, H) activations are stored; examples go in
// blocks of 8 so that each row of V, W and of their gradients is loaded once per block.
#include <torch/extension.h>
#include <omp.h>
#include <cmath>
#include <vector>

namespace {

// Built with -ffast-math (for vectorised expf), which assumes no infinities: every exp argument is
// clamped to [-kExpClamp, kExpClamp], where sigmoid is already 0 or 1 to float precision.
constexpr float kExpClamp = 80.0f;
inline float clamp_arg(float v) { return std::min(std::max(v, -kExpClamp), kExpClamp); }
inline float softplus(float l) { return std::max(l, 0.0f) + std::log1p(std::exp(-std::fabs(clamp_arg(l)))); }
inline float sigmoid_scalar(float l) { return 1.0f / (1.0f + std::exp(-clamp_arg(l))); }

void check(const torch::Tensor& x, const torch::Tensor& WT, const torch::Tensor& V, const torch::Tensor& c,
           const torch::Tensor& b) {
  TORCH_CHECK(x.dim() == 2 && WT.dim() == 2 && V.dim() == 2 && c.dim() == 1 && b.dim() == 1, "nade: bad ranks");
  TORCH_CHECK(x.size(1) == WT.size(0) && WT.sizes() == V.sizes() && c.size(0) == WT.size(1) && b.size(0) == WT.size(0),
              "nade: shapes disagree");
  for (const auto* t : {&x, &WT, &V, &c, &b}) {
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous() && t->device().is_cpu(),
                "nade: tensors must be contiguous float32 on the CPU");
  }
}

constexpr int64_t kBlock = 8;  // examples walked together, so each row V_d, W_d is read once per block

// Forward pass of examples [n0, n0+E): logits into lg (E*D), final pre-activations into a (E*H);
// returns nothing, log p is accumulated into lp (E).
void forward_block(const float* x, const float* WT, const float* V, const float* c, const float* b, int64_t D,
                   int64_t H, int64_t E, float* a, float* lg, float* lp) {
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t k = 0; k < H; ++k) a[e * H + k] = c[k];
    lp[e] = 0.0f;
  }
  // (a ends as the final pre-activation a_{D+1} of each example.)
  for (int64_t d = 0; d < D; ++d) {
    const float* v = V + d * H;
    const float* w = WT + d * H;
    for (int64_t e = 0; e < E; ++e) {
      float* ae = a + e * H;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t k = 0; k < H; ++k) dot += v[k] / (1.0f + std::exp(-clamp_arg(ae[k])));
      const float logit = b[d] + dot;
      const float xd = x[e * D + d];
      if (lg) lg[e * D + d] = logit;
      lp[e] += xd * logit - softplus(logit);
      if (xd != 0.0f) {
#pragma omp simd
        for (int64_t k = 0; k < H; ++k) ae[k] += w[k];
      }
    }
  }
}

}  // namespace

std::vector<torch::Tensor> nade_forward(torch::Tensor x, torch::Tensor WT, torch::Tensor V, torch::Tensor c,
                                        torch::Tensor b, bool keep) {
  check(x, WT, V, c, b);
  const int64_t B = x.size(0), D = x.size(1), H = WT.size(1);
  auto out = torch::empty({B}, x.options());
  // With keep: the logits (B, D) and final pre-activations (B, H) the backward pass starts from.
  auto logits = keep ? torch::empty({B, D}, x.options()) : torch::empty({0}, x.options());
  auto a_final = keep ? torch::empty({B, H}, x.options()) : torch::empty({0}, x.options());
  const float *xp = x.data_ptr<float>(), *wp = WT.data_ptr<float>(), *vp = V.data_ptr<float>(),
              *cp = c.data_ptr<float>(), *bp = b.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* lgp = keep ? logits.data_ptr<float>() : nullptr;
  float* afp = keep ? a_final.data_ptr<float>() : nullptr;
  const int64_t n_blocks = (B + kBlock - 1) / kBlock;
#pragma omp parallel
  {
    std::vector<float> a(kBlock * H);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t n0 = blk * kBlock, E = std::min(kBlock, B - n0);
      forward_block(xp + n0 * D, wp, vp, cp, bp, D, H, E, a.data(), lgp ? lgp + n0 * D : nullptr, op + n0);
      if (afp) std::copy(a.begin(), a.begin() + E * H, afp + n0 * H);
    }
  }
  return {out, logits, a_final};
}

std::vector<torch::Tensor> nade_backward(torch::Tensor x, torch::Tensor WT, torch::Tensor V, torch::Tensor c,
                                         torch::Tensor b, torch::Tensor logits, torch::Tensor a_final, torch::Tensor g) {
  check(x, WT, V, c, b);
  TORCH_CHECK(logits.sizes() == x.sizes() && a_final.dim() == 2 && a_final.size(0) == x.size(0) &&
                  a_final.size(1) == WT.size(1) && logits.is_contiguous() && a_final.is_contiguous(),
              "nade: logits (B, D) and a_final (B, H) from nade_forward(keep=true) are required");
  TORCH_CHECK(g.dim() == 1 && g.size(0) == x.size(0) && g.scalar_type() == torch::kFloat32 && g.is_contiguous(),
              "nade: grad_output must be a contiguous float32 (B,) tensor");
  const int64_t B = x.size(0), D = x.size(1), H = WT.size(1);
  const float *xp = x.data_ptr<float>(), *wp = WT.data_ptr<float>(), *vp = V.data_ptr<float>(),
              *gp = g.data_ptr<float>(), *lgp = logits.data_ptr<float>(), *afp = a_final.data_ptr<float>();
  const int n_threads = omp_get_max_threads();
  const int64_t n_blocks = (B + kBlock - 1) / kBlock;
  // Per-thread accumulators, summed at the end (deterministic for a fixed thread count).
  std::vector<std::vector<float>> gWT(n_threads), gV(n_threads), gc(n_threads), gb(n_threads);
#pragma omp parallel
  {
    const int t = omp_get_thread_num();
    gWT[t].assign(D * H, 0.0f);
    gV[t].assign(D * H, 0.0f);
    gc[t].assign(H, 0.0f);
    gb[t].assign(D, 0.0f);
    std::vector<float> a(kBlock * H), G(kBlock * H);
    float *dW = gWT[t].data(), *dV = gV[t].data(), *dc = gc[t].data(), *db = gb[t].data();
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t n0 = blk * kBlock, E = std::min(kBlock, B - n0);
      const float* xb = xp + n0 * D;
      const float* lg = lgp + n0 * D;
      std::copy(afp + n0 * H, afp + (n0 + E) * H, a.begin());
      std::fill(G.begin(), G.end(), 0.0f);  // G_e = sum_{d' > d} dL/da_{d'} for example e
      // Walk back: a holds a_{d+1}; subtracting x_d W[:, d] gives a_d (recomputed, not stored).
      for (int64_t d = D - 1; d >= 0; --d) {
        const float* v = vp + d * H;
        const float* w = wp + d * H;
        float* dv = dV + d * H;
        float* dw = dW + d * H;
        for (int64_t e = 0; e < E; ++e) {
          float* ae = a.data() + e * H;
          float* Ge = G.data() + e * H;
          const float xd = xb[e * D + d];
          if (xd != 0.0f) {
#pragma omp simd
            for (int64_t k = 0; k < H; ++k) {
              ae[k] -= w[k];
              dw[k] += Ge[k];  // a_{d'} for d' > d holds x_d W[:, d]
            }
          }
          const float dl = gp[n0 + e] * (xd - sigmoid_scalar(lg[e * D + d]));  // d/dlogit_d of g * log p
          db[d] += dl;
#pragma omp simd
          for (int64_t k = 0; k < H; ++k) {
            const float hk = 1.0f / (1.0f + std::exp(-clamp_arg(ae[k])));
            dv[k] += dl * hk;
            Ge[k] += dl * v[k] * hk * (1.0f - hk);
          }
        }
      }
      for (int64_t e = 0; e < E; ++e) {
#pragma omp simd
        for (int64_t k = 0; k < H; ++k) dc[k] += G[e * H + k];  // every a_d holds c
      }
    }
  }
  auto sum = [&](std::vector<std::vector<float>>& parts, std::vector<int64_t> shape) {
    auto out = torch::zeros(shape, x.options());
    float* o = out.data_ptr<float>();
    for (auto& p : parts) {
      if (p.empty()) continue;
      for (size_t i = 0; i < p.size(); ++i) o[i] += p[i];
    }
    return out;
  };
  return {sum(gWT, {D, H}), sum(gV, {D, H}), sum(gc, {H}), sum(gb, {D})};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nade_forward", &nade_forward, "NADE log p(x) (B,) nats; with keep, also logits (B, D) and a_final (B, H)");
  m.def("nade_backward", &nade_backward, "gradients of sum_n g_n log p(x_n): dWT, dV, dc, db");
}
