// OpenCLIP's clean-up, the pieces of its pattern, and the byte-to-symbol table.
#include "text/pretokenizer.h"

#include "text/html_unescape.h"

namespace sparo::text {

std::u32string clean_codepoints(const std::string& text) {
  std::u32string s = html_unescape(html_unescape(decode_utf8(text)));
  std::u32string collapsed;
  collapsed.reserve(s.size());
  bool pending_space = false;
  for (char32_t c : s) {
    if (is_space(c)) {
      pending_space = !collapsed.empty();
      continue;
    }
    if (pending_space) collapsed += U' ';
    pending_space = false;
    collapsed += c;
  }
  return lower_text(collapsed);
}

// Characters that no alternative of the pattern matches, so findall skips them: white space
// and U+0345 COMBINING GREEK YPOGEGRAMMENI. Under IGNORECASE the regex module tests a class
// against the character's case variants too: U+0345's upper case is Ι, a letter, so the
// negated class [^\s\p{L}\p{N}] rejects it, while [\p{L}] does not accept it either.
bool is_separator(char32_t c) { return is_space(c) || c == 0x0345; }

// A literal of ASCII lower-case letters and punctuation matched case-insensitively as the
// regex module does for the already lower-cased text (ſ, U+017F, folds to 's').
bool match_literal(const std::u32string& s, size_t i, std::string_view lit) {
  if (i + lit.size() > s.size()) return false;
  for (size_t k = 0; k < lit.size(); ++k) {
    const char32_t c = s[i + k];
    const char32_t want = static_cast<unsigned char>(lit[k]);
    if (c == want || (want >= 'a' && want <= 'z' && c == want - 32)) continue;
    if (want == 's' && c == 0x017F) continue;
    if (want == 'k' && c == 0x212A) continue;
    return false;
  }
  return true;
}

const ByteUnicode& byte_unicode() {
  static const ByteUnicode table;
  return table;
}

}  // namespace sparo::text
