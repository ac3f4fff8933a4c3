// rhead: the one executable. Subcommands:
//   rhead run JOB.ini [--stages a,b] [--force] [--dry-run] [--set section.key=value ...] [--comm auto|self|mpi|nccl]
//   rhead inspect STORE.h5 [--digest]
//   rhead model-info MODEL_DIR [--family F]
//   rhead figures RUN_DIR|JOB.ini [--out DIR]
//   rhead --help | --version
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "pipeline/comm/communicator.h"
#include "pipeline/core/error.h"
#include "pipeline/core/logging.h"
#include "pipeline/core/version.h"
#include "pipeline/runner/runner.h"
#include "models/model_info.h"
#include "pipeline/store/store_header.h"
#include "stages/registry.h"

namespace po = boost::program_options;

namespace {

const char* kUsage =
    "usage: rhead <command> [options]\n"
    "\n"
    "commands:\n"
    "  run JOB.ini      run the job's stages (resumes finished work; mpirun/srun for several ranks)\n"
    "  inspect STORE    summarise a store written by a stage (--digest: content hash)\n"
    "  model-info DIR   describe a Hugging Face model folder (--family to force a family file)\n"
    "  figures RUN_DIR  draw every figure the run's stores allow, and RUN_DIR/figures/report.md\n"
    "\n"
    "rhead <command> --help for the command's options; rhead run --help-keys for every job-file key.\n";

std::string stage_list(const pipeline::StageRegistry& registry) {
  std::ostringstream out;
  for (const auto& name : registry.names()) out << "  " << name << "  " << registry.find(name)->summary() << "\n";
  return out.str();
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, ',')) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

int cmd_run(int argc, char** argv, const pipeline::StageRegistry& registry) {
  po::options_description opts("rhead run JOB.ini [options]");
  std::string stages, comm_backend;
  std::vector<std::string> sets;
  opts.add_options()
      ("help,h", "show this help")
      ("help-keys", "list every job-file key with its type, default and meaning")
      ("stages", po::value(&stages), "comma-separated stages to run instead of [job] stages")
      ("force", "rerun stages whose stores are already complete")
      ("dry-run", "plan and check every stage (models, grids, cell counts, files) without running anything")
      ("set", po::value(&sets)->composing(), "override a job key: --set section.key=value (repeatable)")
      ("comm", po::value(&comm_backend)->default_value("auto"), "communicator: auto, self, mpi or nccl")
      ("job", po::value<std::string>(), "job file (positional)");
  po::positional_options_description pos;
  pos.add("job", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "rhead run: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << opts << "\nstages:\n" << stage_list(registry);
    return 0;
  }
  if (vm.count("help-keys")) {
    std::cout << pipeline::job_schema(registry).describe();
    return 0;
  }
  if (!vm.count("job")) {
    std::cerr << "rhead run: missing the job file. Hint: rhead run jobs/selftest.ini\n" << opts;
    return 2;
  }
  pipeline::RunOptions options;
  options.job_file = vm["job"].as<std::string>();
  options.stages = split_commas(stages);
  options.overrides = sets;
  options.force = vm.count("force") > 0;
  options.dry_run = vm.count("dry-run") > 0;
  if (options.dry_run) {  // one process, no communicator: reads the job and the file system only
    try {
      pipeline::Config job = pipeline::load_job(registry, options);
      return pipeline::dry_run_job(registry, options, job, std::cout) == 0 ? 0 : 3;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
  }

  std::unique_ptr<pipeline::Communicator> comm;
  try {
    comm = pipeline::make_world_communicator(comm_backend, &argc, &argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  pipeline::log::set_rank(comm->rank(), comm->size());
  try {
    pipeline::Config job = [&] {
      try {
        return pipeline::load_job(registry, options);
      } catch (const pipeline::ConfigError& e) {
        throw pipeline::CollectiveError(e.what());  // every rank parsed the same file: same error
      }
    }();
    pipeline::run_job(registry, options, job, *comm);
  } catch (const pipeline::CollectiveError& e) {
    if (comm->rank() == 0) std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    comm->abort(1, pipeline::str_cat("[rank ", comm->rank(), "/", comm->size(), "] error: ", e.what()));
  }
  return 0;
}

int cmd_inspect(int argc, char** argv, const pipeline::StageRegistry& registry) {
  po::options_description opts("rhead inspect STORE.h5 [options]");
  opts.add_options()("help,h", "show this help")("digest", "print only the content digest (ignores attributes)")(
      "store", po::value<std::string>(), "store file (positional)");
  po::positional_options_description pos;
  pos.add("store", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
  } catch (const po::error& e) {
    std::cerr << "rhead inspect: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help") || !vm.count("store")) {
    std::cout << opts;
    return vm.count("help") ? 0 : 2;
  }
  try {
    auto file = pipeline::store::File::open(vm["store"].as<std::string>());
    pipeline::store::Group root = file.root();
    if (vm.count("digest")) {
      std::printf("%016llx\n", static_cast<unsigned long long>(root.content_digest()));
      return 0;
    }
    auto header = pipeline::store::read_header(root);
    std::cout << "store:   " << file.path().string() << "\n"
              << "stage:   " << header.stage << " (schema " << header.schema_version << ")\n"
              << "status:  " << root.attr_string("status") << "\n"
              << "written: " << root.attr_string("created_utc") << " by rhead " << root.attr_string("project_version")
              << " (" << root.attr_string("git_revision") << "), " << header.world_size << " rank(s) ["
              << header.comm_backend << "]\n"
              << "job:     " << header.job_file << "\n";
    if (root.has_attr("cells_total")) {
      std::cout << "cells:   " << root.attr_int("cells_total") << " (" << root.attr_int("cells_resumed")
                << " resumed from earlier attempts, " << root.attr_int("attempts") << " attempt(s))\n";
    }
    if (const pipeline::Stage* stage = registry.find(header.stage)) stage->inspect(root, std::cout);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

int cmd_model_info(int argc, char** argv) {
  po::options_description opts("rhead model-info MODEL_DIR [options]");
  std::string family;
  opts.add_options()("help,h", "show this help")("family", po::value(&family), "force a family file (e.g. yi)")(
      "dir", po::value<std::string>(), "model folder (positional)");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "rhead model-info: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << opts;
    return vm.count("help") ? 0 : 2;
  }
  try {
    std::cout << models::model_info(vm["dir"].as<std::string>(),
                                    family.empty() ? std::nullopt : std::optional<std::string>(family));
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

// Runs argv[0] with these arguments (no shell: nothing in them is interpreted) and waits; its exit code,
// or 1 when it could not start or died of a signal.
int run_program(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execvp(argv[0], argv.data());
    std::cerr << "error: [figures] could not run " << args[0] << ": " << std::strerror(errno) << "\n";
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) {
    std::cerr << "error: [figures] could not start " << args[0] << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

// The figures live in analysis/ (Python: Debian's numpy, h5py, matplotlib); this only finds and runs
// analysis/report, next to the source tree this binary was built from or under $RHEAD_ANALYSIS_DIR.
int cmd_figures(int argc, char** argv, const pipeline::StageRegistry& registry) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "rhead figures RUN_DIR|JOB.ini [--out DIR]\n  draws every figure the stores in RUN_DIR allow and writes "
                   "RUN_DIR/figures/report.md (runs analysis/report)\n";
      return 0;
    }
  }
  if (argc < 2) {
    std::cerr << "rhead figures: missing RUN_DIR. Hint: rhead figures runs/<job name> (or the job file)\n";
    return 2;
  }
  const char* env = std::getenv("RHEAD_ANALYSIS_DIR");
  const std::string dir = env ? env : std::string(RHEAD_SOURCE_DIR) + "/analysis";
  std::vector<std::string> args = {dir + "/report"};
  if (!std::filesystem::exists(args[0])) {
    std::cerr << "error: [figures] " << args[0] << " not found. Hint: set RHEAD_ANALYSIS_DIR to the analysis/ "
                 "folder of an rhead checkout\n";
    return 1;
  }
  // A job file stands for its run directory.
  std::string target = argv[1];
  if (target.size() > 4 && target.substr(target.size() - 4) == ".ini") {
    try {
      pipeline::RunOptions options;
      options.job_file = target;
      target = pipeline::run_dir_of(pipeline::load_job(registry, options)).string();
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
  }
  args.push_back(target);
  for (int i = 2; i < argc; ++i) args.emplace_back(argv[i]);
  return run_program(args) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  pipeline::StageRegistry registry;
  stages::register_builtin_stages(registry);
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage << "\nstages:\n" << stage_list(registry);
    return 0;
  }
  if (command == "--version") {
    std::cout << "rhead " << pipeline::kProjectVersion << " (" << pipeline::kGitRevision << ")\n";
    return 0;
  }
  // Subcommands see argv without the command word.
  if (command == "run") return cmd_run(argc - 1, argv + 1, registry);
  if (command == "inspect") return cmd_inspect(argc - 1, argv + 1, registry);
  if (command == "model-info") return cmd_model_info(argc - 1, argv + 1);
  if (command == "figures") return cmd_figures(argc - 1, argv + 1, registry);
  std::cerr << "rhead: unknown command '" << command << "'\n" << kUsage;
  return 2;
}
