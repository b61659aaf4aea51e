// UTF-8 and the few Unicode properties OpenCLIP's tokenizer depends on: the letter and number
// classes of Python's `regex` (\p{L}, \p{N}), white space as str.isspace() and lower-casing as
// str.lower(). Each comes from a built-in range table checked against Python; the comments in
// unicode.cpp say which versions and where a table stops. Internal to text/ (the tokenizer and
// the BPE trainer); docs/TOKENIZER.md has the differences from OpenCLIP.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sparo::text {

inline constexpr char32_t kReplacement = 0xFFFD;  // U+FFFD, for invalid UTF-8

void append_utf8(std::string& out, char32_t cp);
// The code point at s[i], advancing i past it; an invalid sequence gives kReplacement (and
// *ok = false when ok is given).
char32_t next_utf8(std::string_view s, size_t& i, bool* ok = nullptr);
std::u32string decode_utf8(std::string_view s);  // invalid sequences → U+FFFD
std::string encode_utf8(std::u32string_view cps);

// The pre-tokeniser's character classes: \p{L} (letters), \p{N} (numbers), everything else.
inline constexpr uint8_t kOther = 0, kLetter = 1, kNumber = 2;
uint8_t char_class(char32_t c);

bool is_space(char32_t c);         // Python's str.isspace()
char32_t lower_char(char32_t c);   // str.lower() of one code point without the context rules
bool is_cased(char32_t c);         // Unicode's Cased property
bool is_case_ignorable(char32_t c);  // Unicode's Case_Ignorable property
// Python's str.lower() on a whole text, final sigma and İ included.
std::u32string lower_text(const std::u32string& s);

}  // namespace sparo::text
