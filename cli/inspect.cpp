// `sparo inspect FILE.safetensors`: the tensors of a checkpoint, validated by the strict reader
// (header only: the tensor data is never read).
#include <cstdio>
#include <iostream>
#include <string_view>

#include "cli/commands.h"
#include "engine/safetensors.h"

namespace sparo::cli {

namespace {

// Names and metadata come from the file, and JSON's \u escapes let them hold control
// characters: ESC starts terminal sequences that recolour, move the cursor or retitle the
// window. Those show escaped, C0 and DEL as \xNN, C1 (U+0080-U+009F, two bytes in UTF-8) as
// \u00NN, and backslashes doubled so that an escape is never ambiguous. The reader has checked
// that the text is valid UTF-8.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const auto next = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0u;
    char buf[16];
    if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else if (c == 0xC2 && next >= 0x80 && next <= 0x9F) {
      std::snprintf(buf, sizeof buf, "\\u%04x", next);
      out += buf;
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// At most `n` bytes of s, cut on a UTF-8 boundary.
std::string_view prefix(std::string_view s, size_t n) {
  if (n >= s.size()) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0u) == 0x80u) --n;
  return s.substr(0, n);
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("inspect", "List the tensors (name, dtype, shape) of a safetensors file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("file", *path, "The .safetensors file")->required();
  cmd->callback([path] {
    // The header alone: listing needs no tensor data, and reading it all made a sparse or
    // many-gigabyte file cost its full size in memory. The offsets are still checked.
    const safetensors::HeaderInfo c = safetensors::read_header(*path);
    int64_t values = 0;
    for (const safetensors::TensorInfo& t : c.tensors) {
      values += numel(t.shape);
      std::cout << printable(t.name) << "  " << t.dtype << "  " << shape_str(t.shape) << "\n";
    }
    for (const auto& [k, v] : c.metadata)
      std::cout << "metadata " << printable(k) << " = "
                << (v.size() > 80 ? printable(prefix(v, 77)) + "..." : printable(v)) << "\n";
    std::cout << c.tensors.size() << " tensors, " << values << " values\n";
  });
}

}  // namespace sparo::cli
