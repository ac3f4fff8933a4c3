#include "stages/ablate/ablate_cells.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

#include "models/cpu_compute.h"
#include "models/head_outputs.h"
#include "pipeline/core/error.h"

namespace stages {

using pipeline::str_cat;

namespace {

constexpr const char* kErrorNames[] = {"correct", "incomplete", "wrong_extraction", "hallucination"};

}  // namespace

size_t AblateCellRunner::model_index(const std::string& name) const {
  const auto& entries = m_work.entries;
  const auto it = std::find_if(entries.begin(), entries.end(), [&](const ModelEntry& e) { return e.name == name; });
  RHEAD_CHECK(it != entries.end(), pipeline::Error, "[ablate] no model '", name, "' in the job (bug: please report)");
  return static_cast<size_t>(it - entries.begin());
}

pipeline::CellHooks AblateCellRunner::hooks() {
  pipeline::CellHooks hooks;
  hooks.group_inputs = [this](const std::string& group) { return m_work.heads[model_index(group)].score_fingerprint; };
  hooks.begin_group = [this](const std::string& group) { begin_group(group); };
  hooks.compute = [this](size_t index, pipeline::store::Group& out) { compute(index, out); };
  hooks.compute_batch = [this](const std::vector<size_t>& indices, std::vector<pipeline::store::Group>& outs) {
    compute_batch(indices, outs);
  };
  hooks.max_batch = static_cast<size_t>(m_work.settings.niah.decode_batch);
  return hooks;
}

void AblateCellRunner::begin_group(const std::string& model_name) {
  const AblateSettings& s = m_work.settings;
  models::configure_cpu_compute(m_work.ctx.threads, /*flush_subnormals=*/true);  // models/cpu_compute.h
  m_prefix = models::PrefixCache();
  m_model = load_model(m_work.entries[model_index(model_name)], s.niah.prefill_chunk, s.niah.prefill_call);
  const PromptOptions po =
      prompt_options_for(*m_model, s.niah.prompt_mode, s.niah.buffer_tokens, m_work.ctx.config.source());
  m_task_template = po.prompt_template;
  // The masked-NIAH harness repeats the essays until the token count reaches the longest context.
  const int64_t max_length = *std::max_element(s.niah.lengths.begin(), s.niah.lengths.end());
  m_haystack = read_token_haystack(s.haystack_dir, *m_model->tokenizer, max_length);
  m_builder = std::make_unique<PromptBuilder>(*m_model->tokenizer, m_haystack, po);
  m_head_mean = torch::Tensor();
}

const torch::Tensor& AblateCellRunner::mean_of_heads() {
  if (!m_head_mean.defined()) {
    const AblateSettings& s = m_work.settings;
    const std::string text = read_token_haystack(s.haystack_dir, *m_model->tokenizer, s.mean_tokens);
    std::vector<int64_t> ids = m_model->tokenizer->encode(text, /*add_special_tokens=*/true);
    ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(s.mean_tokens)));
    m_head_mean = models::mean_head_outputs(*m_model->decoder, ids);
  }
  return m_head_mean;
}

// The cell's head mask; none for the unmasked baseline.
std::unique_ptr<models::HeadMask> AblateCellRunner::mask_of(const AblateCell& cell) {
  const Selection& sel = m_work.heads[cell.model].selections[cell.selection];
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (const auto& h : sel.heads) pairs.emplace_back(h.layer, h.head);
  if (pairs.empty()) return nullptr;
  const models::HeadMaskMode mode = parse_mask_mode(sel.mode, "");
  return std::make_unique<models::HeadMask>(m_model->folder.spec, mode, pairs, /*in_prefill=*/false,
                                            mode == models::HeadMaskMode::Mean ? mean_of_heads() : torch::Tensor());
}

// The attributes every cell carries: its model and head selection.
void AblateCellRunner::write_selection(const AblateCell& cell, pipeline::store::Group& out) const {
  const Selection& sel = m_work.heads[cell.model].selections[cell.selection];
  out.set_attr("model", m_work.entries[cell.model].name);
  out.set_attr("mode", sel.mode);
  out.set_attr("selection", sel.selection);
  out.set_attr("k", sel.k);
  out.set_attr("seed", sel.seed);
  out.write("masked_heads", flatten(sel.heads), {sel.heads.size(), 2}, "head,layer_head");
}

// A NIAH cell's results, with the error analysis over the model's tracked heads (the sink share over
// those this cell left unmasked) and their argmax positions at every decode step.
void AblateCellRunner::write_niah(const AblateCell& cell, const NiahCellResult& r, pipeline::store::Group& out) const {
  const models::ModelSpec& spec = m_model->folder.spec;
  ArgmaxCapture capture{static_cast<int64_t>(r.generated.size()), spec.n_layer, spec.n_head, r.argmax};
  const auto& top = m_work.heads[cell.model].tracked;
  const std::vector<HeadId>& masked = m_work.heads[cell.model].selections[cell.selection].heads;
  NiahErrorReport report = analyze_niah_cell(r.rouge1_recall, r.response, r.prompt.context, capture, top, masked);
  std::vector<int32_t> top_pos;  // [step, tracked]
  for (int64_t step = 0; step < capture.n_step; ++step) {
    for (const auto& h : top) {
      top_pos.push_back(r.argmax[static_cast<size_t>((step * spec.n_layer + h.layer) * spec.n_head + h.head)]);
    }
  }
  std::vector<int32_t> gen_v(r.generated.begin(), r.generated.end());
  write_niah_cell_attrs(out, r, cell.needle, cell.length, cell.depth);
  out.set_attr("error_type", std::string(niah_error_type_name(report.type)));
  out.set_attr("sink_fraction", report.sink_fraction);
  out.write("generated_ids", gen_v, {gen_v.size()}, "step");
  out.write_text("response", r.response);
  out.write("top_head_argmax", top_pos, {gen_v.size(), top.size()}, "step,tracked_head");
}

// The head selections of one NIAH prompt decode together (one prefill, reused; a mask per sequence).
void AblateCellRunner::compute_batch(const std::vector<size_t>& indices, std::vector<pipeline::store::Group>& outs) {
  std::vector<std::unique_ptr<models::HeadMask>> masks;
  std::vector<NiahCellSpec> specs;
  for (size_t index : indices) {
    const AblateCell& cell = m_work.grid.cells[index];
    masks.push_back(mask_of(cell));
    specs.push_back({m_builder.get(), &m_work.needles[cell.needle], cell.length, cell.depth, masks.back().get()});
  }
  NiahDecodeOptions decode = m_work.settings.niah.decode;
  decode.prefix_cache = &m_prefix;
  const std::vector<NiahCellResult> results = run_niah_cells(*m_model, specs, decode);
  for (size_t i = 0; i < indices.size(); ++i) {
    write_selection(m_work.grid.cells[indices[i]], outs[i]);
    write_niah(m_work.grid.cells[indices[i]], results[i], outs[i]);
  }
}

void AblateCellRunner::compute(size_t index, pipeline::store::Group& out) {
  const AblateCell& cell = m_work.grid.cells[index];
  const std::unique_ptr<models::HeadMask> mask = mask_of(cell);
  write_selection(cell, out);
  if (cell.kind == CellKind::kTask) {
    compute_task(cell, mask.get(), out);
    return;
  }
  NiahDecodeOptions decode = m_work.settings.niah.decode;
  decode.mask = mask.get();
  decode.prefix_cache = &m_prefix;
  write_niah(cell,
             run_niah_cell(*m_model, *m_builder, m_work.needles[cell.needle], cell.length, cell.depth, decode), out);
}

// One task item under the cell's mask: greedy answer in the model's template, scored by SQuAD F1 / EM.
void AblateCellRunner::compute_task(const AblateCell& cell, const models::HeadMask* mask, pipeline::store::Group& out) {
  const TaskSpec& task = m_work.settings.tasks[cell.task];
  const TaskItem& item = m_work.task_items[cell.task][cell.item];
  const std::string text = m_task_template.wrap(task_user_text(item));
  const std::vector<int64_t> ids = m_model->tokenizer->encode(text, m_task_template.add_special_tokens);
  RHEAD_CHECK(!ids.empty(), pipeline::InputError, "[ablate] ", task.path, ": item ", cell.item,
              " tokenizes to no tokens; expected a prompt");
  NiahDecodeOptions decode = m_work.settings.task_decode;
  decode.mask = mask;
  decode.prefix_cache = &m_prefix;
  const GreedyText g = greedy_text(*m_model, ids, decode);
  const TaskScore score = score_task_response(item, task.kind, g.response);
  std::vector<int32_t> gen_v(g.generated.begin(), g.generated.end());
  out.set_attr("task", task.name);
  out.set_attr("task_kind", std::string(task_kind_name(task.kind)));
  out.set_attr("item", static_cast<int64_t>(cell.item));
  out.set_attr("f1", score.f1);
  out.set_attr("exact_match", score.exact_match);
  out.set_attr("prompt_tokens", static_cast<int64_t>(ids.size()));
  out.write("generated_ids", gen_v, {gen_v.size()}, "step");
  out.write_text("response", g.response);
  out.write_text("prediction", score.prediction);
}

namespace {

// Sums over one model's cells, per selection (and per task and selection).
struct ModelTotals {
  std::vector<double> recall_sum;
  std::vector<int64_t> n_cells, errors;  // errors: [selection, error type]
  std::vector<std::vector<double>> f1_sum, em_sum;  // [task][selection]
  std::vector<std::vector<int64_t>> n_items;

  ModelTotals(size_t n_sel, size_t n_tasks)
      : recall_sum(n_sel, 0.0),
        n_cells(n_sel, 0),
        errors(4 * n_sel, 0),
        f1_sum(n_tasks, std::vector<double>(n_sel, 0.0)),
        em_sum(f1_sum),
        n_items(n_tasks, std::vector<int64_t>(n_sel, 0)) {}
};

ModelTotals total_model(const pipeline::store::Group& cells, const AblateWork& work, size_t m) {
  ModelTotals t(work.heads[m].selections.size(), work.settings.tasks.size());
  for (size_t i = 0; i < work.grid.cells.size(); ++i) {
    const AblateCell& c = work.grid.cells[i];
    if (c.model != m) continue;
    pipeline::store::Group cg = cells.open_group(work.grid.items[i].id);
    if (c.kind == CellKind::kTask) {
      t.f1_sum[c.task][c.selection] += cg.attr_double("f1");
      t.em_sum[c.task][c.selection] += cg.attr_double("exact_match");
      ++t.n_items[c.task][c.selection];
      continue;
    }
    t.recall_sum[c.selection] += cg.attr_double("rouge1_recall");
    ++t.n_cells[c.selection];
    const std::string type = cg.attr_string("error_type");
    for (size_t e = 0; e < 4; ++e) t.errors[4 * c.selection + e] += type == kErrorNames[e] ? 1 : 0;
  }
  return t;
}

double mean_of(double sum, int64_t n) { return n ? sum / static_cast<double>(n) : 0.0; }

}  // namespace

void write_ablate_summary(pipeline::store::Group& root, const AblateWork& work) {
  pipeline::store::Group cells = root.open_group("cells");
  pipeline::store::Group summary = root.create_group("summary");
  const auto& tasks = work.settings.tasks;
  for (size_t m = 0; m < work.entries.size(); ++m) {
    const std::vector<Selection>& sels = work.heads[m].selections;
    const ModelTotals t = total_model(cells, work, m);
    std::vector<std::string> rows;
    std::vector<int64_t> k_of_row;
    std::vector<double> mean_recall;
    for (size_t r = 0; r < sels.size(); ++r) {
      rows.push_back(sels[r].mode + "/" + sels[r].selection);
      k_of_row.push_back(sels[r].k);
      mean_recall.push_back(mean_of(t.recall_sum[r], t.n_cells[r]));
    }
    const std::vector<HeadId>& tracked = work.heads[m].tracked;
    pipeline::store::Group g = summary.create_group(work.entries[m].name);
    g.write("tracked_heads", flatten(tracked), {tracked.size(), 2}, "tracked_head,layer_head");
    g.write_texts("rows", rows, "row");
    g.write("k", k_of_row, {k_of_row.size()}, "row");
    g.write("mean_recall", mean_recall, {mean_recall.size()}, "row");
    g.write("n_cells", t.n_cells, {t.n_cells.size()}, "row");
    g.write("error_counts", t.errors, {rows.size(), 4}, "row,error_type");
    g.set_attr("error_types", std::string("correct,incomplete,wrong_extraction,hallucination"));
    if (tasks.empty()) continue;
    pipeline::store::Group tasks_group = g.create_group("tasks");
    for (size_t task = 0; task < tasks.size(); ++task) {
      std::vector<double> f1, em;
      for (size_t r = 0; r < sels.size(); ++r) {
        f1.push_back(mean_of(t.f1_sum[task][r], t.n_items[task][r]));
        em.push_back(mean_of(t.em_sum[task][r], t.n_items[task][r]));
      }
      pipeline::store::Group tg = tasks_group.create_group(tasks[task].name);
      tg.set_attr("kind", std::string(task_kind_name(tasks[task].kind)));
      tg.write_texts("rows", rows, "row");
      tg.write("k", k_of_row, {k_of_row.size()}, "row");
      tg.write("n_items", t.n_items[task], {t.n_items[task].size()}, "row");
      tg.write("f1", f1, {f1.size()}, "row");
      tg.write("exact_match", em, {em.size()}, "row");
    }
  }
}

namespace {

// "12.3" or, for several values, "mean (min..max)".
std::string mean_and_spread(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  char text[64];
  if (v.size() == 1) {
    std::snprintf(text, sizeof text, "%5.1f", v.front());
  } else {
    std::snprintf(text, sizeof text, "%5.1f (%.1f..%.1f)", sum / static_cast<double>(v.size()),
                  *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
  return text;
}

// One line per task and row; the random draws of a (mode, K) folded into one "mode/rand*" line.
void inspect_tasks(const pipeline::store::Group& tasks, std::ostream& out) {
  out << "  tasks: F1 / EM in percent, mean over items (rand*: mean over seeds, min..max)\n"
      << "    task         kind    row               K      n     F1                    EM\n";
  for (const auto& name : tasks.children()) {
    pipeline::store::Group t = tasks.open_group(name);
    const std::string kind = t.attr_string("kind");
    const auto rows = t.read_texts("rows");
    const auto k = t.read_int64("k").data;
    const auto n = t.read_int64("n_items").data;
    const auto f1 = t.read_double("f1").data;
    const auto em = t.read_double("exact_match").data;
    // Row label -> (K, n, F1 values, EM values), in first-appearance order.
    std::vector<std::string> order;
    std::map<std::string, std::tuple<int64_t, int64_t, std::vector<double>, std::vector<double>>> folded;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::string label = rows[r];
      const size_t slash = label.find('/');
      if (label.compare(slash + 1, 4, "rand") == 0) label = label.substr(0, slash) + "/rand*";
      label += "@" + std::to_string(k[r]);
      auto it = folded.find(label);
      if (it == folded.end()) {
        order.push_back(label);
        it = folded.emplace(label, std::make_tuple(k[r], n[r], std::vector<double>{}, std::vector<double>{})).first;
      }
      std::get<2>(it->second).push_back(f1[r]);
      std::get<3>(it->second).push_back(em[r]);
    }
    for (const auto& label : order) {
      const auto& [kk, nn, f, e] = folded.at(label);
      char line[256];
      std::snprintf(line, sizeof line, "    %-12s %-7s %-14s %4lld %6lld   %-21s %s\n", name.c_str(), kind.c_str(),
                    label.substr(0, label.rfind('@')).c_str(), static_cast<long long>(kk), static_cast<long long>(nn),
                    mean_and_spread(f).c_str(), mean_and_spread(e).c_str());
      out << line;
    }
  }
}

}  // namespace

void inspect_ablate_summary(const pipeline::store::Group& root, std::ostream& out) {
  pipeline::store::Group summary = root.open_group("summary");
  for (const auto& model : summary.children()) {
    pipeline::store::Group g = summary.open_group(model);
    auto rows = g.read_texts("rows");
    auto k = g.read_int64("k").data;
    auto recall = g.read_double("mean_recall").data;
    auto errors = g.read_int64("error_counts").data;
    // K -> (top recall, random recalls), per mode.
    std::map<std::string, std::map<int64_t, std::pair<double, std::vector<double>>>> table;
    double baseline = 0;
    std::map<std::string, std::map<int64_t, std::vector<int64_t>>> top_errors;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::string mode = rows[r].substr(0, rows[r].find('/'));
      std::string sel = rows[r].substr(rows[r].find('/') + 1);
      if (sel == "none") {
        baseline = recall[r];
        continue;
      }
      if (sel == "top") {
        table[mode][k[r]].first = recall[r];
        top_errors[mode][k[r]] = std::vector<int64_t>(errors.begin() + 4 * r, errors.begin() + 4 * r + 4);
      } else {
        table[mode][k[r]].second.push_back(recall[r]);
      }
    }
    out << "model " << model << ": NIAH ROUGE-1 recall, unmasked " << baseline << "\n";
    for (const auto& [mode, by_k] : table) {
      out << "  mode " << mode << "\n      K   top-K   random (mean +- sd, n)   top-K errors: incomplete / wrong / halluc.\n";
      for (const auto& [kk, v] : by_k) {
        double mean = 0, sd = 0;
        for (double x : v.second) mean += x;
        if (!v.second.empty()) mean /= static_cast<double>(v.second.size());
        for (double x : v.second) sd += (x - mean) * (x - mean);
        if (v.second.size() > 1) sd = std::sqrt(sd / static_cast<double>(v.second.size() - 1));
        const auto& e = top_errors[mode][kk];
        char line[200];
        std::snprintf(line, sizeof line, "  %5lld  %6.1f   %6.1f +- %5.1f (%zu)          %lld / %lld / %lld\n",
                      static_cast<long long>(kk), v.first, mean, sd, v.second.size(),
                      static_cast<long long>(e.size() == 4 ? e[1] : 0), static_cast<long long>(e.size() == 4 ? e[2] : 0),
                      static_cast<long long>(e.size() == 4 ? e[3] : 0));
        out << line;
      }
    }
    if (g.has("tasks")) inspect_tasks(g.open_group("tasks"), out);
  }
}

}  // namespace stages
