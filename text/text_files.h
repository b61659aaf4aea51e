// Text files, plain or gzip, read with a cap on their size: captions, merges files, CSV.
// Errors (sparo::Error) name the file and what is wrong with it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparo {

// The cap on a caption file, counted after gzip decompression: past it reading stops with an
// error naming the file and the cap, so /dev/zero or a gzip bomb given by mistake fails in
// seconds instead of exhausting memory.
inline constexpr uint64_t kMaxCaptionFileBytes = 1ull << 30;  // about 10 million captions

// A caption file: one caption per line, plain text or gzip; '\r' before '\n' is dropped and
// blank lines are skipped. Throws sparo::Error naming the path when the file is missing,
// unreadable, corrupt, holds more than max_bytes (decompressed) or holds no caption.
std::vector<std::string> read_captions(const std::string& path, uint64_t max_bytes = kMaxCaptionFileBytes);

// A whole file, plain or gzip (decompressed), holding at most max_bytes: the cap is checked as
// the data arrives, so /dev/zero or a gzip bomb fails in seconds. Errors name `what` and the
// path (missing, a directory, unreadable, corrupt gzip, past the cap).
std::string read_text_file(const std::string& path, const std::string& what, uint64_t max_bytes);
// Its lines, split at '\n' with a '\r' before it dropped (CRLF files); blank lines are kept
// and a final newline ends no line, so line i of the result is line i + 1 of the file.
std::vector<std::string> read_lines(const std::string& path, const std::string& what, uint64_t max_bytes);

// Writes data to path, gzip-compressed when the path ends in ".gz". Errors name the path.
void write_text_file(const std::string& path, const std::string& data);

}  // namespace sparo
