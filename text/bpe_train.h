// A small BPE trainer: learns merges from captions with the tokenizer's own clean-up and
// pre-tokenisation, and writes a merges file that Tokenizer::load (text/tokenizer.h) reads.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sparo {

struct BpeTrainOptions {
  // A pair seen fewer times than this (summed over the corpus) is never merged; training
  // stops early when the most frequent pair is rarer.
  int64_t min_frequency = 2;
  // Called after every merge: (merges done, merges requested, frequency of that merge).
  std::function<void(int, int, int64_t)> progress;
};

struct BpeTrainResult {
  int merges = 0;           // merges written (< num_merges when training ran out of pairs)
  int64_t vocab_size = 0;   // of the tokenizer that loads the file: 512 + merges + 2
  int64_t words = 0;        // pre-tokens in the corpus
  int64_t unique_words = 0;
};

// Learns up to num_merges BPE merges from texts (one caption each), with the same cleaning
// and pre-tokenisation as Tokenizer, and writes a merges file (header line, then "a b" per
// merge; gzip when out_path ends in ".gz") that Tokenizer::load reads back.
//
// Each step merges the most frequent adjacent pair (counts are summed over all pre-tokens,
// within a pre-token only). Ties are broken deterministically: the pair whose first token's
// spelling is smallest (byte-wise, as written in the merges file), then the smallest second
// token. Literal special tokens in the text are not learned from. Throws sparo::Error when
// num_merges < 0, when the texts hold no pre-token, or when out_path cannot be written.
BpeTrainResult train_bpe(const std::vector<std::string>& texts, int num_merges, const std::string& out_path,
                         const BpeTrainOptions& options = {});

}  // namespace sparo
