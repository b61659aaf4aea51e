// Tokenizer::load on arbitrary file contents (text or gzip). A vocabulary it accepts holds
// 512 byte symbols, one token per merge and the two special tokens; every token decodes, and
// text (the file's own start included, so that its merges apply) encodes to ids in range.
#include "fuzz/fuzz_support.h"
#include "text/tokenizer.h"

#include <algorithm>
#include <optional>

using sparo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sparo::fuzz::write_file("vocab.txt", data, size);
  std::optional<sparo::Tokenizer> tok;
  try {
    tok = sparo::Tokenizer::load(path);
  } catch (const sparo::Error&) {
    return 0;
  }
  check(tok->vocab_size() == 512 + tok->num_merges() + 2, "vocabulary size is not 512 + merges + 2");
  check(tok->eot_token() == tok->vocab_size() - 1, "<end_of_text> is not the last id");
  for (int32_t id = 0; id < std::min<int64_t>(tok->vocab_size(), 4096); ++id) {
    check(tok->token_to_id(tok->id_to_token(id)) >= id, "a token's spelling maps to an earlier id");
    (void)tok->decode({id});
  }
  const std::string head(reinterpret_cast<const char*>(data), std::min<size_t>(size, 256));
  for (const std::string& text : {head, std::string("a red t-shirt & 2 bags, it's <end_of_text>")})
    for (int32_t id : tok->encode(text)) check(id >= 0 && id < tok->vocab_size(), "an id outside the vocabulary");
  return 0;
}
