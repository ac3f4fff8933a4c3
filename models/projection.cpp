#include "models/projection.h"

namespace models {

torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t k = x.size(-1);
  if (x.numel() == k && x.scalar_type() == torch::kFloat32 && x.device().is_cpu()) {
    auto row = x.reshape({k});
    auto y = b.defined() ? torch::addmv(b, w, row) : torch::mv(w, row);  // [N]
    std::vector<int64_t> sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    return y.view(sizes);
  }
  return b.defined() ? torch::nn::functional::linear(x, w, b) : torch::nn::functional::linear(x, w);
}

}  // namespace models
