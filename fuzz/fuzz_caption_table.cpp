// load_caption_table on arbitrary file contents; the input's first byte picks the separator
// (even: tab, odd: comma), the rest is the file. A table it accepts has at least one row and
// one caption and one non-empty image path per row.
#include "fuzz/fuzz_support.h"
#include "training/data/caption_table.h"

using sparo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  sparo::CaptionTableOptions options;
  options.separator = data[0] % 2 ? ',' : '\t';
  const std::string path = sparo::fuzz::write_file("table.csv", data + 1, size - 1);
  sparo::CaptionTable table;
  try {
    table = sparo::load_caption_table(path, options);
  } catch (const sparo::Error&) {
    return 0;
  }
  check(!table.paths.empty() && table.paths.size() == table.captions.size(), "rows and captions disagree");
  for (const std::string& p : table.paths) check(!p.empty(), "an empty image path");
  return 0;
}
