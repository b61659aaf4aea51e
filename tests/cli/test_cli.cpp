// The sparo command end to end: info, inspect, embed (with a freshly trained BPE vocabulary
// and a saved tiny SPARO-CLIP), and its errors.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <regex>
#include <unistd.h>

#include "image/image.h"
#include "models/clip.h"
#include "tests/expect_error.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"

namespace sparo {
namespace {

struct CliRun {
  int code;
  std::string output;  // stdout and stderr
};

CliRun sparo_cli(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + (env.empty() ? "" : " ") + std::string(SPARO_BIN) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

// Without a Vulkan driver, info still works and says why there is no device. (The device
// listing itself is tested in-process on lavapipe, tests/engine/test_vulkan_context.cpp.)
TEST(Cli, InfoDescribesTheBuild) {
  const CliRun r = sparo_cli("--threads 1 info", "VK_DRIVER_FILES=/nonexistent/icd.json");
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* field : {"sparo ", "backends:", "cpu", "threads:       1", "cpu features:", "gemm kernel:", "vulkan"})
    EXPECT_NE(r.output.find(field), std::string::npos) << field << "\n" << r.output;
#if defined(SPARO_HAVE_VULKAN)
  EXPECT_NE(r.output.find("vulkan:        none ("), std::string::npos) << r.output;
#endif
}

TEST(Cli, BenchOpsPrintsEveryOpFamily) {
  const CliRun r = sparo_cli("bench ops --size 48 --reps 1 --windows 1");
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* op : {"matmul 48^3", "add", "gelu", "softmax", "layer_norm", "sum", "transpose", "GFLOP/s", "GB/s"})
    EXPECT_NE(r.output.find(op), std::string::npos) << op << "\n" << r.output;
  EXPECT_NE(sparo_cli("bench ops --reps 500").code, 0);
}

// Sizes whose byte counts overflow are errors naming the shape. --size 2147483648 crashed (the
// byte count wrapped to 0: no buffer) and 3000000000 hung (rounding its wrapped count up to a
// power of two never ended), so `timeout` bounds each run.
TEST(Cli, BenchOpsRefusesSizesWhoseByteCountsOverflow) {
  for (const std::string size : {"2147483648", "3000000000"}) {
    const CliRun r = sparo_cli("bench ops --reps 1 --windows 1 --size " + size, "timeout 60");
    EXPECT_EQ(r.code, 1) << r.output;
    for (const std::string& fragment :
         std::vector<std::string>{"sparo: error: ", "[" + size + ", " + size + "]", "overflows 64-bit arithmetic"})
      EXPECT_NE(r.output.find(fragment), std::string::npos) << fragment << "\n" << r.output;
  }
}

// Names and metadata are the file's data: their control characters (an ESC would start a
// terminal escape sequence) are printed escaped, never raw.
TEST(Cli, InspectEscapesControlCharactersFromTheFile) {
  const std::string path = ::testing::TempDir() + "/sparo_inspect_" + std::to_string(getpid()) + ".safetensors";
  save_safetensors(path, {{"w\x1b[2J", Tensor::zeros({2})}},
                   {{"note\a", "red \x1b[31mtext\x1b[0m, C1 \xc2\x9b" "31m, a \\ and a tab\t"},
                    {"long", std::string(76, '.') + "\xc3\xa9\x1b[0m"}});  // é across the cut at 77 bytes
  const CliRun r = sparo_cli("inspect " + path);
  std::filesystem::remove(path);
  EXPECT_EQ(r.code, 0) << r.output;
  for (const std::string raw : {"\x1b", "\a", "\t", "\xc2\x9b", "\xc3"})
    EXPECT_EQ(r.output.find(raw), std::string::npos)
        << "raw byte " << int(static_cast<unsigned char>(raw[0])) << " in\n" << r.output;
  for (const std::string& shown : std::vector<std::string>{
           "w\\x1b[2J  F32  [2]",
           "metadata note\\x07 = red \\x1b[31mtext\\x1b[0m, C1 \\u009b31m, a \\\\ and a tab\\x09",
           "metadata long = " + std::string(76, '.') + "...\n"})
    EXPECT_NE(r.output.find(shown), std::string::npos) << shown << "\n" << r.output;
}

// inspect reads the header only: a 4 GiB tensor in a sparse file is listed by a process whose
// address space is capped at 1 GiB (reading the data, as inspect did, cannot fit).
TEST(Cli, InspectListsAHugeFileWithoutReadingItsData) {
  const std::string path = ::testing::TempDir() + "/sparo_inspect_sparse_" + std::to_string(getpid()) + ".safetensors";
  const uint64_t nbytes = 4ull << 30;
  std::string header = R"({"big":{"dtype":"U8","shape":[65536,65536],"data_offsets":[0,)" + std::to_string(nbytes) + "]}}";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i)));
    out << header;
  }
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(8 + header.size() + nbytes)), 0) << path;
  const CliRun r = sparo_cli("inspect " + path, kAddressSpaceCanBeLimited ? "ulimit -v 1048576;" : "");
  std::filesystem::remove(path);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("big  U8  [65536, 65536]\n1 tensors, 4294967296 values"), std::string::npos) << r.output;
}

// /dev/zero given as a training config is refused at the config cap (16 MiB), naming it, where
// it was read until std::bad_alloc. The address space is capped so that a reader without the
// cap fails quickly rather than taking the machine's memory.
TEST(Cli, TrainRefusesAnEndlessConfigFileAtTheCap) {
  const std::string out = ::testing::TempDir() + "/sparo_devzero_" + std::to_string(getpid());
  const CliRun r = sparo_cli("train clip --config /dev/zero --out " + out,
                             kAddressSpaceCanBeLimited ? "ulimit -v 2097152; timeout 60" : "timeout 60");
  std::filesystem::remove_all(out);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("train config /dev/zero: more than 16 MiB"), std::string::npos) << r.output;
}

TEST(Cli, UnknownCommandAndMissingArgumentsFailClearly) {
  CliRun r = sparo_cli("frobnicate");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("frobnicate"), std::string::npos) << r.output;
  r = sparo_cli("embed --out x.safetensors");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--config"), std::string::npos) << r.output;
}

class EmbedCli : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test and process: ctest runs these tests in parallel.
    dir = ::testing::TempDir() + "/sparo_embed_" + ::testing::UnitTest::GetInstance()->current_test_info()->name() +
          "_" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    // A vocabulary learned from a few captions, and a tiny SPARO-CLIP whose vocab fits it.
    std::vector<std::string> captions;
    for (const char* c : {"a red sneaker to the left of a blue bag", "a green shirt above a red bag",
                          "a blue sneaker", "a red shirt to the right of a green sneaker"})
      for (int i = 0; i < 5; ++i) captions.push_back(c);
    train_bpe(captions, 40, dir + "/merges.txt");
    std::ofstream(dir + "/captions.txt") << "a red sneaker\na blue bag to the left of a green shirt\n";
    cfg_path = std::string(SPARO_SOURCE_DIR) + "/models/configs/tiny-clip-sparo.json";
    Clip model(ClipConfig::load(cfg_path), 3);
    save_safetensors(dir + "/model.safetensors", state_dict(model, model.aliases()));
    for (int i = 0; i < 2; ++i) {
      Image img;
      img.width = 48 + 16 * i, img.height = 40;
      for (int p = 0; p < img.width * img.height; ++p)
        img.rgb.insert(img.rgb.end(), {uint8_t(p * 7 + i * 50), uint8_t(p * 3), uint8_t(255 - p % 256)});
      save_png(dir + "/img" + std::to_string(i) + ".png", img);
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string dir, cfg_path;
};

TEST_F(EmbedCli, WritesNormalisedEmbeddingsThatMatchTheLibrary) {
  const CliRun r = sparo_cli("embed --config " + cfg_path + " --checkpoint " + dir + "/model.safetensors --vocab " + dir +
                          "/merges.txt --images " + dir + "/img0.png " + dir + "/img1.png --texts-file " + dir +
                          "/captions.txt --attention --out " + dir + "/out.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  std::map<std::string, Tensor> out;
  for (auto& [k, t] : load_safetensors(dir + "/out.safetensors")) out[k] = t;
  ASSERT_EQ(out["image_embeds"].shape(), (Shape{2, 768}));  // L·V = 48·16
  ASSERT_EQ(out["text_embeds"].shape(), (Shape{2, 768}));
  EXPECT_EQ(out["image_attention"].shape(), (Shape{2, 48, 65}));  // L = 48 slots
  EXPECT_EQ(out["text_attention"].shape(), (Shape{2, 48, 32}));
  const std::vector<float> norms = sum(square(out["text_embeds"]), 1).to_float_vector();
  for (float n : norms) EXPECT_NEAR(n, 1.0f, 1e-4);

  // The same numbers through the library.
  Clip model(ClipConfig::load(cfg_path), 99);
  load_state_dict(model, load_safetensors(dir + "/model.safetensors"), model.aliases());
  const Tokenizer tok = Tokenizer::load(dir + "/merges.txt");
  const Tensor ids = Tensor::from_vector(tok.tokenize({"a red sneaker", "a blue bag to the left of a green shirt"}, 32), {2, 32});
  const std::vector<float> expected = model.encode_text(ids).embedding.to_float_vector();
  const std::vector<float> got = out["text_embeds"].to_float_vector();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-5) << i;
  const Tensor images = images_to_tensor({clip_preprocess(load_image(dir + "/img1.png"), 32)});
  const std::vector<float> img1 = model.encode_image(images).embedding.to_float_vector();
  const std::vector<float> got_img = out["image_embeds"].to_float_vector();
  for (size_t i = 0; i < img1.size(); ++i) EXPECT_NEAR(got_img[768 + i], img1[i], 1e-5) << i;

  const CliRun listing = sparo_cli("inspect " + dir + "/out.safetensors");
  EXPECT_EQ(listing.code, 0);
  EXPECT_NE(listing.output.find("image_embeds  F32  [2, 768]"), std::string::npos) << listing.output;
}

// --precision bf16: the same embeddings to bf16's accuracy, not the f32 bits; a wrong value is
// an error naming the option.
TEST_F(EmbedCli, Bf16PrecisionIsCloseToF32) {
  const std::string args = "embed --config " + cfg_path + " --checkpoint " + dir + "/model.safetensors --vocab " + dir +
                           "/merges.txt --images " + dir + "/img0.png --texts-file " + dir + "/captions.txt --out " + dir;
  ASSERT_EQ(sparo_cli(args + "/f32.safetensors").code, 0);
  const CliRun r = sparo_cli(args + "/bf16.safetensors --precision bf16");
  ASSERT_EQ(r.code, 0) << r.output;
  const NamedTensors f32 = load_safetensors(dir + "/f32.safetensors"), bf16 = load_safetensors(dir + "/bf16.safetensors");
  ASSERT_EQ(f32.size(), bf16.size());
  for (size_t t = 0; t < f32.size(); ++t) {
    const std::vector<float> a = f32[t].second.to_float_vector(), b = bf16[t].second.to_float_vector();
    ASSERT_EQ(a.size(), b.size()) << f32[t].first;
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < a.size(); ++i) dot += double(a[i]) * b[i], na += double(a[i]) * a[i], nb += double(b[i]) * b[i];
    EXPECT_GT(dot / std::sqrt(na * nb), 0.99) << f32[t].first;
    EXPECT_NE(a, b) << f32[t].first;
  }
  const CliRun bad = sparo_cli(args + "/x.safetensors --precision fp8");
  EXPECT_EQ(bad.code, 1) << bad.output;
  EXPECT_NE(bad.output.find("embed: --precision: expected \"f32\" or \"bf16\", got \"fp8\""), std::string::npos) << bad.output;
}

TEST_F(EmbedCli, OneRowPerLineBlankLinesIncluded) {
  std::ofstream(dir + "/gaps.txt") << "a red sneaker\n\na blue bag\r\n";
  const CliRun r = sparo_cli("embed --config " + cfg_path + " --checkpoint " + dir + "/model.safetensors --vocab " + dir +
                             "/merges.txt --texts-file " + dir + "/gaps.txt --out " + dir + "/out.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  const NamedTensors out = load_safetensors(dir + "/out.safetensors");
  ASSERT_EQ(out.at(0).second.shape(), (Shape{3, 768}));  // row 1 is the blank line's
  // CRLF is one line end: row 2 is "a blue bag" as from a Unix file.
  std::ofstream(dir + "/unix.txt") << "a blue bag\n";
  ASSERT_EQ(sparo_cli("embed --config " + cfg_path + " --checkpoint " + dir + "/model.safetensors --vocab " + dir +
                      "/merges.txt --texts-file " + dir + "/unix.txt --out " + dir + "/unix.safetensors").code, 0);
  const std::vector<float> crlf = out.at(0).second.to_float_vector();
  const std::vector<float> unix = load_safetensors(dir + "/unix.safetensors").at(0).second.to_float_vector();
  EXPECT_EQ(std::vector<float>(crlf.begin() + 2 * 768, crlf.end()), unix);
}

// --profile and SPARO_PROFILE=1 print the per-op table at the end; without them there is none.
TEST_F(EmbedCli, ProfilePrintsThePerOpTable) {
  const std::string args = "embed --config " + cfg_path + " --checkpoint " + dir + "/model.safetensors --vocab " + dir +
                           "/merges.txt --texts-file " + dir + "/captions.txt --out " + dir + "/out.safetensors";
  for (const auto& [flag, env] : {std::pair<std::string, std::string>{" --profile", ""}, {"", "SPARO_PROFILE=1"}}) {
    const CliRun r = sparo_cli(args + flag, env);
    ASSERT_EQ(r.code, 0) << r.output;
    for (const char* text : {"profile: sparo embed; wall ", "matmul", "layer_norm", "GFLOP/s", "other/untracked"})
      EXPECT_NE(r.output.find(text), std::string::npos) << text << "\n" << r.output;
  }
  const CliRun plain = sparo_cli(args, "SPARO_PROFILE=0");
  ASSERT_EQ(plain.code, 0) << plain.output;
  EXPECT_EQ(plain.output.find("other/untracked"), std::string::npos) << plain.output;
}

TEST_F(EmbedCli, NaNWeightsAreAnErrorNotNaNEmbeddings) {
  NamedTensors state = load_safetensors(dir + "/model.safetensors");
  std::vector<float> w = state.at(0).second.to_float_vector();
  w[0] = std::nanf("");
  state.at(0).second = Tensor::from_vector(w, state.at(0).second.shape());
  save_safetensors(dir + "/nan.safetensors", state);
  const CliRun r = sparo_cli("embed --config " + cfg_path + " --checkpoint " + dir + "/nan.safetensors --images " + dir +
                             "/img0.png --out " + dir + "/out.safetensors");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("NaN or infinite"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(state.at(0).first), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.safetensors"));
}

TEST_F(EmbedCli, WrongCheckpointListsTheMismatchedKeys) {
  const std::string other = std::string(SPARO_SOURCE_DIR) + "/models/configs/tiny-clip.json";
  const CliRun r = sparo_cli("embed --config " + other + " --checkpoint " + dir + "/model.safetensors --images " + dir +
                          "/img0.png --out " + dir + "/out.safetensors");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("missing keys"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("visual.proj"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unexpected keys"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("visual.sparo.q_emb"), std::string::npos) << r.output;
}

TEST_F(EmbedCli, UnavailableDeviceIsAClearError) {
  const CliRun r = sparo_cli("embed --config " + cfg_path + " --checkpoint " + dir + "/model.safetensors --images " + dir +
                          "/img0.png --device vulkan:9 --out " + dir + "/out.safetensors");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("vulkan:9"), std::string::npos) << r.output;
}

namespace train_cli {

namespace fs = std::filesystem;

// A scratch directory with a tiny CLIP training config (seconds per step on one core).
class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = (fs::temp_directory_path() / ("sparo_train_cli_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir + "/clip.json") << R"({"task": "clip", "train_size": 256, "steps": 3, "batch_size": 16,
      "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2,
      "model": {"embed_dim": 32, "use_sparo": true, "L": 4, "V": 8,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 24, "vocab_size": 600, "width": 32, "heads": 2, "layers": 1}}})";
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string dir;
};

TEST_F(TrainCli, TrainsResumesAndWritesTheRunDirectory) {
  const CliRun r = sparo_cli("train clip --config " + dir + "/clip.json --out " + dir + "/run --progress 0");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("[clip] step 1/3  loss "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[clip] step 3/3  loss "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("samples/s"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("other/untracked"), std::string::npos) << r.output;  // no profile unless asked
  for (const char* f : {"config.json", "metrics.jsonl", "log.txt", "model.safetensors", "tokenizer.txt",
                        "checkpoints/step-00000002.safetensors", "checkpoints/step-00000003.safetensors"})
    EXPECT_TRUE(fs::exists(dir + "/run/" + f)) << f;
  // Continue the finished run for two more steps.
  const CliRun more = sparo_cli("train clip --resume " + dir + "/run --set steps=5 --progress 0");
  ASSERT_EQ(more.code, 0) << more.output;
  EXPECT_NE(more.output.find("resuming " + dir + "/run at step 3"), std::string::npos) << more.output;
  EXPECT_NE(more.output.find("[clip] step 5/5"), std::string::npos) << more.output;
  // The finished run evaluates from the command line, as a table or as JSON.
  const CliRun zs = sparo_cli("eval zeroshot " + dir + "/run --scenes 20 --json 2>/dev/null");
  ASSERT_EQ(zs.code, 0) << zs.output;
  const nlohmann::json j = nlohmann::json::parse(zs.output);
  EXPECT_EQ(j.at("evaluation"), "zeroshot");
  const double top1 = j.at("metrics").at("CLIP zero-shot item top-1").get<double>();
  EXPECT_GE(top1, 0.0);
  EXPECT_LE(top1, 1.0);
  // Zero-shot on a labelled image folder: two classes of scene pictures.
  fs::create_directories(dir + "/folder/sneaker");
  fs::create_directories(dir + "/folder/ankle_boot");
  const CliRun folder_zs = sparo_cli("eval zeroshot " + dir + "/run --images " + dir + "/folder 2>&1");
  EXPECT_NE(folder_zs.code, 0);
  EXPECT_NE(folder_zs.output.find("holds no images"), std::string::npos) << folder_zs.output;
  for (const char* d : {"sneaker", "ankle_boot"})
    for (int i = 0; i < 3; ++i) {
      Image img;
      img.width = img.height = 40;
      img.rgb.assign(40 * 40 * 3, static_cast<uint8_t>(60 * i + (d[0] == 's' ? 30 : 0)));
      save_png(dir + "/folder/" + d + "/" + std::to_string(i) + ".png", img);
    }
  const CliRun folder_ok = sparo_cli("eval zeroshot " + dir + "/run --images " + dir + "/folder --json 2>/dev/null");
  ASSERT_EQ(folder_ok.code, 0) << folder_ok.output;
  const nlohmann::json fj = nlohmann::json::parse(folder_ok.output);
  const double folder_top1 = fj.at("metrics").at("CLIP zero-shot top-1 (2 classes, 6 images)").get<double>();
  EXPECT_GE(folder_top1, 0.0);
  EXPECT_LE(folder_top1, 1.0);
  EXPECT_EQ(fj.at("metrics").at("CLIP zero-shot top-5 (2 classes, 6 images)").get<double>(), 1.0);  // 2 classes
  const CliRun sel = sparo_cli("select-concepts " + dir + "/run --scenes 20");
  ASSERT_EQ(sel.code, 0) << sel.output;
  EXPECT_NE(sel.output.find("slots in the order chosen: ["), std::string::npos) << sel.output;
  const CliRun wrong = sparo_cli("eval knn " + dir + "/run");
  EXPECT_NE(wrong.code, 0);
  EXPECT_NE(wrong.output.find("not an evaluation of a clip run"), std::string::npos) << wrong.output;
  // A second run into the same directory is refused rather than overwriting it.
  const CliRun again = sparo_cli("train clip --config " + dir + "/clip.json --out " + dir + "/run");
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.output.find("already holds a run"), std::string::npos) << again.output;
}

// The table comes after the last step of the run (and of a resumed run), into log.txt as well.
TEST_F(TrainCli, ProfilePrintsThePerOpTableAfterTheLastStep) {
  const CliRun r = sparo_cli("train clip --config " + dir + "/clip.json --out " + dir + "/run --progress 0 --profile");
  ASSERT_EQ(r.code, 0) << r.output;
  const size_t table = r.output.find("profile: sparo train clip, steps 0..3; wall ");
  ASSERT_NE(table, std::string::npos) << r.output;
  EXPECT_GT(table, r.output.find("[clip] step 3/3")) << r.output;
  for (const char* text : {"matmul", "adamw_step", "softmax", "grad_accumulate", "GFLOP/s", "GB/s", "other/untracked"})
    EXPECT_NE(r.output.find(text, table), std::string::npos) << text << "\n" << r.output;
  std::ifstream log(dir + "/run/log.txt");
  const std::string logged((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(logged.find("other/untracked"), std::string::npos) << logged;
  const CliRun more = sparo_cli("train clip --resume " + dir + "/run --set steps=4 --progress 0", "SPARO_PROFILE=1");
  ASSERT_EQ(more.code, 0) << more.output;
  EXPECT_NE(more.output.find("profile: sparo train clip, steps 3..4; wall "), std::string::npos) << more.output;
}

TEST_F(TrainCli, BadConfigCorruptIdxAndCorruptImageGiveClearMessages) {
  const CliRun typo = sparo_cli("train clip --config " + dir + "/clip.json --set stpes=3 --out " + dir + "/a");
  EXPECT_NE(typo.code, 0);
  EXPECT_NE(typo.output.find("unknown key \"stpes\""), std::string::npos) << typo.output;
  // A number out of a double's range named neither the key nor the value.
  const CliRun huge = sparo_cli("train clip --config " + dir + "/clip.json --set lr=1e400 --out " + dir + "/a");
  EXPECT_EQ(huge.code, 1);
  for (const char* fragment : {"--set lr=1e400", "value 1e400 of \"lr\" is out of range", "expected a finite number"})
    EXPECT_NE(huge.output.find(fragment), std::string::npos) << fragment << "\n" << huge.output;
  const CliRun wrong_task = sparo_cli("train dino --config " + dir + "/clip.json --out " + dir + "/b");
  EXPECT_NE(wrong_task.code, 0);
  EXPECT_NE(wrong_task.output.find("is a \"clip\" config"), std::string::npos) << wrong_task.output;

  // A Fashion-MNIST folder whose image file is not IDX.
  fs::create_directories(dir + "/fm");
  std::ofstream(dir + "/fm/train-images-idx3-ubyte") << "not an idx file at all";
  std::ofstream(dir + "/fm/train-labels-idx1-ubyte") << "nor this";
  const CliRun idx = sparo_cli("train clip --config " + dir + "/clip.json --set data_dir=" + dir + "/fm --out " + dir + "/c");
  EXPECT_NE(idx.code, 0);
  EXPECT_NE(idx.output.find(dir + "/fm/train-images-idx3-ubyte"), std::string::npos) << idx.output;
  EXPECT_NE(idx.output.find("bad magic"), std::string::npos) << idx.output;

  // A caption table with one corrupt image among good ones: skipped, counted, named.
  std::ofstream table(dir + "/pairs.tsv");
  table << "filepath\ttitle\n";
  for (int i = 0; i < 4; ++i) {
    Image img;
    img.width = img.height = 40;
    img.rgb.assign(40 * 40 * 3, static_cast<uint8_t>(40 * i));
    save_png(dir + "/img" + std::to_string(i) + ".png", img);
    table << "img" << i << ".png\ta picture number " << i << "\n";
  }
  std::ofstream(dir + "/broken.png") << "\x89PNG\r\n\x1a\n truncated";
  table << "broken.png\ta broken picture\n";
  table.close();
  const CliRun csv = sparo_cli("train clip --config " + dir + "/clip.json --set dataset=csv --set csv_path=" + dir +
                               "/pairs.tsv --set batch_size=4 --set steps=1 --out " + dir + "/d --progress 0");
  EXPECT_EQ(csv.code, 0) << csv.output;
  EXPECT_NE(csv.output.find("4 of 5 images usable"), std::string::npos) << csv.output;
  EXPECT_NE(csv.output.find("1 image"), std::string::npos) << csv.output;
  EXPECT_NE(csv.output.find("broken.png"), std::string::npos) << csv.output;
}

// Ctrl-C during training: the run stops at the end of the step under way, saves a checkpoint
// there, logs how to continue, exits 130 like a shell's interrupted command, and --resume
// finishes it with every step in metrics.jsonl once.
TEST_F(TrainCli, CtrlCSavesACheckpointAtTheStepAndTheRunResumes) {
  std::ofstream(dir + "/model.json") << R"({"model": "dino", "image_size": 16, "patch_size": 4, "width": 32,
    "depth": 1, "heads": 2, "head_hidden": 32, "head_bottleneck": 16, "head_out": 32})";
  std::ofstream(dir + "/train.json") << R"({"task": "dino", "model": "model.json", "steps": 60, "batch_size": 8,
    "warmup_steps": 0, "local_crops": 0, "log_every": 1, "checkpoint_every": 1000})";
  // Interrupt once step 3 is logged (far from both ends of the run and from any checkpoint).
  const std::string run = dir + "/run";
  const std::string script = std::string(SPARO_BIN) + " --threads 1 train dino --config " + dir + "/train.json --out " +
                             run + " > " + dir + "/out.txt 2>&1 & pid=$!; "
                             "while ! grep -q '\"step\":3,' " + run + "/metrics.jsonl 2>/dev/null; do sleep 0.01; done; "
                             "kill -INT $pid; wait $pid; echo $?";
  FILE* pipe = popen(("sh -c \"" + std::regex_replace(script, std::regex("[\"$]"), "\\$&") + "\"").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[64] = {};
  const std::string rc = fgets(buf, sizeof buf, pipe) ? buf : "";
  pclose(pipe);
  EXPECT_EQ(rc, "130\n");
  std::ifstream log_file(run + "/log.txt");
  const std::string log((std::istreambuf_iterator<char>(log_file)), {});
  const std::smatch m = [&] {
    std::smatch found;
    std::regex_search(log, found, std::regex("interrupted by SIGINT after step (\\d+) of 60; saved (\\S+)\\. Continue with: "
                                             "sparo train dino --resume " + run));
    return found;
  }();
  ASSERT_FALSE(m.empty()) << log;
  const int stopped = std::stoi(m[1].str());
  EXPECT_GE(stopped, 3);
  EXPECT_LT(stopped, 60);
  EXPECT_TRUE(std::filesystem::exists(m[2].str())) << m[2].str();
  EXPECT_FALSE(std::filesystem::exists(run + "/model.safetensors"));

  const CliRun resumed = sparo_cli("--threads 1 train dino --resume " + run);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("at step " + std::to_string(stopped)), std::string::npos) << resumed.output;
  std::ifstream metrics(run + "/metrics.jsonl");
  std::vector<int> steps;
  for (std::string line; std::getline(metrics, line);)
    if (line.find("\"loss\"") != std::string::npos) steps.push_back(nlohmann::json::parse(line).at("step").get<int>());
  std::vector<int> expected(60);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(steps, expected);
}

}  // namespace train_cli

}  // namespace
}  // namespace sparo
