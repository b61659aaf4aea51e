// Labelled image folders (ImageFolder layout) and prompt templates for zero-shot evaluation.
#include <gtest/gtest.h>

#include <fstream>

#include "eval/image_folder.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace sparo {
namespace {

Image solid(int size, uint8_t value) {
  Image img;
  img.width = img.height = size;
  img.rgb.assign(static_cast<size_t>(size) * size * 3, value);
  return img;
}

TEST(ImageFolder, ClassesAreSortedFoldersAndImagesKeepTheirLabels) {
  TempDir tmp("image_folder");
  for (const char* d : {"bag", "ankle_boot", ".hidden"}) std::filesystem::create_directories(tmp / d);
  save_png(tmp / "bag/2.png", solid(8, 200));
  save_png(tmp / "bag/1.png", solid(8, 100));
  save_png(tmp / "ankle_boot/a.png", solid(6, 50));
  save_png(tmp / ".hidden/x.png", solid(6, 1));
  std::ofstream(tmp / "bag/.DS_Store") << "not an image";

  const ImageFolder f = load_image_folder(tmp.path());
  EXPECT_EQ(f.classes, (std::vector<std::string>{"ankle boot", "bag"}));
  EXPECT_EQ(f.labels, (std::vector<int>{0, 1, 1}));
  ASSERT_EQ(f.images.size(), 3u);
  EXPECT_EQ(f.images[0].width, 6);
  EXPECT_EQ(f.images[1].rgb[0], 100);  // bag/1.png before bag/2.png
  EXPECT_EQ(f.images[2].rgb[0], 200);
  EXPECT_EQ(load_image_folder(tmp.path(), 1).labels, (std::vector<int>{0, 1}));

  std::ofstream(tmp / "bag/3.png") << "garbage";
  expect_error([&] { load_image_folder(tmp.path()); }, {"bag/3.png"});
  std::filesystem::create_directories(tmp / "coat");
  std::filesystem::remove(tmp / "bag/3.png");
  expect_error([&] { load_image_folder(tmp.path()); }, {"class folder", "coat", "no images"});
  TempDir empty("image_folder_empty");
  expect_error([&] { load_image_folder(empty.path()); }, {"no class folders", "ImageFolder"});
  expect_error([&] { load_image_folder(tmp / "missing"); }, {"missing", "not a directory"});
}

TEST(ImageFolder, TemplatesFromAFileOrTheSceneGrammar) {
  const std::vector<std::string> grammar = load_templates("");
  ASSERT_EQ(grammar.size(), 32u);  // 8 colours × 4 places
  EXPECT_EQ(fill_template(grammar[0], "ankle boot"), "a red ankle boot in the top left");
  EXPECT_NE(std::find(grammar.begin(), grammar.end(), "an orange {} in the bottom right"), grammar.end());

  TempDir tmp("templates");
  std::ofstream(tmp / "t.txt") << "a photo of a {}.\r\n\n  \nit is a {}\n";
  EXPECT_EQ(load_templates(tmp / "t.txt"), (std::vector<std::string>{"a photo of a {}.", "it is a {}"}));
  std::ofstream(tmp / "bad.txt") << "a photo of a {}\nno placeholder\n";
  expect_error([&] { load_templates(tmp / "bad.txt"); }, {"bad.txt:2", "no placeholder", "{}"});
  std::ofstream(tmp / "blank.txt") << "\n\n";
  expect_error([&] { load_templates(tmp / "blank.txt"); }, {"blank.txt", "no templates"});
  expect_error([&] { load_templates(tmp / "none.txt"); }, {"templates", "none.txt", "not found"});
  // capped (16 MiB by default; here 1 MiB): /dev/zero was read until memory ran out
  expect_error_within(20, [] { limit_address_space(4ull << 30); load_templates("/dev/zero", 1 << 20); },
                      "templates '/dev/zero' holds more than 1 MiB");
}

}  // namespace
}  // namespace sparo
