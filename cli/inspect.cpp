// `sparo inspect FILE.safetensors`: the tensors of a checkpoint, validated by the strict reader.
#include <iostream>

#include "cli/commands.h"
#include "engine/safetensors.h"

namespace sparo::cli {

void add_inspect_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("inspect", "List the tensors (name, dtype, shape) of a safetensors file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("file", *path, "The .safetensors file")->required();
  cmd->callback([path] {
    const safetensors::Contents c = safetensors::read_file(*path);
    int64_t values = 0;
    for (const safetensors::TensorRecord& t : c.tensors) {
      values += numel(t.shape);
      std::cout << t.name << "  " << t.dtype << "  " << shape_str(t.shape) << "\n";
    }
    for (const auto& [k, v] : c.metadata) std::cout << "metadata " << k << " = " << (v.size() > 80 ? v.substr(0, 77) + "..." : v) << "\n";
    std::cout << c.tensors.size() << " tensors, " << values << " values\n";
  });
}

}  // namespace sparo::cli
