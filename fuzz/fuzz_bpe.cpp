// train_bpe on captions made from the input: its first byte gives the number of merges (low 6
// bits: up to 63) and the minimum pair frequency (high 2 bits: 1 to 4), the rest is split into
// captions at newlines. A run that succeeds must write a merges file that Tokenizer::load
// reads back with the same vocabulary, and that encodes every caption to ids in range.
#include "fuzz/fuzz_support.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"

using sparo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int merges = data[0] & 0x3F;
  sparo::BpeTrainOptions options;
  options.min_frequency = 1 + (data[0] >> 6);
  std::vector<std::string> captions(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == '\n')
      captions.emplace_back();
    else
      captions.back() += static_cast<char>(data[i]);
  }
  const std::string path = sparo::fuzz::scratch() / "merges.txt";
  sparo::BpeTrainResult result;
  try {
    result = sparo::train_bpe(captions, merges, path, options);
  } catch (const sparo::Error&) {
    return 0;  // e.g. no token to learn from
  }
  check(result.merges >= 0 && result.merges <= merges, "more merges than asked for");
  const sparo::Tokenizer tok = sparo::Tokenizer::load(path);
  check(tok.num_merges() == result.merges, "the merges file holds another number of merges");
  check(tok.vocab_size() == result.vocab_size, "the loaded vocabulary has another size");
  for (const std::string& caption : captions)
    for (int32_t id : tok.encode(caption)) check(id >= 0 && id < tok.vocab_size(), "an id outside the vocabulary");
  return 0;
}
