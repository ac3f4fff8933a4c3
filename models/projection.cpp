#include "models/projection.h"

#include "models/row_projection.h"

namespace models {

torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t k = x.size(-1);
  const int64_t rows = k > 0 ? x.numel() / k : 0;
  if (rows >= 1 && rows <= kRowProjectionMaxRows && x.scalar_type() == torch::kFloat32 && x.device().is_cpu() &&
      w.scalar_type() == torch::kFloat32 && w.is_contiguous() && (!b.defined() || b.is_contiguous())) {
    const torch::Tensor xc = x.contiguous();
    std::vector<int64_t> sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    torch::Tensor y = torch::empty(sizes, x.options());
    row_projection(xc.data_ptr<float>(), rows, w.data_ptr<float>(), w.size(0), k,
                   b.defined() ? b.data_ptr<float>() : nullptr, y.data_ptr<float>());
    return y;
  }
  return b.defined() ? torch::nn::functional::linear(x, w, b) : torch::nn::functional::linear(x, w);
}

}  // namespace models
