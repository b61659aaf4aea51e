// Writes the files the C-language tests of the C API run on (ctest's capi fixture): a tiny
// SPARO-CLIP (model.json + model.safetensors), a BPE vocabulary learned from a few captions
// that fits it (merges.txt), two RGB images of different sizes (img0.png, img1.png), a tiny
// plain CLIP (plain.json + plain.safetensors), and wrong inputs for the error paths: a DINO
// checkpoint, a file of garbage, a config that is not JSON. C cannot build a checkpoint, so
// this small C++ program does.
//   capi_fixture DIR
#include <filesystem>
#include <fstream>
#include <iostream>

#include "image/image.h"
#include "models/clip.h"
#include "models/dino.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"

using namespace sparo;

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::cerr << "usage: capi_fixture DIR\n";
    return 2;
  }
  const std::string dir = argv[1], configs = std::string(SPARO_SOURCE_DIR) + "/models/configs/";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(configs + "tiny-clip-sparo.json", dir + "/model.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(configs + "tiny-clip.json", dir + "/plain.json",
                             std::filesystem::copy_options::overwrite_existing);
  const Clip sparo_clip(ClipConfig::load(dir + "/model.json"), 3);
  save_safetensors(dir + "/model.safetensors", state_dict(sparo_clip, sparo_clip.aliases()));
  const Clip plain_clip(ClipConfig::load(dir + "/plain.json"), 4);
  save_safetensors(dir + "/plain.safetensors", state_dict(plain_clip, plain_clip.aliases()));
  const Dino dino(DinoConfig::load(configs + "micro-dino.json"), 5);
  save_safetensors(dir + "/dino.safetensors", state_dict(dino, dino.aliases()));
  std::ofstream(dir + "/garbage.safetensors") << "this is not a safetensors file, only text";
  std::ofstream(dir + "/bad.json") << "{\"embed_dim\": ";

  std::vector<std::string> captions;
  for (const char* c : {"a photo of a shirt", "a picture of a sneaker", "a photo of a bag", "a red shirt",
                        "a blue sneaker to the left of a green bag"})
    for (int i = 0; i < 5; ++i) captions.push_back(c);
  train_bpe(captions, 40, dir + "/merges.txt");

  for (int i = 0; i < 2; ++i) {
    Image img;
    img.width = 48 + 16 * i, img.height = 40;
    for (int p = 0; p < img.width * img.height; ++p)
      img.rgb.insert(img.rgb.end(), {uint8_t(p * 7 + i * 50), uint8_t(p * 3), uint8_t(255 - p % 256)});
    save_png(dir + "/img" + std::to_string(i) + ".png", img);
  }
  std::cout << "capi fixture in " << dir << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "capi_fixture: " << e.what() << "\n";
  return 1;
}
