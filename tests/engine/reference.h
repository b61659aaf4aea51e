// A plain double-precision reference for every engine op: the oracle of the op ring.
// Written for obviousness, not speed: nested index arithmetic, no tricks, no sharing
// with the engine's code (only the Philox function, which has its own known-answer test).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace sparo::ref {

struct Ref {
  Shape shape;
  std::vector<double> v;
  Ref() = default;
  Ref(Shape s, double fill = 0.0) : shape(std::move(s)), v(static_cast<size_t>(numel(shape)), fill) {}
  int64_t size() const { return static_cast<int64_t>(v.size()); }
};

inline Shape strides_of(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) { st[i] = acc; acc *= s[i]; }
  return st;
}
inline Shape unravel(int64_t flat, const Shape& s) {
  Shape idx(s.size());
  for (size_t i = s.size(); i-- > 0;) { idx[i] = flat % s[i]; flat /= s[i]; }
  return idx;
}
// Flat offset of the (right-aligned, broadcast) multi-index idx in a tensor of shape s.
inline int64_t broadcast_offset(const Shape& idx, const Shape& s) {
  const Shape st = strides_of(s);
  int64_t off = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const int64_t j = idx[idx.size() - s.size() + i];
    off += (s[i] == 1 ? 0 : j) * st[i];
  }
  return off;
}
inline Shape broadcast(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

inline Ref map(const Ref& x, const std::function<double(double)>& f) {
  Ref out(x.shape);
  for (int64_t i = 0; i < x.size(); ++i) out.v[i] = f(x.v[i]);
  return out;
}
inline Ref zip(const Ref& a, const Ref& b, const std::function<double(double, double)>& f) {
  Ref out(broadcast(a.shape, b.shape));
  for (int64_t i = 0; i < out.size(); ++i) {
    const Shape idx = unravel(i, out.shape);
    out.v[i] = f(a.v[broadcast_offset(idx, a.shape)], b.v[broadcast_offset(idx, b.shape)]);
  }
  return out;
}
inline Ref where(const Ref& c, const Ref& a, const Ref& b) {
  Ref out(broadcast(broadcast(c.shape, a.shape), b.shape));
  for (int64_t i = 0; i < out.size(); ++i) {
    const Shape idx = unravel(i, out.shape);
    out.v[i] = c.v[broadcast_offset(idx, c.shape)] != 0 ? a.v[broadcast_offset(idx, a.shape)]
                                                          : b.v[broadcast_offset(idx, b.shape)];
  }
  return out;
}

inline int64_t axis_of(int64_t axis, size_t rank) { return axis < 0 ? axis + static_cast<int64_t>(rank) : axis; }

// Reduction over one axis with keepdim; init and combine define the reduction.
inline Ref reduce(const Ref& x, int64_t axis, bool keepdim, double init,
                  const std::function<double(double, double)>& combine) {
  axis = axis_of(axis, x.shape.size());
  Shape keep = x.shape;
  keep[axis] = 1;
  Ref out(keep, init);
  for (int64_t i = 0; i < x.size(); ++i) {
    Shape idx = unravel(i, x.shape);
    idx[axis] = 0;
    double& slot = out.v[broadcast_offset(idx, keep)];
    slot = combine(slot, x.v[i]);
  }
  if (!keepdim) out.shape.erase(out.shape.begin() + axis);
  return out;
}
inline Ref sum(const Ref& x, int64_t axis, bool keepdim) {
  return reduce(x, axis, keepdim, 0.0, [](double a, double b) { return a + b; });
}
inline Ref max(const Ref& x, int64_t axis, bool keepdim) {
  return reduce(x, axis, keepdim, -INFINITY, [](double a, double b) { return std::max(a, b); });
}
inline Ref sum_all(const Ref& x) {
  Ref out(Shape{});
  for (double v : x.v) out.v[0] += v;
  return out;
}
inline Ref max_all(const Ref& x) {
  Ref out(Shape{}, -INFINITY);
  for (double v : x.v) out.v[0] = std::max(out.v[0], v);
  return out;
}
inline Ref sum_to_shape(const Ref& x, const Shape& s) {
  Ref out(s);
  for (int64_t i = 0; i < x.size(); ++i) out.v[broadcast_offset(unravel(i, x.shape), s)] += x.v[i];
  return out;
}
inline Ref expand(const Ref& x, const Shape& s) {
  Ref out(s);
  for (int64_t i = 0; i < out.size(); ++i) out.v[i] = x.v[broadcast_offset(unravel(i, s), x.shape)];
  return out;
}

// op(a)[..., M, K] · op(b)[..., K, N] with broadcast batch axes.
inline Ref matmul(const Ref& a, const Ref& b, bool ta, bool tb) {
  const size_t ra = a.shape.size(), rb = b.shape.size();
  const int64_t M = ta ? a.shape[ra - 1] : a.shape[ra - 2], K = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  const int64_t N = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  const Shape ab(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  Shape out_shape = broadcast(ab, bb);
  const Shape batch = out_shape;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Ref out(out_shape);
  const int64_t nb = numel(batch);
  for (int64_t bi = 0; bi < nb; ++bi) {
    const Shape idx = unravel(bi, batch);
    const int64_t ao = broadcast_offset(idx, ab) * a.shape[ra - 2] * a.shape[ra - 1];
    const int64_t bo = broadcast_offset(idx, bb) * b.shape[rb - 2] * b.shape[rb - 1];
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double av = a.v[ao + (ta ? k * M + m : m * K + k)];
          const double bv = b.v[bo + (tb ? n * K + k : k * N + n)];
          acc += av * bv;
        }
        out.v[bi * M * N + m * N + n] = acc;
      }
  }
  return out;
}

// softmax / log-softmax of the last axis of x + mask (mask broadcast; may be empty).
inline Ref softmax(const Ref& x, const Ref* mask, bool log) {
  const int64_t cols = x.shape.back(), rows = x.size() / cols;
  Ref out(x.shape);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> s(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      s[c] = x.v[i] + (mask ? mask->v[broadcast_offset(unravel(i, x.shape), mask->shape)] : 0.0);
    }
    const double m = *std::max_element(s.begin(), s.end());
    if (m == -INFINITY) {
      for (int64_t c = 0; c < cols; ++c) out.v[r * cols + c] = log ? -INFINITY : 0.0;
      continue;
    }
    double total = 0;
    for (double v : s) total += std::exp(v - m);
    for (int64_t c = 0; c < cols; ++c)
      out.v[r * cols + c] = log ? s[c] - m - std::log(total) : std::exp(s[c] - m) / total;
  }
  return out;
}

// Multi-head attention from q, k, v side by side: qkv [B, N, 3D] → [B, N, D], head h in columns
// h·dh .. of each; softmax(q·kᵀ/√dh + mask)·v with mask [N, N] or none; an empty row gives 0.
inline Ref attention(const Ref& qkv, int64_t heads, const Ref* mask) {
  const int64_t B = qkv.shape[0], N = qkv.shape[1], D = qkv.shape[2] / 3, dh = D / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  Ref out({B, N, D});
  const auto at = [&](int64_t b, int64_t n, int64_t part, int64_t h, int64_t c) {
    return qkv.v[static_cast<size_t>((b * N + n) * 3 * D + part * D + h * dh + c)];
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> s(static_cast<size_t>(N));
        for (int64_t j = 0; j < N; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < dh; ++c) dot += at(b, i, 0, h, c) * at(b, j, 1, h, c);
          s[j] = dot * scale + (mask ? mask->v[static_cast<size_t>(i * N + j)] : 0.0);
        }
        const double m = *std::max_element(s.begin(), s.end());
        if (m == -INFINITY) continue;  // out stays 0
        double total = 0;
        for (double& v : s) total += v = std::exp(v - m);
        for (int64_t c = 0; c < dh; ++c) {
          double o = 0;
          for (int64_t j = 0; j < N; ++j) o += s[j] / total * at(b, j, 2, h, c);
          out.v[static_cast<size_t>((b * N + i) * D + h * dh + c)] = o;
        }
      }
  return out;
}

inline Ref layer_norm(const Ref& x, const Ref& w, const Ref* b, double eps) {
  const int64_t cols = x.shape.back(), rows = x.size() / cols;
  Ref out(x.shape);
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mu += x.v[r * cols + c];
    mu /= cols;
    for (int64_t c = 0; c < cols; ++c) var += (x.v[r * cols + c] - mu) * (x.v[r * cols + c] - mu);
    var /= cols;
    for (int64_t c = 0; c < cols; ++c)
      out.v[r * cols + c] = (x.v[r * cols + c] - mu) / std::sqrt(var + eps) * w.v[c] + (b ? b->v[c] : 0.0);
  }
  return out;
}

inline Ref l2_normalize(const Ref& x, int64_t axis, double eps) {
  const Ref norm = map(sum(map(x, [](double v) { return v * v; }), axis, true), [eps](double s) {
    return std::max(std::sqrt(s), eps);
  });
  return zip(x, norm, [](double a, double n) { return a / n; });
}

inline Ref index_select(const Ref& x, int64_t axis, const Ref& index) {
  axis = axis_of(axis, x.shape.size());
  Shape s = x.shape;
  s[axis] = index.size();
  Ref out(s);
  for (int64_t i = 0; i < out.size(); ++i) {
    Shape idx = unravel(i, s);
    idx[axis] = static_cast<int64_t>(index.v[idx[axis]]);
    out.v[i] = x.v[broadcast_offset(idx, x.shape)];
  }
  return out;
}

inline Ref embedding(const Ref& table, const Ref& ids) {
  const int64_t d = table.shape[1];
  Shape s = ids.shape;
  s.push_back(d);
  Ref out(s);
  for (int64_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < d; ++c) out.v[i * d + c] = table.v[static_cast<int64_t>(ids.v[i]) * d + c];
  return out;
}

inline Ref permute(const Ref& x, const std::vector<int64_t>& axes) {
  Shape s(axes.size());
  for (size_t i = 0; i < axes.size(); ++i) s[i] = x.shape[axis_of(axes[i], axes.size())];
  Ref out(s);
  for (int64_t i = 0; i < out.size(); ++i) {
    const Shape idx = unravel(i, s);
    Shape src(axes.size());
    for (size_t k = 0; k < axes.size(); ++k) src[axis_of(axes[k], axes.size())] = idx[k];
    out.v[i] = x.v[broadcast_offset(src, x.shape)];
  }
  return out;
}

inline Ref slice(const Ref& x, int64_t axis, int64_t start, int64_t end) {
  axis = axis_of(axis, x.shape.size());
  Shape s = x.shape;
  s[axis] = end - start;
  Ref out(s);
  for (int64_t i = 0; i < out.size(); ++i) {
    Shape idx = unravel(i, s);
    idx[axis] += start;
    out.v[i] = x.v[broadcast_offset(idx, x.shape)];
  }
  return out;
}

inline Ref concat(const std::vector<Ref>& xs, int64_t axis) {
  axis = axis_of(axis, xs[0].shape.size());
  Shape s = xs[0].shape;
  s[axis] = 0;
  for (const Ref& x : xs) s[axis] += x.shape[axis];
  Ref out(s);
  for (int64_t i = 0; i < out.size(); ++i) {
    Shape idx = unravel(i, s);
    size_t part = 0;
    while (idx[axis] >= xs[part].shape[axis]) idx[axis] -= xs[part++].shape[axis];
    out.v[i] = xs[part].v[broadcast_offset(idx, xs[part].shape)];
  }
  return out;
}

inline Ref cross_entropy(const Ref& logits, const Ref& targets, double smoothing) {
  const Ref logp = softmax(logits, nullptr, true);
  const int64_t rows = logits.shape[0], classes = logits.shape[1];
  Ref out(Shape{});
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = static_cast<int64_t>(targets.v[r]);
    double nll = -logp.v[r * classes + t], smooth = 0;
    for (int64_t c = 0; c < classes; ++c) smooth -= logp.v[r * classes + c] / classes;
    out.v[0] += (1 - smoothing) * nll + smoothing * smooth;
  }
  out.v[0] /= rows;
  return out;
}

// The uniform [0,1) value the engine draws for element i of a fill starting at block `first`.
inline double philox_uniform(uint64_t seed, uint64_t first, int64_t i) {
  const auto w = philox4x32(seed, first + static_cast<uint64_t>(i / 4));
  return static_cast<double>(w[static_cast<size_t>(i % 4)] >> 8) / 16777216.0;
}

}  // namespace sparo::ref
