// OpenCLIP's SimpleTokenizer in C++ and a small BPE trainer; see tokenizer.h and
// docs/TOKENIZER.md. Layout of this file:
//   1. UTF-8 and the Unicode tables (letters, numbers, white space, lower-casing)
//   2. html.unescape
//   3. clean_text and the pre-tokeniser
//   4. bytes_to_unicode, reading merges files
//   5. Tokenizer
//   6. train_bpe
#include "training/tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "engine/tensor.h"  // sparo::Error

namespace sparo {

namespace {

// ============================================================================================
// 1. UTF-8 and Unicode tables
// ============================================================================================

constexpr char32_t kReplacement = 0xFFFD;

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one code point at s[i], advancing i. An invalid sequence yields U+FFFD and
// consumes its maximal subpart (at least one byte), as Python's errors="replace" does.
// `ok` (when given) is cleared on an invalid sequence.
char32_t next_utf8(std::string_view s, size_t& i, bool* ok = nullptr) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int len = 0;
  char32_t cp = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // valid range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    ++i;
    if (ok) *ok = false;
    return kReplacement;
  }
  size_t k = i + 1;
  for (int n = 1; n < len; ++n, ++k) {
    const unsigned char lo_n = n == 1 ? lo : 0x80, hi_n = n == 1 ? hi : 0xBF;
    if (k >= s.size() || byte(k) < lo_n || byte(k) > hi_n) {
      i = k;  // the maximal valid prefix becomes one U+FFFD
      if (ok) *ok = false;
      return kReplacement;
    }
    cp = (cp << 6) | (byte(k) & 0x3F);
  }
  i = k;
  return cp;
}

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out += next_utf8(s, i);
  return out;
}

std::string encode_utf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append_utf8(out, c);
  return out;
}

// --- \p{L} and \p{N} ------------------------------------------------------------------------
// Sorted, non-overlapping ranges of letters (L: Lu Ll Lt Lm Lo) and numbers (N: Nd Nl No).
// The whole Basic Multilingual Plane (U+0000..U+FFFF) is covered, plus, outside it: Deseret,
// Shavian, Osmanya, Osage, the kana supplements, Mathematical Alphanumeric Symbols, Adlam and
// the CJK Unified Ideographs Extensions B..J. The table was checked code point by code point
// against the `regex` module that OpenCLIP's pattern runs on (regex 2026.5, Unicode 17): it
// agrees everywhere in those ranges. Letters and numbers of the other supplementary-plane
// scripts (historic scripts, Brahmi-family scripts of plane 1, Egyptian hieroglyphs,
// cuneiform, Tangut, Nushu, ...) are classified as "other", i.e. they pre-tokenise like
// punctuation.
constexpr uint8_t kOther = 0, kLetter = 1, kNumber = 2;

struct ClassRange {
  char32_t lo, hi;
  uint8_t cls;
};

constexpr uint8_t L = kLetter, N = kNumber;

constexpr ClassRange kClassRanges[] = {
    // Latin, IPA, spacing modifier letters
    {0x0030, 0x0039, N}, {0x0041, 0x005A, L}, {0x0061, 0x007A, L}, {0x00AA, 0x00AA, L},
    {0x00B2, 0x00B3, N}, {0x00B5, 0x00B5, L}, {0x00B9, 0x00B9, N}, {0x00BA, 0x00BA, L},
    {0x00BC, 0x00BE, N}, {0x00C0, 0x00D6, L}, {0x00D8, 0x00F6, L}, {0x00F8, 0x02C1, L},
    {0x02C6, 0x02D1, L}, {0x02E0, 0x02E4, L}, {0x02EC, 0x02EC, L}, {0x02EE, 0x02EE, L},
    // Greek, Cyrillic, Armenian
    {0x0370, 0x0374, L}, {0x0376, 0x0377, L}, {0x037A, 0x037D, L}, {0x037F, 0x037F, L},
    {0x0386, 0x0386, L}, {0x0388, 0x038A, L}, {0x038C, 0x038C, L}, {0x038E, 0x03A1, L},
    {0x03A3, 0x03F5, L}, {0x03F7, 0x0481, L}, {0x048A, 0x052F, L}, {0x0531, 0x0556, L},
    {0x0559, 0x0559, L}, {0x0560, 0x0588, L},
    // Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic
    {0x05D0, 0x05EA, L}, {0x05EF, 0x05F2, L}, {0x0620, 0x064A, L}, {0x0660, 0x0669, N},
    {0x066E, 0x066F, L}, {0x0671, 0x06D3, L}, {0x06D5, 0x06D5, L}, {0x06E5, 0x06E6, L},
    {0x06EE, 0x06EF, L}, {0x06F0, 0x06F9, N}, {0x06FA, 0x06FC, L}, {0x06FF, 0x06FF, L},
    {0x0710, 0x0710, L}, {0x0712, 0x072F, L}, {0x074D, 0x07A5, L}, {0x07B1, 0x07B1, L},
    {0x07C0, 0x07C9, N}, {0x07CA, 0x07EA, L}, {0x07F4, 0x07F5, L}, {0x07FA, 0x07FA, L},
    {0x0800, 0x0815, L}, {0x081A, 0x081A, L}, {0x0824, 0x0824, L}, {0x0828, 0x0828, L},
    {0x0840, 0x0858, L}, {0x0860, 0x086A, L}, {0x0870, 0x0887, L}, {0x0889, 0x088F, L},
    {0x08A0, 0x08C9, L},
    // Devanagari, Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada, Malayalam, Sinhala
    {0x0904, 0x0939, L}, {0x093D, 0x093D, L}, {0x0950, 0x0950, L}, {0x0958, 0x0961, L},
    {0x0966, 0x096F, N}, {0x0971, 0x0980, L}, {0x0985, 0x098C, L}, {0x098F, 0x0990, L},
    {0x0993, 0x09A8, L}, {0x09AA, 0x09B0, L}, {0x09B2, 0x09B2, L}, {0x09B6, 0x09B9, L},
    {0x09BD, 0x09BD, L}, {0x09CE, 0x09CE, L}, {0x09DC, 0x09DD, L}, {0x09DF, 0x09E1, L},
    {0x09E6, 0x09EF, N}, {0x09F0, 0x09F1, L}, {0x09F4, 0x09F9, N}, {0x09FC, 0x09FC, L},
    {0x0A05, 0x0A0A, L}, {0x0A0F, 0x0A10, L}, {0x0A13, 0x0A28, L}, {0x0A2A, 0x0A30, L},
    {0x0A32, 0x0A33, L}, {0x0A35, 0x0A36, L}, {0x0A38, 0x0A39, L}, {0x0A59, 0x0A5C, L},
    {0x0A5E, 0x0A5E, L}, {0x0A66, 0x0A6F, N}, {0x0A72, 0x0A74, L}, {0x0A85, 0x0A8D, L},
    {0x0A8F, 0x0A91, L}, {0x0A93, 0x0AA8, L}, {0x0AAA, 0x0AB0, L}, {0x0AB2, 0x0AB3, L},
    {0x0AB5, 0x0AB9, L}, {0x0ABD, 0x0ABD, L}, {0x0AD0, 0x0AD0, L}, {0x0AE0, 0x0AE1, L},
    {0x0AE6, 0x0AEF, N}, {0x0AF9, 0x0AF9, L}, {0x0B05, 0x0B0C, L}, {0x0B0F, 0x0B10, L},
    {0x0B13, 0x0B28, L}, {0x0B2A, 0x0B30, L}, {0x0B32, 0x0B33, L}, {0x0B35, 0x0B39, L},
    {0x0B3D, 0x0B3D, L}, {0x0B5C, 0x0B5D, L}, {0x0B5F, 0x0B61, L}, {0x0B66, 0x0B6F, N},
    {0x0B71, 0x0B71, L}, {0x0B72, 0x0B77, N}, {0x0B83, 0x0B83, L}, {0x0B85, 0x0B8A, L},
    {0x0B8E, 0x0B90, L}, {0x0B92, 0x0B95, L}, {0x0B99, 0x0B9A, L}, {0x0B9C, 0x0B9C, L},
    {0x0B9E, 0x0B9F, L}, {0x0BA3, 0x0BA4, L}, {0x0BA8, 0x0BAA, L}, {0x0BAE, 0x0BB9, L},
    {0x0BD0, 0x0BD0, L}, {0x0BE6, 0x0BF2, N}, {0x0C05, 0x0C0C, L}, {0x0C0E, 0x0C10, L},
    {0x0C12, 0x0C28, L}, {0x0C2A, 0x0C39, L}, {0x0C3D, 0x0C3D, L}, {0x0C58, 0x0C5A, L},
    {0x0C5C, 0x0C5D, L}, {0x0C60, 0x0C61, L}, {0x0C66, 0x0C6F, N}, {0x0C78, 0x0C7E, N},
    {0x0C80, 0x0C80, L}, {0x0C85, 0x0C8C, L}, {0x0C8E, 0x0C90, L}, {0x0C92, 0x0CA8, L},
    {0x0CAA, 0x0CB3, L}, {0x0CB5, 0x0CB9, L}, {0x0CBD, 0x0CBD, L}, {0x0CDC, 0x0CDE, L},
    {0x0CE0, 0x0CE1, L}, {0x0CE6, 0x0CEF, N}, {0x0CF1, 0x0CF2, L}, {0x0D04, 0x0D0C, L},
    {0x0D0E, 0x0D10, L}, {0x0D12, 0x0D3A, L}, {0x0D3D, 0x0D3D, L}, {0x0D4E, 0x0D4E, L},
    {0x0D54, 0x0D56, L}, {0x0D58, 0x0D5E, N}, {0x0D5F, 0x0D61, L}, {0x0D66, 0x0D78, N},
    {0x0D7A, 0x0D7F, L}, {0x0D85, 0x0D96, L}, {0x0D9A, 0x0DB1, L}, {0x0DB3, 0x0DBB, L},
    {0x0DBD, 0x0DBD, L}, {0x0DC0, 0x0DC6, L}, {0x0DE6, 0x0DEF, N},
    // Thai, Lao, Tibetan, Myanmar, Georgian, Hangul Jamo
    {0x0E01, 0x0E30, L}, {0x0E32, 0x0E33, L}, {0x0E40, 0x0E46, L}, {0x0E50, 0x0E59, N},
    {0x0E81, 0x0E82, L}, {0x0E84, 0x0E84, L}, {0x0E86, 0x0E8A, L}, {0x0E8C, 0x0EA3, L},
    {0x0EA5, 0x0EA5, L}, {0x0EA7, 0x0EB0, L}, {0x0EB2, 0x0EB3, L}, {0x0EBD, 0x0EBD, L},
    {0x0EC0, 0x0EC4, L}, {0x0EC6, 0x0EC6, L}, {0x0ED0, 0x0ED9, N}, {0x0EDC, 0x0EDF, L},
    {0x0F00, 0x0F00, L}, {0x0F20, 0x0F33, N}, {0x0F40, 0x0F47, L}, {0x0F49, 0x0F6C, L},
    {0x0F88, 0x0F8C, L}, {0x1000, 0x102A, L}, {0x103F, 0x103F, L}, {0x1040, 0x1049, N},
    {0x1050, 0x1055, L}, {0x105A, 0x105D, L}, {0x1061, 0x1061, L}, {0x1065, 0x1066, L},
    {0x106E, 0x1070, L}, {0x1075, 0x1081, L}, {0x108E, 0x108E, L}, {0x1090, 0x1099, N},
    {0x10A0, 0x10C5, L}, {0x10C7, 0x10C7, L}, {0x10CD, 0x10CD, L}, {0x10D0, 0x10FA, L},
    {0x10FC, 0x1248, L},
    // Ethiopic, Cherokee, Canadian Syllabics, Ogham, Runic, Philippine scripts, Khmer, Mongolian
    {0x124A, 0x124D, L}, {0x1250, 0x1256, L}, {0x1258, 0x1258, L}, {0x125A, 0x125D, L},
    {0x1260, 0x1288, L}, {0x128A, 0x128D, L}, {0x1290, 0x12B0, L}, {0x12B2, 0x12B5, L},
    {0x12B8, 0x12BE, L}, {0x12C0, 0x12C0, L}, {0x12C2, 0x12C5, L}, {0x12C8, 0x12D6, L},
    {0x12D8, 0x1310, L}, {0x1312, 0x1315, L}, {0x1318, 0x135A, L}, {0x1369, 0x137C, N},
    {0x1380, 0x138F, L}, {0x13A0, 0x13F5, L}, {0x13F8, 0x13FD, L}, {0x1401, 0x166C, L},
    {0x166F, 0x167F, L}, {0x1681, 0x169A, L}, {0x16A0, 0x16EA, L}, {0x16EE, 0x16F0, N},
    {0x16F1, 0x16F8, L}, {0x1700, 0x1711, L}, {0x171F, 0x1731, L}, {0x1740, 0x1751, L},
    {0x1760, 0x176C, L}, {0x176E, 0x1770, L}, {0x1780, 0x17B3, L}, {0x17D7, 0x17D7, L},
    {0x17DC, 0x17DC, L}, {0x17E0, 0x17E9, N}, {0x17F0, 0x17F9, N}, {0x1810, 0x1819, N},
    {0x1820, 0x1878, L}, {0x1880, 0x1884, L}, {0x1887, 0x18A8, L}, {0x18AA, 0x18AA, L},
    {0x18B0, 0x18F5, L},
    // Limbu, Tai Le, Tai Lue, Buginese, Tai Tham, Balinese, Sundanese, Batak, Lepcha, Ol Chiki, Vedic, Georgian Extended
    {0x1900, 0x191E, L}, {0x1946, 0x194F, N}, {0x1950, 0x196D, L}, {0x1970, 0x1974, L},
    {0x1980, 0x19AB, L}, {0x19B0, 0x19C9, L}, {0x19D0, 0x19DA, N}, {0x1A00, 0x1A16, L},
    {0x1A20, 0x1A54, L}, {0x1A80, 0x1A89, N}, {0x1A90, 0x1A99, N}, {0x1AA7, 0x1AA7, L},
    {0x1B05, 0x1B33, L}, {0x1B45, 0x1B4C, L}, {0x1B50, 0x1B59, N}, {0x1B83, 0x1BA0, L},
    {0x1BAE, 0x1BAF, L}, {0x1BB0, 0x1BB9, N}, {0x1BBA, 0x1BE5, L}, {0x1C00, 0x1C23, L},
    {0x1C40, 0x1C49, N}, {0x1C4D, 0x1C4F, L}, {0x1C50, 0x1C59, N}, {0x1C5A, 0x1C7D, L},
    {0x1C80, 0x1C8A, L}, {0x1C90, 0x1CBA, L}, {0x1CBD, 0x1CBF, L}, {0x1CE9, 0x1CEC, L},
    {0x1CEE, 0x1CF3, L}, {0x1CF5, 0x1CF6, L}, {0x1CFA, 0x1CFA, L},
    // phonetic extensions, Latin Extended Additional, Greek Extended
    {0x1D00, 0x1DBF, L}, {0x1E00, 0x1F15, L}, {0x1F18, 0x1F1D, L}, {0x1F20, 0x1F45, L},
    {0x1F48, 0x1F4D, L}, {0x1F50, 0x1F57, L}, {0x1F59, 0x1F59, L}, {0x1F5B, 0x1F5B, L},
    {0x1F5D, 0x1F5D, L}, {0x1F5F, 0x1F7D, L}, {0x1F80, 0x1FB4, L}, {0x1FB6, 0x1FBC, L},
    {0x1FBE, 0x1FBE, L}, {0x1FC2, 0x1FC4, L}, {0x1FC6, 0x1FCC, L}, {0x1FD0, 0x1FD3, L},
    {0x1FD6, 0x1FDB, L}, {0x1FE0, 0x1FEC, L}, {0x1FF2, 0x1FF4, L}, {0x1FF6, 0x1FFC, L},
    // super/subscripts, letterlike symbols, number forms, enclosed alphanumerics, dingbats
    {0x2070, 0x2070, N}, {0x2071, 0x2071, L}, {0x2074, 0x2079, N}, {0x207F, 0x207F, L},
    {0x2080, 0x2089, N}, {0x2090, 0x209C, L}, {0x2102, 0x2102, L}, {0x2107, 0x2107, L},
    {0x210A, 0x2113, L}, {0x2115, 0x2115, L}, {0x2119, 0x211D, L}, {0x2124, 0x2124, L},
    {0x2126, 0x2126, L}, {0x2128, 0x2128, L}, {0x212A, 0x212D, L}, {0x212F, 0x2139, L},
    {0x213C, 0x213F, L}, {0x2145, 0x2149, L}, {0x214E, 0x214E, L}, {0x2150, 0x2182, N},
    {0x2183, 0x2184, L}, {0x2185, 0x2189, N}, {0x2460, 0x249B, N}, {0x24EA, 0x24FF, N},
    {0x2776, 0x2793, N},
    // Glagolitic, Latin Extended-C, Coptic, Georgian Supplement, Tifinagh, Ethiopic Extended
    {0x2C00, 0x2CE4, L}, {0x2CEB, 0x2CEE, L}, {0x2CF2, 0x2CF3, L}, {0x2CFD, 0x2CFD, N},
    {0x2D00, 0x2D25, L}, {0x2D27, 0x2D27, L}, {0x2D2D, 0x2D2D, L}, {0x2D30, 0x2D67, L},
    {0x2D6F, 0x2D6F, L}, {0x2D80, 0x2D96, L}, {0x2DA0, 0x2DA6, L}, {0x2DA8, 0x2DAE, L},
    {0x2DB0, 0x2DB6, L}, {0x2DB8, 0x2DBE, L}, {0x2DC0, 0x2DC6, L}, {0x2DC8, 0x2DCE, L},
    {0x2DD0, 0x2DD6, L}, {0x2DD8, 0x2DDE, L}, {0x2E2F, 0x2E2F, L},
    // CJK symbols, kana, Bopomofo, Hangul compatibility Jamo, Kanbun, enclosed CJK
    {0x3005, 0x3006, L}, {0x3007, 0x3007, N}, {0x3021, 0x3029, N}, {0x3031, 0x3035, L},
    {0x3038, 0x303A, N}, {0x303B, 0x303C, L}, {0x3041, 0x3096, L}, {0x309D, 0x309F, L},
    {0x30A1, 0x30FA, L}, {0x30FC, 0x30FF, L}, {0x3105, 0x312F, L}, {0x3131, 0x318E, L},
    {0x3192, 0x3195, N}, {0x31A0, 0x31BF, L}, {0x31F0, 0x31FF, L}, {0x3220, 0x3229, N},
    {0x3248, 0x324F, N}, {0x3251, 0x325F, N}, {0x3280, 0x3289, N}, {0x32B1, 0x32BF, N},
    // CJK Unified Ideographs (+ Extension A), Yi, Lisu, Vai, Cyrillic Extended-B, Bamum, Latin Extended-D
    {0x3400, 0x4DBF, L}, {0x4E00, 0xA48C, L}, {0xA4D0, 0xA4FD, L}, {0xA500, 0xA60C, L},
    {0xA610, 0xA61F, L}, {0xA620, 0xA629, N}, {0xA62A, 0xA62B, L}, {0xA640, 0xA66E, L},
    {0xA67F, 0xA69D, L}, {0xA6A0, 0xA6E5, L}, {0xA6E6, 0xA6EF, N}, {0xA717, 0xA71F, L},
    {0xA722, 0xA788, L}, {0xA78B, 0xA7DC, L}, {0xA7F1, 0xA801, L},
    // Syloti Nagri, Phags-pa, Saurashtra, Kayah Li, Rejang, Javanese, Cham, Tai Viet, Meetei Mayek, Latin Extended-E
    {0xA803, 0xA805, L}, {0xA807, 0xA80A, L}, {0xA80C, 0xA822, L}, {0xA830, 0xA835, N},
    {0xA840, 0xA873, L}, {0xA882, 0xA8B3, L}, {0xA8D0, 0xA8D9, N}, {0xA8F2, 0xA8F7, L},
    {0xA8FB, 0xA8FB, L}, {0xA8FD, 0xA8FE, L}, {0xA900, 0xA909, N}, {0xA90A, 0xA925, L},
    {0xA930, 0xA946, L}, {0xA960, 0xA97C, L}, {0xA984, 0xA9B2, L}, {0xA9CF, 0xA9CF, L},
    {0xA9D0, 0xA9D9, N}, {0xA9E0, 0xA9E4, L}, {0xA9E6, 0xA9EF, L}, {0xA9F0, 0xA9F9, N},
    {0xA9FA, 0xA9FE, L}, {0xAA00, 0xAA28, L}, {0xAA40, 0xAA42, L}, {0xAA44, 0xAA4B, L},
    {0xAA50, 0xAA59, N}, {0xAA60, 0xAA76, L}, {0xAA7A, 0xAA7A, L}, {0xAA7E, 0xAAAF, L},
    {0xAAB1, 0xAAB1, L}, {0xAAB5, 0xAAB6, L}, {0xAAB9, 0xAABD, L}, {0xAAC0, 0xAAC0, L},
    {0xAAC2, 0xAAC2, L}, {0xAADB, 0xAADD, L}, {0xAAE0, 0xAAEA, L}, {0xAAF2, 0xAAF4, L},
    {0xAB01, 0xAB06, L}, {0xAB09, 0xAB0E, L}, {0xAB11, 0xAB16, L}, {0xAB20, 0xAB26, L},
    {0xAB28, 0xAB2E, L}, {0xAB30, 0xAB5A, L}, {0xAB5C, 0xAB69, L}, {0xAB70, 0xABE2, L},
    {0xABF0, 0xABF9, N},
    // Hangul Syllables, Jamo Extended-B
    {0xAC00, 0xD7A3, L}, {0xD7B0, 0xD7C6, L}, {0xD7CB, 0xD7FB, L},
    // CJK compatibility ideographs, presentation forms, fullwidth and halfwidth forms
    {0xF900, 0xFA6D, L}, {0xFA70, 0xFAD9, L}, {0xFB00, 0xFB06, L}, {0xFB13, 0xFB17, L},
    {0xFB1D, 0xFB1D, L}, {0xFB1F, 0xFB28, L}, {0xFB2A, 0xFB36, L}, {0xFB38, 0xFB3C, L},
    {0xFB3E, 0xFB3E, L}, {0xFB40, 0xFB41, L}, {0xFB43, 0xFB44, L}, {0xFB46, 0xFBB1, L},
    {0xFBD3, 0xFD3D, L}, {0xFD50, 0xFD8F, L}, {0xFD92, 0xFDC7, L}, {0xFDF0, 0xFDFB, L},
    {0xFE70, 0xFE74, L}, {0xFE76, 0xFEFC, L}, {0xFF10, 0xFF19, N}, {0xFF21, 0xFF3A, L},
    {0xFF41, 0xFF5A, L}, {0xFF66, 0xFFBE, L}, {0xFFC2, 0xFFC7, L}, {0xFFCA, 0xFFCF, L},
    {0xFFD2, 0xFFD7, L}, {0xFFDA, 0xFFDC, L},
    // Deseret, Shavian, Osmanya, Osage
    {0x10400, 0x1049D, L}, {0x104A0, 0x104A9, N}, {0x104B0, 0x104D3, L}, {0x104D8, 0x104FB, L},
    // kana supplements
    {0x1AFF0, 0x1AFF3, L}, {0x1AFF5, 0x1AFFB, L}, {0x1AFFD, 0x1AFFE, L}, {0x1B000, 0x1B122, L},
    {0x1B132, 0x1B132, L}, {0x1B150, 0x1B152, L}, {0x1B155, 0x1B155, L}, {0x1B164, 0x1B167, L},
    // Mathematical Alphanumeric Symbols
    {0x1D400, 0x1D454, L}, {0x1D456, 0x1D49C, L}, {0x1D49E, 0x1D49F, L}, {0x1D4A2, 0x1D4A2, L},
    {0x1D4A5, 0x1D4A6, L}, {0x1D4A9, 0x1D4AC, L}, {0x1D4AE, 0x1D4B9, L}, {0x1D4BB, 0x1D4BB, L},
    {0x1D4BD, 0x1D4C3, L}, {0x1D4C5, 0x1D505, L}, {0x1D507, 0x1D50A, L}, {0x1D50D, 0x1D514, L},
    {0x1D516, 0x1D51C, L}, {0x1D51E, 0x1D539, L}, {0x1D53B, 0x1D53E, L}, {0x1D540, 0x1D544, L},
    {0x1D546, 0x1D546, L}, {0x1D54A, 0x1D550, L}, {0x1D552, 0x1D6A5, L}, {0x1D6A8, 0x1D6C0, L},
    {0x1D6C2, 0x1D6DA, L}, {0x1D6DC, 0x1D6FA, L}, {0x1D6FC, 0x1D714, L}, {0x1D716, 0x1D734, L},
    {0x1D736, 0x1D74E, L}, {0x1D750, 0x1D76E, L}, {0x1D770, 0x1D788, L}, {0x1D78A, 0x1D7A8, L},
    {0x1D7AA, 0x1D7C2, L}, {0x1D7C4, 0x1D7CB, L}, {0x1D7CE, 0x1D7FF, N},
    // Adlam
    {0x1E900, 0x1E943, L}, {0x1E94B, 0x1E94B, L}, {0x1E950, 0x1E959, N},
    // digit full stop / comma
    {0x1F100, 0x1F10C, N},
    // CJK Unified Ideographs Extensions B..J, compatibility supplement
    {0x20000, 0x2A6DF, L}, {0x2A700, 0x2B81D, L}, {0x2B820, 0x2CEAD, L}, {0x2CEB0, 0x2EBE0, L},
    {0x2EBF0, 0x2EE5D, L}, {0x2F800, 0x2FA1D, L}, {0x30000, 0x3134A, L}, {0x31350, 0x33479, L},
};

uint8_t char_class(char32_t c) {
  if (c < 0x80) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return kLetter;
    return c >= '0' && c <= '9' ? kNumber : kOther;
  }
  const auto* end = std::end(kClassRanges);
  const auto* it = std::upper_bound(std::begin(kClassRanges), end, c,
                                    [](char32_t v, const ClassRange& r) { return v < r.lo; });
  if (it == std::begin(kClassRanges)) return kOther;
  --it;
  return c <= it->hi ? it->cls : kOther;
}

// Python's str.isspace(), which is what re's \s, str.strip() and str.split() use.
bool is_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// --- lower-casing ------------------------------------------------------------------------------
// Python's str.lower(): each entry maps lo..hi by +delta; step 2 maps only lo, lo+2, ... (the
// upper-case half of alternating upper/lower pairs). U+0130 (→ "i̇") and U+03A3 (final sigma)
// are handled in lower_text. Checked code point by code point against Python 3.11 (Unicode 14):
// identical for all of them.
struct LowerRange {
  char32_t lo, hi;
  int32_t delta;
  uint8_t step;
};

constexpr LowerRange kLowerRanges[] = {
    {0x0041, 0x005A, 32, 1}, {0x00C0, 0x00D6, 32, 1}, {0x00D8, 0x00DE, 32, 1},
    {0x0100, 0x012E, 1, 2}, {0x0132, 0x0136, 1, 2}, {0x0139, 0x0147, 1, 2}, {0x014A, 0x0176, 1, 2},
    {0x0178, 0x0178, -121, 1}, {0x0179, 0x017D, 1, 2}, {0x0181, 0x0181, 210, 1},
    {0x0182, 0x0184, 1, 2}, {0x0186, 0x0186, 206, 1}, {0x0187, 0x0187, 1, 1},
    {0x0189, 0x018A, 205, 1}, {0x018B, 0x018B, 1, 1}, {0x018E, 0x018E, 79, 1},
    {0x018F, 0x018F, 202, 1}, {0x0190, 0x0190, 203, 1}, {0x0191, 0x0191, 1, 1},
    {0x0193, 0x0193, 205, 1}, {0x0194, 0x0194, 207, 1}, {0x0196, 0x0196, 211, 1},
    {0x0197, 0x0197, 209, 1}, {0x0198, 0x0198, 1, 1}, {0x019C, 0x019C, 211, 1},
    {0x019D, 0x019D, 213, 1}, {0x019F, 0x019F, 214, 1}, {0x01A0, 0x01A4, 1, 2},
    {0x01A6, 0x01A6, 218, 1}, {0x01A7, 0x01A7, 1, 1}, {0x01A9, 0x01A9, 218, 1},
    {0x01AC, 0x01AC, 1, 1}, {0x01AE, 0x01AE, 218, 1}, {0x01AF, 0x01AF, 1, 1},
    {0x01B1, 0x01B2, 217, 1}, {0x01B3, 0x01B5, 1, 2}, {0x01B7, 0x01B7, 219, 1},
    {0x01B8, 0x01B8, 1, 1}, {0x01BC, 0x01BC, 1, 1}, {0x01C4, 0x01C4, 2, 1}, {0x01C5, 0x01C5, 1, 1},
    {0x01C7, 0x01C7, 2, 1}, {0x01C8, 0x01C8, 1, 1}, {0x01CA, 0x01CA, 2, 1}, {0x01CB, 0x01DB, 1, 2},
    {0x01DE, 0x01EE, 1, 2}, {0x01F1, 0x01F1, 2, 1}, {0x01F2, 0x01F4, 1, 2},
    {0x01F6, 0x01F6, -97, 1}, {0x01F7, 0x01F7, -56, 1}, {0x01F8, 0x021E, 1, 2},
    {0x0220, 0x0220, -130, 1}, {0x0222, 0x0232, 1, 2}, {0x023A, 0x023A, 10795, 1},
    {0x023B, 0x023B, 1, 1}, {0x023D, 0x023D, -163, 1}, {0x023E, 0x023E, 10792, 1},
    {0x0241, 0x0241, 1, 1}, {0x0243, 0x0243, -195, 1}, {0x0244, 0x0244, 69, 1},
    {0x0245, 0x0245, 71, 1}, {0x0246, 0x024E, 1, 2},
    // Greek
    {0x0370, 0x0372, 1, 2}, {0x0376, 0x0376, 1, 1}, {0x037F, 0x037F, 116, 1},
    {0x0386, 0x0386, 38, 1}, {0x0388, 0x038A, 37, 1}, {0x038C, 0x038C, 64, 1},
    {0x038E, 0x038F, 63, 1}, {0x0391, 0x03A1, 32, 1}, {0x03A3, 0x03AB, 32, 1},
    {0x03CF, 0x03CF, 8, 1}, {0x03D8, 0x03EE, 1, 2}, {0x03F4, 0x03F4, -60, 1},
    {0x03F7, 0x03F7, 1, 1}, {0x03F9, 0x03F9, -7, 1}, {0x03FA, 0x03FA, 1, 1},
    {0x03FD, 0x03FF, -130, 1},
    // Cyrillic, Armenian
    {0x0400, 0x040F, 80, 1}, {0x0410, 0x042F, 32, 1}, {0x0460, 0x0480, 1, 2},
    {0x048A, 0x04BE, 1, 2}, {0x04C0, 0x04C0, 15, 1}, {0x04C1, 0x04CD, 1, 2},
    {0x04D0, 0x052E, 1, 2}, {0x0531, 0x0556, 48, 1},
    // Georgian, Cherokee
    {0x10A0, 0x10C5, 7264, 1}, {0x10C7, 0x10C7, 7264, 1}, {0x10CD, 0x10CD, 7264, 1},
    {0x13A0, 0x13EF, 38864, 1}, {0x13F0, 0x13F5, 8, 1}, {0x1C90, 0x1CBA, -3008, 1},
    {0x1CBD, 0x1CBF, -3008, 1},
    // Latin Extended Additional
    {0x1E00, 0x1E94, 1, 2}, {0x1E9E, 0x1E9E, -7615, 1}, {0x1EA0, 0x1EFE, 1, 2},
    // Greek Extended
    {0x1F08, 0x1F0F, -8, 1}, {0x1F18, 0x1F1D, -8, 1}, {0x1F28, 0x1F2F, -8, 1},
    {0x1F38, 0x1F3F, -8, 1}, {0x1F48, 0x1F4D, -8, 1}, {0x1F59, 0x1F5F, -8, 2},
    {0x1F68, 0x1F6F, -8, 1}, {0x1F88, 0x1F8F, -8, 1}, {0x1F98, 0x1F9F, -8, 1},
    {0x1FA8, 0x1FAF, -8, 1}, {0x1FB8, 0x1FB9, -8, 1}, {0x1FBA, 0x1FBB, -74, 1},
    {0x1FBC, 0x1FBC, -9, 1}, {0x1FC8, 0x1FCB, -86, 1}, {0x1FCC, 0x1FCC, -9, 1},
    {0x1FD8, 0x1FD9, -8, 1}, {0x1FDA, 0x1FDB, -100, 1}, {0x1FE8, 0x1FE9, -8, 1},
    {0x1FEA, 0x1FEB, -112, 1}, {0x1FEC, 0x1FEC, -7, 1}, {0x1FF8, 0x1FF9, -128, 1},
    {0x1FFA, 0x1FFB, -126, 1}, {0x1FFC, 0x1FFC, -9, 1},
    // letterlike, number forms, circled letters
    {0x2126, 0x2126, -7517, 1}, {0x212A, 0x212A, -8383, 1}, {0x212B, 0x212B, -8262, 1},
    {0x2132, 0x2132, 28, 1}, {0x2160, 0x216F, 16, 1}, {0x2183, 0x2183, 1, 1},
    {0x24B6, 0x24CF, 26, 1},
    // Glagolitic, Latin Extended-C, Coptic
    {0x2C00, 0x2C2F, 48, 1}, {0x2C60, 0x2C60, 1, 1}, {0x2C62, 0x2C62, -10743, 1},
    {0x2C63, 0x2C63, -3814, 1}, {0x2C64, 0x2C64, -10727, 1}, {0x2C67, 0x2C6B, 1, 2},
    {0x2C6D, 0x2C6D, -10780, 1}, {0x2C6E, 0x2C6E, -10749, 1}, {0x2C6F, 0x2C6F, -10783, 1},
    {0x2C70, 0x2C70, -10782, 1}, {0x2C72, 0x2C72, 1, 1}, {0x2C75, 0x2C75, 1, 1},
    {0x2C7E, 0x2C7F, -10815, 1}, {0x2C80, 0x2CE2, 1, 2}, {0x2CEB, 0x2CED, 1, 2},
    {0x2CF2, 0x2CF2, 1, 1},
    // Cyrillic Extended-B, Latin Extended-D
    {0xA640, 0xA66C, 1, 2}, {0xA680, 0xA69A, 1, 2}, {0xA722, 0xA72E, 1, 2},
    {0xA732, 0xA76E, 1, 2}, {0xA779, 0xA77B, 1, 2}, {0xA77D, 0xA77D, -35332, 1},
    {0xA77E, 0xA786, 1, 2}, {0xA78B, 0xA78B, 1, 1}, {0xA78D, 0xA78D, -42280, 1},
    {0xA790, 0xA792, 1, 2}, {0xA796, 0xA7A8, 1, 2}, {0xA7AA, 0xA7AA, -42308, 1},
    {0xA7AB, 0xA7AB, -42319, 1}, {0xA7AC, 0xA7AC, -42315, 1}, {0xA7AD, 0xA7AD, -42305, 1},
    {0xA7AE, 0xA7AE, -42308, 1}, {0xA7B0, 0xA7B0, -42258, 1}, {0xA7B1, 0xA7B1, -42282, 1},
    {0xA7B2, 0xA7B2, -42261, 1}, {0xA7B3, 0xA7B3, 928, 1}, {0xA7B4, 0xA7C2, 1, 2},
    {0xA7C4, 0xA7C4, -48, 1}, {0xA7C5, 0xA7C5, -42307, 1}, {0xA7C6, 0xA7C6, -35384, 1},
    {0xA7C7, 0xA7C9, 1, 2}, {0xA7D0, 0xA7D0, 1, 1}, {0xA7D6, 0xA7D8, 1, 2},
    {0xA7F5, 0xA7F5, 1, 1},
    // fullwidth Latin, Deseret, Osage, Old Hungarian, Warang Citi, Medefaidrin, Adlam
    {0xFF21, 0xFF3A, 32, 1}, {0x10400, 0x10427, 40, 1}, {0x104B0, 0x104D3, 40, 1},
    {0x10570, 0x1057A, 39, 1}, {0x1057C, 0x1058A, 39, 1}, {0x1058C, 0x10592, 39, 1},
    {0x10594, 0x10595, 39, 1}, {0x10C80, 0x10CB2, 64, 1}, {0x118A0, 0x118BF, 32, 1}, {0x16E40, 0x16E5F, 32, 1},
    {0x1E900, 0x1E921, 34, 1},
};

char32_t lower_char(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const auto* end = std::end(kLowerRanges);
  const auto* it = std::upper_bound(std::begin(kLowerRanges), end, c,
                                    [](char32_t v, const LowerRange& r) { return v < r.lo; });
  if (it == std::begin(kLowerRanges)) return c;
  --it;
  if (c > it->hi || (c - it->lo) % it->step != 0) return c;
  return static_cast<char32_t>(static_cast<int32_t>(c) + it->delta);
}

// Unicode's Cased and Case_Ignorable properties, used only for the final-sigma rule of
// str.lower(). Both were checked for every code point by probing Python 3.11's str.lower()
// (Unicode 14) around a Σ.
struct CharRange {
  char32_t lo, hi;
};

constexpr CharRange kCased[] = {
    {0x0041, 0x005A}, {0x0061, 0x007A}, {0x00AA, 0x00AA}, {0x00B5, 0x00B5}, {0x00BA, 0x00BA},
    {0x00C0, 0x00D6}, {0x00D8, 0x00F6}, {0x00F8, 0x01BA}, {0x01BC, 0x01BF}, {0x01C4, 0x0293},
    {0x0295, 0x02AF}, {0x0370, 0x0373}, {0x0376, 0x0377}, {0x037B, 0x037D}, {0x037F, 0x037F},
    {0x0386, 0x0386}, {0x0388, 0x038A}, {0x038C, 0x038C}, {0x038E, 0x03A1}, {0x03A3, 0x03F5},
    {0x03F7, 0x0481}, {0x048A, 0x052F}, {0x0531, 0x0556}, {0x0560, 0x0588}, {0x10A0, 0x10C5},
    {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FD, 0x10FF}, {0x13A0, 0x13F5},
    {0x13F8, 0x13FD}, {0x1C80, 0x1C88}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B},
    {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4},
    {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D},
    {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E},
    {0x2160, 0x217F}, {0x2183, 0x2184}, {0x24B6, 0x24E9}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4},
    {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D},
    {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E},
    {0xA790, 0xA7CA}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7D9}, {0xA7F5, 0xA7F6},
    {0xA7FA, 0xA7FA}, {0xAB30, 0xAB5A}, {0xAB60, 0xAB68}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06},
    {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10570, 0x1057A}, {0x1057C, 0x1058A}, {0x1058C, 0x10592}, {0x10594, 0x10595},
    {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9}, {0x105BB, 0x105BC}, {0x10C80, 0x10CB2},
    {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x16E40, 0x16E7F}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C},
    {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A}, {0x1D50D, 0x1D514},
    {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544}, {0x1D546, 0x1D546},
    {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5}, {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA},
    {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788},
    {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF09}, {0x1DF0B, 0x1DF1E},
    {0x1E900, 0x1E943}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};

constexpr CharRange kCaseIgnorable[] = {
    {0x0027, 0x0027}, {0x002E, 0x002E}, {0x003A, 0x003A}, {0x005E, 0x005E}, {0x0060, 0x0060},
    {0x00A8, 0x00A8}, {0x00AD, 0x00AD}, {0x00AF, 0x00AF}, {0x00B4, 0x00B4}, {0x00B7, 0x00B8},
    {0x02B0, 0x036F}, {0x0374, 0x0375}, {0x037A, 0x037A}, {0x0384, 0x0385}, {0x0387, 0x0387},
    {0x0483, 0x0489}, {0x0559, 0x0559}, {0x055F, 0x055F}, {0x0591, 0x05BD}, {0x05BF, 0x05BF},
    {0x05C1, 0x05C2}, {0x05C4, 0x05C5}, {0x05C7, 0x05C7}, {0x05F4, 0x05F4}, {0x0600, 0x0605},
    {0x0610, 0x061A}, {0x061C, 0x061C}, {0x0640, 0x0640}, {0x064B, 0x065F}, {0x0670, 0x0670},
    {0x06D6, 0x06DD}, {0x06DF, 0x06E8}, {0x06EA, 0x06ED}, {0x070F, 0x070F}, {0x0711, 0x0711},
    {0x0730, 0x074A}, {0x07A6, 0x07B0}, {0x07EB, 0x07F5}, {0x07FA, 0x07FA}, {0x07FD, 0x07FD},
    {0x0816, 0x082D}, {0x0859, 0x085B}, {0x0888, 0x0888}, {0x0890, 0x0891}, {0x0898, 0x089F},
    {0x08C9, 0x0902}, {0x093A, 0x093A}, {0x093C, 0x093C}, {0x0941, 0x0948}, {0x094D, 0x094D},
    {0x0951, 0x0957}, {0x0962, 0x0963}, {0x0971, 0x0971}, {0x0981, 0x0981}, {0x09BC, 0x09BC},
    {0x09C1, 0x09C4}, {0x09CD, 0x09CD}, {0x09E2, 0x09E3}, {0x09FE, 0x09FE}, {0x0A01, 0x0A02},
    {0x0A3C, 0x0A3C}, {0x0A41, 0x0A42}, {0x0A47, 0x0A48}, {0x0A4B, 0x0A4D}, {0x0A51, 0x0A51},
    {0x0A70, 0x0A71}, {0x0A75, 0x0A75}, {0x0A81, 0x0A82}, {0x0ABC, 0x0ABC}, {0x0AC1, 0x0AC5},
    {0x0AC7, 0x0AC8}, {0x0ACD, 0x0ACD}, {0x0AE2, 0x0AE3}, {0x0AFA, 0x0AFF}, {0x0B01, 0x0B01},
    {0x0B3C, 0x0B3C}, {0x0B3F, 0x0B3F}, {0x0B41, 0x0B44}, {0x0B4D, 0x0B4D}, {0x0B55, 0x0B56},
    {0x0B62, 0x0B63}, {0x0B82, 0x0B82}, {0x0BC0, 0x0BC0}, {0x0BCD, 0x0BCD}, {0x0C00, 0x0C00},
    {0x0C04, 0x0C04}, {0x0C3C, 0x0C3C}, {0x0C3E, 0x0C40}, {0x0C46, 0x0C48}, {0x0C4A, 0x0C4D},
    {0x0C55, 0x0C56}, {0x0C62, 0x0C63}, {0x0C81, 0x0C81}, {0x0CBC, 0x0CBC}, {0x0CBF, 0x0CBF},
    {0x0CC6, 0x0CC6}, {0x0CCC, 0x0CCD}, {0x0CE2, 0x0CE3}, {0x0D00, 0x0D01}, {0x0D3B, 0x0D3C},
    {0x0D41, 0x0D44}, {0x0D4D, 0x0D4D}, {0x0D62, 0x0D63}, {0x0D81, 0x0D81}, {0x0DCA, 0x0DCA},
    {0x0DD2, 0x0DD4}, {0x0DD6, 0x0DD6}, {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E46, 0x0E4E},
    {0x0EB1, 0x0EB1}, {0x0EB4, 0x0EBC}, {0x0EC6, 0x0EC6}, {0x0EC8, 0x0ECD}, {0x0F18, 0x0F19},
    {0x0F35, 0x0F35}, {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F71, 0x0F7E}, {0x0F80, 0x0F84},
    {0x0F86, 0x0F87}, {0x0F8D, 0x0F97}, {0x0F99, 0x0FBC}, {0x0FC6, 0x0FC6}, {0x102D, 0x1030},
    {0x1032, 0x1037}, {0x1039, 0x103A}, {0x103D, 0x103E}, {0x1058, 0x1059}, {0x105E, 0x1060},
    {0x1071, 0x1074}, {0x1082, 0x1082}, {0x1085, 0x1086}, {0x108D, 0x108D}, {0x109D, 0x109D},
    {0x10FC, 0x10FC}, {0x135D, 0x135F}, {0x1712, 0x1714}, {0x1732, 0x1733}, {0x1752, 0x1753},
    {0x1772, 0x1773}, {0x17B4, 0x17B5}, {0x17B7, 0x17BD}, {0x17C6, 0x17C6}, {0x17C9, 0x17D3},
    {0x17D7, 0x17D7}, {0x17DD, 0x17DD}, {0x180B, 0x180F}, {0x1843, 0x1843}, {0x1885, 0x1886},
    {0x18A9, 0x18A9}, {0x1920, 0x1922}, {0x1927, 0x1928}, {0x1932, 0x1932}, {0x1939, 0x193B},
    {0x1A17, 0x1A18}, {0x1A1B, 0x1A1B}, {0x1A56, 0x1A56}, {0x1A58, 0x1A5E}, {0x1A60, 0x1A60},
    {0x1A62, 0x1A62}, {0x1A65, 0x1A6C}, {0x1A73, 0x1A7C}, {0x1A7F, 0x1A7F}, {0x1AA7, 0x1AA7},
    {0x1AB0, 0x1ACE}, {0x1B00, 0x1B03}, {0x1B34, 0x1B34}, {0x1B36, 0x1B3A}, {0x1B3C, 0x1B3C},
    {0x1B42, 0x1B42}, {0x1B6B, 0x1B73}, {0x1B80, 0x1B81}, {0x1BA2, 0x1BA5}, {0x1BA8, 0x1BA9},
    {0x1BAB, 0x1BAD}, {0x1BE6, 0x1BE6}, {0x1BE8, 0x1BE9}, {0x1BED, 0x1BED}, {0x1BEF, 0x1BF1},
    {0x1C2C, 0x1C33}, {0x1C36, 0x1C37}, {0x1C78, 0x1C7D}, {0x1CD0, 0x1CD2}, {0x1CD4, 0x1CE0},
    {0x1CE2, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF8, 0x1CF9}, {0x1D2C, 0x1D6A},
    {0x1D78, 0x1D78}, {0x1D9B, 0x1DFF}, {0x1FBD, 0x1FBD}, {0x1FBF, 0x1FC1}, {0x1FCD, 0x1FCF},
    {0x1FDD, 0x1FDF}, {0x1FED, 0x1FEF}, {0x1FFD, 0x1FFE}, {0x200B, 0x200F}, {0x2018, 0x2019},
    {0x2024, 0x2024}, {0x2027, 0x2027}, {0x202A, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F},
    {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x20D0, 0x20F0}, {0x2C7C, 0x2C7D},
    {0x2CEF, 0x2CF1}, {0x2D6F, 0x2D6F}, {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF}, {0x2E2F, 0x2E2F},
    {0x3005, 0x3005}, {0x302A, 0x302D}, {0x3031, 0x3035}, {0x303B, 0x303B}, {0x3099, 0x309E},
    {0x30FC, 0x30FE}, {0xA015, 0xA015}, {0xA4F8, 0xA4FD}, {0xA60C, 0xA60C}, {0xA66F, 0xA672},
    {0xA674, 0xA67D}, {0xA67F, 0xA67F}, {0xA69C, 0xA69F}, {0xA6F0, 0xA6F1}, {0xA700, 0xA721},
    {0xA770, 0xA770}, {0xA788, 0xA78A}, {0xA7F2, 0xA7F4}, {0xA7F8, 0xA7F9}, {0xA802, 0xA802},
    {0xA806, 0xA806}, {0xA80B, 0xA80B}, {0xA825, 0xA826}, {0xA82C, 0xA82C}, {0xA8C4, 0xA8C5},
    {0xA8E0, 0xA8F1}, {0xA8FF, 0xA8FF}, {0xA926, 0xA92D}, {0xA947, 0xA951}, {0xA980, 0xA982},
    {0xA9B3, 0xA9B3}, {0xA9B6, 0xA9B9}, {0xA9BC, 0xA9BD}, {0xA9CF, 0xA9CF}, {0xA9E5, 0xA9E6},
    {0xAA29, 0xAA2E}, {0xAA31, 0xAA32}, {0xAA35, 0xAA36}, {0xAA43, 0xAA43}, {0xAA4C, 0xAA4C},
    {0xAA70, 0xAA70}, {0xAA7C, 0xAA7C}, {0xAAB0, 0xAAB0}, {0xAAB2, 0xAAB4}, {0xAAB7, 0xAAB8},
    {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1}, {0xAADD, 0xAADD}, {0xAAEC, 0xAAED}, {0xAAF3, 0xAAF4},
    {0xAAF6, 0xAAF6}, {0xAB5B, 0xAB5F}, {0xAB69, 0xAB6B}, {0xABE5, 0xABE5}, {0xABE8, 0xABE8},
    {0xABED, 0xABED}, {0xFB1E, 0xFB1E}, {0xFBB2, 0xFBC2}, {0xFE00, 0xFE0F}, {0xFE13, 0xFE13},
    {0xFE20, 0xFE2F}, {0xFE52, 0xFE52}, {0xFE55, 0xFE55}, {0xFEFF, 0xFEFF}, {0xFF07, 0xFF07},
    {0xFF0E, 0xFF0E}, {0xFF1A, 0xFF1A}, {0xFF3E, 0xFF3E}, {0xFF40, 0xFF40}, {0xFF70, 0xFF70},
    {0xFF9E, 0xFF9F}, {0xFFE3, 0xFFE3}, {0xFFF9, 0xFFFB}, {0x101FD, 0x101FD}, {0x102E0, 0x102E0},
    {0x10376, 0x1037A}, {0x10780, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10A01, 0x10A03},
    {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F}, {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6},
    {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11001, 0x11001},
    {0x11038, 0x11046}, {0x11070, 0x11070}, {0x11073, 0x11074}, {0x1107F, 0x11081}, {0x110B3, 0x110B6},
    {0x110B9, 0x110BA}, {0x110BD, 0x110BD}, {0x110C2, 0x110C2}, {0x110CD, 0x110CD}, {0x11100, 0x11102},
    {0x11127, 0x1112B}, {0x1112D, 0x11134}, {0x11173, 0x11173}, {0x11180, 0x11181}, {0x111B6, 0x111BE},
    {0x111C9, 0x111CC}, {0x111CF, 0x111CF}, {0x1122F, 0x11231}, {0x11234, 0x11234}, {0x11236, 0x11237},
    {0x1123E, 0x1123E}, {0x112DF, 0x112DF}, {0x112E3, 0x112EA}, {0x11300, 0x11301}, {0x1133B, 0x1133C},
    {0x11340, 0x11340}, {0x11366, 0x1136C}, {0x11370, 0x11374}, {0x11438, 0x1143F}, {0x11442, 0x11444},
    {0x11446, 0x11446}, {0x1145E, 0x1145E}, {0x114B3, 0x114B8}, {0x114BA, 0x114BA}, {0x114BF, 0x114C0},
    {0x114C2, 0x114C3}, {0x115B2, 0x115B5}, {0x115BC, 0x115BD}, {0x115BF, 0x115C0}, {0x115DC, 0x115DD},
    {0x11633, 0x1163A}, {0x1163D, 0x1163D}, {0x1163F, 0x11640}, {0x116AB, 0x116AB}, {0x116AD, 0x116AD},
    {0x116B0, 0x116B5}, {0x116B7, 0x116B7}, {0x1171D, 0x1171F}, {0x11722, 0x11725}, {0x11727, 0x1172B},
    {0x1182F, 0x11837}, {0x11839, 0x1183A}, {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11943},
    {0x119D4, 0x119D7}, {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38},
    {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A56}, {0x11A59, 0x11A5B}, {0x11A8A, 0x11A96},
    {0x11A98, 0x11A99}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D}, {0x11C3F, 0x11C3F}, {0x11C92, 0x11CA7},
    {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A},
    {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91}, {0x11D95, 0x11D95},
    {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4}, {0x13430, 0x13438}, {0x16AF0, 0x16AF4}, {0x16B30, 0x16B36},
    {0x16B40, 0x16B43}, {0x16F4F, 0x16F4F}, {0x16F8F, 0x16F9F}, {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE4},
    {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1BC9D, 0x1BC9E}, {0x1BCA0, 0x1BCA3},
    {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1D167, 0x1D169}, {0x1D173, 0x1D182}, {0x1D185, 0x1D18B},
    {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244}, {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75},
    {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018},
    {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E130, 0x1E13D}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E8D0, 0x1E8D6}, {0x1E944, 0x1E94B}, {0x1F3FB, 0x1F3FF}, {0xE0001, 0xE0001},
    {0xE0020, 0xE007F}, {0xE0100, 0xE01EF},
};

template <size_t N>
bool in_ranges(const CharRange (&table)[N], char32_t c) {
  const auto* it = std::upper_bound(std::begin(table), std::end(table), c,
                                    [](char32_t v, const CharRange& r) { return v < r.lo; });
  return it != std::begin(table) && c <= (it - 1)->hi;
}

bool is_cased(char32_t c) { return in_ranges(kCased, c); }
bool is_case_ignorable(char32_t c) { return in_ranges(kCaseIgnorable, c); }

// Python's str.lower() on the whole text, including the two context-dependent rules:
// İ → "i̇" and Σ → ς at the end of a word (CPython's handle_capital_sigma).
std::u32string lower_text(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x0130) {
      out += U'i';
      out += char32_t{0x0307};
    } else if (c == 0x03A3) {
      size_t j = i;
      while (j > 0 && is_case_ignorable(s[j - 1])) --j;
      bool final_sigma = j > 0 && is_cased(s[j - 1]);
      if (final_sigma) {
        size_t k = i + 1;
        while (k < s.size() && is_case_ignorable(s[k])) ++k;
        final_sigma = k == s.size() || !is_cased(s[k]);
      }
      out += final_sigma ? char32_t{0x03C2} : char32_t{0x03C3};
    } else {
      out += lower_char(c);
    }
  }
  return out;
}

// ============================================================================================
// 2. html.unescape (Python's html module)
// ============================================================================================

struct Entity {
  const char* name;
  char32_t cp;
  bool legacy;  // also recognised without the ';' (the HTML5 legacy set)
};

// HTML 4 (Latin-1, special, symbols + Greek) and a few common HTML5 names. Values as in
// HTML5 (e.g. lang/rang are U+27E8/U+27E9).
constexpr Entity kEntities[] = {
    {"AElig", 198, true}, {"AMP", 38, true}, {"Aacute", 193, true}, {"Acirc", 194, true},
    {"Agrave", 192, true}, {"Alpha", 913, false}, {"Aring", 197, true}, {"Atilde", 195, true},
    {"Auml", 196, true}, {"Beta", 914, false}, {"COPY", 169, true}, {"Ccedil", 199, true},
    {"Chi", 935, false}, {"Dagger", 8225, false}, {"Delta", 916, false}, {"ETH", 208, true},
    {"Eacute", 201, true}, {"Ecirc", 202, true}, {"Egrave", 200, true}, {"Epsilon", 917, false},
    {"Eta", 919, false}, {"Euml", 203, true}, {"GT", 62, true}, {"Gamma", 915, false},
    {"Iacute", 205, true}, {"Icirc", 206, true}, {"Igrave", 204, true}, {"Iota", 921, false},
    {"Iuml", 207, true}, {"Kappa", 922, false}, {"LT", 60, true}, {"Lambda", 923, false},
    {"Mu", 924, false}, {"NewLine", 10, false}, {"Ntilde", 209, true}, {"Nu", 925, false},
    {"OElig", 338, false}, {"Oacute", 211, true}, {"Ocirc", 212, true}, {"Ograve", 210, true},
    {"Omega", 937, false}, {"Omicron", 927, false}, {"Oslash", 216, true}, {"Otilde", 213, true},
    {"Ouml", 214, true}, {"Phi", 934, false}, {"Pi", 928, false}, {"Prime", 8243, false},
    {"Psi", 936, false}, {"QUOT", 34, true}, {"REG", 174, true}, {"Rho", 929, false},
    {"Scaron", 352, false}, {"Sigma", 931, false}, {"THORN", 222, true}, {"Tab", 9, false},
    {"Tau", 932, false}, {"Theta", 920, false}, {"Uacute", 218, true}, {"Ucirc", 219, true},
    {"Ugrave", 217, true}, {"Upsilon", 933, false}, {"Uuml", 220, true}, {"Xi", 926, false},
    {"Yacute", 221, true}, {"Yuml", 376, false}, {"Zeta", 918, false}, {"aacute", 225, true},
    {"acirc", 226, true}, {"acute", 180, true}, {"aelig", 230, true}, {"agrave", 224, true},
    {"alefsym", 8501, false}, {"alpha", 945, false}, {"amp", 38, true}, {"and", 8743, false},
    {"ang", 8736, false}, {"apos", 39, false}, {"aring", 229, true}, {"ast", 42, false},
    {"asymp", 8776, false}, {"atilde", 227, true}, {"auml", 228, true}, {"bdquo", 8222, false},
    {"beta", 946, false}, {"brvbar", 166, true}, {"bsol", 92, false}, {"bull", 8226, false},
    {"cap", 8745, false}, {"ccedil", 231, true}, {"cedil", 184, true}, {"cent", 162, true},
    {"check", 10003, false}, {"chi", 967, false}, {"circ", 710, false}, {"clubs", 9827, false},
    {"colon", 58, false}, {"comma", 44, false}, {"commat", 64, false}, {"cong", 8773, false},
    {"copy", 169, true}, {"crarr", 8629, false}, {"cup", 8746, false}, {"curren", 164, true},
    {"dArr", 8659, false}, {"dagger", 8224, false}, {"darr", 8595, false}, {"deg", 176, true},
    {"delta", 948, false}, {"diams", 9830, false}, {"divide", 247, true}, {"dollar", 36, false},
    {"eacute", 233, true}, {"ecirc", 234, true}, {"egrave", 232, true}, {"empty", 8709, false},
    {"emsp", 8195, false}, {"ensp", 8194, false}, {"epsilon", 949, false}, {"equals", 61, false},
    {"equiv", 8801, false}, {"eta", 951, false}, {"eth", 240, true}, {"euml", 235, true},
    {"euro", 8364, false}, {"excl", 33, false}, {"exist", 8707, false}, {"fnof", 402, false},
    {"forall", 8704, false}, {"frac12", 189, true}, {"frac14", 188, true}, {"frac34", 190, true},
    {"frasl", 8260, false}, {"gamma", 947, false}, {"ge", 8805, false}, {"grave", 96, false},
    {"gt", 62, true}, {"hArr", 8660, false}, {"harr", 8596, false}, {"hearts", 9829, false},
    {"hellip", 8230, false}, {"hyphen", 8208, false}, {"iacute", 237, true}, {"icirc", 238, true},
    {"iexcl", 161, true}, {"igrave", 236, true}, {"image", 8465, false}, {"infin", 8734, false},
    {"int", 8747, false}, {"iota", 953, false}, {"iquest", 191, true}, {"isin", 8712, false},
    {"iuml", 239, true}, {"kappa", 954, false}, {"lArr", 8656, false}, {"lambda", 955, false},
    {"lang", 10216, false}, {"laquo", 171, true}, {"larr", 8592, false}, {"lceil", 8968, false},
    {"lcub", 123, false}, {"ldquo", 8220, false}, {"le", 8804, false}, {"lfloor", 8970, false},
    {"lowast", 8727, false}, {"lowbar", 95, false}, {"loz", 9674, false}, {"lpar", 40, false},
    {"lrm", 8206, false}, {"lsaquo", 8249, false}, {"lsqb", 91, false}, {"lsquo", 8216, false},
    {"lt", 60, true}, {"macr", 175, true}, {"mdash", 8212, false}, {"micro", 181, true},
    {"middot", 183, true}, {"minus", 8722, false}, {"mu", 956, false}, {"nabla", 8711, false},
    {"nbsp", 160, true}, {"ndash", 8211, false}, {"ne", 8800, false}, {"ni", 8715, false},
    {"not", 172, true}, {"notin", 8713, false}, {"nsub", 8836, false}, {"ntilde", 241, true},
    {"nu", 957, false}, {"num", 35, false}, {"oacute", 243, true}, {"ocirc", 244, true},
    {"oelig", 339, false}, {"ograve", 242, true}, {"oline", 8254, false}, {"omega", 969, false},
    {"omicron", 959, false}, {"oplus", 8853, false}, {"or", 8744, false}, {"ordf", 170, true},
    {"ordm", 186, true}, {"oslash", 248, true}, {"otilde", 245, true}, {"otimes", 8855, false},
    {"ouml", 246, true}, {"para", 182, true}, {"part", 8706, false}, {"percnt", 37, false},
    {"period", 46, false}, {"permil", 8240, false}, {"perp", 8869, false}, {"phi", 966, false},
    {"pi", 960, false}, {"piv", 982, false}, {"plus", 43, false}, {"plusmn", 177, true},
    {"pound", 163, true}, {"prime", 8242, false}, {"prod", 8719, false}, {"prop", 8733, false},
    {"psi", 968, false}, {"quest", 63, false}, {"quot", 34, true}, {"rArr", 8658, false},
    {"radic", 8730, false}, {"rang", 10217, false}, {"raquo", 187, true}, {"rarr", 8594, false},
    {"rceil", 8969, false}, {"rcub", 125, false}, {"rdquo", 8221, false}, {"real", 8476, false},
    {"reg", 174, true}, {"rfloor", 8971, false}, {"rho", 961, false}, {"rlm", 8207, false},
    {"rpar", 41, false}, {"rsaquo", 8250, false}, {"rsqb", 93, false}, {"rsquo", 8217, false},
    {"sbquo", 8218, false}, {"scaron", 353, false}, {"sdot", 8901, false}, {"sect", 167, true},
    {"semi", 59, false}, {"shy", 173, true}, {"sigma", 963, false}, {"sigmaf", 962, false},
    {"sim", 8764, false}, {"sol", 47, false}, {"spades", 9824, false}, {"star", 9734, false},
    {"starf", 9733, false}, {"sub", 8834, false}, {"sube", 8838, false}, {"sum", 8721, false},
    {"sup", 8835, false}, {"sup1", 185, true}, {"sup2", 178, true}, {"sup3", 179, true},
    {"supe", 8839, false}, {"szlig", 223, true}, {"tau", 964, false}, {"there4", 8756, false},
    {"theta", 952, false}, {"thetasym", 977, false}, {"thinsp", 8201, false}, {"thorn", 254, true},
    {"tilde", 732, false}, {"times", 215, true}, {"trade", 8482, false}, {"uArr", 8657, false},
    {"uacute", 250, true}, {"uarr", 8593, false}, {"ucirc", 251, true}, {"ugrave", 249, true},
    {"uml", 168, true}, {"upsih", 978, false}, {"upsilon", 965, false}, {"uuml", 252, true},
    {"verbar", 124, false}, {"vert", 124, false}, {"weierp", 8472, false}, {"xi", 958, false},
    {"yacute", 253, true}, {"yen", 165, true}, {"yuml", 255, true}, {"zeta", 950, false},
    {"zwj", 8205, false}, {"zwnj", 8204, false},
};

// The entity for `name` (without '&'; with_semicolon says whether a ';' followed), or null.
const Entity* find_entity(std::u32string_view name, bool with_semicolon) {
  std::string ascii;
  for (char32_t c : name) {
    if (c >= 0x80) return nullptr;
    ascii += static_cast<char>(c);
  }
  static const std::unordered_map<std::string, const Entity*> table = [] {
    std::unordered_map<std::string, const Entity*> t;
    for (const Entity& e : kEntities) t.emplace(e.name, &e);
    return t;
  }();
  auto found = table.find(ascii);
  if (found == table.end()) return nullptr;
  const Entity* it = found->second;
  return (with_semicolon || it->legacy) ? it : nullptr;
}

// The replacement of a numeric character reference, as html._replace_charref.
void append_numeric_charref(std::u32string& out, uint64_t num) {
  // Windows-1252 for the C1 range (the HTML5 "invalid charrefs" table).
  static constexpr char32_t kC1[32] = {
      0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  if (num == 0x00) return void(out += kReplacement);
  if (num == 0x0D) return void(out += U'\r');
  if (num >= 0x80 && num <= 0x9F) return void(out += kC1[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return void(out += kReplacement);
  const bool invalid = (num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
                       (num >= 0x7F && num <= 0x9F) || (num >= 0xFDD0 && num <= 0xFDEF) ||
                       (num & 0xFFFE) == 0xFFFE;
  if (!invalid) out += static_cast<char32_t>(num);
}

// Python's html.unescape: &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
std::u32string html_unescape(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out += s[i++];
      continue;
    }
    const size_t start = i + 1;
    // numeric
    if (start < n && s[start] == U'#') {
      const bool hex = start + 1 < n && (s[start + 1] == U'x' || s[start + 1] == U'X');
      size_t k = start + (hex ? 2 : 1);
      const size_t digits_begin = k;
      uint64_t num = 0;
      auto digit = [&](char32_t c) -> int {
        if (c >= U'0' && c <= U'9') return static_cast<int>(c - U'0');
        if (hex && c >= U'a' && c <= U'f') return static_cast<int>(c - U'a' + 10);
        if (hex && c >= U'A' && c <= U'F') return static_cast<int>(c - U'A' + 10);
        return -1;
      };
      while (k < n && digit(s[k]) >= 0) {
        num = std::min<uint64_t>(num * (hex ? 16 : 10) + static_cast<uint64_t>(digit(s[k])), uint64_t{1} << 40);
        ++k;
      }
      if (k > digits_begin) {
        if (k < n && s[k] == U';') ++k;
        append_numeric_charref(out, num);
        i = k;
        continue;
      }
      // "&#" without digits: '#' is excluded from names, so no match here
      out += s[i++];
      continue;
    }
    // named: up to 32 characters other than \t \n \f space < & # ;
    size_t k = start;
    while (k < n && k - start < 32) {
      const char32_t c = s[k];
      if (c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';')
        break;
      ++k;
    }
    if (k == start) {
      out += s[i++];
      continue;
    }
    const bool semicolon = k < n && s[k] == U';';
    const size_t match_end = semicolon ? k + 1 : k;
    const std::u32string_view name(s.data() + start, k - start);
    if (const Entity* e = find_entity(name, semicolon)) {
      out += e->cp;
    } else {
      // the longest legacy name that is a prefix (of length >= 2, shorter than the match)
      const size_t match_len = match_end - start;
      bool found = false;
      for (size_t len = std::min(match_len - 1, name.size()); len >= 2; --len) {
        if (const Entity* p = find_entity(name.substr(0, len), false)) {
          out += p->cp;
          out.append(s, start + len, match_end - (start + len));
          found = true;
          break;
        }
      }
      if (!found) out.append(s, i, match_end - i);
    }
    i = match_end;
  }
  return out;
}

// ============================================================================================
// 3. clean_text and the pre-tokeniser
// ============================================================================================

// html.unescape twice, whitespace_clean (\s+ → ' ', strip), lower(): OpenCLIP's _clean_lower
// without ftfy.fix_text.
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

constexpr std::string_view kSot = "<start_of_text>";
constexpr std::string_view kEot = "<end_of_text>";

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

// ============================================================================================
// 4. bytes_to_unicode and merges files
// ============================================================================================

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

const ByteUnicode& byte_unicode() {
  static const ByteUnicode table;
  return table;
}

std::string errno_text() { return std::strerror(errno); }

// "1 GiB", "64 MiB", or the byte count when it is not a whole number of MiB.
std::string size_text(uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

// Whole file through zlib: gzip is decompressed, anything else is read as is. At most
// max_bytes are kept, counted after decompression: a few KiB of gzip can expand to gigabytes,
// and /dev/zero never ends, so the cap is checked as the data arrives, not from the file's size.
std::string read_maybe_gzip(const std::string& path, const std::string& what, uint64_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(what + " '" + path + "' not found");
  if (std::filesystem::is_directory(path, ec)) throw Error(what + " '" + path + "' is a directory");
  errno = 0;
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open " + what + " '" + path + "': " + (errno ? errno_text() : "out of memory"));
  std::string data;
  std::vector<char> buf(1 << 18);
  for (;;) {
    const int got = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (got < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      throw Error(what + " '" + path + "' is corrupt (gzip: " + msg + ")");
    }
    if (got == 0) break;
    data.append(buf.data(), static_cast<size_t>(got));
    if (data.size() > max_bytes) {
      gzclose(f);
      throw Error(what + " '" + path + "' holds more than " + size_text(max_bytes) +
                  " (counted after gzip decompression), the limit for a " + what + "; is this the right file?");
    }
  }
  const int rc = gzclose(f);
  if (rc == Z_BUF_ERROR) throw Error(what + " '" + path + "' is corrupt (gzip: truncated stream)");
  if (rc != Z_OK) throw Error(what + " '" + path + "' could not be read (gzip error " + std::to_string(rc) + ")");
  return data;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void write_maybe_gzip(const std::string& path, const std::string& data) {
  if (ends_with(path, ".gz")) {
    errno = 0;
    gzFile f = gzopen(path.c_str(), "wb9");
    if (!f) throw Error("cannot write '" + path + "': " + (errno ? errno_text() : "out of memory"));
    size_t done = 0;
    while (done < data.size()) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(data.size() - done, 1 << 20));
      if (gzwrite(f, data.data() + done, chunk) != static_cast<int>(chunk)) {
        int code = 0;
        const std::string msg = gzerror(f, &code);
        gzclose(f);
        throw Error("cannot write '" + path + "': " + msg);
      }
      done += chunk;
    }
    if (gzclose(f) != Z_OK) throw Error("cannot write '" + path + "': error closing the gzip stream");
    return;
  }
  errno = 0;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error("cannot write '" + path + "': " + errno_text());
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  if (std::fclose(f) != 0 || !ok) throw Error("cannot write '" + path + "': " + errno_text());
}

constexpr int64_t kStandardMergeLines = 262144;                  // bpe_simple_vocab_16e6.txt
constexpr int64_t kOpenClipMerges = 49152 - 256 - 2;            // merges[1 : 49152-256-2+1]

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

// ============================================================================================
// 5. Tokenizer
// ============================================================================================

struct Tokenizer::Impl {
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  std::vector<std::string> decoder;                       // id → spelling
  std::unordered_map<std::string, int32_t> encoder;       // spelling → id (later ids win)
  std::unordered_map<uint64_t, Merge> merges;             // (left id, right id) → rank, result
  std::array<int32_t, 256> byte_id{};                     // byte → id of its symbol
  int64_t num_merges = 0;
  int32_t sot = 0, eot = 0;

  static constexpr size_t kCacheLimit = 1 << 18;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  // BPE of one pre-token (its UTF-8 bytes), appended to out.
  void bpe(const std::string& piece, std::vector<int32_t>& out) const;
  std::vector<int32_t> encode(const std::string& text) const;
};

void Tokenizer::Impl::bpe(const std::string& piece, std::vector<int32_t>& out) const {
  if (piece == kSot) return out.push_back(sot);
  if (piece == kEot) return out.push_back(eot);
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(piece);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) word[i] = byte_id[static_cast<unsigned char>(piece[i])];
  word.back() += 256;  // the "</w>" form of the last symbol
  while (word.size() > 1) {
    // the adjacent pair with the lowest rank
    int32_t best_rank = INT32_MAX;
    Merge best{};
    int32_t first = 0, second = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merges.find(pair_key(word[i], word[i + 1]));
      if (it != merges.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best = it->second;
        first = word[i];
        second = word[i + 1];
      }
    }
    if (best_rank == INT32_MAX) break;
    // merge every occurrence, left to right
    size_t w = 0;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        word[w++] = best.result;
        i += 2;
      } else {
        word[w++] = word[i++];
      }
    }
    word.resize(w);
  }
  out.insert(out.end(), word.begin(), word.end());
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() >= kCacheLimit) cache.clear();
  cache.emplace(piece, std::move(word));
}

std::vector<int32_t> Tokenizer::Impl::encode(const std::string& text) const {
  const std::u32string s = clean_codepoints(text);
  std::vector<int32_t> ids;
  std::string piece;
  pretokenize_codepoints(s, [&](size_t b, size_t e) {
    piece.clear();
    for (size_t k = b; k < e; ++k) append_utf8(piece, s[k]);
    bpe(piece, ids);
  });
  return ids;
}

Tokenizer Tokenizer::load(const std::string& merges_path) {
  const std::string data = read_maybe_gzip(merges_path, "vocabulary file", kMaxVocabBytes);
  const std::string bad = "bad vocabulary file '" + merges_path + "': ";
  if (data.empty()) throw Error(bad + "the file is empty");
  {
    bool ok = true;
    for (size_t i = 0; i < data.size() && ok;) next_utf8(data, i, &ok);
    if (!ok) throw Error(bad + "not UTF-8 text (nor gzip)");
  }
  // lines; trailing blank lines are ignored
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos <= data.size();) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    std::string_view line(data.data() + pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    pos = nl + 1;
  }
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string_view::npos) lines.pop_back();
  if (lines.empty()) throw Error(bad + "the file is empty");
  const int64_t available = static_cast<int64_t>(lines.size()) - 1;  // line 0 is the header
  const int64_t used = available == kStandardMergeLines ? kOpenClipMerges : available;

  const ByteUnicode& bu = byte_unicode();
  auto impl = std::make_shared<Impl>();
  impl->num_merges = used;
  impl->decoder.reserve(static_cast<size_t>(512 + used + 2));
  for (int k = 0; k < 256; ++k) {
    std::string s;
    append_utf8(s, bu.to_cp[bu.order[k]]);
    impl->decoder.push_back(s);
    impl->byte_id[bu.order[k]] = k;
  }
  for (int k = 0; k < 256; ++k) impl->decoder.push_back(impl->decoder[static_cast<size_t>(k)] + "</w>");
  std::vector<std::pair<std::string_view, std::string_view>> parts;
  parts.reserve(static_cast<size_t>(used));
  for (int64_t r = 0; r < used; ++r) {
    const std::string_view line = lines[static_cast<size_t>(r + 1)];
    std::string_view fields[3];
    int nf = 0;
    for (size_t p = 0; p < line.size() && nf < 3;) {
      while (p < line.size() && (line[p] == ' ' || line[p] == '\t')) ++p;
      if (p == line.size()) break;
      size_t q = p;
      while (q < line.size() && line[q] != ' ' && line[q] != '\t') ++q;
      fields[nf++] = line.substr(p, q - p);
      p = q;
    }
    if (nf != 2)
      throw Error(bad + "line " + std::to_string(r + 2) + " is not a merge of two tokens (\"a b\"): \"" +
                  std::string(line.substr(0, 80)) + "\"");
    parts.emplace_back(fields[0], fields[1]);
    impl->decoder.push_back(std::string(fields[0]) + std::string(fields[1]));
  }
  impl->decoder.emplace_back(kSot);
  impl->decoder.emplace_back(kEot);
  impl->encoder.reserve(impl->decoder.size() * 2);
  for (size_t id = 0; id < impl->decoder.size(); ++id) impl->encoder[impl->decoder[id]] = static_cast<int32_t>(id);
  impl->sot = impl->encoder.at(std::string(kSot));
  impl->eot = impl->encoder.at(std::string(kEot));

  impl->merges.reserve(static_cast<size_t>(used) * 2);
  for (int64_t r = 0; r < used; ++r) {
    const auto& [a, b] = parts[static_cast<size_t>(r)];
    auto ia = impl->encoder.find(std::string(a));
    auto ib = impl->encoder.find(std::string(b));
    if (ia == impl->encoder.end() || ib == impl->encoder.end())
      throw Error(bad + "line " + std::to_string(r + 2) + ": token \"" +
                  std::string(ia == impl->encoder.end() ? a : b) + "\" is neither a byte symbol nor made by a merge");
    const int32_t result = impl->encoder.at(impl->decoder[static_cast<size_t>(512 + r)]);
    impl->merges[pair_key(ia->second, ib->second)] = {static_cast<int32_t>(r), result};
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const { return impl_->encode(text); }

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const ByteUnicode& bu = byte_unicode();
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(impl_->decoder.size()))
      throw Error("Tokenizer::decode: id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(impl_->decoder.size()) + ")");
    const std::string& tok = impl_->decoder[static_cast<size_t>(id)];
    for (size_t i = 0; i < tok.size();) {
      const char32_t cp = next_utf8(tok, i);
      const int b = cp < bu.cp_to_byte.size() ? bu.cp_to_byte[cp] : -1;
      if (b < 0) throw Error("Tokenizer::decode: token " + std::to_string(id) + " has a symbol outside the byte alphabet");
      bytes += static_cast<char>(b);
    }
  }
  // UTF-8 with replacement, then "</w>" → " "
  std::string text;
  text.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) append_utf8(text, next_utf8(bytes, i));
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out += ' ';
      i += 4;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::vector<int32_t> Tokenizer::tokenize(const std::vector<std::string>& texts, int context_length) const {
  if (context_length < 1)
    throw Error("Tokenizer::tokenize: context_length must be >= 1, got " + std::to_string(context_length));
  const size_t ctx = static_cast<size_t>(context_length);
  std::vector<int32_t> out(texts.size() * ctx, 0);
  for (size_t r = 0; r < texts.size(); ++r) {
    std::vector<int32_t> row;
    row.reserve(ctx + 2);
    row.push_back(impl_->sot);
    std::vector<int32_t> ids = impl_->encode(texts[r]);
    row.insert(row.end(), ids.begin(), ids.end());
    row.push_back(impl_->eot);
    if (row.size() > ctx) {
      row.resize(ctx);
      row.back() = impl_->eot;
    }
    std::copy(row.begin(), row.end(), out.begin() + static_cast<std::ptrdiff_t>(r * ctx));
  }
  return out;
}

int32_t Tokenizer::sot_token() const { return impl_->sot; }
int32_t Tokenizer::eot_token() const { return impl_->eot; }
int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->decoder.size()); }
int64_t Tokenizer::num_merges() const { return impl_->num_merges; }

const std::string& Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->decoder.size()))
    throw Error("Tokenizer::id_to_token: id " + std::to_string(id) + " is outside the vocabulary [0, " +
                std::to_string(impl_->decoder.size()) + ")");
  return impl_->decoder[static_cast<size_t>(id)];
}

int32_t Tokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->encoder.find(token);
  return it == impl_->encoder.end() ? -1 : it->second;
}

std::string clean_text(const std::string& text) { return encode_utf8(clean_codepoints(text)); }

std::vector<std::string> pretokenize(const std::string& cleaned_text) {
  const std::u32string s = decode_utf8(cleaned_text);
  std::vector<std::string> out;
  pretokenize_codepoints(s, [&](size_t b, size_t e) { out.push_back(encode_utf8(std::u32string_view(s).substr(b, e - b))); });
  return out;
}

std::string read_text_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  return read_maybe_gzip(path, what, max_bytes);
}

std::vector<std::string> read_lines(const std::string& path, const std::string& what, uint64_t max_bytes) {
  const std::string data = read_maybe_gzip(path, what, max_bytes);
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < data.size();) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    std::string line = data.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    pos = nl + 1;
  }
  return lines;
}

std::vector<std::string> read_captions(const std::string& path, uint64_t max_bytes) {
  std::vector<std::string> captions;
  for (std::string& line : read_lines(path, "caption file", max_bytes))
    if (line.find_first_not_of(" \t") != std::string::npos) captions.push_back(std::move(line));
  if (captions.empty()) throw Error("caption file '" + path + "' is empty (expected one caption per line)");
  return captions;
}

// ============================================================================================
// 6. train_bpe
// ============================================================================================

BpeTrainResult train_bpe(const std::vector<std::string>& texts, int num_merges, const std::string& out_path,
                         const BpeTrainOptions& options) {
  if (num_merges < 0) throw Error("train_bpe: num_merges must be >= 0, got " + std::to_string(num_merges));
  if (options.min_frequency < 1)
    throw Error("train_bpe: min_frequency must be >= 1, got " + std::to_string(options.min_frequency));
  BpeTrainResult result;

  // word (pre-token bytes) → count
  std::unordered_map<std::string, int64_t> counts;
  std::string piece;
  for (const std::string& text : texts) {
    const std::u32string s = clean_codepoints(text);
    pretokenize_codepoints(s, [&](size_t b, size_t e) {
      piece.clear();
      for (size_t k = b; k < e; ++k) append_utf8(piece, s[k]);
      if (piece == kSot || piece == kEot) return;
      ++counts[piece];
      ++result.words;
    });
  }
  if (counts.empty()) throw Error("train_bpe: the texts hold no token to learn from");
  std::vector<std::pair<std::string, int64_t>> unique(counts.begin(), counts.end());
  std::sort(unique.begin(), unique.end());
  counts.clear();
  result.unique_words = static_cast<int64_t>(unique.size());

  // tokens: the 512 byte symbols, then one per new spelling
  const ByteUnicode& bu = byte_unicode();
  std::vector<std::string> spelling;
  std::unordered_map<std::string, int32_t> by_spelling;
  std::array<int32_t, 256> byte_id{};
  for (int k = 0; k < 256; ++k) {
    std::string sym;
    append_utf8(sym, bu.to_cp[bu.order[k]]);
    spelling.push_back(sym);
    byte_id[bu.order[k]] = k;
  }
  for (int k = 0; k < 256; ++k) spelling.push_back(spelling[static_cast<size_t>(k)] + "</w>");
  for (size_t id = 0; id < spelling.size(); ++id) by_spelling[spelling[id]] = static_cast<int32_t>(id);

  struct Word {
    std::vector<int32_t> sym;
    int64_t freq;
  };
  std::vector<Word> words;
  words.reserve(unique.size());
  for (const auto& [w, f] : unique) {
    Word word{std::vector<int32_t>(w.size()), f};
    for (size_t i = 0; i < w.size(); ++i) word.sym[i] = byte_id[static_cast<unsigned char>(w[i])];
    word.sym.back() += 256;
    words.push_back(std::move(word));
  }
  unique.clear();

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // pair → words that may hold it
  for (size_t wi = 0; wi < words.size(); ++wi) {
    const auto& sym = words[wi].sym;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      const uint64_t key = pair_key(sym[i], sym[i + 1]);
      pair_count[key] += words[wi].freq;
      auto& list = where[key];
      if (list.empty() || list.back() != static_cast<int32_t>(wi)) list.push_back(static_cast<int32_t>(wi));
    }
  }

  // max-heap of (count, pair) with lazy updates; ties → smallest spellings
  struct Entry {
    int64_t count;
    int32_t a, b;
  };
  auto lower_priority = [&spelling](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const int c = spelling[static_cast<size_t>(x.a)].compare(spelling[static_cast<size_t>(y.a)]);
    if (c != 0) return c > 0;
    return spelling[static_cast<size_t>(x.b)].compare(spelling[static_cast<size_t>(y.b)]) > 0;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(lower_priority)> heap(lower_priority);
  for (const auto& [key, count] : pair_count)
    heap.push({count, static_cast<int32_t>(key >> 32), static_cast<int32_t>(key & 0xFFFFFFFFu)});

  std::string merges_text = "#version: 0.2 (sparo train_bpe)\n";
  std::vector<int32_t> stamp(words.size(), -1);
  std::unordered_map<uint64_t, int64_t> before;  // counts of the pairs touched by this merge
  while (result.merges < num_merges && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const uint64_t key = pair_key(top.a, top.b);
    auto pc = pair_count.find(key);
    const int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != top.count) {  // stale: counts only went down since it was pushed
      if (current > 0) heap.push({current, top.a, top.b});
      continue;
    }
    if (current < options.min_frequency) break;

    const std::string joined = spelling[static_cast<size_t>(top.a)] + spelling[static_cast<size_t>(top.b)];
    int32_t merged;
    if (auto it = by_spelling.find(joined); it != by_spelling.end()) {
      merged = it->second;  // the same spelling reached another way: the loader gives it one id
    } else {
      merged = static_cast<int32_t>(spelling.size());
      spelling.push_back(joined);
      by_spelling.emplace(joined, merged);
    }
    merges_text += spelling[static_cast<size_t>(top.a)] + " " + spelling[static_cast<size_t>(top.b)] + "\n";

    before.clear();
    auto add = [&](uint64_t k, int64_t delta) {
      auto [it, inserted] = pair_count.try_emplace(k, 0);
      before.try_emplace(k, it->second);
      it->second += delta;
    };
    std::vector<int32_t> affected = std::move(where[key]);
    where.erase(key);
    for (int32_t wi : affected) {
      if (stamp[static_cast<size_t>(wi)] == result.merges) continue;
      stamp[static_cast<size_t>(wi)] = result.merges;
      Word& word = words[static_cast<size_t>(wi)];
      auto& sym = word.sym;
      bool present = false;
      for (size_t i = 0; i + 1 < sym.size() && !present; ++i) present = sym[i] == top.a && sym[i + 1] == top.b;
      if (!present) continue;
      for (size_t i = 0; i + 1 < sym.size(); ++i) add(pair_key(sym[i], sym[i + 1]), -word.freq);
      size_t w = 0;
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == top.a && sym[i + 1] == top.b) {
          sym[w++] = merged;
          i += 2;
        } else {
          sym[w++] = sym[i++];
        }
      }
      sym.resize(w);
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        const uint64_t k = pair_key(sym[i], sym[i + 1]);
        add(k, word.freq);
        if (sym[i] == merged || sym[i + 1] == merged) {
          auto& list = where[k];
          if (list.empty() || list.back() != wi) list.push_back(wi);
        }
      }
    }
    for (const auto& [k, old] : before) {
      auto it = pair_count.find(k);
      if (it->second > old) heap.push({it->second, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFFu)});
      if (it->second == 0) pair_count.erase(it);
    }
    ++result.merges;
    if (options.progress) options.progress(result.merges, num_merges, top.count);
  }

  write_maybe_gzip(out_path, merges_text);
  result.vocab_size = 512 + result.merges + 2;
  return result;
}

}  // namespace sparo
