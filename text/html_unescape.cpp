// html.unescape: the entity table and the scanner.
#include "text/html_unescape.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>

#include "text/unicode.h"

namespace sparo::text {

namespace {

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

}  // namespace

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

}  // namespace sparo::text
