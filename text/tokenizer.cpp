// OpenCLIP's SimpleTokenizer: loading a merges file, BPE, encode, decode, tokenize. See
// tokenizer.h and docs/TOKENIZER.md. The Unicode tables are in unicode.cpp, html.unescape in
// html_unescape.cpp, the clean-up and the pattern in pretokenizer.cpp, the trainer in
// bpe_train.cpp.
#include "text/tokenizer.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "engine/error.h"
#include "text/pretokenizer.h"
#include "text/text_files.h"
#include "text/unicode.h"

namespace sparo {

using namespace text;

namespace {

constexpr int64_t kStandardMergeLines = 262144;                  // bpe_simple_vocab_16e6.txt
constexpr int64_t kOpenClipMerges = 49152 - 256 - 2;            // merges[1 : 49152-256-2+1]

}  // namespace

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
  const std::string data = read_text_file(merges_path, "vocabulary file", kMaxVocabBytes);
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

}  // namespace sparo
