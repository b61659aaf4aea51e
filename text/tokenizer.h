// OpenCLIP's byte-level BPE tokenizer (open_clip/tokenizer.py, SimpleTokenizer with the
// default clean='lower'), in C++; text/bpe_train.h writes merges files in the same format. docs/TOKENIZER.md has the details; the short version:
//
//   text ─ html-unescape twice ─ collapse whitespace, strip ─ lower-case
//        ─ pre-tokenise with OpenCLIP's pattern
//              <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//        ─ each piece: UTF-8 bytes → GPT-2 byte-unicode symbols, last one gets "</w>"
//        ─ BPE by merge rank ─ ids
//
// Vocabulary layout (ids): the 256 byte symbols (in bytes_to_unicode order), the same with
// "</w>" appended, one token per merge (the merge's two halves joined), <start_of_text>,
// <end_of_text>. EOT is always the largest id (49407 with bpe_simple_vocab_16e6.txt.gz).
//
// Which merges are used: line 0 of the file is a header and is skipped. If the file holds
// exactly the standard 262144 merge lines (bpe_simple_vocab_16e6), OpenCLIP's slice is used:
// the first 49152 - 256 - 2 = 48894 merges. Any other file (e.g. one written by train_bpe)
// uses all of its merges. Trailing blank lines are ignored.
//
// Differences from OpenCLIP (details in docs/TOKENIZER.md):
//   * no ftfy.fix_text: no mojibake repair, no quote uncurling, no ligature splitting, no NFC
//     normalisation (text that ftfy would change can tokenise differently);
//   * \p{L} / \p{N} come from a built-in range table that is exact for the whole Basic
//     Multilingual Plane and for the CJK extensions, kana supplements, math alphanumerics,
//     Deseret, Osage and Adlam; letters and digits of the other supplementary-plane scripts
//     count as "other" (punctuation-like);
//   * lower-casing equals Python 3.11's str.lower() (Unicode 14) for every code point,
//     final sigma and İ → "i̇" included; case pairs added after Unicode 14 are not lowered;
//   * html.unescape knows 290 named entities (all of HTML 4, all 106 that HTML5 accepts
//     without ';', some common HTML5 ones), not all 2231; numeric references are exact;
//   * invalid UTF-8 in the input text is replaced by U+FFFD.
//
// Thread safety: a Tokenizer is immutable except for its BPE cache, which is guarded by a
// mutex, so one Tokenizer may be used from several threads. Copies share the vocabulary
// and the cache.
//
// Errors (sparo::Error) name the file and what is wrong with it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sparo {

// The cap on a merges file, counted after gzip decompression (text/text_files.h).
inline constexpr uint64_t kMaxVocabBytes = 64ull << 20;  // bpe_simple_vocab_16e6: 3.2 MB

class Tokenizer {
 public:
  // Reads a merges file: gzip (.gz) or plain text, UTF-8. Throws sparo::Error naming the
  // path when the file is missing, unreadable, not valid gzip/UTF-8, holds more than
  // kMaxVocabBytes, or a merge line does not hold two known tokens.
  static Tokenizer load(const std::string& merges_path);

  // BPE ids of the cleaned text, without <start_of_text> / <end_of_text>. A literal
  // "<start_of_text>" / "<end_of_text>" in the text becomes the special id (as in OpenCLIP).
  std::vector<int32_t> encode(const std::string& text) const;

  // Concatenates the tokens, maps byte symbols back to bytes, decodes UTF-8 (invalid
  // sequences → U+FFFD) and turns every "</w>" into a space (OpenCLIP's decode). Throws
  // sparo::Error on an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids) const;

  // OpenCLIP's tokenize(): per text [sot] + encode(text) + [eot], cut to context_length
  // with the last id forced to eot when it was too long, zero padded. Row-major
  // [texts.size(), context_length]. context_length must be >= 1.
  std::vector<int32_t> tokenize(const std::vector<std::string>& texts, int context_length = 77) const;

  int32_t sot_token() const;
  int32_t eot_token() const;
  int64_t vocab_size() const;
  int64_t num_merges() const;

  // The token's spelling in byte-unicode symbols (as in the merges file), e.g.
  // id_to_token(320) == "a</w>"; token_to_id returns -1 for an unknown spelling.
  const std::string& id_to_token(int32_t id) const;
  int32_t token_to_id(const std::string& token) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// The text clean-up applied before pre-tokenisation (exposed for tests and tools):
// html-unescape twice, whitespace runs → one space, strip, lower-case.
std::string clean_text(const std::string& text);

// The pre-tokens (pieces matched by OpenCLIP's pattern) of already cleaned text.
std::vector<std::string> pretokenize(const std::string& cleaned_text);

}  // namespace sparo
