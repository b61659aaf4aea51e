#include "training/data/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "engine/tensor.h"  // sparo::Error

namespace sparo {

const std::array<const char*, 10> kFashionMnistClasses = {"t-shirt", "trousers", "pullover", "dress", "coat",
                                                         "sandal",  "shirt",    "sneaker",  "bag",   "ankle boot"};

const uint8_t* LabeledImages::image(int64_t i) const {
  if (i < 0 || i >= count)
    throw Error("LabeledImages: image " + std::to_string(i) + " out of range [0, " + std::to_string(count) + ")");
  return pixels.data() + i * rows * cols;
}

std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("SPARO_FASHION_MNIST");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

namespace {

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::string hex8(uint32_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
  return buf;
}

const char* idx_type_name(uint8_t type) {
  switch (type) {
    case 0x08: return "unsigned bytes";
    case 0x09: return "signed bytes";
    case 0x0B: return "16-bit integers";
    case 0x0C: return "32-bit integers";
    case 0x0D: return "32-bit floats";
    case 0x0E: return "64-bit floats";
    default: return "unknown type";
  }
}

// "60000×28×28"
std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "×" : "") + std::to_string(dims[i]);
  return s;
}

// A file read through zlib's gz* interface, which inflates gzip data (found by its magic
// 1f 8b) and passes anything else through unchanged.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error(where() + "not found");
    if (!std::filesystem::is_regular_file(path, ec)) throw Error(where() + "is not a regular file");
    errno = 0;
    file_.reset(gzopen(path.c_str(), "rb"));
    if (!file_) throw Error(where() + "cannot be opened: " + (errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(file_.get(), 1 << 17);
  }

  std::string where() const { return "IDX file " + path_ + ": "; }
  bool gzipped() const { return gzdirect(file_.get()) == 0; }

  // Reads up to n bytes; fewer only at the end of the data. A damaged gzip stream throws.
  size_t read(uint8_t* out, size_t n) {
    size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, size_t{1} << 30));
      const int got = gzread(file_.get(), out + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_.get(), &code);
        throw Error(where() + (code == Z_ERRNO ? std::string("read error: ") + std::strerror(errno)
                                               : std::string("corrupt gzip stream (") + msg + ")"));
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    if (done < n) {
      // zlib reports a gzip stream that stops early as Z_BUF_ERROR and returns what it had
      int code = 0;
      gzerror(file_.get(), &code);
      if (code == Z_BUF_ERROR) throw Error(where() + "corrupt gzip stream (truncated: unexpected end of file)");
    }
    return done;
  }

 private:
  struct Closer {
    void operator()(gzFile f) const { gzclose(f); }
  };
  std::string path_;
  std::unique_ptr<gzFile_s, Closer> file_;
};

}  // namespace

std::vector<uint8_t> read_idx(const std::string& path, std::vector<int64_t>* dims_out) {
  GzReader in(path);
  const std::string where = in.where();
  const std::string unzipped = in.gzipped() ? " (after gzip decompression)" : "";

  uint8_t magic[4];
  const size_t got_magic = in.read(magic, 4);
  if (got_magic < 4)
    throw Error(where + "holds " + std::to_string(got_magic) + " bytes" + unzipped + ", too short for an IDX header");
  const uint32_t magic_value =
      (uint32_t{magic[0]} << 24) | (uint32_t{magic[1]} << 16) | (uint32_t{magic[2]} << 8) | magic[3];
  if (magic[0] != 0 || magic[1] != 0)
    throw Error(where + "bad magic " + hex32(magic_value) +
                ", not an IDX file (expected 0x0000TTRR: two zero bytes, the type byte, the rank)");
  if (magic[2] != 0x08)
    throw Error(where + "data type " + hex8(magic[2]) + " (" + idx_type_name(magic[2]) +
                ") is not supported, only 0x08 (unsigned bytes)");
  const int rank = magic[3];
  if (rank == 0) throw Error(where + "rank 0 in the magic " + hex32(magic_value) + ", expected at least 1 dimension");

  std::vector<uint8_t> header(static_cast<size_t>(rank) * 4);
  const size_t got_header = in.read(header.data(), header.size());
  if (got_header < header.size())
    throw Error(where + "truncated header: rank " + std::to_string(rank) + " needs " + std::to_string(header.size()) +
                " bytes of dimensions, the file holds " + std::to_string(got_header) + unzipped);
  std::vector<int64_t> dims(static_cast<size_t>(rank));
  int64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    const uint8_t* b = header.data() + 4 * d;
    dims[static_cast<size_t>(d)] = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    // saturating: a dimension is < 2^32 and total <= kMaxIdxBytes + 1, so nothing overflows,
    // and a later zero dimension still gives the true product 0
    total = std::min(total * dims[static_cast<size_t>(d)], kMaxIdxBytes + 1);
  }
  if (total > kMaxIdxBytes)
    throw Error(where + "header says " + dims_text(dims) + " bytes, more than the " +
                std::to_string(kMaxIdxBytes >> 30) + " GiB limit for an IDX file");
  const std::string expected = "header says " + dims_text(dims) + " = " + std::to_string(total) + " bytes";

  // Grow with the data actually read, so that a short file claiming a huge size does not
  // allocate that size up front.
  std::vector<uint8_t> data;
  const size_t want = static_cast<size_t>(total);
  while (data.size() < want) {
    const size_t old = data.size();
    const size_t step = std::min(want - old, std::max(old, size_t{1} << 20));
    data.resize(old + step);
    const size_t got = in.read(data.data() + old, step);
    if (got < step)
      throw Error(where + "truncated: " + expected + ", file holds " + std::to_string(old + got) + " after the " +
                  std::to_string(4 + header.size()) + "-byte header" + unzipped);
  }
  uint8_t extra;
  if (in.read(&extra, 1) != 0)
    throw Error(where + "trailing data: " + expected + ", file holds more" + unzipped);
  if (dims_out) *dims_out = std::move(dims);
  return data;
}

namespace {

// <dir>/<stem> if it exists, else <dir>/<stem>.gz; neither: an error naming both.
std::string find_idx(const std::string& dir, const std::string& stem) {
  const std::filesystem::path plain = std::filesystem::path(dir) / stem;
  const std::string gz = plain.string() + ".gz";
  std::error_code ec;
  if (std::filesystem::exists(plain, ec)) return plain.string();
  if (std::filesystem::exists(gz, ec)) return gz;
  throw Error("fashion-mnist: neither " + plain.string() + " nor " + gz +
              " exists; install the Debian package dataset-fashion-mnist, or set SPARO_FASHION_MNIST "
              "to a folder holding the Fashion-MNIST IDX files");
}

std::string magic_text(const std::vector<int64_t>& dims) { return hex32(0x0800u | static_cast<uint32_t>(dims.size())); }

}  // namespace

LabeledImages load_fashion_mnist(const std::string& dir, const std::string& split) {
  if (split != "train" && split != "test")
    throw Error("fashion-mnist: split '" + split + "' is not known, expected 'train' or 'test'");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");

  LabeledImages out;
  std::vector<int64_t> image_dims, label_dims;
  try {
    out.pixels = read_idx(images_path, &image_dims);
    out.labels = read_idx(labels_path, &label_dims);
  } catch (const Error& e) {
    throw Error(std::string("fashion-mnist: ") + e.what());
  }
  if (image_dims.size() != 3)
    throw Error("fashion-mnist: IDX file " + images_path + ": bad magic " + magic_text(image_dims) +
                ", expected 0x00000803 (IDX images, unsigned bytes, rank 3)");
  if (label_dims.size() != 1)
    throw Error("fashion-mnist: IDX file " + labels_path + ": bad magic " + magic_text(label_dims) +
                ", expected 0x00000801 (IDX labels, unsigned bytes, rank 1)");
  if (image_dims[0] == 0 || image_dims[1] == 0 || image_dims[2] == 0)
    throw Error("fashion-mnist: IDX file " + images_path + " holds no pixels (" + dims_text(image_dims) + ")");
  if (image_dims[0] != label_dims[0])
    throw Error("fashion-mnist: " + std::to_string(image_dims[0]) + " images in " + images_path + " but " +
                std::to_string(label_dims[0]) + " labels in " + labels_path);
  for (size_t i = 0; i < out.labels.size(); ++i)
    if (out.labels[i] >= kFashionMnistClasses.size())
      throw Error("fashion-mnist: IDX file " + labels_path + ": label " + std::to_string(out.labels[i]) + " of image " +
                  std::to_string(i) + " is out of range, expected 0..9");
  out.count = image_dims[0];
  out.rows = static_cast<int>(image_dims[1]);
  out.cols = static_cast<int>(image_dims[2]);
  return out;
}

}  // namespace sparo
