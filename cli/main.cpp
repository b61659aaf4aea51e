// The sparo command: one entry point for everything a user runs.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "engine/tensor.h"
#include "training/distributed.h"
#include "training/trainer.h"

namespace {

// Under mpirun a rank that fails must not leave the others waiting in a collective: it
// reports and ends the whole job (MPI_Abort); OpenMPI's mpirun also ends the job when a rank
// dies. Alone, it just returns the code.
int fail(int code) {
  if (sparo::distributed::size() > 1) sparo::distributed::abort(code);
  sparo::distributed::finalize();
  return code;
}

std::string rank_prefix() {
  const int n = sparo::distributed::size();
  return n > 1 ? "rank " + std::to_string(sparo::distributed::rank()) + " of " + std::to_string(n) + ": " : "";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    sparo::distributed::init(&argc, &argv);  // only when mpirun launched this process
  } catch (const std::exception& e) {
    std::cerr << std::string("sparo: error: ") + e.what() + "\n";  // one write (see below)
    return 1;
  }
  CLI::App app{
      "sparo — a from-scratch tensor engine for training vision transformers with the SPARO read-out\n"
      "under CLIP and DINO objectives, on CPUs (Eigen + oneTBB) and, later, Vulkan GPUs."};
  app.require_subcommand(0, 1);
  app.footer("Run 'sparo SUBCOMMAND --help' for the options of a subcommand.");
  app.set_version_flag("--version", std::string("sparo ") + SPARO_VERSION);
  int threads = 0;
  app.add_option("--threads", threads, "Threads for parallel loops (0: all cores; env SPARO_THREADS)")
      ->envname("SPARO_THREADS")
      ->check(CLI::NonNegativeNumber);
  app.parse_complete_callback([&] {
    sparo::set_num_threads(threads);
    // Every rank would run the command on its own and write the same files at once.
    if (sparo::distributed::size() > 1 && !app.got_subcommand("train"))
      throw sparo::Error("under mpirun only 'sparo train' runs (data parallel); run other commands without mpirun");
  });

  sparo::cli::add_info_command(app);
  sparo::cli::add_inspect_command(app);
  sparo::cli::add_embed_command(app);
  sparo::cli::add_tokenize_commands(app);
  sparo::cli::add_bench_commands(app);
  sparo::cli::add_train_commands(app);
  sparo::cli::add_experiment_command(app);
  sparo::cli::add_eval_commands(app);
  sparo::cli::add_report_commands(app);

  try {
    app.parse(argc, argv);
    if (app.get_subcommands().empty()) {
      std::cerr << app.help() << "\nsparo: error: no subcommand given\n";
      return fail(2);
    }
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // --help and --version end here with code 0
    if (code == 0) sparo::distributed::finalize();
    return code == 0 ? 0 : fail(code);
  } catch (const sparo::Interrupted& e) {
    // Every rank stops after the same step (the trainer agrees on it), so all end normally.
    sparo::distributed::finalize();
    return 128 + e.signal;  // as a shell reports a process the signal stopped; the message is logged
  } catch (const std::exception& e) {
    // One write: std::cerr is unbuffered, so three << were three writes, and under mpirun
    // another process's output (MPI_Abort's banner) could land in the middle of the line.
    std::cerr << "sparo: error: " + rank_prefix() + e.what() + "\n";
    return fail(1);
  }
  sparo::distributed::finalize();
  return 0;
}
