// The text tower's end-of-text position: OpenCLIP's ids.argmax(-1), computed on the ids'
// device without reading them back.
#include <gtest/gtest.h>

#include "models/text_transformer.h"

namespace sparo {
namespace {

TEST(TextTransformer, EndOfTextIsTheFirstLargestIdOfEachRow) {
  // Rows: end of text in the middle; at the end; the largest id twice (the first counts, as
  // argmax); all zeros (position 0).
  const Tensor ids = Tensor::from_vector(std::vector<int32_t>{49406, 320, 49407, 0, 0,    //
                                                              49406, 1, 2, 3, 49407,      //
                                                              5, 9, 7, 9, 1,              //
                                                              0, 0, 0, 0, 0},
                                         {4, 5});
  const Tensor eos = eos_positions(ids);
  ASSERT_EQ(eos.shape(), (Shape{4}));
  EXPECT_EQ(eos.to_float_vector(), (std::vector<float>{2, 4, 1, 0}));
}

}  // namespace
}  // namespace sparo
