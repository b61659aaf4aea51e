// Image–caption datasets in OpenCLIP's table format (open_clip's CsvDataset, chosen with
// --csv-img-key filepath --csv-caption-key title --csv-separator "\t"): a header row naming
// the columns, then one row per image with its path and its caption.
//
// Parsing follows pandas.read_csv's defaults, which OpenCLIP uses:
//   * fields may be quoted with '"' (for TSV as for CSV): a quoted field may hold the
//     separator, newlines and doubled quotes (""); characters after a closing quote are
//     kept as in an unquoted field ("a"b → ab), as pandas does;
//   * line ends are \n, \r\n or \r; blank lines are skipped; a UTF-8 BOM is ignored.
// Differences: pandas fills missing trailing fields with NaN, here a row with the wrong
// number of fields is an error; relative image paths resolve against the table's folder
// (or CaptionTableOptions::root) rather than the working directory.
//
// Decoding: try_load_image never throws for a bad image — a training run over millions of
// web images must survive a few broken files — it counts and remembers them instead.
//
// Memory and start-up time stay bounded by the table, not by its images: the table file is
// read whole but refused past kMaxCaptionTableBytes, and at the start each image's header is
// read (not its pixels); an image is decoded only when its sample is drawn.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"

namespace sparo {

// The largest table file read: 1 GiB, about 10 million rows of a path and a caption. A larger
// file is refused, naming it and the cap, before it is read: it is held in memory whole, and
// about twice over while it is parsed into rows.
inline constexpr uint64_t kMaxCaptionTableBytes = 1ull << 30;

struct CaptionTableOptions {
  std::string image_key = "filepath";  // OpenCLIP's --csv-img-key default
  std::string caption_key = "title";   // OpenCLIP's --csv-caption-key default
  char separator = '\t';               // '\t' or ','
  std::string root;                    // relative paths resolve against this; empty: the table's folder
};

struct CaptionTable {
  std::vector<std::string> paths;     // resolved image paths, one per row
  std::vector<std::string> captions;  // same length as paths
  std::vector<int64_t> lines;         // the line each row starts on (for messages), same length
  std::string source;                 // the table's path
};

// Reads the table. Errors (sparo::Error) name the file and say what is wrong: the file is
// missing, unreadable or larger than kMaxCaptionTableBytes, a requested column is missing
// (the message lists the columns that exist) or appears twice, a row has the wrong number of
// fields or an empty image path (the row's line number), a quoted field is not closed, or the
// table has no rows.
CaptionTable load_caption_table(const std::string& path, const CaptionTableOptions& options = {});

// Thread-safe record of the images that could not be decoded.
class DecodeStats {
 public:
  static constexpr size_t kMaxExamples = 5;
  void record_failure(const std::string& message);
  int64_t skipped() const { return skipped_.load(std::memory_order_relaxed); }
  std::vector<std::string> examples() const;  // the first kMaxExamples failure messages

 private:
  std::atomic<int64_t> skipped_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> examples_;
};

// The decoded image, or nullopt when the file is missing, unreadable or corrupt (the failure
// is recorded in `stats` when it is not null). Never throws for a bad image.
std::optional<Image> try_load_image(const std::string& path, DecodeStats* stats);

// Whether the image's header reads (read_image_size: no pixel is decoded); a failure is
// recorded in `stats` when it is not null. Never throws for a bad image.
bool try_read_image_header(const std::string& path, DecodeStats* stats);

// The rows whose image's header reads, in table order, checked in parallel once (a training
// run does this up front so that its sample stream stays a pure function of the seed); the
// others are recorded in `stats`. Cheap: no image is decoded, so a missing, empty, non-image
// or cut-short-header file is caught here, a corrupt body only when the image is decoded.
// Throws when no image of the table can be read.
std::vector<int64_t> readable_rows(const CaptionTable& table, DecodeStats* stats);

// A caption table as a training set: the rows whose image's header reads (readable_rows,
// once, up front); sample i is the i-th of them, in table order. Images are decoded when a
// sample is drawn, one at a time.
class UsableCaptionTable {
 public:
  UsableCaptionTable(const std::string& path, const CaptionTableOptions& options);
  int64_t size() const { return static_cast<int64_t>(usable_.size()); }
  // "PATH (N of M images usable)"
  std::string description() const;
  // summarize() of the images left out.
  std::string skipped_summary() const;
  // Sample i's image, decoded now. An error naming the table, the row's line and the file if
  // it does not decode: its header read at the start, so the row was kept, and skipping it
  // now would change the sample stream (fix or remove the file, then resume the run).
  Image image(int64_t i) const;
  const std::string& caption(int64_t i) const;
  // Every caption of the table, the unusable rows' too (what a tokenizer may learn from).
  const std::vector<std::string>& all_captions() const { return table_.captions; }

 private:
  CaptionTable table_;
  DecodeStats stats_;
  std::vector<int64_t> usable_;
};

// One line for the log, e.g. "3 images skipped (unreadable or corrupt), e.g.: image a.png:
// cannot be decoded (...)"; "no images skipped" when there were none.
std::string summarize(const DecodeStats& stats);

}  // namespace sparo
