// The C API (include/sparo/sparo.h) against `sparo embed`: the same files and pixels give the
// same embeddings and SPARO attentions (within 1e-6). Also what the C program
// (tests/capi/test_capi.c, every argument and load error from C) cannot build there: a
// checkpoint with one wrongly shaped tensor or a NaN, one model shared by several threads, and
// the per-thread error message.
#include <gtest/gtest.h>

#include <sparo/sparo.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <unistd.h>

#include "image/image.h"
#include "models/clip.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"

namespace sparo {
namespace {

float max_abs_diff(const std::vector<float>& a, const float* b) {
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

class CApi : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test and process: ctest runs tests in parallel.
    dir = ::testing::TempDir() + "/sparo_capi_" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
          std::to_string(getpid());
    std::filesystem::create_directories(dir);
    std::vector<std::string> captions;
    for (const char* c : {"a red sneaker to the left of a blue bag", "a green shirt above a red bag", "a blue sneaker"})
      for (int i = 0; i < 5; ++i) captions.push_back(c);
    train_bpe(captions, 40, dir + "/merges.txt");
    cfg_path = std::string(SPARO_SOURCE_DIR) + "/models/configs/tiny-clip-sparo.json";
    const Clip model(ClipConfig::load(cfg_path), 3);
    save_safetensors(dir + "/model.safetensors", state_dict(model, model.aliases()));
    for (int i = 0; i < 2; ++i) {  // two sizes, neither the model's 32 × 32: resizing and cropping are exercised
      Image img;
      img.width = 48 + 16 * i, img.height = 40;
      for (int p = 0; p < img.width * img.height; ++p)
        img.rgb.insert(img.rgb.end(), {uint8_t(p * 7 + i * 50), uint8_t(p * 3), uint8_t(255 - p % 256)});
      save_png(dir + "/img" + std::to_string(i) + ".png", img);
      images.push_back(img);
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  sparo_model* load(const std::string& checkpoint) {
    sparo_model* m = nullptr;
    const sparo_status s = sparo_model_load(cfg_path.c_str(), checkpoint.c_str(), (dir + "/merges.txt").c_str(), "cpu", &m);
    EXPECT_EQ(s, SPARO_OK) << sparo_last_error();
    return m;
  }

  std::string dir, cfg_path;
  std::vector<Image> images;
  const std::vector<std::string> texts = {"a red sneaker", "a blue bag to the left of a green shirt", ""};
};

TEST_F(CApi, EmbeddingsAndAttentionsEqualSparoEmbeds) {
  {
    std::ofstream captions(dir + "/captions.txt");
    for (const std::string& t : texts) captions << t << "\n";
  }
  const std::string cmd = std::string(SPARO_BIN) + " embed --config " + cfg_path + " --checkpoint " + dir +
                          "/model.safetensors --vocab " + dir + "/merges.txt --images " + dir + "/img0.png " + dir +
                          "/img1.png --texts-file " + dir + "/captions.txt --attention --out " + dir +
                          "/out.safetensors > " + dir + "/log.txt 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::map<std::string, std::vector<float>> cli;
  for (const auto& [name, t] : load_safetensors(dir + "/out.safetensors")) cli[name] = t.to_float_vector();

  sparo_model* model = load(dir + "/model.safetensors");
  ASSERT_NE(model, nullptr);
  const int E = sparo_embed_dim(model);
  ASSERT_EQ(E, 768);
  int slots = 0, tokens = 0;
  ASSERT_EQ(sparo_attention_shape(model, SPARO_TOWER_IMAGE, &slots, &tokens), SPARO_OK);
  for (int i = 0; i < 2; ++i) {  // different sizes: one call each
    const Image& img = images[static_cast<size_t>(i)];
    std::vector<float> embed(static_cast<size_t>(E)), attention(static_cast<size_t>(slots * tokens));
    ASSERT_EQ(sparo_embed_images_ex(model, img.rgb.data(), img.width, img.height, 3 * img.width, 1, embed.data(),
                                    attention.data()),
              SPARO_OK)
        << sparo_last_error();
    EXPECT_LE(max_abs_diff(embed, cli["image_embeds"].data() + i * E), 1e-6f) << "image " << i;
    EXPECT_LE(max_abs_diff(attention, cli["image_attention"].data() + i * slots * tokens), 1e-6f) << "image " << i;
  }
  ASSERT_EQ(sparo_attention_shape(model, SPARO_TOWER_TEXT, &slots, &tokens), SPARO_OK);
  std::vector<const char*> utf8;
  for (const std::string& t : texts) utf8.push_back(t.c_str());
  std::vector<float> embeds(3 * static_cast<size_t>(E)), attention(3 * static_cast<size_t>(slots * tokens));
  ASSERT_EQ(sparo_embed_texts_ex(model, utf8.data(), 3, embeds.data(), attention.data()), SPARO_OK) << sparo_last_error();
  EXPECT_LE(max_abs_diff(embeds, cli["text_embeds"].data()), 1e-6f);
  EXPECT_LE(max_abs_diff(attention, cli["text_attention"].data()), 1e-6f);
  sparo_model_free(model);
}

// A batch with padded rows equals its images one by one (the stride is honoured, the padding
// never read).
TEST_F(CApi, PaddedBatchEqualsImagesOneByOne) {
  sparo_model* model = load(dir + "/model.safetensors");
  ASSERT_NE(model, nullptr);
  const Image& img = images[0];
  const int E = sparo_embed_dim(model), stride = 3 * img.width + 13;
  std::vector<uint8_t> padded(2 * static_cast<size_t>(img.height * stride), 0xEE);
  for (int i = 0; i < 2; ++i)
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < 3 * img.width; ++x)
        padded[static_cast<size_t>((i * img.height + y) * stride + x)] =
            static_cast<uint8_t>(img.rgb[static_cast<size_t>(y * 3 * img.width + x)] ^ (i * 0x55));
  std::vector<float> batch(2 * static_cast<size_t>(E)), one(static_cast<size_t>(E));
  ASSERT_EQ(sparo_embed_images(model, padded.data(), img.width, img.height, stride, 2, batch.data()), SPARO_OK);
  ASSERT_EQ(sparo_embed_images(model, img.rgb.data(), img.width, img.height, 3 * img.width, 1, one.data()), SPARO_OK);
  EXPECT_LE(max_abs_diff(one, batch.data()), 1e-6f);
  EXPECT_GT(max_abs_diff(one, batch.data() + E), 1e-3f);  // the second image differs
  sparo_model_free(model);
}

TEST_F(CApi, WrongShapeOrNaNInTheCheckpointIsAModelErrorNamingTheTensor) {
  NamedTensors state = load_safetensors(dir + "/model.safetensors");
  const std::string name = state.at(0).first;
  const Tensor original = state.at(0).second;
  state.at(0).second = Tensor::zeros({original.numel() + 1});
  save_safetensors(dir + "/shape.safetensors", state);
  std::vector<float> w = original.to_float_vector();
  w[0] = std::nanf("");
  state.at(0).second = Tensor::from_vector(w, original.shape());
  save_safetensors(dir + "/nan.safetensors", state);
  for (const auto& [file, why] : {std::pair<std::string, std::string>{"shape", name}, {"nan", "NaN or infinite"}}) {
    sparo_model* m = reinterpret_cast<sparo_model*>(this);
    const std::string path = dir + "/" + file + ".safetensors";
    EXPECT_EQ(sparo_model_load(cfg_path.c_str(), path.c_str(), nullptr, "cpu", &m), SPARO_ERROR_MODEL) << file;
    EXPECT_EQ(m, nullptr);
    const std::string message = sparo_last_error();
    EXPECT_NE(message.find(why), std::string::npos) << message;
    EXPECT_NE(message.find(name), std::string::npos) << message;
  }
}

// The model's lock makes concurrent calls safe: each thread gets the serial result.
TEST_F(CApi, OneModelSharedByThreadsGivesTheSerialResults) {
  sparo_model* model = load(dir + "/model.safetensors");
  ASSERT_NE(model, nullptr);
  const int E = sparo_embed_dim(model);
  const char* utf8[] = {"a red sneaker", "a green shirt"};
  std::vector<float> serial(2 * static_cast<size_t>(E));
  ASSERT_EQ(sparo_embed_texts(model, utf8, 2, serial.data()), SPARO_OK);
  std::vector<std::vector<float>> got(3, std::vector<float>(2 * static_cast<size_t>(E)));
  std::vector<sparo_status> status(3);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 3; ++t)
    threads.emplace_back([&, t] { status[t] = sparo_embed_texts(model, utf8, 2, got[t].data()); });
  for (std::thread& t : threads) t.join();
  for (size_t t = 0; t < 3; ++t) {
    EXPECT_EQ(status[t], SPARO_OK);
    EXPECT_EQ(got[t], serial) << "thread " << t;
  }
  sparo_model_free(model);
}

TEST(CApiErrors, LastErrorIsPerThreadAndNamesTheFunction) {
  EXPECT_EQ(sparo_embed_texts(nullptr, nullptr, 1, nullptr), SPARO_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(sparo_last_error(), "sparo_embed_texts: model is NULL");
  std::string other = "unset";
  std::thread([&] { other = sparo_last_error(); }).join();
  EXPECT_EQ(other, "");  // another thread's message is its own
  EXPECT_STREQ(sparo_last_error(), "sparo_embed_texts: model is NULL");
  EXPECT_STREQ(sparo_version(), SPARO_VERSION);
  EXPECT_EQ(sparo_embed_dim(nullptr), 0);  // a value, not a status: no message
  int slots, tokens;
  EXPECT_EQ(sparo_attention_shape(nullptr, SPARO_TOWER_TEXT, &slots, &tokens), SPARO_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(sparo_status_name(99), "unknown status");
}

}  // namespace
}  // namespace sparo
