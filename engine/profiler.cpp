#include "engine/profiler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace sparo::profiler {

using Clock = std::chrono::steady_clock;

namespace detail {
std::atomic<bool> enabled_flag{false};
}  // namespace detail

namespace {

// The op under way on this thread: only the outermost scope is timed (see profiler.h).
struct ThreadState {
  int depth = 0;
  const char* name = nullptr;
  Phase phase = Phase::forward;
  Clock::time_point start;
  double flops = 0.0, bytes = 0.0;
};
thread_local ThreadState current;

// One table for all threads: a scope ends once per op call, so an uncontended lock is cheap
// next to a kernel, and ops on TBB or data threads land in the same table.
std::mutex table_mutex;
std::unordered_map<std::string, Row> table;
Clock::time_point wall_start = Clock::now();

}  // namespace

void detail::add_work(double flops, double bytes) {
  if (current.depth == 0) return;  // outside any op (a direct backend call): nothing to credit
  current.flops += flops;
  current.bytes += bytes;
}

void set_enabled(bool on) {
  if (on) reset();
  detail::enabled_flag.store(on, std::memory_order_relaxed);
}

bool requested(bool flag) {
  const char* env = std::getenv("SPARO_PROFILE");
  return flag || (env && *env && std::strcmp(env, "0") != 0);
}

void reset() {
  std::lock_guard<std::mutex> lock(table_mutex);
  table.clear();
  wall_start = Clock::now();
}

void Scope::begin(const char* name, Phase phase) {
  active_ = true;
  if (current.depth++ > 0) return;
  current.name = name;
  current.phase = phase;
  current.flops = current.bytes = 0.0;
  current.start = Clock::now();
}

void Scope::end() {
  if (--current.depth > 0) return;
  const double s = std::chrono::duration<double>(Clock::now() - current.start).count();
  std::lock_guard<std::mutex> lock(table_mutex);
  Row& row = table[current.name];
  PhaseStats& p = current.phase == Phase::forward ? row.forward : row.backward;
  ++p.calls;
  p.seconds += s;
  p.flops += current.flops;
  p.bytes += current.bytes;
}

const Row* Report::find(const std::string& op) const {
  for (const Row& r : rows)
    if (r.op == op) return &r;
  return nullptr;
}

Report report() {
  Report r;
  std::lock_guard<std::mutex> lock(table_mutex);
  r.wall_seconds = std::chrono::duration<double>(Clock::now() - wall_start).count();
  for (const auto& [name, row] : table) {
    r.rows.push_back(row);
    r.rows.back().op = name;
  }
  std::sort(r.rows.begin(), r.rows.end(), [](const Row& a, const Row& b) {
    return a.seconds() != b.seconds() ? a.seconds() > b.seconds() : a.op < b.op;
  });
  return r;
}

std::string format(const Report& report, const std::string& title) {
  std::string out;
  char line[256];
  const double wall = report.wall_seconds;
  const auto share = [wall](double s) { return wall > 0 ? 100.0 * s / wall : 0.0; };
  std::snprintf(line, sizeof line, "profile: %s; wall %.3f s\n", title.c_str(), wall);
  out += line;
  std::snprintf(line, sizeof line, "%-18s %9s %9s %11s %11s %11s %7s %16s\n", "op", "fwd calls", "bwd calls",
                "forward ms", "backward ms", "total ms", "% wall", "rate");
  out += line;
  double tracked = 0.0;
  for (const Row& r : report.rows) {
    const double s = r.seconds();
    tracked += s;
    const double flops = r.forward.flops + r.backward.flops, bytes = r.forward.bytes + r.backward.bytes;
    char rate[32] = "";
    // An op that declared FLOPs is compute-bound by nature (GEMMs); its bytes are not stated.
    if (flops > 0 && s > 0) std::snprintf(rate, sizeof rate, "%.1f GFLOP/s", flops / s * 1e-9);
    else if (bytes > 0 && s > 0) std::snprintf(rate, sizeof rate, "%.1f GB/s", bytes / s * 1e-9);
    std::snprintf(line, sizeof line, "%-18s %9lld %9lld %11.2f %11.2f %11.2f %7.1f %16s\n", r.op.c_str(),
                  static_cast<long long>(r.forward.calls), static_cast<long long>(r.backward.calls),
                  r.forward.seconds * 1e3, r.backward.seconds * 1e3, s * 1e3, share(s), rate);
    out += line;
  }
  const double other = wall - tracked;
  std::snprintf(line, sizeof line, "%-18s %9s %9s %11s %11s %11.2f %7.1f\n", "other/untracked", "", "", "", "",
                other * 1e3, share(other));
  out += line;
  std::snprintf(line, sizeof line, "%-18s %9s %9s %11s %11s %11.2f %7.1f\n", "wall", "", "", "", "", wall * 1e3,
                share(wall));
  out += line;
  if (other < 0)
    out += "(other/untracked < 0: ops ran on several threads at once, so their times overlap)\n";
  return out;
}

}  // namespace sparo::profiler
