#include "training/data/caption_table.h"

#include <tbb/parallel_for.h>

#include <filesystem>
#include <fstream>
#include <string_view>

namespace sparo {

namespace {

std::string separator_name(char separator) { return separator == '\t' ? "tab" : "comma"; }

// The whole file, refused past kMaxCaptionTableBytes: from its size before reading, and
// again while reading in case it grows meanwhile.
std::string read_table_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw Error("caption table " + path + ": file not found");
  if (!std::filesystem::is_regular_file(status)) throw Error("caption table " + path + ": not a regular file");
  const auto too_large = [&](uint64_t size) {
    static_assert(kMaxCaptionTableBytes % (1ull << 30) == 0, "the message gives the cap in GiB");
    return Error("caption table " + path + ": " + std::to_string(size) + " bytes, more than the " +
                 std::to_string(kMaxCaptionTableBytes >> 30) +
                 " GiB limit for a caption table (it is held in memory whole); split the table");
  };
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxCaptionTableBytes) throw too_large(size);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("caption table " + path + ": cannot be read");
  std::string text;
  if (!ec) text.reserve(static_cast<size_t>(size));
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxCaptionTableBytes) throw too_large(text.size());
  }
  if (in.bad()) throw Error("caption table " + path + ": cannot be read");
  return text;
}

// Splits delimited text into records, one call per record (pandas' C parser with its
// default, non-strict quoting; see the header).
class RecordReader {
 public:
  RecordReader(std::string_view text, char separator, const std::string& source)
      : text_(text), separator_(separator), source_(source) {
    if (text_.starts_with("\xEF\xBB\xBF")) text_.remove_prefix(3);
  }

  // The next non-blank record's fields, or false at the end of the text.
  bool next(std::vector<std::string>& fields) {
    fields.clear();
    while (pos_ < text_.size() && is_line_end(text_[pos_])) skip_line_end();  // blank lines
    if (pos_ >= text_.size()) return false;
    record_line_ = line_;
    std::string field;
    bool quoted = false, at_field_start = true;
    int64_t quote_line = 0;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (quoted) {
        if (c == '"' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
          field += '"';
          pos_ += 2;
        } else if (c == '"') {
          quoted = false;
          ++pos_;
        } else {
          if (c == '\n' || (c == '\r' && (pos_ + 1 == text_.size() || text_[pos_ + 1] != '\n'))) ++line_;
          field += c;
          ++pos_;
        }
      } else if (c == '"' && at_field_start) {
        quoted = true;
        at_field_start = false;
        quote_line = line_;
        ++pos_;
      } else if (c == separator_) {
        fields.push_back(std::move(field));
        field.clear();
        at_field_start = true;
        ++pos_;
      } else if (is_line_end(c)) {
        skip_line_end();
        break;
      } else {
        field += c;
        at_field_start = false;
        ++pos_;
      }
    }
    if (quoted)
      throw Error("caption table " + source_ + ": the quoted field opened on line " + std::to_string(quote_line) +
                  " is never closed");
    fields.push_back(std::move(field));
    return true;
  }

  int64_t record_line() const { return record_line_; }  // 1-based line where the last record began

 private:
  static bool is_line_end(char c) { return c == '\n' || c == '\r'; }
  void skip_line_end() {
    if (text_[pos_] == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
  }

  std::string_view text_;
  char separator_;
  const std::string& source_;
  size_t pos_ = 0;
  int64_t line_ = 1, record_line_ = 1;
};

std::string list_columns(const std::vector<std::string>& columns) {
  std::string out;
  for (const std::string& c : columns) out += (out.empty() ? "'" : ", '") + c + "'";
  return out;
}

size_t find_column(const std::vector<std::string>& header, const std::string& key, const char* role,
                   const std::string& path, char separator) {
  size_t found = header.size();
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] != key) continue;
    if (found != header.size())
      throw Error("caption table " + path + ": the " + role + " column '" + key + "' appears twice in the header");
    found = i;
  }
  if (found == header.size()) {
    std::string message = "caption table " + path + ": no " + role + " column '" + key + "' (columns found: " +
                          list_columns(header) + ")";
    const char other = separator == '\t' ? ',' : '\t';
    if (header.size() == 1 && header[0].find(other) != std::string::npos)
      message += "; the header holds " + separator_name(other) + "s — is the separator " + separator_name(other) +
                 " rather than " + separator_name(separator) + "?";
    throw Error(message);
  }
  return found;
}

}  // namespace

CaptionTable load_caption_table(const std::string& path, const CaptionTableOptions& options) {
  if (options.separator != '\t' && options.separator != ',')
    throw Error("caption table " + path + ": the separator must be a tab or a comma");
  const std::string text = read_table_file(path);
  RecordReader reader(text, options.separator, path);
  std::vector<std::string> header, fields;
  if (!reader.next(header)) throw Error("caption table " + path + ": empty file (expected a header row)");
  const size_t image_column = find_column(header, options.image_key, "image", path, options.separator);
  const size_t caption_column = find_column(header, options.caption_key, "caption", path, options.separator);

  const std::filesystem::path root =
      options.root.empty() ? std::filesystem::path(path).parent_path() : std::filesystem::path(options.root);
  CaptionTable table;
  table.source = path;
  while (reader.next(fields)) {
    const std::string where = "caption table " + path + ": line " + std::to_string(reader.record_line());
    if (fields.size() != header.size())
      throw Error(where + " has " + std::to_string(fields.size()) + " fields, expected " + std::to_string(header.size()) +
                  " (" + separator_name(options.separator) + "-separated, as the header)");
    const std::string& image = fields[image_column];
    if (image.empty()) throw Error(where + ": the image path ('" + options.image_key + "') is empty");
    const std::filesystem::path image_path(image);
    table.paths.push_back(image_path.is_absolute() ? image : (root / image_path).string());
    table.captions.push_back(std::move(fields[caption_column]));
    table.lines.push_back(reader.record_line());
  }
  if (table.paths.empty()) throw Error("caption table " + path + ": no rows after the header");
  return table;
}

void DecodeStats::record_failure(const std::string& message) {
  skipped_.fetch_add(1, std::memory_order_relaxed);
  const std::lock_guard lock(mutex_);
  if (examples_.size() < kMaxExamples) examples_.push_back(message);
}

std::vector<std::string> DecodeStats::examples() const {
  const std::lock_guard lock(mutex_);
  return examples_;
}

std::optional<Image> try_load_image(const std::string& path, DecodeStats* stats) {
  try {
    return load_image(path);
  } catch (const std::exception& e) {  // sparo::Error from stb, or bad_alloc for absurd dimensions
    if (stats) stats->record_failure(e.what());
    return std::nullopt;
  }
}

bool try_read_image_header(const std::string& path, DecodeStats* stats) {
  try {
    read_image_size(path);
    return true;
  } catch (const std::exception& e) {
    if (stats) stats->record_failure(e.what());
    return false;
  }
}

std::vector<int64_t> readable_rows(const CaptionTable& table, DecodeStats* stats) {
  std::vector<char> good(table.paths.size(), 0);
  tbb::parallel_for(size_t{0}, table.paths.size(),
                    [&](size_t i) { good[i] = try_read_image_header(table.paths[i], stats); });
  std::vector<int64_t> rows;
  for (size_t i = 0; i < good.size(); ++i)
    if (good[i]) rows.push_back(static_cast<int64_t>(i));
  if (rows.empty())
    throw Error(table.source + ": none of the " + std::to_string(good.size()) + " images could be read");
  return rows;
}

std::string summarize(const DecodeStats& stats) {
  const int64_t skipped = stats.skipped();
  if (skipped == 0) return "no images skipped";
  std::string out = std::to_string(skipped) + (skipped == 1 ? " image" : " images") + " skipped (unreadable or corrupt), e.g.: ";
  const std::vector<std::string> examples = stats.examples();
  for (size_t i = 0; i < examples.size(); ++i) out += (i ? "; " : "") + examples[i];
  return out;
}

UsableCaptionTable::UsableCaptionTable(const std::string& path, const CaptionTableOptions& options)
    : table_(load_caption_table(path, options)) {
  usable_ = readable_rows(table_, &stats_);
}

std::string UsableCaptionTable::description() const {
  return table_.source + " (" + std::to_string(size()) + " of " + std::to_string(table_.paths.size()) + " images usable)";
}

std::string UsableCaptionTable::skipped_summary() const { return summarize(stats_); }

Image UsableCaptionTable::image(int64_t i) const {
  const auto row = static_cast<size_t>(usable_.at(static_cast<size_t>(i)));
  try {
    return load_image(table_.paths[row]);
  } catch (const std::exception& e) {  // sparo::Error from stb, or bad_alloc for absurd dimensions
    throw Error("caption table " + table_.source + " line " + std::to_string(table_.lines[row]) + ": " + e.what() +
                "; its header read at the start of the run, so the row was kept (fix or remove the file, then resume)");
  }
}

const std::string& UsableCaptionTable::caption(int64_t i) const {
  return table_.captions[static_cast<size_t>(usable_.at(static_cast<size_t>(i)))];
}

}  // namespace sparo
