// ablate's per-rank work: the cell hooks that load a model, build its prompts and masks, decode and score
// each cell (a masked NIAH test or a task item), and the summary rank 0 writes from the finished cells.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/generation.h"
#include "pipeline/runner/cell_driver.h"
#include "stages/ablate/ablate_grid.h"

namespace stages {

// Everything a rank needs to compute any cell of the grid; the referenced objects outlive it.
struct AblateWork {
  const pipeline::StageContext& ctx;
  const AblateSettings& settings;
  const std::vector<ModelEntry>& entries;
  const std::vector<ModelHeads>& heads;
  const AblateGrid& grid;
  const std::vector<Needle>& needles;
  const std::vector<std::vector<TaskItem>>& task_items;
};

// Computes cells for pipeline::run_cells. One model is loaded at a time (begin_group); the selections of
// one NIAH prompt decode together, one prefill reused (compute_batch).
class AblateCellRunner {
 public:
  explicit AblateCellRunner(const AblateWork& work) : m_work(work) {}
  pipeline::CellHooks hooks();

 private:
  size_t model_index(const std::string& name) const;  // into the work's entries
  void begin_group(const std::string& model_name);
  void compute(size_t index, pipeline::store::Group& out);
  void compute_batch(const std::vector<size_t>& indices, std::vector<pipeline::store::Group>& outs);
  void compute_task(const AblateCell& cell, const models::HeadMask* mask, pipeline::store::Group& out);
  std::unique_ptr<models::HeadMask> mask_of(const AblateCell& cell);
  const torch::Tensor& mean_of_heads();
  void write_selection(const AblateCell& cell, pipeline::store::Group& out) const;
  void write_niah(const AblateCell& cell, const NiahCellResult& r, pipeline::store::Group& out) const;

  AblateWork m_work;
  // The loaded model's state (reset by begin_group).
  std::unique_ptr<LoadedModel> m_model;
  models::PrefixCache m_prefix;  // the loaded model's last prompt
  std::unique_ptr<PromptBuilder> m_builder;
  PromptTemplate m_task_template;
  std::string m_haystack;
  // Mode mean's vectors [n_layer, n_head, head_dim]: computed on this rank's first mean-mode cell of the
  // model (deterministic, so every rank gets the same bits; not stored: the job determines them).
  torch::Tensor m_head_mean;
};

// Rank 0, after every cell is merged into root/cells: root/summary/<model>, one row per selection (NIAH mean
// recall, cells, error-type counts; per task mean F1 / EM over its items). Layout: docs/STORE.md, ablate.h5.
void write_ablate_summary(pipeline::store::Group& root, const AblateWork& work);

// `rhead inspect` of an ablate store: per model and mode, NIAH recall by K (top vs random), then the tasks.
void inspect_ablate_summary(const pipeline::store::Group& root, std::ostream& out);

}  // namespace stages
