#include "pipeline/runner/runner.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "pipeline/comm/comm_backends.h"
#include "pipeline/core/error.h"
#include "pipeline/core/fingerprint.h"
#include "pipeline/core/logging.h"
#include "pipeline/runner/cell_driver.h"
#include "pipeline/store/store_header.h"

namespace pipeline {

namespace fs = std::filesystem;

void StageRegistry::add(std::unique_ptr<Stage> stage) {
  RHEAD_CHECK(find(stage->name()) == nullptr, InternalError, "stage '", stage->name(), "' registered twice");
  m_stages.push_back(std::move(stage));
}

Stage* StageRegistry::find(const std::string& name) const {
  for (const auto& s : m_stages) {
    if (s->name() == name) return s.get();
  }
  return nullptr;
}

std::vector<std::string> StageRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& s : m_stages) out.push_back(s->name());
  return out;
}

ConfigSchema job_schema(const StageRegistry& registry) { return job_schema(registry, registry.names()); }

ConfigSchema job_schema(const StageRegistry& registry, const std::vector<std::string>& active) {
  ConfigSchema schema("job file");
  schema.required("job.name", KeyType::String, "name of the job (default run directory: runs/<name>)")
      .required("job.stages", KeyType::StringList, "stages to run, in order")
      .optional("job.run_dir", KeyType::String, "", "where stores go (default runs/<name>); relative to the "
                "current directory")
      .optional("job.seed", KeyType::Int, "1234", "seed for every random choice of the job")
      .optional("job.threads", KeyType::Int, "0", "compute threads per rank (0: cores / ranks on this node)")
      .optional("job.progress_interval_s", KeyType::Float, "10", "seconds between progress reports")
      .optional("job.log_level", KeyType::String, "info", "debug, info, warn or error");
  auto is_active = [&](const std::string& name) {
    return std::find(active.begin(), active.end(), name) != active.end();
  };
  // Active stages first, so a key shared by several stages (e.g. [model.*]) is required when any
  // stage that runs requires it.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& name : registry.names()) {
      if (is_active(name) != (pass == 0)) continue;
      ConfigSchema part(schema.file_kind());
      registry.find(name)->declare(part);
      for (KeySpec k : part.keys()) {
        if (pass == 1 && !k.default_text) {
          k.default_text = "";
          k.help += " (required when stage " + name + " runs)";
        }
        schema.add(k);
      }
    }
  }
  return schema;
}

Config load_job(const StageRegistry& registry, const RunOptions& options) {
  // First pass: which stages run (every stage's keys known, none required); second pass: the real schema.
  Config first = Config::parse_file(job_schema(registry, {}), options.job_file, options.overrides);
  std::vector<std::string> stages = options.stages.empty() ? first.get_strings("job.stages") : options.stages;
  std::vector<std::string> known;
  for (const auto& s : stages) {
    if (registry.find(s)) known.push_back(s);
  }
  Config job = Config::parse_file(job_schema(registry, known), options.job_file, options.overrides);
  RHEAD_CHECK(!stages.empty(), ConfigError, "[config] ", job.source(), ": [job] stages is empty; expected at "
              "least one of: ", str_cat([&] {
                std::string s;
                for (const auto& n : registry.names()) s += (s.empty() ? "" : ", ") + n;
                return s;
              }()));
  for (const auto& s : stages) {
    if (registry.find(s)) continue;
    std::string hint = nearest_name(s, registry.names());
    std::string all;
    for (const auto& n : registry.names()) all += (all.empty() ? "" : ", ") + n;
    throw ConfigError(str_cat("[config] ", job.source(), ": [job] stages: unknown stage '", s, "'; expected one of ",
                              all, hint.empty() ? "" : ". Hint: did you mean '" + hint + "'?"));
  }
  return job;
}

fs::path run_dir_of(const Config& job) {
  std::string dir = job.get_string("job.run_dir");
  return dir.empty() ? fs::path("runs") / job.get_string("job.name") : fs::path(dir);
}

namespace {

int resolve_threads(const Config& job) {
  int64_t t = job.get_int("job.threads");
  RHEAD_CHECK(t >= 0, ConfigError, "[config] ", job.source(), ": [job] threads: got ", t, ", expected >= 0");
  if (t > 0) return static_cast<int>(t);
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int local = 1;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(var)) {
      local = std::max(1, std::atoi(v));
      break;
    }
  }
  return std::max(1, cores / local);
}

// What a stage's results depend on besides its inputs: the job seed and every key the stage declares
// (Config::resolved_text), recorded in its store and compared on a rerun.
std::string stage_settings(const Stage& stage, const Config& job) {
  ConfigSchema own("job file");
  stage.declare(own);
  return "job.seed = " + std::to_string(job.get_int("job.seed")) + "\n" + job.resolved_text(own.keys());
}

// The files a stage reads besides its input stores (Stage::input_files), one "<group>\t<path>\t<fingerprint>"
// line each, sorted: recorded in its store and compared on a rerun. Reads every file up to
// kContentFingerprintLimit (core/fingerprint.h); throws InputError for an unreadable one.
std::string input_files_text(const Stage& stage, const Config& job) {
  std::vector<std::string> lines;
  for (const InputFile& f : stage.input_files(job)) {
    lines.push_back(f.group + "\t" + f.path.string() + "\t" + file_fingerprint(f.path));
  }
  std::sort(lines.begin(), lines.end());
  lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// The paths whose lines differ between two input_files_text()s (changed, added or removed), as
// "a, b"; "" when none.
std::string input_files_change(const std::string& before, const std::string& now) {
  auto parse = [](const std::string& text) {
    std::map<std::string, std::string> fingerprint_of;  // "<group>\t<path>" -> fingerprint
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      const auto tab = line.rfind('\t');
      if (tab != std::string::npos) fingerprint_of[line.substr(0, tab)] = line.substr(tab + 1);
    }
    return fingerprint_of;
  };
  const auto was = parse(before), is = parse(now);
  std::set<std::string> changed;
  auto path_of = [](const std::string& key) { return key.substr(key.find('\t') + 1); };
  for (const auto& [key, fp] : is) {
    auto it = was.find(key);
    if (it == was.end() || it->second != fp) changed.insert(path_of(key));
  }
  for (const auto& [key, fp] : was) {
    if (!is.count(key)) changed.insert(path_of(key));
  }
  std::string out;
  for (const auto& p : changed) out += (out.empty() ? "" : ", ") + p;
  return out;
}

// Dry run of a stale stage with a cell_group_section() (e.g. "model"): the groups whose own settings are
// unchanged (their cells would be kept, as far as their inputs are unchanged too) and the others, as one line.
std::string kept_groups_line(const std::string& section, const std::string& before, const std::string& now,
                             const Config& job) {
  std::string kept, redone;
  for (const auto& m : job.section_names(section + ".*")) {
    const std::string was = settings_of_group(before, section, m);
    const bool existed = was.find(section + "." + m + ".") != std::string::npos;
    const bool same = existed && settings_change(was, settings_of_group(now, section, m), job).empty();
    std::string& list = same ? kept : redone;
    list += (list.empty() ? "" : ", ") + m;
  }
  if (kept.empty()) return "  no " + section + "'s cells would be kept\n";
  return "  cells of " + kept + " would be kept where their inputs are unchanged" +
         (redone.empty() ? std::string() : "; " + redone + " would be computed") + "\n";
}

// Every rank reports whether `fn` threw; all ranks throw the same CollectiveError if any did.
template <class Fn>
void agree(Communicator& comm, const std::string& what, Fn&& fn) {
  std::string mine;
  try {
    fn();
  } catch (const std::exception& e) {
    mine = e.what();
  }
  std::vector<std::string> all = comm.allgather_bytes(mine);
  std::string joined;
  std::vector<std::string> seen;
  for (size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty() || std::find(seen.begin(), seen.end(), all[r]) != seen.end()) continue;
    seen.push_back(all[r]);
    joined += (joined.empty() ? "" : "\n") + (all.size() > 1 ? str_cat("rank ", r, ": ") : std::string()) + all[r];
  }
  if (!joined.empty()) throw CollectiveError(what + " failed:\n" + joined);
}

// "" when a complete store is in the layout this rhead writes for its stage, else why it is not (the cell
// driver then recomputes its cells too: a finished cell counts only in the current layout).
std::string layout_change(const store::Group& root, const Stage& stage) {
  const int64_t now = stage.schema_version();
  const int64_t before = root.has_attr("schema_version") ? root.attr_int("schema_version") : 0;
  if (before == now) return {};
  return str_cat("it is in store layout ", before, " (schema_version) and this rhead writes layout ", now);
}

// What the runner finds at a stage's store before running it.
enum class StoreState : int64_t {
  Missing = 0,  // no store, or an incomplete one: run the stage
  Current = 1,  // complete and made from the current inputs, settings and files: skip
  Stale = 2,    // complete, but something it was made from changed: rerun, keeping the untouched cells
};

struct StoreCheck {
  StoreState state = StoreState::Missing;
  std::string stale_reason;  // why, when Stale
};

// Rank 0: the state of the stage's store, given the stage's current settings text and input-files text.
// Stale when it is in another layout, an input store was recomputed after it (its store_id differs from
// the one recorded), the stage's own settings changed in the job file, or a file it reads changed.
StoreCheck check_store(const Stage& stage, const Config& job, const fs::path& run_dir, const std::string& settings,
                       const std::string& files_now) {
  StoreCheck check;
  const fs::path out_path = run_dir / (stage.name() + ".h5");
  if (!store::is_complete(out_path)) return check;
  check.state = StoreState::Current;
  store::File f = store::File::open(out_path);
  store::Group root = f.root();
  auto stale = [&check](std::string why) {
    check.state = StoreState::Stale;
    check.stale_reason = std::move(why);
  };
  if (std::string layout = layout_change(root, stage); !layout.empty()) stale(layout);
  for (const auto& input : stage.inputs(job)) {
    const std::string key = "input_store_id." + input;
    if (root.has_attr(key) && root.attr_string(key) != store::store_id(run_dir / (input + ".h5"))) {
      stale(str_cat("input '", input, "' was recomputed after ", out_path.string(), " was made"));
    }
  }
  // Stores from before the settings attribute count as current (their settings are unknown).
  // Keys added to rhead since, left at their defaults, are no change (settings_change).
  if (check.state == StoreState::Current && root.has_attr("settings")) {
    const std::string changed = settings_change(root.attr_string("settings"), settings, job);
    if (!changed.empty()) stale(str_cat("its settings changed since ", out_path.string(), " was made (", changed, ")"));
  }
  // Stores from before input_files was recorded count as current, like those without settings.
  if (check.state == StoreState::Current && root.has_attr("input_files")) {
    const std::string changed = input_files_change(root.attr_string("input_files"), files_now);
    if (!changed.empty()) {
      stale(str_cat("files it reads changed since ", out_path.string(), " was made (", changed, ")"));
    }
  }
  return check;
}

// The context a stage runs in, with the header every store and shard of this run of it is stamped with.
StageContext make_context(const Stage& stage, const std::string& name, const Config& job, Communicator& comm,
                          const fs::path& run_dir, const fs::path& job_file, const std::string& settings) {
  StageContext ctx(job, comm, name, run_dir);
  ctx.seed = static_cast<uint64_t>(job.get_int("job.seed"));
  ctx.threads = resolve_threads(job);
  ctx.progress_interval_s = job.get_float("job.progress_interval_s");
  ctx.header.stage = name;
  ctx.header.schema_version = stage.schema_version();
  ctx.header.job_file = fs::absolute(job_file).string();
  ctx.header.job_text = job.text();
  ctx.header.settings = settings;
  ctx.cell_group_section = stage.cell_group_section();
  ctx.header.world_size = comm.size();
  ctx.header.comm_backend = comm.backend();
  return ctx;
}

}  // namespace

void run_job(const StageRegistry& registry, const RunOptions& options, const Config& job, Communicator& comm) {
  log::set_level(log::parse_level(job.get_string("job.log_level")));
  const fs::path run_dir = run_dir_of(job);
  std::vector<std::string> stages = options.stages.empty() ? job.get_strings("job.stages") : options.stages;
  if (comm.rank() == 0) fs::create_directories(run_dir);
  comm.barrier();

  log::info("job '", job.get_string("job.name"), "' from ", job.source(), ": ", stages.size(), " stage(s), ",
            comm.size(), " rank(s) [", comm.backend(), "], run dir ", run_dir.string());
  for (const auto& name : stages) {
    Stage& stage = *registry.find(name);
    const fs::path out_path = run_dir / (name + ".h5");
    const fs::path partial = run_dir / (name + ".h5.partial");

    // Complete, made from the current inputs with the current settings: skip. Complete but stale (an
    // input was recomputed since, so its store_id differs from the one recorded here, or the stage's
    // own settings changed in the job file): rerun, keeping the finished cells that the change does not
    // touch (cell stages: pipeline/runner/cell_driver.h).
    const std::vector<std::string> inputs = stage.inputs(job);
    const std::string settings = stage_settings(stage, job);
    std::string files_now, files_error;
    if (comm.rank() == 0) {
      try {
        files_now = input_files_text(stage, job);
      } catch (const std::exception& e) {
        files_error = e.what();
      }
    }
    comm.broadcast_string(files_error, 0);
    // Every rank has rank 0's message: one clean error (exit 1), not an abort of every rank.
    if (!files_error.empty()) throw CollectiveError(str_cat("stage ", name, ": ", files_error));
    StoreCheck check;
    if (comm.rank() == 0) check = check_store(stage, job, run_dir, settings, files_now);
    int64_t state = static_cast<int64_t>(check.state);
    comm.broadcast(&state, sizeof state, 0);
    check.state = static_cast<StoreState>(state);
    comm.broadcast_string(check.stale_reason, 0);
    const bool force = options.force;
    if (check.state == StoreState::Current && !force) {
      log::info("stage ", name, ": store ", out_path.string(), " is complete, skipping (use --force to rerun)");
      continue;
    }
    const fs::path shard_dir = run_dir / (name + ".shards");
    if (check.state == StoreState::Stale && !force) {
      // Set the stale store aside rather than delete it: a cell stage keeps the cells whose own
      // settings and inputs did not change (pipeline/runner/cell_driver.h); the rest is removed when
      // the stage completes.
      log::info("stage ", name, ": ", check.stale_reason, "; rerunning ", name);
      if (comm.rank() == 0) {
        fs::create_directories(shard_dir);
        fs::rename(out_path, shard_dir / "previous.h5");
      }
    }

    StageContext ctx = make_context(stage, name, job, comm, run_dir, options.job_file, settings);
    if (comm.rank() == 0) {
      for (const auto& input : inputs) {
        ctx.input_ids += "input_store_id." + input + " = " + store::store_id(run_dir / (input + ".h5")) + "\n";
      }
    }
    comm.broadcast_string(ctx.input_ids, 0);
    comm.broadcast_string(files_now, 0);
    ctx.input_files = files_now;

    // Inputs must be complete stores, and the stage's own checks must pass, on every rank, before any
    // collective work starts.
    agree(comm, "stage " + name + ": validation", [&] {
      for (const auto& input : inputs) {
        fs::path p = run_dir / (input + ".h5");
        RHEAD_CHECK(store::is_complete(p), ConfigError, "[runner] stage ", name, " reads ", p.string(),
                    ", which is missing or incomplete. Hint: add '", input, "' before '", name,
                    "' in [job] stages, or run it first");
      }
      stage.validate(ctx);
    });

    std::unique_ptr<store::File> output;
    if (comm.rank() == 0) {
      if (force) {
        std::error_code ec;
        fs::remove(out_path, ec);
        fs::remove_all(shard_dir, ec);
      }
      output = std::make_unique<store::File>(store::File::create(partial));
      store::Group root = output->root();
      store::write_header(root, ctx.header);
      output->flush();
      ctx.output = output.get();
    }
    log::info("stage ", name, ": started");
    double t0 = log::seconds_since_start();
    stage.run(ctx);
    comm.barrier();
    if (comm.rank() == 0) {
      store::Group root = output->root();
      root.set_attr("seconds", log::seconds_since_start() - t0);
      for (const auto& input : inputs) {
        root.set_attr("input_store_id." + input, store::store_id(run_dir / (input + ".h5")));
      }
      root.set_attr("input_files", files_now);  // as fingerprinted before the stage ran
      store::mark_complete(root);  // the last write
      output->flush();
      output->close();
      fs::rename(partial, out_path);
      // Every finished cell is now in the store: the per-rank shards have served their purpose.
      std::error_code ec;
      fs::remove_all(shard_dir, ec);
    }
    comm.barrier();
    log::info("stage ", name, ": complete in ", log::seconds_since_start() - t0, " s -> ", out_path.string());
  }
}

int dry_run_job(const StageRegistry& registry, const RunOptions& options, const Config& job, std::ostream& out) {
  const fs::path run_dir = run_dir_of(job);
  std::vector<std::string> stages = options.stages.empty() ? job.get_strings("job.stages") : options.stages;
  out << "dry run of job '" << job.get_string("job.name") << "' (" << job.source() << "), run dir "
      << run_dir.string() << ": " << stages.size() << " stage(s); nothing is written\n";
  int failed = 0;
  std::vector<std::string> earlier, rewritten;  // stages of this job before this one; those it would write
  for (const auto& name : stages) {
    const Stage& stage = *registry.find(name);
    const fs::path out_path = run_dir / (name + ".h5");
    out << "\n[" << name << "] " << stage.summary() << "\n";
    const bool complete = store::is_complete(out_path);
    const std::string now_settings = stage_settings(stage, job);
    std::string changed, rewritten_input, before_settings, changed_files, layout;
    if (complete) {
      store::File f = store::File::open(out_path);
      store::Group root = f.root();
      layout = layout_change(root, stage);
      if (root.has_attr("settings")) {
        before_settings = root.attr_string("settings");
        changed = settings_change(before_settings, now_settings, job);
      }
      if (root.has_attr("input_files")) {
        try {
          changed_files = input_files_change(root.attr_string("input_files"), input_files_text(stage, job));
        } catch (const std::exception&) {
          // A bad key or an unreadable file: the stage's checks below report it.
        }
      }
    }
    for (const auto& input : stage.inputs(job)) {
      if (std::find(rewritten.begin(), rewritten.end(), input) != rewritten.end()) rewritten_input = input;
    }
    if (!complete || options.force) {
      out << "  would write " << out_path.string() << "\n";
      rewritten.push_back(name);
    } else if (!layout.empty()) {
      out << "  store " << out_path.string() << " is complete but " << layout << ": would rerun\n";
      rewritten.push_back(name);
    } else if (!changed.empty()) {
      out << "  store " << out_path.string() << " is complete but its settings changed (" << changed
          << "): would rerun\n";
      const std::string section = stage.cell_group_section();
      if (!section.empty()) out << kept_groups_line(section, before_settings, now_settings, job);
      rewritten.push_back(name);
    } else if (!changed_files.empty()) {
      out << "  store " << out_path.string() << " is complete but files it reads changed (" << changed_files
          << "): would rerun\n";
      rewritten.push_back(name);
    } else if (!rewritten_input.empty()) {
      out << "  store " << out_path.string() << " is complete but would rerun after its input '" << rewritten_input
          << "' is rewritten\n";
      rewritten.push_back(name);
    } else {
      out << "  store " << out_path.string() << " is complete: would skip (--force reruns)\n";
    }
    for (const auto& input : stage.inputs(job)) {
      const bool from_job = std::find(earlier.begin(), earlier.end(), input) != earlier.end();
      const bool present = store::is_complete(run_dir / (input + ".h5"));
      out << "  reads " << input << ".h5" << (present ? " (complete)" : from_job ? " (written by an earlier stage)" : " (MISSING: add '" + input + "' before it)") << "\n";
      if (!present && !from_job) ++failed;
    }
    stage.plan(job, out);
    // The stage's own checks (files, keys, values). Checks that need an input store an earlier stage of
    // this job would write cannot run yet: reported as deferred.
    bool inputs_ready = true;
    for (const auto& input : stage.inputs(job)) inputs_ready = inputs_ready && store::is_complete(run_dir / (input + ".h5"));
    if (!inputs_ready) {
      out << "  checks: deferred until its inputs exist\n";
    } else {
      std::unique_ptr<Communicator> self = detail::make_self_communicator();  // checks run in this process only
      StageContext ctx(job, *self, name, run_dir);
      ctx.seed = static_cast<uint64_t>(job.get_int("job.seed"));
      try {
        stage.validate(ctx);
        out << "  checks: pass\n";
      } catch (const std::exception& e) {
        ++failed;
        out << "  checks: FAIL: " << e.what() << "\n";
      }
    }
    earlier.push_back(name);
  }
  out << "\ndry run: " << (failed == 0 ? "every check passes" : std::to_string(failed) + " stage check(s) fail (above)") << "\n";
  return failed;
}

}  // namespace pipeline
