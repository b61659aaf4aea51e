// `sparo tokenize` and `sparo tokenizer train`: OpenCLIP's BPE tokenizer from the command
// line (text/tokenizer.h, text/bpe_train.h).
//
//   sparo tokenize --vocab bpe_simple_vocab_16e6.txt.gz "a photo of a cat."
//   [49406,320,1125,539,320,2368,269,49407,0,0,...]        (77 ids, one line per text)
//   sparo tokenize --vocab FILE --raw "a photo of a cat."
//   [320,1125,539,320,2368,269]
//   sparo tokenize --vocab FILE --file captions.txt           (one text per line)
//   sparo tokenizer train --captions captions.txt --merges 8000 --out merges.txt.gz
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "engine/tensor.h"  // sparo::Error
#include "text/bpe_train.h"
#include "text/text_files.h"
#include "text/tokenizer.h"

namespace sparo::cli {

// Registers `tokenize` and `tokenizer train` (declared in cli/commands.h as well).

namespace {

std::string json_array(const int32_t* ids, size_t n) {
  std::string out = "[";
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

}  // namespace

void add_tokenize_commands(CLI::App& app) {
  // ---- sparo tokenize ----------------------------------------------------------------------
  struct TokenizeArgs {
    std::string vocab;
    int context = 77;
    bool raw = false;
    std::string file;
    std::vector<std::string> texts;
  };
  auto targs = std::make_shared<TokenizeArgs>();
  CLI::App* tok = app.add_subcommand(
      "tokenize", "Print OpenCLIP BPE ids of each TEXT as a JSON array, one line per text");
  tok->add_option("--vocab", targs->vocab, "Merges file (bpe_simple_vocab_16e6.txt.gz or one from 'tokenizer train')")
      ->required();
  tok->add_option("--context", targs->context, "Context length: [sot] ids [eot], cut (last = eot) and zero padded")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  tok->add_flag("--raw", targs->raw, "Print only the BPE ids (no sot/eot, no truncation or padding)");
  tok->add_option("-f,--file", targs->file, "Also tokenize each line of this text file (after the TEXT arguments)");
  tok->add_option("text", targs->texts,
                  "Texts to tokenize. A text starting with '-' can be given with a leading space, which the "
                  "cleaning strips, e.g. \" -1 point\"");
  tok->callback([targs] {
    if (!targs->file.empty())
      for (std::string& line : read_lines(targs->file, "text file", kMaxCaptionFileBytes))
        targs->texts.push_back(std::move(line));
    if (targs->texts.empty()) throw CLI::ValidationError("tokenize", "give at least one TEXT or a non-empty --file");
    const Tokenizer tokenizer = Tokenizer::load(targs->vocab);
    if (targs->raw) {
      for (const std::string& text : targs->texts) {
        const std::vector<int32_t> ids = tokenizer.encode(text);
        std::cout << json_array(ids.data(), ids.size()) << "\n";
      }
      return;
    }
    const std::vector<int32_t> rows = tokenizer.tokenize(targs->texts, targs->context);
    const size_t ctx = static_cast<size_t>(targs->context);
    for (size_t r = 0; r < targs->texts.size(); ++r) std::cout << json_array(rows.data() + r * ctx, ctx) << "\n";
  });

  // ---- sparo tokenizer train -----------------------------------------------------------------
  struct TrainArgs {
    std::string captions, out;
    int merges = 0;
    int64_t min_frequency = 2;
  };
  auto args = std::make_shared<TrainArgs>();
  CLI::App* group = app.add_subcommand("tokenizer", "BPE tokenizer tools");
  group->require_subcommand(1);
  CLI::App* train = group->add_subcommand(
      "train", "Learn BPE merges from a caption file (one caption per line) and write a merges file");
  train->add_option("--captions", args->captions, "Caption file, one caption per line (plain or .gz)")->required();
  train->add_option("--merges", args->merges, "Number of merges to learn (vocabulary = 512 + merges + 2)")
      ->required()
      ->check(CLI::NonNegativeNumber);
  train->add_option("--out", args->out, "Merges file to write (gzip when the name ends in .gz)")->required();
  train->add_option("--min-frequency", args->min_frequency, "Never merge a pair seen fewer times")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  train->callback([args] {
    const std::vector<std::string> captions = read_captions(args->captions);
    std::cerr << "tokenizer train: " << captions.size() << " captions from " << args->captions << "\n";
    BpeTrainOptions options;
    options.min_frequency = args->min_frequency;
    // one line rewritten in place on a terminal, every 10% otherwise
    const bool tty = ::isatty(::fileno(stderr)) != 0;
    const int every = tty ? std::max(1, args->merges / 1000) : std::max(1, args->merges / 10);
    options.progress = [every, tty](int done, int total, int64_t freq) {
      if (done % every != 0 && done != total) return;
      std::cerr << (tty ? "\r" : "") << "tokenizer train: merge " << done << "/" << total << " (pair seen " << freq
                << " times)" << (tty ? "   " : "\n") << std::flush;
    };
    const BpeTrainResult r = train_bpe(captions, args->merges, args->out, options);
    if (tty && r.merges > 0) std::cerr << "\n";
    std::cerr << "tokenizer train: wrote " << r.merges << " merges to " << args->out << " (vocabulary " << r.vocab_size
              << " tokens; " << r.words << " words, " << r.unique_words << " distinct)";
    if (r.merges < args->merges)
      std::cerr << "; stopped early: no pair left seen at least " << args->min_frequency << " times";
    std::cerr << "\n";
  });
}

}  // namespace sparo::cli
