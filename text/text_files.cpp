// Text files, plain or gzip, read under a cap.
#include "text/text_files.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "engine/error.h"

namespace sparo {

namespace {

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
}  // namespace

std::string read_text_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
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

void write_text_file(const std::string& path, const std::string& data) {
  if (path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0) {
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

std::vector<std::string> read_lines(const std::string& path, const std::string& what, uint64_t max_bytes) {
  const std::string data = read_text_file(path, what, max_bytes);
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

}  // namespace sparo
