// The Vulkan kernels, on lavapipe with the validation layers (synchronization validation
// included) on, against the CPU backend: memory round trips, fill, copies, unary ops and
// their gradients, broadcasting binary ops, matmul, random, optimisers. Any validation
// message fails. Every check runs twice: with the default transfers (lavapipe's memory is
// host-visible: memcpy into the mapped buffers) and with SPARO_VULKAN_STAGING=1 (through
// the staging buffer, as on a discrete GPU).
#if defined(SPARO_HAVE_VULKAN)
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <functional>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/vulkan/context.h"
#include "engine/vulkan/vulkan_backend.h"
#include "tests/vulkan_env.h"

namespace sparo {
namespace {

class VulkanOps : public ::testing::TestWithParam<bool> {  // the parameter: staging forced
 protected:
  static void SetUpTestSuite() { use_lavapipe_with_validation(); }
  void SetUp() override {
    if (GetParam()) setenv("SPARO_VULKAN_STAGING", "1", 1);  // read by every transfer
    vk::clear_validation_messages();
  }
  void TearDown() override {
    unsetenv("SPARO_VULKAN_STAGING");
    const auto messages = vk::validation_messages();
    EXPECT_TRUE(messages.empty()) << messages.size() << " validation message(s), first: " << messages[0];
  }
  const Device gpu = Device::vulkan(0);
};

// Normalised mean squared error of `got` against `want` (ggml's test-backend-ops measure).
double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return err / std::max(norm, 1e-30);
}

TEST_P(VulkanOps, UploadDownloadRoundTrip) {
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(float(i));
  const Tensor t = Tensor::from_vector(v, {10, 100}, gpu);
  EXPECT_EQ(t.device(), gpu);
  EXPECT_EQ(t.to_float_vector(), v);
  const std::vector<int32_t> ids = {3, -7, 42};
  EXPECT_EQ(Tensor::from_vector(ids, {3}, gpu).to_int_vector(), ids);
  EXPECT_EQ(Tensor::from_vector(v, {10, 100}, gpu).to(Device::cpu()).to_float_vector(), v);
}

TEST_P(VulkanOps, Fill) {
  EXPECT_EQ(Tensor::full({5, 7}, 2.5, DType::f32, gpu).to_float_vector(), std::vector<float>(35, 2.5f));
  EXPECT_EQ(Tensor::full({3}, -4, DType::i32, gpu).to_int_vector(), std::vector<int32_t>(3, -4));
  // more than 65535 workgroups of 256 in x: the 2-D dispatch path
  const std::vector<float> big = Tensor::ones({65536 * 256 + 300}, DType::f32, gpu).to_float_vector();
  EXPECT_EQ(big.front(), 1.0f);
  EXPECT_EQ(big.back(), 1.0f);
}

TEST_P(VulkanOps, EveryUnaryOpMatchesTheCpu) {
  Generator gen(3);
  const Tensor x_cpu = Tensor::randn({1000 + 17}, gen);
  const Tensor pos_cpu = affine(abs(x_cpu), 1.0f, 0.5f);
  const Tensor x = x_cpu.to(gpu), pos = pos_cpu.to(gpu);
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&)> fn;
    bool positive;
  };
  const std::vector<Case> cases = {
      {"neg", [](const Tensor& t) { return neg(t); }, false},
      {"exp", [](const Tensor& t) { return exp(t); }, false},
      {"log", [](const Tensor& t) { return log(t); }, true},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, true},
      {"rsqrt", [](const Tensor& t) { return rsqrt(t); }, true},
      {"tanh", [](const Tensor& t) { return tanh(t); }, false},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, false},
      {"relu", [](const Tensor& t) { return relu(t); }, false},
      {"gelu", [](const Tensor& t) { return gelu(t); }, false},
      {"gelu_tanh", [](const Tensor& t) { return gelu_tanh(t); }, false},
      {"quick_gelu", [](const Tensor& t) { return quick_gelu(t); }, false},
      {"pow_cube", [](const Tensor& t) { return pow(t, 3.0f); }, false},
      {"pow_half", [](const Tensor& t) { return pow(t, 0.5f); }, true},
      {"clamp", [](const Tensor& t) { return clamp(t, -0.5f, 0.7f); }, false},
      {"affine", [](const Tensor& t) { return affine(t, 2.5f, -1.0f); }, false},
      {"step", [](const Tensor& t) { return step(t, 0.1f, 3.0f); }, false},
      {"square", [](const Tensor& t) { return square(t); }, false},
      {"abs", [](const Tensor& t) { return abs(t); }, false},
  };
  // 1e-10: a few ulp of float error on ~1000 values of order 1 (lavapipe's exp/tanh differ
  // from the CPU's in the last bits).
  for (const Case& c : cases) {
    const std::vector<float> want = c.fn(c.positive ? pos_cpu : x_cpu).to_float_vector();
    const std::vector<float> got = c.fn(c.positive ? pos : x).to_float_vector();
    EXPECT_LT(nmse(got, want), 1e-10) << c.name;
  }
}

TEST_P(VulkanOps, ChainedDispatchesSeeEachOthersResults) {
  // Each op reads what the previous one wrote: the backend must put barriers between them.
  Tensor y = Tensor::full({4096}, 1.0, DType::f32, gpu);
  for (int i = 0; i < 300; ++i) y = affine(y, 1.0f, 1.0f);  // crosses the 256-dispatch submit too
  EXPECT_EQ(y.to_float_vector(), std::vector<float>(4096, 301.0f));
  // Past every command buffer of the ring, so that the host waits for the oldest while it
  // records on, and dead tensors' buffers are reused by commands in later command buffers.
  Tensor z = Tensor::full({4096}, 0.0, DType::f32, gpu);
  for (int i = 0; i < 2000; ++i) z = affine(z, 1.0f, 1.0f);
  EXPECT_EQ(z.to_float_vector(), std::vector<float>(4096, 2000.0f));
}

TEST_P(VulkanOps, BroadcastingBinaryOpsMatchTheCpu) {
  Generator gen(5);
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{33, 17}, {33, 17}}, {{33, 17}, {17}}, {{33, 1}, {1, 17}}, {{}, {4, 5}}, {{1, 5, 1}, {2, 1, 3}}};
  for (const auto& [sa, sb] : shapes) {
    const Tensor a = Tensor::randn(sa, gen), b = affine(abs(Tensor::randn(sb, gen)), 1.0f, 0.5f);
    for (auto fn : {add, sub, mul, div, maximum, eq}) {
      const std::vector<float> want = fn(a, b).to_float_vector();
      EXPECT_LT(nmse(fn(a.to(gpu), b.to(gpu)).to_float_vector(), want), 1e-12) << shape_str(sa) << " " << shape_str(sb);
    }
  }
  Tensor acc = Tensor::ones({6}, DType::f32, gpu);  // in place, as gradient accumulation does
  add_(acc, Tensor::full({1}, 2.0, DType::f32, gpu));
  EXPECT_EQ(acc.to_float_vector(), std::vector<float>(6, 3.0f));
}

TEST_P(VulkanOps, ShapeOpsMatchTheCpu) {
  Generator gen(6);
  const Tensor x = Tensor::randn({2, 3, 5}, gen), y = Tensor::randn({2, 4, 5}, gen);
  const Tensor gx = x.to(gpu), gy = y.to(gpu);
  EXPECT_EQ(permute(gx, {2, 0, 1}).to_float_vector(), permute(x, {2, 0, 1}).to_float_vector());
  EXPECT_EQ(slice(gx, 2, 1, 4).to_float_vector(), slice(x, 2, 1, 4).to_float_vector());
  EXPECT_EQ(concat({gx, gy}, 1).to_float_vector(), concat({x, y}, 1).to_float_vector());
  EXPECT_EQ(expand(slice(gx, 1, 0, 1), {2, 6, 5}).to_float_vector(), expand(slice(x, 1, 0, 1), {2, 6, 5}).to_float_vector());
  EXPECT_EQ(gx.clone().to_float_vector(), x.to_float_vector());
}

TEST_P(VulkanOps, GradientsOfUnaryChainsMatchTheCpu) {
  Generator gen(7);
  const Tensor x_cpu = Tensor::randn({300}, gen);
  auto grad_of = [](Tensor x) {
    x.requires_grad_();
    Tensor y = gelu(mul(tanh(x), sigmoid(x)));
    y.backward(Tensor::ones(y.shape(), DType::f32, y.device()));
    return x.grad().to_float_vector();
  };
  EXPECT_LT(nmse(grad_of(x_cpu.to(gpu)), grad_of(x_cpu.clone())), 1e-10);
}

// The row kernels in both layouts (one subgroup per row, and one invocation per row with
// SPARO_VULKAN_SUBGROUPS=0): softmax, log-softmax with a broadcast mask (a fully masked
// row among them), layer norm, and their gradients, against the CPU, for rows narrower
// than a subgroup, of a few subgroups, and wide.
TEST_P(VulkanOps, RowKernelsMatchTheCpuInBothLayouts) {
  for (const char* subgroups : {"1", "0"}) {
    setenv("SPARO_VULKAN_SUBGROUPS", subgroups, 1);
    for (const int64_t cols : {3, 65, 1000}) {
      Generator gen(static_cast<uint64_t>(cols));
      const Tensor x_cpu = Tensor::randn({37, cols}, gen), dy_cpu = Tensor::randn({37, cols}, gen);
      const Tensor w_cpu = Tensor::randn({cols}, gen), b_cpu = Tensor::randn({cols}, gen);
      std::vector<float> mask_values(static_cast<size_t>(cols), 0.0f);
      for (int64_t c = 0; c < cols; c += 2) mask_values[static_cast<size_t>(c)] = -INFINITY;
      const Tensor mask_cpu = Tensor::from_vector(mask_values, {1, cols});
      const auto run = [&](Device d, int which) {
        Tensor x = x_cpu.clone().to(d);  // fresh leaves: their gradients are this run's alone
        Tensor w = w_cpu.clone().to(d), b = b_cpu.clone().to(d);
        x.requires_grad_(), w.requires_grad_(), b.requires_grad_();
        Tensor y;
        if (which == 0) y = softmax(x);
        if (which == 1) y = log_softmax(x, mask_cpu.to(d));
        if (which == 2) y = layer_norm(x, w, b);
        // Masked entries of log-softmax are -inf: compare the finite part through exp.
        std::vector<float> out = (which == 1 ? exp(y) : y).to_float_vector();
        y.backward(dy_cpu.to(d));
        for (const Tensor& leaf : which == 2 ? std::vector<Tensor>{x, w, b} : std::vector<Tensor>{x}) {
          const std::vector<float> grad = leaf.grad().to_float_vector();  // layer norm: dx, dweight, dbias
          out.insert(out.end(), grad.begin(), grad.end());
        }
        return out;
      };
      for (int which = 0; which < 3; ++which)
        EXPECT_LT(nmse(run(gpu, which), run(Device::cpu(), which)), 1e-10)
            << "subgroups " << subgroups << ", cols " << cols << ", kernel " << which;
      // Every key masked: no probability mass (zeros), not NaN.
      const Tensor all_masked = Tensor::full({2, cols}, -INFINITY, DType::f32, gpu);
      EXPECT_EQ(softmax(slice(x_cpu.to(gpu), 0, 0, 2), all_masked).to_float_vector(),
                std::vector<float>(static_cast<size_t>(2 * cols), 0.0f));
    }
  }
  unsetenv("SPARO_VULKAN_SUBGROUPS");
}

// Both reduction kernels (one invocation per output; a workgroup per long output): a NaN
// anywhere makes the max NaN, as on the CPU, and sums of whole tensors are right.
TEST_P(VulkanOps, ReductionsKeepNaNAndSumLongRows) {
  for (const int64_t n : {33, 5000}) {
    for (const int64_t at : {int64_t{0}, n / 2, n - 1}) {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>((i * 37) % 101) - 50.0f;
      v[static_cast<size_t>(at)] = NAN;
      const Tensor x = Tensor::from_vector(v, {n}, gpu);
      EXPECT_TRUE(std::isnan(max(x).item())) << "n " << n << ", NaN at " << at;
      EXPECT_TRUE(std::isnan(max(reshape(x, {1, n}), 1).to_float_vector()[0])) << "n " << n << ", NaN at " << at;
    }
    std::vector<float> ones(static_cast<size_t>(n), 1.0f);
    EXPECT_EQ(sum(Tensor::from_vector(ones, {n}, gpu)).item(), static_cast<float>(n));
    EXPECT_EQ(max(Tensor::from_vector(ones, {n}, gpu)).item(), 1.0f);
  }
}

// NMSE of a batch of 2 products op(A)·op(B) (M×K by K×N) on `gpu` against the CPU's.
double matmul_error(Device gpu, Generator& gen, int64_t M, int64_t K, int64_t N, bool ta, bool tb) {
  const Tensor a = Tensor::randn(ta ? Shape{2, K, M} : Shape{2, M, K}, gen);
  const Tensor b = Tensor::randn(tb ? Shape{2, N, K} : Shape{2, K, N}, gen);
  return nmse(matmul(a.to(gpu), b.to(gpu), ta, tb).to_float_vector(), matmul(a, b, ta, tb).to_float_vector());
}

// NMSE of C += A·B (MatmulDesc::accumulate, C all ones) on `gpu` against the CPU's.
double accumulating_matmul_error(Device gpu, Generator& gen) {
  Tensor c = Tensor::ones({40, 50}, DType::f32, gpu);
  const Tensor a = Tensor::randn({40, 20}, gen), b = Tensor::randn({20, 50}, gen);
  MatmulDesc d;
  d.M = 40, d.N = 50, d.K = 20, d.accumulate = true;
  backend_for(gpu).matmul(a.to(gpu), b.to(gpu), c, d);
  return nmse(c.to_float_vector(), add(matmul(a, b), Tensor::ones({40, 50})).to_float_vector());
}

TEST_P(VulkanOps, TiledMatmulMatchesTheCpu) {
  // Sizes around and across the tiles and the K slice, every transpose combination, a
  // batch, and accumulation; for the default tiles (64×64, slices of 16), 128×128 tiles, and
  // an odd shape whose loads do not divide evenly among its 32 invocations (24×40 tiles,
  // slices of 7); with vec4 loads (used where M, N or K is a multiple of 4, scalar loads
  // elsewhere: 132×36×72 takes them on every side, 130×17×257 on none).
  Generator gen(8);
  for (const char* tiles : {"", "16,16,8,8,8", "8,4,6,5,7", "16,16,8,8,8,4", "8,4,6,5,8,4"}) {
    setenv("SPARO_VULKAN_MATMUL_TILES", tiles, 1);
    for (auto [M, K, N] : {std::array<int64_t, 3>{32, 16, 32}, {100, 70, 90}, {64, 1, 129}, {65, 33, 64},
                           {130, 17, 257}, {132, 36, 72}}) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        EXPECT_LT(matmul_error(gpu, gen, M, K, N, ta, tb), 1e-12) << "tiles \"" << tiles << "\", " << M << "x" << K << "x" << N << " transposes " << t;
      }
    }
  }
  // Tiles the device cannot run are a clear error, before anything is recorded.
  const Tensor x = Tensor::ones({64, 64}, DType::f32, gpu);
  for (const char* tiles : {"64,64,1,1,1", "16,16,16,16,64", "16,16,4,4"}) {
    setenv("SPARO_VULKAN_MATMUL_TILES", tiles, 1);
    try {
      matmul(x, x);
      ADD_FAILURE() << "tiles " << tiles << " were accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("SPARO_VULKAN_MATMUL_TILES=\"") + tiles + "\""), std::string::npos)
          << e.what();
    }
  }
  unsetenv("SPARO_VULKAN_MATMUL_TILES");
  EXPECT_LT(accumulating_matmul_error(gpu, gen), 1e-12);
}

TEST_P(VulkanOps, CoopMatrixMatmulIsWithinFp16OfTheCpuOrAClearError) {
  // SPARO_VULKAN_COOPMAT=1: fp16 inputs on the matrix units. On a device without
  // VK_NV_cooperative_matrix (lavapipe) that is an error naming the device; on one with it
  // (scripts/gpu_check.sh runs this on a GPU) the products, edge tiles, transposes and
  // accumulation included, match the CPU to fp16 input precision.
  const bool supported = dynamic_cast<vk::VulkanBackend&>(backend_for(gpu)).context().info().coopmat_nv_f16;
  setenv("SPARO_VULKAN_COOPMAT", "1", 1);
  Generator gen(9);
  if (!supported) {
    try {
      matmul(Tensor::ones({64, 64}, DType::f32, gpu), Tensor::ones({64, 64}, DType::f32, gpu));
      ADD_FAILURE() << "SPARO_VULKAN_COOPMAT=1 was accepted by a device without cooperative matrices";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("has no VK_NV_cooperative_matrix"), std::string::npos) << e.what();
    }
  } else {
    for (auto [M, K, N] : {std::array<int64_t, 3>{64, 32, 64}, {100, 70, 90}, {7, 300, 129}}) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        EXPECT_LT(matmul_error(gpu, gen, M, K, N, ta, tb), 1e-5) << M << "x" << K << "x" << N << " transposes " << t;
      }
    }
    EXPECT_LT(accumulating_matmul_error(gpu, gen), 1e-5);
  }
  unsetenv("SPARO_VULKAN_COOPMAT");
}

TEST(VulkanMatmulTiles, ParseTakesFiveValuesAndNamesWhatIsWrong) {
  EXPECT_EQ(vk::parse_matmul_tiles("16,16,8,8,8", "X"), (vk::MatmulTiles{16, 16, 8, 8, 8}));
  EXPECT_EQ(vk::parse_matmul_tiles("1,2,3,4,5", "X"), (vk::MatmulTiles{1, 2, 3, 4, 5, 1}));
  EXPECT_EQ(vk::parse_matmul_tiles("16,16,8,8,8,4", "X"), (vk::MatmulTiles{16, 16, 8, 8, 8, 4}));
  for (const char* bad : {"", "16,16,8,8", "16,16,8,8,8,", "16,16,8,8,8,2", "16,16,8,8,8,4,1", "16,16,0,8,8",
                          "16,-1,8,8,8", "16, 16,8,8,8", "a,16,8,8,8", "16,16,8,8,2000", "16;16;8;8;8"}) {
    try {
      vk::parse_matmul_tiles(bad, "SPARO_VULKAN_MATMUL_TILES");
      ADD_FAILURE() << "\"" << bad << "\" was accepted";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(std::string("SPARO_VULKAN_MATMUL_TILES=\"") + bad + "\""), std::string::npos) << what;
      EXPECT_NE(what.find("expected wx,wy,tm,tn,bk[,vec]"), std::string::npos) << what;
    }
  }
}

TEST_P(VulkanOps, RandomStreamMatchesTheCpu) {
  Generator a(11), b(11);
  a.reserve(5), b.reserve(5);
  const std::vector<float> cpu = Tensor::uniform({1001}, -1.0, 2.0, a).to_float_vector();
  // The Philox words are integer arithmetic, identical on both; a + (b-a)·u may round
  // differently (FMA contraction), hence a last-bit tolerance.
  const std::vector<float> gpu_u = Tensor::uniform({1001}, -1.0, 2.0, b, gpu).to_float_vector();
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu_u[i], cpu[i], 1e-6) << i;
  const std::vector<float> n_cpu = Tensor::randn({1001}, a).to_float_vector();
  EXPECT_LT(nmse(Tensor::randn({1001}, b, gpu).to_float_vector(), n_cpu), 1e-12);
  Generator c(3), d(3);
  EXPECT_EQ(dropout(Tensor::ones({500}, DType::f32, gpu), 0.3f, c).to_float_vector(),
            dropout(Tensor::ones({500}), 0.3f, d).to_float_vector());  // the same masks for the same seed
}

TEST_P(VulkanOps, AdamWAndSgdStepsMatchTheCpu) {
  for (bool adam : {true, false}) {
    Generator gen(4);
    Tensor p_cpu = Tensor::randn({257}, gen), g_cpu = Tensor::randn({257}, gen);
    Tensor m_cpu = Tensor::zeros({257}), v_cpu = Tensor::zeros({257});
    Tensor p = p_cpu.to(gpu), g = g_cpu.to(gpu), m = m_cpu.to(gpu), v = v_cpu.to(gpu);
    for (int step = 1; step <= 3; ++step) {
      if (adam) {
        const AdamWStep s{1e-2f, 0.9f, 0.98f, 1e-6f, 0.1f, static_cast<float>(1.0 - std::pow(0.9, step)),
                          static_cast<float>(1.0 - std::pow(0.98, step))};
        backend_for(Device::cpu()).adamw_step(p_cpu, g_cpu, m_cpu, v_cpu, s);
        backend_for(gpu).adamw_step(p, g, m, v, s);
      } else {
        const SgdStep s{0.1f, 0.9f, 0.0f, 0.01f, true, step == 1};
        backend_for(Device::cpu()).sgd_step(p_cpu, g_cpu, m_cpu, s);
        backend_for(gpu).sgd_step(p, g, m, s);
      }
    }
    EXPECT_LT(nmse(p.to_float_vector(), p_cpu.to_float_vector()), 1e-12) << (adam ? "adamw" : "sgd");
  }
}

// The EMA teacher's update. The shader asks for the products rounded before the sum (precise),
// as on the CPU; on lavapipe some elements still differ in the last bit.
TEST_P(VulkanOps, EmaStepMatchesTheCpu) {
  Generator gen(6);
  Tensor t_cpu = Tensor::randn({1027}, gen);
  const Tensor s_cpu = Tensor::randn({1027}, gen);
  Tensor t = t_cpu.to(gpu);
  const Tensor s = s_cpu.to(gpu);
  const std::vector<float> before = t_cpu.to_float_vector();
  for (float m : {0.996f, 0.5f}) {
    ema_(t_cpu, s_cpu, m);
    ema_(t, s, m);
  }
  const std::vector<float> a = t.to_float_vector(), b = t_cpu.to_float_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-7 * (1.0 + std::fabs(b[i]))) << i;
  EXPECT_GT(nmse(a, before), 1e-2) << "the target did not move";
}

// Indices are checked by the kernels on the device: the error comes at the next host read,
// names the kernel, the value, its position and the range, and leaves the backend usable.
TEST_P(VulkanOps, BadIndicesAreClearErrorsAtTheNextHostRead) {
  Backend& b = backend_for(gpu);
  const auto expect_thrown_by = [&](const std::function<void()>& read, const std::string& message) {
    try {
      read();
      FAIL() << "expected: " << message;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  const Tensor table = Tensor::ones({4, 3}, DType::f32, gpu);
  const Tensor looked_up = embedding(table, Tensor::from_vector(std::vector<int32_t>{1, 4}, {2}, gpu));  // no throw yet
  expect_thrown_by([&] { looked_up.to_float_vector(); }, "vulkan gather: index 4 at position 1 is out of range [0, 4)");

  const Tensor labels = Tensor::from_vector(std::vector<int32_t>{0, 2, -1, 9}, {4}, gpu);
  Tensor hot = Tensor::zeros({4, 3}, DType::f32, gpu);
  b.one_hot(labels, hot, 3, 1.0f, 0.0f);
  expect_thrown_by([&] { b.synchronize(); }, "vulkan one_hot: index -1 at position 2 is out of range [0, 3)");

  // Two bad dispatches in one command buffer: the first recorded is reported.
  Tensor sums = Tensor::zeros({1, 5, 1}, DType::f32, gpu);
  b.scatter_add(Tensor::ones({1, 3, 1}, DType::f32, gpu), Tensor::from_vector(std::vector<int32_t>{0, 7, 5}, {3}, gpu),
                sums, 1, 5, 1);
  b.one_hot(labels, hot, 3, 1.0f, 0.0f);
  expect_thrown_by([&] { sums.to_float_vector(); }, "vulkan scatter_add: index 7 at position 1 is out of range [0, 5)");
  // The good indices were applied, the bad ones skipped (nothing written out of bounds).
  EXPECT_EQ(sums.to_float_vector(), (std::vector<float>{1, 0, 0, 0, 0}));

  // A bad index in a command buffer that the host waited for while it recorded on (the
  // ring of command buffers came round) is still reported at the next read, and only the first.
  // (Uploads first: on mapped memory an upload waits for the device, which reports too.)
  const Tensor early_ids = Tensor::from_vector(std::vector<int32_t>{5, 0}, {2}, gpu);
  const Tensor later_ids = Tensor::from_vector(std::vector<int32_t>{0, 6}, {2}, gpu);
  Tensor later = Tensor::zeros({64}, DType::f32, gpu);
  const Tensor early = embedding(table, early_ids);
  for (int i = 0; i < 1000; ++i) later = affine(later, 1.0f, 1.0f);
  const Tensor also_bad = embedding(table, later_ids);
  expect_thrown_by([&] { later.to_float_vector(); }, "vulkan gather: index 5 at position 0 is out of range [0, 4)");
  EXPECT_EQ(later.to_float_vector(), std::vector<float>(64, 1000.0f));  // reported once, then clean

  // The slots are reset: good indices afterwards run clean.
  const Tensor rows = embedding(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, gpu),
                                Tensor::from_vector(std::vector<int32_t>{1, 0, 1}, {3}, gpu));
  EXPECT_EQ(rows.to_float_vector(), (std::vector<float>{3, 4, 1, 2, 3, 4}));
}

INSTANTIATE_TEST_SUITE_P(Vulkan, VulkanOps, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "staging" : "default"; });

}  // namespace
}  // namespace sparo
#endif
