// A small BPE trainer that writes merges files Tokenizer::load reads (bpe_train.h).
#include "text/bpe_train.h"

#include <algorithm>
#include <array>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "engine/error.h"
#include "text/pretokenizer.h"
#include "text/text_files.h"
#include "text/unicode.h"

namespace sparo {

using namespace text;

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

  write_text_file(out_path, merges_text);
  result.vocab_size = 512 + result.merges + 2;
  return result;
}

}  // namespace sparo
