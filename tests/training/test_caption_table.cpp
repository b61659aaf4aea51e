// OpenCLIP-style caption tables (TSV / CSV with quoting) and the decode-or-skip image loader,
// on files the tests write into a temporary folder.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/expect_error.h"
#include "training/data/caption_table.h"
#include "training/data/sample_rng.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;

// A w × h image with a pattern that differs per pixel and channel.
Image pattern_image(int w, int h, int seed) {
  Image img;
  img.width = w;
  img.height = h;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.rgb.push_back(static_cast<uint8_t>(x * 37 + y * 11 + c * 80 + seed * 13));
  return img;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

class CaptionTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("sparo_caption_table_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "images");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(CaptionTableTest, TsvPathsResolveAgainstTheTableFolder) {
  const Image a = pattern_image(7, 5, 1), b = pattern_image(4, 9, 2), c = pattern_image(16, 12, 3);
  save_png(path("images/a.png"), a);
  ASSERT_TRUE(stbi_write_bmp(path("images/b.bmp").c_str(), b.width, b.height, 3, b.rgb.data()));
  ASSERT_TRUE(stbi_write_jpg(path("c.jpg").c_str(), c.width, c.height, 3, c.rgb.data(), 95));
  write_file(dir_ / "train.tsv", "filepath\ttitle\n"
                                 "images/a.png\ta photo of a cat\n"
                                 "images/b.bmp\tsay \"cheese\", please\n" +
                                     path("c.jpg") + "\t\n");

  const CaptionTable table = load_caption_table(path("train.tsv"));
  EXPECT_EQ(table.source, path("train.tsv"));
  ASSERT_EQ(table.paths.size(), 3u);
  EXPECT_EQ(table.paths[0], (dir_ / "images/a.png").string());
  EXPECT_EQ(table.paths[1], (dir_ / "images/b.bmp").string());
  EXPECT_EQ(table.paths[2], path("c.jpg"));  // absolute paths stay as they are
  EXPECT_EQ(table.captions, (std::vector<std::string>{"a photo of a cat", "say \"cheese\", please", ""}));

  DecodeStats stats;
  const std::optional<Image> png = try_load_image(table.paths[0], &stats);
  const std::optional<Image> bmp = try_load_image(table.paths[1], &stats);
  const std::optional<Image> jpg = try_load_image(table.paths[2], &stats);
  ASSERT_TRUE(png && bmp && jpg);
  EXPECT_EQ(png->rgb, a.rgb);  // lossless formats round-trip exactly
  EXPECT_EQ(bmp->rgb, b.rgb);
  EXPECT_EQ(jpg->width, c.width);
  EXPECT_EQ(jpg->height, c.height);
  EXPECT_EQ(stats.skipped(), 0);
  EXPECT_EQ(summarize(stats), "no images skipped");

  CaptionTableOptions options;
  options.root = "/data/cc3m";
  EXPECT_EQ(load_caption_table(path("train.tsv"), options).paths[0], "/data/cc3m/images/a.png");
}

TEST_F(CaptionTableTest, CsvQuotingCrlfBomAndCustomColumns) {
  write_file(dir_ / "train.csv",
             "\xEF\xBB\xBFid,caption,img\r\n"
             "1,\"a dog, running\",x.png\r\n"
             "\r\n"
             "2,\"she said \"\"hi\"\"\",\"with space.png\"\r\n"
             "3,\"two\nlines\",z.png\r\n"
             "4,\"\"\"quoted\"\" start\",\"a\"b.png\r\n"
             "5,,\"q.png\"");  // no final line end
  CaptionTableOptions options;
  options.image_key = "img";
  options.caption_key = "caption";
  options.separator = ',';
  options.root = "/imgs";
  const CaptionTable table = load_caption_table(path("train.csv"), options);
  EXPECT_EQ(table.captions,
            (std::vector<std::string>{"a dog, running", "she said \"hi\"", "two\nlines", "\"quoted\" start", ""}));
  // "a"b: characters after a closing quote are kept (pandas' lenient parsing).
  EXPECT_EQ(table.paths, (std::vector<std::string>{"/imgs/x.png", "/imgs/with space.png", "/imgs/z.png", "/imgs/ab.png",
                                                   "/imgs/q.png"}));
}

TEST_F(CaptionTableTest, TsvQuotesOnlyOpenAtTheStartOfAField) {
  write_file(dir_ / "t.tsv", "title\tfilepath\nsize 12\" pizza\tp.png\n\"tab\there\"\tq.png\n");
  const CaptionTable table = load_caption_table(path("t.tsv"));
  EXPECT_EQ(table.captions, (std::vector<std::string>{"size 12\" pizza", "tab\there"}));
}

TEST_F(CaptionTableTest, ErrorsNameTheFileAndTheProblem) {
  expect_error([&] { load_caption_table(path("missing.tsv")); }, {path("missing.tsv"), "not found"});
  expect_error([&] { load_caption_table(dir_.string()); }, {dir_.string(), "not a regular file"});

  write_file(dir_ / "empty.tsv", "");
  expect_error([&] { load_caption_table(path("empty.tsv")); }, {path("empty.tsv"), "empty file"});

  write_file(dir_ / "header_only.tsv", "filepath\ttitle\n\n");
  expect_error([&] { load_caption_table(path("header_only.tsv")); }, {path("header_only.tsv"), "no rows"});

  write_file(dir_ / "columns.tsv", "path\ttext\na.png\tcat\n");
  expect_error([&] { load_caption_table(path("columns.tsv")); },
               {path("columns.tsv"), "no image column 'filepath'", "'path', 'text'"});
  CaptionTableOptions options;
  options.image_key = "path";
  expect_error([&] { load_caption_table(path("columns.tsv"), options); }, {"no caption column 'title'", "'path', 'text'"});

  write_file(dir_ / "comma.csv", "filepath,title\na.png,cat\n");
  expect_error([&] { load_caption_table(path("comma.csv")); }, {"'filepath,title'", "is the separator comma"});

  write_file(dir_ / "ragged.tsv", "filepath\ttitle\na.png\tcat\nb.png\tdog\textra\n");
  expect_error([&] { load_caption_table(path("ragged.tsv")); }, {path("ragged.tsv"), "line 3", "3 fields, expected 2"});
  write_file(dir_ / "short.tsv", "filepath\ttitle\n\"a\nb.png\"\tcat\nb.png\n");
  expect_error([&] { load_caption_table(path("short.tsv")); }, {"line 4", "1 fields, expected 2"});

  write_file(dir_ / "unclosed.csv", "filepath,title\na.png,cat\nb.png,\"dog\n");
  options = {};
  options.separator = ',';
  expect_error([&] { load_caption_table(path("unclosed.csv"), options); }, {path("unclosed.csv"), "line 3", "never closed"});

  write_file(dir_ / "twice.tsv", "filepath\ttitle\tfilepath\na\tb\tc\n");
  expect_error([&] { load_caption_table(path("twice.tsv")); }, {"'filepath' appears twice"});

  write_file(dir_ / "no_path.tsv", "filepath\ttitle\n\tcat\n");
  expect_error([&] { load_caption_table(path("no_path.tsv")); }, {"line 2", "image path", "empty"});

  options.separator = ';';
  expect_error([&] { load_caption_table(path("columns.tsv"), options); }, {"separator must be a tab or a comma"});
}

TEST_F(CaptionTableTest, BadImagesAreSkippedAndCounted) {
  save_png(path("good.png"), pattern_image(6, 6, 4));
  std::ifstream good(path("good.png"), std::ios::binary);
  const std::string png_bytes((std::istreambuf_iterator<char>(good)), std::istreambuf_iterator<char>());
  write_file(dir_ / "truncated.png", png_bytes.substr(0, png_bytes.size() / 2));
  SampleRng rng(1, 2);
  std::string noise(300, '\0');
  for (char& ch : noise) ch = static_cast<char>(rng.below(256));
  write_file(dir_ / "noise.jpg", noise);

  DecodeStats stats;
  EXPECT_TRUE(try_load_image(path("good.png"), &stats).has_value());
  EXPECT_FALSE(try_load_image(path("truncated.png"), &stats).has_value());
  EXPECT_FALSE(try_load_image(path("noise.jpg"), &stats).has_value());
  EXPECT_FALSE(try_load_image(path("absent.png"), &stats).has_value());
  EXPECT_FALSE(try_load_image(path("absent.png"), nullptr).has_value());  // no stats: still no throw
  EXPECT_EQ(stats.skipped(), 3);
  const std::vector<std::string> examples = stats.examples();
  ASSERT_EQ(examples.size(), 3u);
  EXPECT_NE(examples[0].find("truncated.png"), std::string::npos) << examples[0];
  EXPECT_NE(examples[1].find("noise.jpg"), std::string::npos) << examples[1];
  const std::string summary = summarize(stats);
  EXPECT_EQ(summary.rfind("3 images skipped (unreadable or corrupt)", 0), 0u) << summary;
  EXPECT_NE(summary.find("absent.png"), std::string::npos) << summary;
}

// Start-up reads each image's header only, so it costs the table, not the pixels: an image
// whose header reads but whose body is cut short passes start-up (it was decoded and skipped
// there before) and fails when its sample is drawn, naming the table, the line and the file.
// Images whose header does not read are still skipped and counted at the start.
TEST_F(CaptionTableTest, StartUpReadsOnlyHeadersAndImagesDecodeWhenDrawn) {
  const Image good = pattern_image(6, 6, 4);
  save_png(path("good.png"), good);
  std::ifstream in(path("good.png"), std::ios::binary);
  const std::string png_bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(png_bytes.size(), 60u);
  write_file(dir_ / "cut.png", png_bytes.substr(0, png_bytes.size() - 20));  // the header (IHDR) is whole
  write_file(dir_ / "no_header.png", "\x89PNG\r\n\x1a\n garbage");
  write_file(dir_ / "t.tsv", "filepath\ttitle\n"
                             "good.png\ta good one\n"
                             "no_header.png\tbroken at the start\n"
                             "absent.png\tmissing\n"
                             "cut.png\tbroken in the body\n");

  const UsableCaptionTable table(path("t.tsv"), {});
  EXPECT_EQ(table.size(), 2);
  EXPECT_EQ(table.description(), path("t.tsv") + " (2 of 4 images usable)");
  const std::string skipped = table.skipped_summary();
  EXPECT_EQ(skipped.rfind("2 images skipped", 0), 0u) << skipped;
  EXPECT_NE(skipped.find("no_header.png"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("absent.png"), std::string::npos) << skipped;

  EXPECT_EQ(table.image(0).rgb, good.rgb);
  EXPECT_EQ(table.caption(0), "a good one");
  EXPECT_EQ(table.caption(1), "broken in the body");
  expect_error([&] { table.image(1); },
               {"caption table " + path("t.tsv") + " line 5: image " + path("cut.png") + ": cannot be decoded",
                "fix or remove the file"});
}

// A table file past kMaxCaptionTableBytes (1 GiB) is refused from its size, naming it and the
// cap, before any of it is read (the file is sparse: it takes no disk and reading it would
// take gigabytes of memory).
TEST_F(CaptionTableTest, ATableLargerThanTheCapIsRefusedBeforeReading) {
  write_file(dir_ / "huge.tsv", "filepath\ttitle\na.png\tcat\n");
  fs::resize_file(dir_ / "huge.tsv", kMaxCaptionTableBytes + 1);
  expect_error([&] { load_caption_table(path("huge.tsv")); },
               {"caption table " + path("huge.tsv") + ": 1073741825 bytes, more than the 1 GiB limit"});
}

TEST_F(CaptionTableTest, DecodeStatsAreThreadSafe) {
  write_file(dir_ / "bad.png", "\x89PNG\r\n\x1a\n garbage");
  DecodeStats stats;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) try_load_image(path("bad.png"), &stats);
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(stats.skipped(), 100);
  EXPECT_EQ(stats.examples().size(), DecodeStats::kMaxExamples);
}

}  // namespace
}  // namespace sparo
