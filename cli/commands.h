// Each sparo subcommand registers itself on the CLI11 app; one file per command.
#pragma once

#include <CLI/CLI.hpp>

namespace sparo::cli {

void add_info_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_embed_command(CLI::App& app);
void add_tokenize_commands(CLI::App& app);
void add_bench_commands(CLI::App& app);
void add_train_commands(CLI::App& app);
void add_experiment_command(CLI::App& app);
void add_eval_commands(CLI::App& app);
void add_report_commands(CLI::App& app);

}  // namespace sparo::cli
