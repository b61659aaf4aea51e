// OpenCLIP's BPE tokenizer (text/tokenizer.h): every case of the golden file made with
// OpenCLIP (clip_bpe_golden.json), OpenCLIP's tokenize() layout (truncation keeps EOT, zero
// padding), the text clean-up (html.unescape, white space, lower-case), the pre-tokeniser,
// decode, the BPE trainer and the error messages.
//
// The golden data is not in the repository: it is read from $SPARO_TEST_DATA (default:
// <repo>/../shared/data), which must hold clip_bpe_golden.json and
// bpe_simple_vocab_16e6.txt.gz. Without them the tests that need them are skipped.
#include <gtest/gtest.h>

#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <unistd.h>
#include <vector>

#include "engine/tensor.h"
#include "text/bpe_train.h"
#include "text/text_files.h"
#include "text/tokenizer.h"

#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string test_data_dir() {
  const char* env = std::getenv("SPARO_TEST_DATA");
  return env && *env ? std::string(env) : std::string(SPARO_SOURCE_DIR "/../shared/data");
}

std::string vocab_path() { return test_data_dir() + "/bpe_simple_vocab_16e6.txt.gz"; }
std::string golden_path() { return test_data_dir() + "/clip_bpe_golden.json"; }

// Empty when both files are there, else a message naming what is missing.
std::string missing_data() {
  std::string missing;
  for (const std::string& p : {vocab_path(), golden_path()})
    if (!fs::exists(p)) missing += (missing.empty() ? "" : ", ") + p;
  if (missing.empty()) return "";
  return "missing " + missing +
         "; set SPARO_TEST_DATA to the folder holding bpe_simple_vocab_16e6.txt.gz and clip_bpe_golden.json";
}

#define SKIP_WITHOUT_DATA()                                    \
  do {                                                         \
    const std::string why = missing_data();                    \
    if (!why.empty()) GTEST_SKIP() << why;                     \
  } while (0)

// The standard tokenizer, loaded once for the whole suite.
const Tokenizer& clip() {
  static const Tokenizer t = Tokenizer::load(vocab_path());
  return t;
}

const json& golden() {
  static const json j = [] {
    std::ifstream f(golden_path());
    if (!f) throw std::runtime_error("cannot open " + golden_path());
    return json::parse(f);
  }();
  return j;
}

// A scratch folder for this process, removed at exit.
const TempDir& tmp() {
  static const TempDir dir("tokenizer");
  return dir;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

std::string read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return "";
  std::string out;
  char buf[4096];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

// ---- the standard vocabulary and the golden cases -----------------------------------------------

TEST(Tokenizer, StandardVocabularyLayout) {
  SKIP_WITHOUT_DATA();
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer t = Tokenizer::load(vocab_path());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[          ] loading the 16e6 merges file took " << ms << " ms\n";
  EXPECT_EQ(t.vocab_size(), golden()["vocab_size"].get<int64_t>());
  EXPECT_EQ(t.sot_token(), golden()["sot"].get<int32_t>());
  EXPECT_EQ(t.eot_token(), golden()["eot"].get<int32_t>());
  EXPECT_EQ(t.num_merges(), 48894);
  EXPECT_EQ(t.id_to_token(0), "!");
  EXPECT_EQ(t.id_to_token(256), "!</w>");
  EXPECT_EQ(t.id_to_token(320), "a</w>");
  EXPECT_EQ(t.id_to_token(512), "in");  // the first merge, "i n"
  EXPECT_EQ(t.id_to_token(49407), "<end_of_text>");
  EXPECT_EQ(t.token_to_id("<start_of_text>"), 49406);
  EXPECT_EQ(t.token_to_id("no such token"), -1);
  expect_error([&] { t.id_to_token(49408); }, {"49408", "outside the vocabulary"});
}

TEST(Tokenizer, EveryGoldenCaseMatchesOpenClip) {
  SKIP_WITHOUT_DATA();
  const json& cases = golden()["cases"];
  ASSERT_GT(cases.size(), 0u);
  const int ctx = golden()["context_length"].get<int>();
  const int32_t sot = golden()["sot"].get<int32_t>(), eot = golden()["eot"].get<int32_t>();
  size_t matched = 0;
  std::vector<std::string> texts;
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> got = clip().encode(text);
    EXPECT_EQ(got, want) << "text: \"" << text << "\"";
    matched += got == want;
    texts.push_back(text);
  }
  std::cout << "[          ] " << matched << "/" << cases.size() << " golden cases match OpenCLIP\n";
  EXPECT_EQ(matched, cases.size());

  // tokenize(): one row per text, [sot] ids [eot] cut to ctx with eot last, zero padded
  const std::vector<int32_t> rows = clip().tokenize(texts, ctx);
  ASSERT_EQ(rows.size(), texts.size() * static_cast<size_t>(ctx));
  for (size_t r = 0; r < texts.size(); ++r) {
    std::vector<int32_t> want{sot};
    for (const json& id : cases[r]["ids"]) want.push_back(id.get<int32_t>());
    want.push_back(eot);
    if (want.size() > static_cast<size_t>(ctx)) {
      want.resize(static_cast<size_t>(ctx));
      want.back() = eot;
    }
    want.resize(static_cast<size_t>(ctx), 0);
    const std::vector<int32_t> got(rows.begin() + static_cast<std::ptrdiff_t>(r) * ctx,
                                   rows.begin() + static_cast<std::ptrdiff_t>(r + 1) * ctx);
    EXPECT_EQ(got, want) << "row " << r << ": \"" << texts[r] << "\"";
  }
}

TEST(Tokenizer, TruncationKeepsEotAndPaddingIsZero) {
  SKIP_WITHOUT_DATA();
  const Tokenizer& t = clip();
  const std::string long_text =
      "a photo of a small striped orange cat sitting on a wooden chair near the window in the afternoon sun";
  const std::vector<int32_t> ids = t.encode(long_text);
  ASSERT_GT(ids.size(), 10u);

  const std::vector<int32_t> cut = t.tokenize({long_text}, 10);
  ASSERT_EQ(cut.size(), 10u);
  EXPECT_EQ(cut.front(), t.sot_token());
  EXPECT_EQ(cut.back(), t.eot_token());
  for (size_t i = 1; i < 9; ++i) EXPECT_EQ(cut[i], ids[i - 1]);

  // exactly fitting: no truncation; one shorter: eot replaces the last id
  const int exact = static_cast<int>(ids.size()) + 2;
  const std::vector<int32_t> fit = t.tokenize({long_text}, exact);
  EXPECT_EQ(fit[fit.size() - 2], ids.back());
  EXPECT_EQ(fit.back(), t.eot_token());
  const std::vector<int32_t> short1 = t.tokenize({long_text}, exact - 1);
  EXPECT_EQ(short1.back(), t.eot_token());
  EXPECT_EQ(short1[short1.size() - 2], ids[ids.size() - 2]);
  EXPECT_EQ(t.tokenize({long_text}, 1), std::vector<int32_t>{t.eot_token()});

  const std::vector<int32_t> rows = t.tokenize({"a cat", "", "dog"}, 8);
  const std::vector<int32_t> want = {49406, 320, 2368, 49407, 0, 0, 0, 0,   // "a cat"
                                     49406, 49407, 0, 0, 0, 0, 0, 0,        // ""
                                     49406, 1929, 49407, 0, 0, 0, 0, 0};    // "dog"
  EXPECT_EQ(rows, want);
  EXPECT_TRUE(t.tokenize({}, 77).empty());
  expect_error([&] { t.tokenize({"x"}, 0); }, {"context_length", ">= 1"});
}

TEST(Tokenizer, DecodeRoundTripsAsciiText) {
  SKIP_WITHOUT_DATA();
  const Tokenizer& t = clip();
  for (const std::string text : {"a photo of a cat", "the quick brown fox jumps over the lazy dog",
                                 "supercalifragilisticexpialidocious and antidisestablishmentarianism",
                                 "zzqx qqqj"}) {
    EXPECT_EQ(t.decode(t.encode(text)), text + " ") << text;  // each word ends in "</w>" → ' '
  }
  // punctuation and digits become words of their own; non-ASCII survives the byte round trip
  EXPECT_EQ(t.decode(t.encode("Hello, World! 42")), "hello , world ! 4 2 ");
  EXPECT_EQ(t.decode(t.encode("Crème brûlée 日本語 🙂")), "crème brûlée 日本語 🙂 ");
  EXPECT_EQ(t.decode({t.sot_token(), 320, t.eot_token()}), "<start_of_text>a <end_of_text>");
  // a lone continuation byte decodes to U+FFFD, as Python's errors="replace"
  // (byte 0x80's symbol is U+0122)
  EXPECT_EQ(t.decode({t.token_to_id("\xC4\xA2")}), "\xEF\xBF\xBD");
  EXPECT_EQ(t.decode({}), "");
  expect_error([&] { t.decode({-1}); }, {"-1", "outside the vocabulary"});
  expect_error([&] { t.decode({1 << 20}); }, {"outside the vocabulary"});
}

TEST(Tokenizer, LiteralSpecialTokensMapToTheirIds) {
  SKIP_WITHOUT_DATA();
  const Tokenizer& t = clip();
  EXPECT_EQ(t.encode("<start_of_text>"), std::vector<int32_t>{49406});
  EXPECT_EQ(t.encode("x <END_OF_TEXT>"), (std::vector<int32_t>{t.encode("x")[0], 49407}));
}

// ---- cleaning and pre-tokenisation (expected values from Python's html / re / regex) -----------

TEST(TokenizerText, HtmlUnescapeTwiceWhitespaceAndLowerCase) {
  EXPECT_EQ(clean_text("  Hello &amp;amp;   World\t\n "), "hello & world");
  EXPECT_EQ(clean_text("&amp;amp; &ampfoo &#39;x&#x41;&#X42 &nbsp;&nbsp; end&notit; &#128;&#0;&#x110000; "
                       "&unknown; &lt&gt;"),
            "& &foo 'xab end\xC2\xACit; \xE2\x82\xAC\xEF\xBF\xBD\xEF\xBF\xBD &unknown; <>");
  EXPECT_EQ(clean_text("&#65&#x;&#;&"), "a&#x;&#;&");
  EXPECT_EQ(clean_text("&quot;caf&eacute;&quot; &copy 2024 &hellip;"), "\"café\" © 2024 …");
  EXPECT_EQ(clean_text("a\xC2\xA0" "b\xE2\x80\x83" "c\xE3\x80\x80" "d\x1F" "e"), "a b c d e");  // Unicode spaces
  EXPECT_EQ(clean_text(""), "");
  EXPECT_EQ(clean_text(" \t\n"), "");
  // lower-casing: Latin-1, Latin Extended, Greek with final sigma, Cyrillic, Armenian, İ
  EXPECT_EQ(clean_text("ÀÉÎÕÜ ÆØÞ ŁŠŽ ǄǅǱ ẞ"), "àéîõü æøþ łšž ǆǆǳ ß");
  EXPECT_EQ(clean_text("ΟΔΟΣ ΣΑ Σ ΆΈΉ"), "οδος σα σ άέή");
  EXPECT_EQ(clean_text("ПРИВЕТ ЁЖИК Ѣ ԱԲԳ Ⅻ ＡＢＣ"), "привет ёжик ѣ աբգ ⅻ ａｂｃ");
  EXPECT_EQ(clean_text("İstanbul"), "i\xCC\x87stanbul");
  // invalid UTF-8 becomes U+FFFD
  EXPECT_EQ(clean_text("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
}

TEST(TokenizerText, PreTokenizerFollowsOpenClipsPattern) {
  using V = std::vector<std::string>;
  EXPECT_EQ(pretokenize("it's!'s 12.5% <start_of_text>x '\xC5\xBF don't"),
            (V{"it", "'s", "!'", "s", "1", "2", ".", "5", "%", "<start_of_text>", "x", "'\xC5\xBF", "don", "'t"}));
  EXPECT_EQ(pretokenize("we've i'm you'll he'd they're 'x"),
            (V{"we", "'ve", "i", "'m", "you", "'ll", "he", "'d", "they", "'re", "'", "x"}));
  EXPECT_EQ(pretokenize("t-shirt/top...end <end_of_text><b>"),
            (V{"t", "-", "shirt", "/", "top", "...", "end", "<end_of_text>", "<", "b", ">"}));
  EXPECT_EQ(pretokenize("日本語のテキスト ١٢ ½ 🙂🚀 naïve"),
            (V{"日本語のテキスト", "١", "٢", "½", "🙂🚀", "naïve"}));
  // a combining mark is not a letter: decomposed é splits (OpenCLIP's ftfy would NFC it first)
  EXPECT_EQ(pretokenize("e\xCC\x81t\xC3\xA9"), (V{"e", "\xCC\x81", "t\xC3\xA9"}));
  EXPECT_EQ(pretokenize("ab\xE0\xAE\x95\xE0\xAF\xA7"), (V{"ab\xE0\xAE\x95", "\xE0\xAF\xA7"}));  // Tamil KA, ONE
  EXPECT_TRUE(pretokenize("").empty());
}

// ---- train_bpe -----------------------------------------------------------------------------------

std::vector<std::string> small_corpus() {
  std::vector<std::string> c;
  for (int i = 0; i < 20; ++i) {
    c.push_back("a photo of a cat");
    c.push_back("a photo of a dog on the grass");
    c.push_back("A PHOTO of the cat and the dog!");
  }
  c.push_back("a drawing of a horse");
  return c;
}

TEST(TrainBpe, LearnsTheFrequentWordsAndLoadsBack) {
  const std::string out = tmp() / "small.txt";
  std::vector<std::tuple<int, int, int64_t>> progress;
  BpeTrainOptions opts;
  opts.progress = [&](int done, int total, int64_t freq) { progress.emplace_back(done, total, freq); };
  // 40 asked for, but after 18 merges every word seen twice or more is one token and no pair
  // is left with the default min_frequency of 2
  const BpeTrainResult r = train_bpe(small_corpus(), 40, out, opts);
  EXPECT_EQ(r.merges, 18);
  EXPECT_EQ(r.vocab_size, 512 + 18 + 2);
  EXPECT_EQ(r.words, 20 * (5 + 8 + 9) + 5);
  EXPECT_EQ(r.unique_words, 12);
  ASSERT_EQ(progress.size(), 18u);
  EXPECT_EQ(std::get<0>(progress.back()), 18);
  EXPECT_EQ(std::get<1>(progress.back()), 40);
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_LE(std::get<2>(progress[i]), std::get<2>(progress[i - 1]));

  // the file: a header, then one "a b" line per merge. "h o" (photo: 60, the: 40) is the most
  // frequent pair; "o f</w>" and "h e</w>" (60 each) follow, ties going to the smaller spelling.
  std::ifstream f(out);
  std::string header, line;
  std::getline(f, header);
  EXPECT_EQ(header.rfind("#version", 0), 0u);
  std::vector<std::string> merges;
  while (std::getline(f, line)) merges.push_back(line);
  ASSERT_EQ(merges.size(), 18u);
  EXPECT_EQ(merges[0], "h o");
  EXPECT_EQ(merges[1], "o f</w>");
  EXPECT_EQ(merges[2], "h e</w>");

  const Tokenizer t = Tokenizer::load(out);
  EXPECT_EQ(t.num_merges(), 18);
  EXPECT_EQ(t.vocab_size(), 532);
  EXPECT_EQ(t.sot_token(), 530);
  EXPECT_EQ(t.eot_token(), 531);  // still the largest id
  // frequent words became single tokens
  for (const std::string w : {"photo", "of", "the", "cat", "dog", "on", "grass", "and"}) {
    const int32_t id = t.token_to_id(w + "</w>");
    EXPECT_GE(id, 512) << w;
    EXPECT_EQ(t.encode(w), std::vector<int32_t>{id}) << w;
  }
  // a rare word stays in pieces but round-trips
  EXPECT_GT(t.encode("horse").size(), 1u);
  EXPECT_EQ(t.decode(t.encode("a photo of a horse")), "a photo of a horse ");
  const std::vector<int32_t> row = t.tokenize({"a photo of a cat"}, 8);
  EXPECT_EQ(row, (std::vector<int32_t>{530, t.token_to_id("a</w>"), t.token_to_id("photo</w>"),
                                       t.token_to_id("of</w>"), t.token_to_id("a</w>"), t.token_to_id("cat</w>"), 531, 0}));
}

TEST(TrainBpe, TiesAreBrokenBySpellingAndOutputIsDeterministic) {
  // (x, y</w>) and (a, b</w>) are both seen twice: the smaller spelling "a" goes first
  const std::string out = tmp() / "ties.txt";
  BpeTrainOptions once;
  once.min_frequency = 1;
  const BpeTrainResult r = train_bpe({"xy ab", "ab xy"}, 5, out, once);
  EXPECT_EQ(r.merges, 2);  // no pair left after two merges
  std::ifstream f(out);
  std::string line, all;
  std::getline(f, line);
  while (std::getline(f, line)) all += line + "\n";
  EXPECT_EQ(all, "a b</w>\nx y</w>\n");

  // the same corpus gives the same file, byte for byte; .gz output is gzip and loads
  const std::string a = tmp() / "det_a.txt.gz", b = tmp() / "det_b.txt.gz";
  train_bpe(small_corpus(), 60, a);
  train_bpe(small_corpus(), 60, b);
  const std::string da = read_gz(a), db = read_gz(b);
  EXPECT_FALSE(da.empty());
  EXPECT_EQ(da, db);
  std::ifstream raw(a, std::ios::binary);
  EXPECT_EQ(raw.get(), 0x1f);
  EXPECT_EQ(raw.get(), 0x8b);
  const Tokenizer t = Tokenizer::load(a);
  EXPECT_EQ(t.eot_token(), t.vocab_size() - 1);
  EXPECT_EQ(t.encode("photo"), std::vector<int32_t>{t.token_to_id("photo</w>")});
}

TEST(TrainBpe, MinFrequencyStopsEarlyAndBadInputIsRejected) {
  const std::string out = tmp() / "early.txt";
  const BpeTrainResult r = train_bpe({"abc abc", "xyz"}, 100, out);  // only pairs of "abc" are seen twice
  EXPECT_EQ(r.merges, 2);
  const Tokenizer t = Tokenizer::load(out);
  EXPECT_EQ(t.encode("abc"), std::vector<int32_t>{t.token_to_id("abc</w>")});
  EXPECT_EQ(t.encode("xyz").size(), 3u);

  const BpeTrainResult none = train_bpe({"abc"}, 0, out);
  EXPECT_EQ(none.merges, 0);
  EXPECT_EQ(Tokenizer::load(out).vocab_size(), 514);

  expect_error([&] { train_bpe({"abc"}, -1, out); }, {"num_merges", ">= 0"});
  expect_error([&] { train_bpe({"", "   "}, 10, out); }, {"no token"});
  expect_error([&] { train_bpe({}, 10, out); }, {"no token"});
  expect_error([&] { train_bpe({"abc"}, 10, tmp() / "no/such/dir/out.txt"); }, {"cannot write", "no/such/dir"});
}

// ---- files ---------------------------------------------------------------------------------------

TEST(TokenizerFiles, MissingOrCorruptVocabularyFilesAreClearErrors) {
  const std::string missing = tmp() / "does_not_exist.txt.gz";
  expect_error([&] { Tokenizer::load(missing); }, {missing, "not found"});

  const std::string corrupt = tmp() / "corrupt.txt.gz";
  write_file(corrupt, std::string("\x1f\x8b\x08\x00garbage that is not deflate", 31));
  expect_error([&] { Tokenizer::load(corrupt); }, {corrupt, "corrupt"});

  // a truncated gzip stream
  const std::string good = tmp() / "good.txt.gz";
  train_bpe(small_corpus(), 30, good);
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string truncated = tmp() / "truncated.txt.gz";
  write_file(truncated, bytes.substr(0, bytes.size() / 2));
  expect_error([&] { Tokenizer::load(truncated); }, {truncated, "corrupt"});

  const std::string empty = tmp() / "empty.txt";
  write_file(empty, "");
  expect_error([&] { Tokenizer::load(empty); }, {empty, "empty"});

  const std::string bad_line = tmp() / "bad_line.txt";
  write_file(bad_line, "#version: 0.2\ni n\nthree tokens here\n");
  expect_error([&] { Tokenizer::load(bad_line); }, {bad_line, "line 3", "three tokens here"});

  const std::string unknown = tmp() / "unknown.txt";
  write_file(unknown, "#version: 0.2\ni n\nin zz\n");
  expect_error([&] { Tokenizer::load(unknown); }, {unknown, "line 3", "\"zz\""});

  const std::string binary = tmp() / "binary.bin";
  write_file(binary, std::string("header\n\xff\xfe \x80\n", 10));
  expect_error([&] { Tokenizer::load(binary); }, {binary, "UTF-8"});

  expect_error([&] { Tokenizer::load(tmp().path()); }, {"directory"});

  // plain text, CRLF line ends and trailing blank lines are fine
  const std::string crlf = tmp() / "crlf.txt";
  write_file(crlf, "#version: 0.2\r\ni n\r\nt h\r\n\r\n\r\n");
  const Tokenizer t = Tokenizer::load(crlf);
  EXPECT_EQ(t.num_merges(), 2);
  EXPECT_EQ(t.id_to_token(512), "in");
  EXPECT_EQ(t.id_to_token(513), "th");
  EXPECT_EQ(t.eot_token(), 515);
}

// `bytes` zero bytes, gzip-compressed into `path` (about a thousandth of their size).
void write_gzip_zeros(const std::string& path, uint64_t bytes) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr) << path;
  const std::string zeros(1 << 20, '\0');
  for (uint64_t done = 0; done < bytes;) {
    const auto n = static_cast<unsigned>(std::min<uint64_t>(zeros.size(), bytes - done));
    ASSERT_EQ(gzwrite(f, zeros.data(), n), static_cast<int>(n)) << path;
    done += n;
  }
  ASSERT_EQ(gzclose(f), Z_OK) << path;
}

// Vocabulary and caption files are read whole, counted after decompression and stopped at a
// cap: /dev/zero, which never ends, and a gzip bomb (kilobytes that inflate past the cap) are
// refused naming the file and the cap, where the reader ran until std::bad_alloc. Each read
// runs in a child process with 4 GiB of address space and an alarm, so that a reader without
// a cap fails there quickly instead of taking the machine's memory.
TEST(TokenizerFiles, VocabularyAndCaptionFilesAreCappedAfterDecompression) {
  constexpr uint64_t kAddressSpace = 4ull << 30;
  expect_error_within(20, [] { limit_address_space(kAddressSpace); Tokenizer::load("/dev/zero"); },
                      "vocabulary file '/dev/zero' holds more than 64 MiB \\(counted after gzip decompression\\)");
  const std::string bomb = tmp() / "bomb.txt.gz";
  write_gzip_zeros(bomb, kMaxVocabBytes + 1);
  EXPECT_LT(fs::file_size(bomb), 1u << 20);
  expect_error_within(20, [&] { limit_address_space(kAddressSpace); Tokenizer::load(bomb); },
                      "vocabulary file '.*/bomb.txt.gz' holds more than 64 MiB");

  // Caption files are capped at kMaxCaptionFileBytes (1 GiB); a lower cap keeps the test small.
  expect_error_within(20, [] { limit_address_space(kAddressSpace); read_captions("/dev/zero", 1 << 20); },
                      "caption file '/dev/zero' holds more than 1 MiB");
  const std::string captions = tmp() / "captions_bomb.txt.gz";
  write_gzip_zeros(captions, (2 << 20) + 1);
  expect_error_within(20, [&] { limit_address_space(kAddressSpace); read_captions(captions, 2 << 20); },
                      "caption file '.*/captions_bomb.txt.gz' holds more than 2 MiB");
  EXPECT_EQ(read_captions(captions, 3 << 20).size(), 1u);  // under the cap it is read (one line of NULs)
}

// The line reader behind `tokenize --file`, `embed --texts-file`, templates and metrics.jsonl:
// blank lines kept (embed's row i is line i), CRLF, gzip, capped like the caption files (these
// readers used std::getline without a cap: /dev/zero took memory until the machine gave out).
TEST(TokenizerFiles, LineFilesKeepBlankLinesAndAreCapped) {
  const std::string path = tmp() / "lines.txt";
  write_file(path, "one\r\n\n two \nlast");
  EXPECT_EQ(read_lines(path, "text file", 1 << 20), (std::vector<std::string>{"one", "", " two ", "last"}));
  write_file(path, "a\n\n");
  EXPECT_EQ(read_lines(path, "text file", 1 << 20), (std::vector<std::string>{"a", ""}));
  write_file(path, "");
  EXPECT_TRUE(read_lines(path, "text file", 1 << 20).empty());
  expect_error([&] { read_lines(tmp() / "nope.txt", "texts file", 1 << 20); }, {"texts file", "nope.txt", "not found"});
  expect_error_within(20, [] { limit_address_space(4ull << 30); read_lines("/dev/zero", "text file", 1 << 20); },
                      "text file '/dev/zero' holds more than 1 MiB");
}

TEST(TokenizerFiles, CaptionFiles) {
  const std::string path = tmp() / "captions.txt";
  write_file(path, "a photo of a cat\r\n\n   \nA DOG\n");
  EXPECT_EQ(read_captions(path), (std::vector<std::string>{"a photo of a cat", "A DOG"}));
  const std::string blank = tmp() / "blank.txt";
  write_file(blank, "\n \n\t\n");
  expect_error([&] { read_captions(blank); }, {blank, "empty"});
  expect_error([&] { read_captions((tmp() / "nope.txt")); }, {"nope.txt", "not found"});
}

}  // namespace
}  // namespace sparo
