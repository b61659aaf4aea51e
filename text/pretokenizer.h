// What the tokenizer and the BPE trainer share: OpenCLIP's text clean-up, its pre-tokenising
// pattern, GPT-2's byte-to-symbol table and the key of a token pair. Internal to text/.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "text/unicode.h"

namespace sparo::text {

// html.unescape twice, whitespace_clean (\s+ → ' ', strip), lower(): OpenCLIP's _clean_lower
// without ftfy.fix_text.
std::u32string clean_codepoints(const std::string& text);

// Characters that no alternative of the pattern matches (white space and U+0345).
bool is_separator(char32_t c);

// A literal of ASCII lower-case letters and punctuation at s[i], matched case-insensitively
// as the regex module does for already lower-cased text.
bool match_literal(const std::u32string& s, size_t i, std::string_view lit);

inline constexpr std::string_view kSot = "<start_of_text>";
inline constexpr std::string_view kEot = "<end_of_text>";

// OpenCLIP's pattern, tried alternative by alternative at each position like re.findall:
//   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (after cleaning the only white space left is ' '; see is_separator for U+0345).
template <typename Emit>
void pretokenize_codepoints(const std::u32string& s, Emit&& emit) {
  static constexpr std::string_view kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const char32_t c = s[i];
    if (c == U'<') {
      if (match_literal(s, i, kSot)) {
        emit(i, i + kSot.size());
        i += kSot.size();
        continue;
      }
      if (match_literal(s, i, kEot)) {
        emit(i, i + kEot.size());
        i += kEot.size();
        continue;
      }
    }
    if (c == U'\'') {
      bool matched = false;
      for (std::string_view lit : kContractions) {
        if (match_literal(s, i, lit)) {
          emit(i, i + lit.size());
          i += lit.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    if (is_separator(c)) {
      ++i;
      continue;
    }
    const uint8_t cls = char_class(c);
    size_t j = i + 1;
    if (cls == kLetter) {
      while (j < n && char_class(s[j]) == kLetter) ++j;
    } else if (cls == kOther) {
      while (j < n && !is_separator(s[j]) && char_class(s[j]) == kOther) ++j;
    }
    emit(i, j);
    i = j;
  }
}

// GPT-2 / CLIP bytes_to_unicode(): printable bytes map to themselves, the others to 256 + n.
// order[k] is the k-th byte in dict order (the printable ones first), which is the order of
// the first 256 vocabulary entries.
struct ByteUnicode {
  std::array<char32_t, 256> to_cp{};
  std::array<uint8_t, 256> order{};
  std::array<int, 324> cp_to_byte{};  // -1 where no byte maps
  ByteUnicode() {
    cp_to_byte.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int k = 0;
    for (int b = 0; b < 256; ++b)
      if (printable(b)) order[k++] = static_cast<uint8_t>(b), to_cp[b] = static_cast<char32_t>(b);
    int extra = 0;
    for (int b = 0; b < 256; ++b)
      if (!printable(b)) order[k++] = static_cast<uint8_t>(b), to_cp[b] = static_cast<char32_t>(256 + extra++);
    for (int b = 0; b < 256; ++b) cp_to_byte[to_cp[b]] = b;
  }
};

const ByteUnicode& byte_unicode();

// A pair of token ids as one hash key.
inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace sparo::text
