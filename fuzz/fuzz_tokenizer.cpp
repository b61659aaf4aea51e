// Tokenizer::encode on arbitrary bytes (invalid UTF-8, HTML entities, special tokens, any
// script), with a small vocabulary that train_bpe learns once at start-up from the captions
// below. Encoding never fails; every id lies in the vocabulary and decodes; tokenize() rows
// hold context_length ids framed by <start_of_text> and <end_of_text>.
#include "fuzz/fuzz_support.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"

#include <algorithm>

using sparo::fuzz::check;

namespace {

const sparo::Tokenizer& tokenizer() {
  static const sparo::Tokenizer tok = [] {
    const std::vector<std::string> captions = {
        "a red t-shirt on the left and two sneakers on the right",
        "an ankle boot, a bag &amp; a dress",
        "three coats; it's the shirt they'll wear",
        "Pullover mit Ärmeln, 2 Taschen",
        "白いシャツと黒いバッグ",
        "<start_of_text>trousers<end_of_text>",
    };
    const std::string path = sparo::fuzz::scratch() / "vocab.txt";
    sparo::BpeTrainOptions options;
    options.min_frequency = 1;  // a few hundred merges from a few captions
    sparo::train_bpe(captions, 300, path, options);
    return sparo::Tokenizer::load(path);
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const sparo::Tokenizer& tok = tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = tok.encode(text);
  for (int32_t id : ids) check(id >= 0 && id < tok.vocab_size(), "an id outside the vocabulary");
  (void)tok.decode(ids);
  (void)sparo::pretokenize(sparo::clean_text(text));
  constexpr int kContext = 8;
  const std::vector<int32_t> row = tok.tokenize({text}, kContext);
  check(row.size() == kContext && row[0] == tok.sot_token(), "a tokenize() row without its start");
  const size_t used = std::min(ids.size() + 2, size_t{kContext});
  check(row[used - 1] == tok.eot_token(), "a tokenize() row without its end");
  return 0;
}
